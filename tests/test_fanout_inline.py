"""The fan-out runs in a transaction of its own after the intake committed (and
acknowledged) the MO, never in the intake's: against a real database (SQLite and
PostgreSQL). An MO committed but not fanned out yet (a crash, a failed fan-out) keeps
its `fanout` flag and is expanded by the scan after a restart; an MO handed over by the
intake and found by a scan as well is expanded once."""

from __future__ import annotations

import asyncio
import time
import tomllib
from collections import Counter
from typing import Any

from peers import HttpRecorder
from sqlalchemy import insert, select

from gateway.actions.webhook import WebhookAction
from gateway.config import parse_config
from gateway.daemon import context_for
from gateway.fanout import BATCH, Context, Fanout, Routed, Stats, expand
from gateway.model import MessageRow
from gateway.outbox import Outbox
from gateway.storage import jobs as jobq
from gateway.storage.db import create_engine, migrate
from gateway.storage.fanout import flagged
from gateway.storage.repo import Store
from gateway.storage.schema import jobs, messages

CONFIG = """
[gateway]
name = "t"
[[smsc]]
name = "s"
host = "127.0.0.1"
port = 2775
system_id = "x"
password = "y"
[[number]]
vmn = "5551000100"
[number.default]
webhook = "http://127.0.0.1:9/hook"
"""


def _cfg() -> Any:
    return parse_config(tomllib.loads(CONFIG), file="t.toml", env={})


def _mo(msg_id: str, now: float) -> dict[str, Any]:
    return {"id": msg_id, "direction": "mo", "smsc": "s", "vmn": "5551000100",
            "msisdn": "15550001111", "sender": "15550001111", "recipient": "5551000100",
            "text": "hello", "data_coding": 0, "segments": 1, "keyword": None,
            "route": "default", "status": "received", "created_at": now, "updated_at": now,
            "attempts": 0, "fanout": 1}


def _routed(row: dict[str, Any]) -> Routed:
    """A committed MO as the intake hands it over (without its routing decision: the
    fan-out routes it)."""
    return Routed(MessageRow(**{f: row.get(f) for f in MessageRow._fields}))


async def _state(engine: Any) -> tuple[list[Any], list[Any]]:
    async with engine.connect() as conn:
        msgs = (await conn.execute(select(messages.c.id, messages.c.fanout)
                                   .order_by(messages.c.id))).all()
        job_rows = (await conn.execute(select(jobs.c.kind, jobs.c.message_id)
                                       .order_by(jobs.c.message_id))).all()
    return msgs, job_rows


async def _store(db_url: str) -> tuple[Any, Store]:
    engine = create_engine(db_url)
    await migrate(engine)
    return engine, Store(engine)


def test_fanout_after_the_commit_writes_the_jobs_and_clears_the_flag(db_url: str) -> None:
    async def main() -> tuple[Stats, list[Any], list[Any]]:
        engine, store = await _store(db_url)
        try:
            now = time.time()
            row = _mo("m1", now)
            await store.transaction(lambda c: c.execute(insert(messages).values(**row)))
            stats = await store.relaxed(expand, context_for(_cfg()), now, [_routed(row)])
            return (stats, *await _state(engine))
        finally:
            await store.close()
            await engine.dispose()

    stats, msgs, job_rows = asyncio.run(main())
    assert stats.mos == 1
    assert [j.kind for j in stats.ready] == ["webhook"]
    assert msgs == [("m1", 0)]
    assert job_rows == [("webhook", "m1")]


def test_an_mo_expanded_already_is_not_expanded_again(db_url: str) -> None:
    """Handed over by the intake and found by a scan (or by another instance): whoever
    clears the flag first expands it; the other skips it."""
    async def main() -> tuple[Stats, Stats, list[Any], list[Any]]:
        engine, store = await _store(db_url)
        try:
            now = time.time()
            rows = [_mo("m1", now), _mo("m2", now)]
            await store.transaction(lambda c: c.execute(insert(messages), rows))
            ctx = context_for(_cfg())
            scanned = await store.relaxed(expand, ctx, now, None)  # the scan takes both
            again = await store.relaxed(expand, ctx, now,  # then the hand-over
                                        [_routed(r) for r in rows])
            return (scanned, again, *await _state(engine))
        finally:
            await store.close()
            await engine.dispose()

    scanned, again, msgs, job_rows = asyncio.run(main())
    assert scanned.mos == 2
    assert again.mos == 0 and again.ready == [] and again.jobs == 0
    assert msgs == [("m1", 0), ("m2", 0)]
    assert job_rows == [("webhook", "m1"), ("webhook", "m2")]


def test_a_failed_fanout_leaves_the_mo_flagged_and_a_restart_expands_it(db_url: str) -> None:
    """The MO is committed (and would be acknowledged); its fan-out fails (here: a
    broken context): nothing of it is written, the flag stays. A new `Fanout` (a
    restart) scans for flagged MOs and expands it."""
    async def main() -> tuple[list[Any], list[Any], list[Stats], list[Any], list[Any]]:
        engine, store = await _store(db_url)
        try:
            now = time.time()
            row = _mo("m1", now)
            await store.transaction(lambda c: c.execute(insert(messages).values(**row)))
            good = context_for(_cfg())
            broken = Context(router=good.router, emitter=None)  # type: ignore[arg-type]
            try:
                await store.relaxed(expand, broken, now, [_routed(row)])
            except AttributeError:
                pass
            else:
                raise AssertionError("the broken fan-out did not fail")
            before = await _state(engine)
            seen: list[Stats] = []
            fanout = Fanout(store, lambda: good, seen.append)
            task = asyncio.create_task(fanout.run())
            for _ in range(200):
                if seen:
                    break
                await asyncio.sleep(0.02)
            task.cancel()
            return (*before, seen, *await _state(engine))
        finally:
            await store.close()
            await engine.dispose()

    msgs0, jobs0, seen, msgs, job_rows = asyncio.run(main())
    assert msgs0 == [("m1", 1)] and jobs0 == []  # stored, flagged, nothing expanded
    assert [s.mos for s in seen] == [1]
    assert msgs == [("m1", 0)]
    assert job_rows == [("webhook", "m1")]


def test_a_slow_webhook_bounds_the_queue_in_memory_and_loses_nothing(db_url: str) -> None:
    """A webhook receiver much slower than the intake: fan-out pauses when the jobs
    waiting in memory reach the high-water mark (the MOs the intake hands over meanwhile
    stay flagged in the database) and resumes below the low-water mark. The queue in
    memory never exceeds the mark by more than one batch, and in the end every MO's
    webhook is delivered exactly once (a real HTTP receiver, the real webhook action)."""
    n, high, low = 700, 40, 10
    # The largest in-memory queue allowed: the mark, plus one fan-out batch (one
    # webhook job per MO here) that started below it.
    cap = high + BATCH

    async def main(hook: str) -> tuple[int, int, list[Any]]:
        engine, store = await _store(db_url)
        cfg = parse_config(tomllib.loads(CONFIG.replace("http://127.0.0.1:9/hook", hook)),
                           file="t.toml", env={})
        ctx = context_for(cfg)
        outbox = Outbox(store, {"webhook": WebhookAction(lambda: {}, concurrency=4)},
                        backoff=jobq.Backoff(1.0, 60.0), poll_interval=0.05)
        most = 0

        def expanded(stats: Stats) -> None:
            nonlocal most
            outbox.dispatch(stats.ready)
            most = max(most, outbox.queued())

        fanout = Fanout(store, lambda: ctx, expanded, backlog=outbox.queued,
                        high_water=high, low_water=low)
        tasks = [asyncio.create_task(outbox.run()), asyncio.create_task(fanout.run())]
        try:
            now = time.time()
            rows = [_mo(f"m{i:04d}", now + i * 1e-6) for i in range(n)]
            for i in range(0, n, 50):  # the intake: commit, then hand over
                chunk = rows[i:i + 50]
                await store.transaction(lambda c, ch=chunk: c.execute(insert(messages), ch))
                fanout.submit([_routed(r) for r in chunk])
                await asyncio.sleep(0.01)
            for _ in range(3000):
                if outbox.stats["ok"] >= n:
                    break
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.3)  # anything more would show up now
            return most, fanout.pauses, (await _state(engine))[0]
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await store.close()
            await engine.dispose()

    with HttpRecorder() as receiver:
        receiver.delay = 0.01
        most, pauses, msgs = asyncio.run(main(receiver.url()))
        delivered = Counter(r.json()["id"] for r in receiver.requests)
    assert most <= cap, f"{most} jobs queued in memory (cap {cap})"
    assert pauses >= 1
    assert sorted(delivered) == [f"m{i:04d}" for i in range(n)]
    assert set(delivered.values()) == {1}, "a webhook delivered twice"
    assert all(flag == 0 for _id, flag in msgs)


def test_the_intakes_decision_is_used_unless_the_routing_changed_since(db_url: str) -> None:
    """The intake routes an MO once and hands the decision to the fan-out with it: the
    fan-out does not route it again, unless the configuration was reloaded in between
    (another router): then the running configuration decides, as before."""
    from gateway.routing.router import Decision, Route

    async def main() -> tuple[list[Any], list[Any]]:
        engine, store = await _store(db_url)
        try:
            now = time.time()
            rows = [_mo("m1", now), _mo("m2", now)]
            await store.transaction(lambda c: c.execute(insert(messages), rows))
            ctx = context_for(_cfg())
            # a decision the router would not make: no webhook for the MO event
            carried = Decision(route=Route.UNROUTED, vmn=None)
            given = [_routed(rows[0])._replace(decision=carried, router=ctx.router),
                     _routed(rows[1])._replace(decision=carried,
                                               router=context_for(_cfg()).router)]
            stats = await store.relaxed(expand, ctx, now, given)
            return stats.ready, (await _state(engine))[1]
        finally:
            await store.close()
            await engine.dispose()

    ready, job_rows = asyncio.run(main())
    assert [j.kind for j in ready] == ["webhook"]
    assert job_rows == [("webhook", "m2")]  # m1: the carried decision; m2: routed again


def test_the_scan_reads_back_the_intakes_rows_oldest_first(db_url: str) -> None:
    """`flagged` (storage/fanout.py) selects MessageRow's fields in order at the driver
    level: each MO comes back as the intake stored it (but its raw PDU and dedup key),
    oldest first, up to the limit, and only while flagged."""
    async def main() -> list[MessageRow]:
        engine, store = await _store(db_url)
        try:
            now = time.time()
            rows = [{**_mo(f"m{i}", now - i), "text": f"h\u00e9llo {i} \U0001f600",
                     "data_coding": 8, "segments": 2, "keyword": "KW" if i % 2 else None,
                     "raw_pdu": b"\x00pdu", "dedup_key": f"k{i}"} for i in range(5)]
            rows[4]["fanout"] = 0  # the oldest, expanded already: not found
            await store.transaction(lambda c: c.execute(insert(messages), rows))
            return await store.relaxed(flagged, 3)
        finally:
            await store.close()
            await engine.dispose()

    found = asyncio.run(main())
    now_ids = [m.id for m in found]
    assert now_ids == ["m3", "m2", "m1"]  # oldest first, m4 not flagged, limit 3
    for m in found:
        assert type(m) is MessageRow
        i = int(m.id[1:])
        assert m.raw_pdu is None and m.dedup_key is None
        assert (m.direction, m.smsc, m.vmn, m.msisdn, m.sender, m.recipient) == (
            "mo", "s", "5551000100", "15550001111", "15550001111", "5551000100")
        assert m.text == f"h\u00e9llo {i} \U0001f600"
        assert (m.data_coding, m.segments, m.status, m.route, m.fanout) == (
            8, 2, "received", "default", 1)
        assert m.keyword == ("KW" if i % 2 else None)
        assert isinstance(m.created_at, float) and isinstance(m.updated_at, float)
