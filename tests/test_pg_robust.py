"""One bad MO never takes the others down (issue 9 point 4). PostgreSQL's text cannot
hold U+0000 and its VARCHAR(n) refuses longer strings, where SQLite stores both: one
such value used to fail the whole intake commit, every PDU of the batch answered 0x64,
and again on every redelivery. Now every value is stored in a safe form, alike on both
backends (NUL -> U+FFFD, cut to the column, the raw PDU kept). PDUs built by hand and
sent by the simulator in one write, so that they make one batch."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from typing import Any

from conftest import Gateway, gateway_config, wait_for
from simctl import Simulator

VMN = "5551000100"
DELIVER_SM = 0x00000005
ESM_RECEIPT = 0x04


def deliver_sm(seq: int, source: str, text: bytes, *, dc: int = 0, esm: int = 0,
               tlvs: bytes = b"") -> bytes:
    body = (b"\0" + b"\x01\x01" + source.encode() + b"\0" + b"\x01\x01" + VMN.encode()
            + b"\0" + bytes([esm, 0, 0]) + b"\0\0" + bytes([0, 0, dc, 0, len(text)]) + text
            + tlvs)
    return struct.pack(">IIII", 16 + len(body), DELIVER_SM, 0, seq) + body


def tlv(tag: int, value: bytes) -> bytes:
    return struct.pack(">HH", tag, len(value)) + value


def query(url: str, sql: str) -> list[tuple[Any, ...]]:
    if url.startswith("sqlite"):
        import sqlite3

        db = sqlite3.connect(url.split("///", 1)[1], timeout=30)
        try:
            return [tuple(r) for r in db.execute(sql)]
        finally:
            db.close()
    import asyncpg

    async def go() -> list[tuple[Any, ...]]:
        conn = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
        try:
            return [tuple(r) for r in await conn.fetch(sql)]
        finally:
            await conn.close()

    return asyncio.run(go())


def answers(sim: Simulator, since: int, seqs: list[int]) -> dict[int, int] | None:
    got = {r["sequence_number"]: r["command_status"] for r in sim.received(since)
           if r.get("command") == "deliver_sm_resp" and r.get("sequence_number") in seqs}
    return got if len(got) == len(seqs) else None


def test_a_batch_with_nul_texts_and_oversize_receipts_is_stored_and_acked_whole(
        sim: Simulator, db_url: str, make_gateway: Callable[..., Gateway]) -> None:
    gw = make_gateway(gateway_config(db=db_url, sim=sim))
    sim.wait_bound()
    start = sim.state()["received_next"]
    long_receipt = (b"id:" + b"X" * 80 + b" sub:001 dlvrd:001 submit date:2601010000 "
                    b"done date:2601010000 stat:DELIVRD" + b"Z" * 20 + b" err:" + b"7" * 20)
    batch = {
        81001: deliver_sm(81001, "15550000101", b"caf\xe9\x00ok", dc=3),  # Latin-1 NUL
        81002: deliver_sm(81002, "15550000102", "hi\0there".encode("utf-16-be"), dc=8),
        81003: deliver_sm(81003, "15550000103", long_receipt, esm=ESM_RECEIPT),
        81004: deliver_sm(81004, "15550000104", b"hello from C"),
        81005: deliver_sm(81005, "15550000105", b"hello from D"),
        # receipted_message_id with a NUL inside, message_state DELIVERED
        81006: deliver_sm(81006, "15550000106", b"", esm=ESM_RECEIPT,
                          tlvs=tlv(0x001E, b"ab\0cd\0") + tlv(0x0427, b"\x02")),
    }
    sim.raw(b"".join(batch.values()))  # one write: one batch
    got = wait_for(lambda: answers(sim, start, list(batch)), what="every deliver_sm_resp")
    assert got == dict.fromkeys(batch, 0), got  # all acknowledged, none refused
    mos = wait_for(lambda: (lambda m: m if len(m) >= 4 else None)(gw.mos()), what="4 MOs")
    assert {m["from"]: m["text"] for m in mos} == {
        "15550000101": "café\ufffdok",
        "15550000102": "hi\ufffdthere",
        "15550000104": "hello from C",
        "15550000105": "hello from D",
    }
    # the exact octets are kept
    raw = query(db_url, "SELECT raw_pdu FROM messages WHERE msisdn = '15550000101'")
    assert bytes(raw[0][0]) == batch[81001]
    receipts = sorted(query(db_url, "SELECT smsc_message_id, state, error, raw_pdu "
                                    "FROM receipts"))
    assert [(i, s, e) for i, s, e, _ in receipts] == [
        ("X" * 65, "DELIVRD" + "Z" * 9, "7" * 16),
        ("ab\ufffdcd", "DELIVRD", None),
    ]
    assert bytes(receipts[0][3]) == batch[81003]
    assert not gw.log_events("intake.commit_failed")
    # the session goes on: a later MO is stored and acknowledged as usual
    assert sim.mo(source="15550000107", destination=VMN, text="later")["statuses"] == [0]
    assert gw.running


def test_the_safe_form_of_a_value() -> None:
    from gateway.storage.values import fit, storable_row

    cases = [
        ("plain", 10, "plain"),
        ("a\0b", None, "a\ufffdb"),
        ("half \ud800 pair", None, "half \ufffd pair"),
        ("ok \U0001f600", None, "ok \U0001f600"),  # a whole astral character stays
        ("x" * 30, 16, "x" * 16),
        ("\0" * 5, 3, "\ufffd" * 3),
    ]
    for value, length, expected in cases:
        assert fit(value, length) == expected, value
    assert storable_row(("fine", 1, b"\0"), ((0, 8),)) is None  # nothing to change
    assert storable_row(("a\0", 1, b"\0"), ((0, 8),)) == ("a\ufffd", 1, b"\0")
