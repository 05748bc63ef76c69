"""The storage queries behind the API's read side (optins, leads, stats), on SQLite and
PostgreSQL (`db_url`): a manual opt change is recorded, announced and enforced like a
keyword one; keyset pages add up to the whole list; stats count from the index."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import insert, select
from sqlalchemy.engine import Connection

from gateway.actions import opt
from gateway.actions.emitter import Emitter
from gateway.storage import leads as leadq
from gateway.storage import mts, optins, stats
from gateway.storage.db import create_engine, migrate
from gateway.storage.repo import Store
from gateway.storage.schema import jobs, leads, messages, opt_history, opt_state

VMN = "5551000100"
SENDER_ID = "ACME"
WHO = "15550001111"
T0 = 1_760_000_000.0  # a fixed clock: buckets are exact


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    engine = create_engine(db_url)
    await migrate(engine)
    s = Store(engine)
    yield s
    await s.close()
    await engine.dispose()


async def _read(store: Store, fn: Any, *args: Any, **kwargs: Any) -> Any:
    async with store.reader.connect() as conn:
        return await conn.run_sync(lambda c: fn(c, *args, **kwargs))


def _manual(conn: Connection, *, state: str, vmn: str = VMN, every: bool = False,
            now: float = T0, profile: str | None = None) -> optins.OptChange:
    return opt.set_opt(conn, Emitter(mqtt_prefix="p"), msisdn=WHO, state=state, vmn=vmn,
                       sender_id=SENDER_ID, every=every, keyword=None, received_on=None,
                       message_id=None, source="api", now=now, profile=profile)


async def test_manual_opt_out_is_kept_announced_and_blocks_mts(store: Store) -> None:
    first = await store.transaction(lambda c: _manual(c, state="out", profile="crm"))
    assert first.changed and first.scope == VMN
    again = await store.transaction(lambda c: _manual(c, state="out", now=T0 + 1))
    assert not again.changed and again.jobs == []

    def look(conn: Connection) -> tuple[Any, ...]:
        rows = conn.execute(select(opt_state.c.vmn, opt_state.c.state)
                            .where(opt_state.c.msisdn == WHO)).all()
        hist = optins.history_of(conn, WHO)
        events = conn.execute(select(jobs.c.kind, jobs.c.target, jobs.c.payload)
                              .order_by(jobs.c.kind)).all()
        blocked = mts.opted_out(conn, SENDER_ID, WHO), mts.opted_out(conn, VMN, WHO)
        other = mts.opted_out(conn, "5551000999", WHO)
        return sorted(rows), hist, events, blocked, other

    rows, hist, events, blocked, other = await store.transaction(look)
    # The VMN and its sender ID: an MT is checked by its sender.
    assert rows == sorted([(SENDER_ID, "out"), (VMN, "out")])
    assert [(h["source"], h["changed"], h["keyword"], h["message_id"]) for h in hist] == [
        ("api", 1, None, None), ("api", 0, None, None)]
    assert [(k, t) for k, t, _ in events] == [("mqtt", f"p/opt/{VMN}"),
                                             ("webhook", "profile:crm")]
    ev = json.loads(events[0][2])
    assert ev == json.loads(events[1][2])
    assert {k: ev[k] for k in ("type", "msisdn", "vmn", "state", "keyword", "source")} == {
        "type": "opt", "msisdn": WHO, "vmn": VMN, "state": "out", "keyword": None,
        "source": "api"}
    assert blocked == (True, True) and other is False


async def test_every_sender_clears_per_sender_rows(store: Store) -> None:
    await store.transaction(lambda c: _manual(c, state="in"))
    change = await store.transaction(lambda c: _manual(c, state="out", vmn="*", every=True))
    assert change.changed and change.scope == "*"

    def look(conn: Connection) -> tuple[Any, ...]:
        rows = conn.execute(select(opt_state.c.vmn, opt_state.c.state)).all()
        return rows, mts.opted_out(conn, "5551000999", WHO)

    rows, other = await store.transaction(look)
    assert rows == [("*", "out")] and other is True
    # A keyword STOP goes through the same function: its history row says so.
    def keyword_stop(conn: Connection) -> list[dict[str, Any]]:
        opt.record_opt(conn, Emitter(), msisdn=WHO, state="in", vmn=VMN,
                       sender_id=SENDER_ID, keyword="START", received_on=VMN,
                       message_id="m1", source="keyword", now=T0 + 5, profile=None)
        return optins.history_of(conn, WHO)

    hist = await store.transaction(keyword_stop)
    assert [h["source"] for h in hist] == ["api", "api", "keyword"]


async def test_optin_pages_add_up_to_the_list(store: Store) -> None:
    # Several rows share one updated_at: the key (updated_at, msisdn, vmn) splits them.
    rows = [{"msisdn": f"1555000{i:04d}", "vmn": VMN if i % 3 else "*",
             "state": "out" if i % 2 else "in", "keyword": "STOP",
             "updated_at": T0 + i // 4} for i in range(23)]
    await store.transaction(lambda c: c.execute(insert(opt_state), rows))
    whole = await _read(store, optins.list_optins, limit=1000)
    assert len(whole) == 23
    for filters in ({}, {"state": "out"}, {"vmns": [VMN]}, {"vmns": ["5551000999"]}):
        pages: list[dict[str, Any]] = []
        after = None
        while True:
            page = await _read(store, optins.list_optins, after=after, limit=4, **filters)
            pages += page
            if len(page) < 4:
                break
            after = optins.key_of(page[-1])
        expected = await _read(store, optins.list_optins, limit=1000, **filters)
        assert pages == expected, filters
    assert len(await _read(store, optins.list_optins, vmns=["5551000999"], limit=100)) == 8
    assert {r["state"] for r in await _read(store, optins.list_optins, state="in")} == {"in"}


async def test_lead_pages(store: Store) -> None:
    rows = [{"vmn": VMN if i % 2 else "5551000200", "msisdn": f"1555000{i:04d}",
             "keyword": "INFO", "text": f"t{i}", "message_id": f"m{i}", "at": T0 + i,
             "count": 1, "last_at": T0 + i} for i in range(11)]
    await store.transaction(lambda c: c.execute(insert(leads), rows))
    got: list[dict[str, Any]] = []
    after = None
    while True:
        page = await _read(store, leadq.list_leads, after=after, limit=3)
        got += page
        if len(page) < 3:
            break
        after = page[-1]["id"]
    assert [r["text"] for r in got] == [f"t{i}" for i in range(11)]
    mine = await _read(store, leadq.list_leads, vmns=[VMN], since=T0 + 4)
    assert [r["text"] for r in mine] == ["t5", "t7", "t9"]


def _message(i: int, at: float, vmn: str, direction: str) -> dict[str, Any]:
    return {"id": f"x{i}", "direction": direction, "vmn": vmn, "msisdn": WHO,
            "sender": WHO, "recipient": vmn, "text": "t", "status": "received",
            "created_at": at, "updated_at": at, "data_coding": 0, "segments": 1,
            "attempts": 0, "fanout": 0, "exempt": 0}


async def test_stats_count_per_vmn_per_step(store: Store) -> None:
    rows = [_message(0, T0 - 1, VMN, "mo"),  # before the window
            _message(1, T0, VMN, "mo"), _message(2, T0 + 59.9, VMN, "mo"),
            _message(3, T0 + 60, VMN, "mo"), _message(4, T0 + 61, VMN, "mt"),
            _message(5, T0 + 150, "5551000200", "mo"),
            _message(6, T0 + 180, VMN, "mo")]  # at `until`: outside
    await store.transaction(lambda c: c.execute(insert(messages), rows))
    got = await _read(store, stats.counts, since=T0, until=T0 + 180, step=60)
    assert sorted((c.bucket, c.vmn, c.direction, c.n) for c in got) == [
        (0, VMN, "mo", 2), (1, VMN, "mo", 1), (1, VMN, "mt", 1), (2, "5551000200", "mo", 1)]
    mine = await _read(store, stats.counts, since=T0, until=T0 + 180, step=60, vmns=[VMN])
    assert {c.vmn for c in mine} == {VMN}


async def test_stats_plan_reads_the_index_alone(store: Store, db_url: str) -> None:
    """20 days of messages, one day asked: the plan reads ix_messages_stats, and on
    SQLite that index alone (covering)."""
    day = 86400.0
    n = 20_000
    rows = [_message(i, T0 + i * (20 * day / n), f"555100{i % 7:04d}",
                     "mo" if i % 3 else "mt") for i in range(n)]
    await store.transaction(lambda c: c.execute(insert(messages), rows))
    if not db_url.startswith("sqlite"):
        async with store.engine.connect() as conn:
            await conn.exec_driver_sql("ANALYZE messages")
            await conn.commit()
    got = await _read(store, stats.plan, since=T0 + 5 * day, until=T0 + 6 * day, step=3600)
    if db_url.startswith("sqlite"):
        assert "USING COVERING INDEX ix_messages_stats" in got, got
    else:
        assert "ix_messages_stats" in got and "Seq Scan" not in got, got
    total = sum(c.n for c in await _read(store, stats.counts, since=T0 + 5 * day,
                                         until=T0 + 6 * day, step=3600))
    assert total == n // 20


async def test_history_keeps_its_source_after_migration(store: Store) -> None:
    """Rows written without a source (as before 0011) read as `keyword`."""
    await store.transaction(lambda c: c.execute(insert(opt_history).values(
        msisdn=WHO, vmn=VMN, received_on=VMN, state="out", keyword="STOP",
        message_id="m0", changed=1, at=T0)))
    hist = await _read(store, optins.history_of, WHO)
    assert [h["source"] for h in hist] == ["keyword"]
