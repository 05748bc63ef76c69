"""End to end for issue 9 points 2 and 17: one spelling of a number (an opt-out in one
spelling blocks every spelling; a number that is not plain ASCII digits is refused) and
one validation of every send (CLI and MQTT). The daemon in a subprocess, the node-smpp
simulator, Mosquitto, SQLite and PostgreSQL; migration 0004 on a database at 0003."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from alembic import command
from conftest import Gateway, gateway_config, run_sql, wait_for
from peers import MqttWatcher
from simctl import Simulator
from sqlalchemy import text as sql_text

from gateway.storage.db import _alembic_config, create_engine

A = "5551000100"
B = "5551000200"
STOP_REPLY = "You have been unsubscribed and will receive no more messages. Reply START " \
             "to resubscribe."
NUMBERS = f"""
[[number]]
vmn = "{A}"
[number.default]
reply = "A got: {{text}}"

[[number]]
vmn = "{B}"
sender_id = "ACME"
[number.default]
"""
TON_NATIONAL = 2


def config(*, db: str, sim: Simulator, prefix: str) -> str:
    extra = f"""country_code = "1"

[mqtt]
url = "mqtt://127.0.0.1:1883"
topic_prefix = "{prefix}"
client_id = "numbers-{prefix}"
"""
    return gateway_config(db=db, sim=sim, extra_gateway=extra, numbers=NUMBERS)


@pytest.fixture
def watcher() -> Iterator[MqttWatcher]:
    with MqttWatcher() as w:
        yield w


@pytest.fixture
def gw(sim: Simulator, db_url: str, watcher: MqttWatcher,
       make_gateway: Callable[..., Gateway]) -> Gateway:
    g = make_gateway(config(db=db_url, sim=sim, prefix=watcher.prefix))
    sim.wait_bound(timeout=20)
    return g


def texts_to(sim: Simulator, to: str) -> list[str]:
    return [s["text"] for s in sim.submits() if s["destination_addr"] == to]


def mt_record(gw: Gateway, mt_id: str) -> dict[str, Any] | None:
    return next((r for r in gw.logs() if r["id"] == mt_id), None)


def blocked_send(gw: Gateway, sim: Simulator, sender: str, to: str, text: str) -> None:
    mt_id = gw.send(sender, to, text)
    wait_for(lambda: (mt_record(gw, mt_id) or {}).get("status") == "blocked",
             what=f"MT {text!r} blocked")
    assert not [s for s in sim.submits() if s["text"] == text]


def command_status(watcher: MqttWatcher, cid: str, status: str) -> dict[str, Any]:
    return wait_for(lambda: next((e for e in watcher.events("mt_status")  # type: ignore
                                  if e.get("client_id") == cid and e["status"] == status),
                                 None), what=f"command {cid} {status}")


# -------------------------------------------------------------------- point 2: spelling


def test_stop_in_one_spelling_blocks_every_spelling(
        gw: Gateway, sim: Simulator, watcher: MqttWatcher) -> None:
    intl, national = "15559876543", "15559876545"
    # STOP from "+1..." (TON 1), and from a national number (TON 2, read in country 1)
    assert sim.mo(source="+" + intl, destination=A, text="STOP")["statuses"] == [0]
    assert sim.mo(source=national[1:], source_ton=TON_NATIONAL, destination=A,
                  text="STOP")["statuses"] == [0]
    # the confirmations go to the canonical spelling
    for to in (intl, national):
        wait_for(lambda to=to: STOP_REPLY in texts_to(sim, to), what=f"STOP reply to {to}")
    rows = gw.cli("optins", "--state", "out").stdout
    assert intl in rows and national in rows and "+" + intl not in rows
    assert gw.cli("optins", "--msisdn", "+1 (555) 987-6543").stdout.count(intl) == 1
    assert gw.cli("optins", "--msisdn", national[1:]).stdout.count(national) == 1
    assert {m["from"] for m in gw.mos()} == {intl, national}

    # CLI: every spelling of both numbers is blocked, and never reaches the SMSC
    for i, to in enumerate([intl, "+" + intl, "+1 555 987 6543", national, national[1:],
                            "(555) 987-6545"]):
        blocked_send(gw, sim, A, to, f"promo {i}")
    # MQTT commands alike
    for i, to in enumerate([intl, national, "+" + national]):
        watcher.publish(f"{watcher.prefix}/mt/send",
                        {"to": to, "from": A, "text": f"cmd {i}", "id": f"cmd-{i}"})
        ev = command_status(watcher, f"cmd-{i}", "blocked")
        assert ev["to"] in (intl, national)
    # an MT to somebody else still goes out (the gateway is sending at all)
    gw.send(A, "+1 555 987 6547", "control")
    wait_for(lambda: "control" in texts_to(sim, "15559876547"), what="the control MT")
    assert not [s for s in sim.submits() if s["text"].startswith(("promo", "cmd"))]


# ------------------------------------------------------- points 2 and 17: refused sends


# (to, from, text, the CLI's error)
POINT_17 = [
    ("15551234567", "9999999999", "unknown from",
     "error: --from: '9999999999' is not a configured VMN or sender ID"),
    ("15551234567", "ACME", "x" * 1601, "error: text: 1601 characters, at most 1600"),
    ("15551234567", "ACME", "", "error: text: missing or not a non-empty string"),
]


def refused_by_cli(gw: Gateway, to: str, sender: str, text: str, error: str) -> None:
    res = gw.cli("send", "--from", sender, "--to", to, text, check=False)
    assert res.returncode == 2, (to, sender, res.stdout)
    assert res.stdout == ""
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(error), res.stderr


def test_send_only_from_a_configured_sender_and_within_the_cap(
        db_url: str, make_gateway: Callable[..., Gateway]) -> None:
    """Point 17 on its own (no daemon needed: a refused send is never queued)."""
    gw = make_gateway(f"""
[gateway]
database = "{db_url}"
[[smsc]]
name = "sim"
system_id = "test"
password = "x"
{NUMBERS}""", start=False)
    asyncio.run(_create_schema(db_url))  # as the daemon would; `logs` never creates it
    for to, sender, body, error in POINT_17:
        refused_by_cli(gw, to, sender, body, error)
    assert gw.logs() == []
    gw.send("ACME", "+1 555 123 4567", "z" * 1600)  # a sender ID; the cap is inclusive
    assert [(r["from"], r["to"], r["status"]) for r in gw.logs()] == \
        [("ACME", "15551234567", "queued")]


async def _create_schema(url: str) -> None:
    from gateway.storage.db import create_engine, migrate

    engine = create_engine(url)
    try:
        await migrate(engine)
    finally:
        await engine.dispose()


BAD_TO = ["15551234567\n", "\uff11\uff15\uff15\uff15\uff11\uff12\uff13\uff14\uff15\uff16\uff17",
          "\u0661\u0665\u0665\u0665\u0661\u0662\u0663\u0664\u0665\u0666\u0667"]


def test_bad_sends_are_refused_and_nothing_is_queued(
        gw: Gateway, sim: Simulator, watcher: MqttWatcher) -> None:
    refused = [
        (to, A, f"bad to {i}", "error: --to: not a phone number")
        for i, to in enumerate(BAD_TO)
    ] + POINT_17
    for to, sender, body, error in refused:
        refused_by_cli(gw, to, sender, body, error)
    # MQTT: a `failed` status naming the field, never submitted
    for i, to in enumerate(BAD_TO):
        watcher.publish(f"{watcher.prefix}/mt/send",
                        {"to": to, "from": A, "text": f"bad cmd {i}", "id": f"bad-{i}"})
        ev = command_status(watcher, f"bad-{i}", "failed")
        assert ev["error"].startswith("to: not a phone number")
    # a sender ID is a valid `from` for the CLI too, and the text cap is inclusive
    gw.send("ACME", "15551234567", "y" * 1600)
    wait_for(lambda: any(s["text"].startswith("y") for s in sim.submits()),
             what="the valid send")
    # nothing refused was queued (the MTs in the log are the MQTT refusals only)...
    mts = [r for r in gw.logs() if r["direction"] == "mt"]
    assert sorted(r["client_ref"] or r["text"][:1] for r in mts) == \
        ["bad-0", "bad-1", "bad-2", "y"]
    assert all(r["status"] == "failed" for r in mts if r["client_ref"])
    # ...and nothing but the valid one reached the SMSC
    assert {s["destination_addr"] for s in sim.submits()} == {"15551234567"}
    assert not [s for s in sim.submits() if not s["text"].startswith("y")]


# ---------------------------------------------------------------- migration 0004


async def _upgrade(url: str, revision: str, country_code: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(
                lambda c: command.upgrade(_alembic_config(c, country_code), revision))
    finally:
        await engine.dispose()


def _query(url: str, sql: str) -> list[tuple[Any, ...]]:
    async def go() -> list[tuple[Any, ...]]:
        engine = create_engine(url)
        try:
            async with engine.connect() as conn:
                return [tuple(r) for r in await conn.execute(sql_text(sql))]
        finally:
            await engine.dispose()
    return asyncio.run(go())


def test_migration_0004_makes_stored_numbers_canonical(
        db_url: str, sim: Simulator, make_gateway: Callable[..., Gateway]) -> None:
    asyncio.run(_upgrade(db_url, "0003", "1"))
    now = time.time()
    p, c, n = "+15559876543", "15559876543", "5559876545"

    def opt(values: str) -> str:
        return f"INSERT INTO opt_state (msisdn, vmn, state, keyword, updated_at) " \
            f"VALUES ({values})"

    def vote(values: str) -> str:
        return f"INSERT INTO poll_votes (poll, msisdn, option, vmn, message_id, at) " \
            f"VALUES ({values})"

    run_sql(
        db_url,
        # one person in two spellings: "+1" said STOP (newer), the bare one START (older)
        opt(f"'{p}', '{A}', 'out', 'STOP', {now - 10}"),
        opt(f"'{c}', '{A}', 'in', 'START', {now - 20}"),
        opt(f"'{c}', '{B}', 'in', 'START', {now - 5}"),
        # a national spelling: STOPALL, and an older per-sender START it overrides
        opt(f"'{n}', '*', 'out', 'STOPALL', {now - 10}"),
        opt(f"'+1{n}', '{B}', 'in', 'START', {now - 30}"),
        # not a phone number: kept as it is
        opt(f"'ACMEBANK', '{A}', 'out', 'STOP', {now}"),
        "INSERT INTO opt_history (msisdn, vmn, received_on, state, keyword, message_id, "
        f"changed, at) VALUES ('{p}', '{A}', '{A}', 'out', 'STOP', NULL, 1, {now - 10})",
        "INSERT INTO opt_history (msisdn, vmn, received_on, state, keyword, message_id, "
        f"changed, at) VALUES ('{n}', '*', '{A}', 'out', 'STOPALL', NULL, 1, {now - 10})",
        vote(f"'colour', '{p}', 'RED', '{A}', 'm1', {now - 20}"),
        vote(f"'colour', '{c}', 'BLUE', '{A}', 'm2', {now - 10}"),
        "INSERT INTO leads (vmn, msisdn, keyword, text, message_id, at, count, last_at) "
        f"VALUES ('{A}', '{p}', 'INFO', 'info please', 'm3', {now - 50}, 2, {now - 40})",
        "INSERT INTO leads (vmn, msisdn, keyword, text, message_id, at, count, last_at) "
        f"VALUES ('{A}', '{c}', 'INFO', 'info again', 'm4', {now - 30}, 1, {now - 30})",
        "INSERT INTO email_tokens (token, vmn, msisdn, message_id, expires_at) "
        f"VALUES ('tok', '{A}', '{p}', 'm5', {now + 3600})",
        # MTs queued before the upgrade, in old spellings, to opted-out numbers
        "INSERT INTO messages (id, direction, smsc, vmn, msisdn, sender, recipient, text, "
        "data_coding, segments, status, created_at, updated_at, attempts, "
        "next_attempt_at, fanout, exempt) VALUES "
        f"('mt1', 'mt', NULL, '{A}', '{p}', '{A}', '{p}', 'queued before', 0, 0, "
        f"'queued', {now}, {now}, 0, {now}, 0, 0), "
        f"('mt2', 'mt', NULL, '{B}', '{n}', '{B}', '{n}', 'queued before 2', 0, 0, "
        f"'queued', {now}, {now}, 0, {now}, 0, 0)",
    )
    asyncio.run(_upgrade(db_url, "head", "1"))

    assert sorted(_query(db_url, "SELECT msisdn, vmn, state, keyword FROM opt_state")) == [
        ("15559876543", A, "out", "STOP"),  # the newer of the two spellings
        ("15559876543", B, "in", "START"),
        ("15559876545", "*", "out", "STOPALL"),  # the older per-sender START is gone
        ("ACMEBANK", A, "out", "STOP"),
    ]
    assert sorted(_query(db_url, "SELECT msisdn, vmn FROM opt_history")) == [
        ("15559876543", A), ("15559876545", "*")]
    assert _query(db_url, "SELECT msisdn, option FROM poll_votes") == [(c, "BLUE")]
    assert _query(db_url, "SELECT msisdn, text, count FROM leads") == [(c, "info again", 3)]
    assert _query(db_url, "SELECT msisdn FROM email_tokens") == [(c,)]
    assert sorted(_query(db_url, "SELECT id, msisdn, recipient FROM messages")) == [
        ("mt1", c, c), ("mt2", "15559876545", "15559876545")]

    # the daemon on the migrated database blocks both queued MTs: both sides canonical
    gw = make_gateway(gateway_config(db=db_url, sim=sim, numbers=NUMBERS))
    sim.wait_bound(timeout=20)
    wait_for(lambda: {r["id"]: r["status"] for r in gw.logs()} ==
             {"mt1": "blocked", "mt2": "blocked"}, what="both queued MTs blocked")
    assert sim.submits() == []


def test_migration_0004_reads_national_numbers_in_the_configured_country(db_url: str) -> None:
    asyncio.run(_upgrade(db_url, "0003", "44"))
    run_sql(db_url, "INSERT INTO opt_state (msisdn, vmn, state, keyword, updated_at) "
                    f"VALUES ('07700 900123', '{A}', 'out', 'STOP', 1)")
    asyncio.run(_upgrade(db_url, "head", "44"))
    assert _query(db_url, "SELECT msisdn FROM opt_state") == [("447700900123",)]
