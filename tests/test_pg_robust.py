"""One bad MO never takes the others down (issue 9 point 4). PostgreSQL's text cannot
hold U+0000 and its VARCHAR(n) refuses longer strings, where SQLite stores both: one
such value used to fail the whole intake commit, every PDU of the batch answered 0x64,
and again on every redelivery. Now every value is stored in a safe form, alike on both
backends (NUL -> U+FFFD, cut to the column, the raw PDU kept). A row the database
refuses for any other reason is isolated: the rest of its batch is stored and acked.
PDUs built by hand and sent by the simulator in one write, so that they make one batch."""

from __future__ import annotations

import asyncio
import struct
import uuid
from collections.abc import Callable
from typing import Any

from conftest import Gateway, gateway_config, run_sql, wait_for
from hypothesis import given, settings
from hypothesis import strategies as st
from simctl import Simulator

VMN = "5551000100"
DELIVER_SM = 0x00000005
ESM_RECEIPT = 0x04
ESM_UDH = 0x40


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


@given(st.lists(st.one_of(st.text(), st.text(alphabet=st.characters(codec="ascii")),
                          st.none(), st.integers(), st.binary()), min_size=1, max_size=6),
       st.lists(st.one_of(st.none(), st.integers(0, 12)), min_size=6, max_size=6))
@settings(max_examples=500, deadline=None)
def test_a_row_is_changed_exactly_where_a_text_value_has_no_safe_form_as_it_is(
        values: list[Any], lengths: list[int | None]) -> None:
    """`storable_row` checks the common case inline (the MO path runs it ~10 times a
    MO): it must agree with `fit`, value by value, whatever the row holds."""
    from gateway.storage.values import fit, storable_row

    row = tuple(values)
    lim = tuple((i, lengths[i]) for i in range(len(row)))
    expected = tuple(fit(v, n) if isinstance(v, str) else v for v, (_, n) in zip(row, lim,
                                                                               strict=True))
    got = storable_row(row, lim)
    if expected == row:
        assert got is None
    else:
        assert got == expected


def _udh(ref: int, total: int, seq: int) -> bytes:
    return bytes([5, 0, 3, ref, total, seq])


def _refuse_poison(url: str) -> None:
    """A trigger standing for any row-specific refusal of the database (a constraint, a
    bug): the INSERT of an MO whose text is POISON fails."""
    if url.startswith("sqlite"):
        run_sql(url, "CREATE TRIGGER poison BEFORE INSERT ON messages "
                     "WHEN NEW.text = 'POISON' "
                     "BEGIN SELECT RAISE(ABORT, 'refused by the test trigger'); END")
    else:
        run_sql(url,
                "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                "IF NEW.text = 'POISON' THEN "
                "RAISE EXCEPTION 'refused by the test trigger'; END IF; "
                "RETURN NEW; END $$",
                "CREATE TRIGGER poison BEFORE INSERT ON messages "
                "FOR EACH ROW EXECUTE FUNCTION poison()")


def test_a_row_the_database_refuses_is_isolated_and_the_rest_of_its_batch_stored(
        sim: Simulator, db_url: str, make_gateway: Callable[..., Gateway]) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    extra = f"""
[mqtt]
url = "mqtt://127.0.0.1:1883"
topic_prefix = "{prefix}"
client_id = "robust-{prefix}"
"""  # every MO has its MQTT event: the fan-out runs for each one stored
    gw = make_gateway(gateway_config(db=db_url, sim=sim, extra_gateway=extra))
    sim.wait_bound()
    wait_for(lambda: gw.log_events("daemon.started"), what="the daemon")  # migrated
    _refuse_poison(db_url)
    start = sim.state()["received_next"]
    receipt = (b"id:abc123 sub:001 dlvrd:001 submit date:2601010000 "
               b"done date:2601010000 stat:DELIVRD err:000")
    batch = {
        82001: deliver_sm(82001, "15550000201", b"hello from A"),
        82002: deliver_sm(82002, "15550000202", b"POISON"),
        82003: deliver_sm(82003, "15550000203", b"hello from C"),
        # two parts whose message is POISON: both refused, the group kept whole
        82004: deliver_sm(82004, "15550000204", _udh(7, 2, 1) + b"POI", esm=ESM_UDH),
        82005: deliver_sm(82005, "15550000204", _udh(7, 2, 2) + b"SON", esm=ESM_UDH),
        82006: deliver_sm(82006, "15550000205", _udh(9, 2, 1) + b"two ", esm=ESM_UDH),
        82007: deliver_sm(82007, "15550000205", _udh(9, 2, 2) + b"parts", esm=ESM_UDH),
        82008: deliver_sm(82008, "15550000206", receipt, esm=ESM_RECEIPT),
        82009: deliver_sm(82009, "15550000207", b"hello from G"),
    }
    refused = {82002, 82004, 82005}
    sim.raw(b"".join(batch.values()))  # one write: one batch
    got = wait_for(lambda: answers(sim, start, list(batch)), what="every deliver_sm_resp")
    assert got == {s: 0x64 if s in refused else 0 for s in batch}, got
    # they did share one transaction (else this test would prove nothing)
    assert [e["pdus"] for e in gw.log_events("intake.commit_failed")] == [len(batch)]

    def stored() -> list[tuple[Any, ...]]:
        return sorted(query(db_url, "SELECT msisdn, text, status FROM messages "
                                    "WHERE direction = 'mo'"))

    assert stored() == [
        ("15550000201", "hello from A", "received"),
        ("15550000203", "hello from C", "received"),
        ("15550000205", "two parts", "received"),
        ("15550000207", "hello from G", "received"),
    ]
    assert query(db_url, "SELECT smsc_message_id FROM receipts") == [("abc123",)]
    assert sorted(query(db_url, "SELECT concat_key IS NOT NULL, message_id IS NOT NULL "
                                "FROM mo_parts")) == [(True, True)] * 2
    # the operator sees each refused PDU, with what the database said but no content
    lines = gw.log_events("intake.row_refused")
    assert sorted(e["sequence_number"] for e in lines) == sorted(refused)
    for e in lines:
        assert e["smsc"] == "sim" and "refused by the test trigger" in e["error"], e
    for line in gw.log_path.read_text().splitlines():
        if '"intake.' in line:
            assert "POISON" not in line and "15550000202" not in line, line
    # the fan-out ran for the MOs stored, and for them only
    wait_for(lambda: query(db_url, "SELECT count(*) FROM messages WHERE fanout = 1")
             == [(0,)], what="the fan-out of the stored MOs")
    ids = {i for (i,) in query(db_url, "SELECT id FROM messages")}
    about = [m for (m,) in query(db_url, "SELECT message_id FROM jobs")]  # the MO events
    assert sorted(about) == sorted(ids) and len(ids) == 4, about

    # Once the cause is gone the SMSC's redeliveries are stored: the intake's memory
    # (the reassembly group of 15550000204) kept nothing of what was refused.
    run_sql(db_url, "DROP TRIGGER poison" if db_url.startswith("sqlite")
            else "DROP TRIGGER poison ON messages")
    start = sim.state()["received_next"]
    sim.raw(b"".join(batch[s] for s in sorted(refused)))
    got = wait_for(lambda: answers(sim, start, sorted(refused)), what="the redeliveries")
    assert got == dict.fromkeys(refused, 0), got
    assert stored() == sorted([
        ("15550000201", "hello from A", "received"),
        ("15550000202", "POISON", "received"),
        ("15550000203", "hello from C", "received"),
        ("15550000204", "POISON", "received"),
        ("15550000205", "two parts", "received"),
        ("15550000207", "hello from G", "received"),
    ])
    assert query(db_url, "SELECT count(*) FROM mo_parts WHERE message_id IS NULL") == [(0,)]
    assert gw.running


class _Bind:
    """The intake's side of one bind: records what it answers (stands in for
    gateway.smpp.session.Link, whose socket is not what this test is about)."""

    response_timeout = 10.0

    def __init__(self) -> None:
        from gateway.smpp.connection import Connection

        self.name = "sim"
        self.statuses: dict[int, int] = {}
        self.conn: Connection[None] = Connection()  # makes the answers (`conn.ack`)

    def write(self, data: bytes) -> None:
        while data:
            length, _cid, status, seq = struct.unpack_from(">IIII", data)
            self.statuses[seq] = status
            data = data[length:]

    def write_responses(self, data: bytes, _keys: list[str]) -> None:
        self.write(data)


async def test_a_redelivery_of_a_refused_row_is_never_acknowledged_for_it(
        db_url: str) -> None:
    """The bind drops while a batch is committed: its MOs become suspects sharing the
    batch's fate. When the batch is stored but for one refused row, that row's
    redelivery (folded meanwhile, or arriving later) must not be acknowledged on the
    strength of the batch: it was never stored."""
    from gateway.pipeline import Intake
    from gateway.smpp.codec import decode
    from gateway.storage.db import create_engine, migrate
    from gateway.storage.repo import Store

    engine = create_engine(db_url)
    await migrate(engine)
    store = Store(engine)
    await asyncio.to_thread(_refuse_poison, db_url)
    intake = Intake(store, dedup_window=60, reassembly_timeout=60)
    await intake.load_state()
    writer = asyncio.create_task(intake.run())

    def mo(seq: int, source: str, text: bytes) -> tuple[Any, bytes]:
        raw = deliver_sm(seq, source, text)
        return decode(raw), raw

    try:
        first, second = _Bind(), _Bind()
        for pdu, raw in (mo(83001, "15550000301", b"fine"),
                         mo(83002, "15550000302", b"POISON"),
                         mo(83003, "15550000303", b"POISON")):
            intake.on_mo(first, pdu, raw)  # type: ignore[arg-type]
        while not intake._committing:
            await asyncio.sleep(0)
        # the bind drops while the batch is committed; the SMSC binds again at once and
        # redelivers two of them (new sequence numbers)
        intake.on_link_lost(first, [])  # type: ignore[arg-type]
        for pdu, raw in (mo(1, "15550000301", b"fine"), mo(2, "15550000302", b"POISON")):
            intake.on_mo(second, pdu, raw)  # type: ignore[arg-type]
        assert await intake.drain(30)
        assert first.statuses == {83001: 0, 83002: 0x64, 83003: 0x64}
        assert second.statuses == {1: 0, 2: 0x64}, second.statuses
        # the third is redelivered later: a new attempt, refused again while the cause is
        # there, stored once it is gone
        pdu, raw = mo(3, "15550000303", b"POISON")
        intake.on_mo(second, pdu, raw)  # type: ignore[arg-type]
        assert await intake.drain(30)
        assert second.statuses[3] == 0x64
        await asyncio.to_thread(run_sql, db_url, "DROP TRIGGER poison"
                                if db_url.startswith("sqlite") else
                                "DROP TRIGGER poison ON messages")
        for seq, source in ((4, "15550000302"), (5, "15550000303")):
            pdu, raw = mo(seq, source, b"POISON")
            intake.on_mo(second, pdu, raw)  # type: ignore[arg-type]
        assert await intake.drain(30)
        assert second.statuses[4] == second.statuses[5] == 0
        rows = await asyncio.to_thread(
            query, db_url, "SELECT msisdn, text FROM messages ORDER BY msisdn")
        assert rows == [("15550000301", "fine"), ("15550000302", "POISON"),
                        ("15550000303", "POISON")]
    finally:
        writer.cancel()
        await store.close()
        await engine.dispose()
