"""The fan-out that runs inside the intake's transaction when the intake is not busy
(`fanout.expand_inline`), against a real SQLite database: on success the MO's jobs are
in the same commit and handed back to run at once; on failure the MO is stored all the
same, still flagged for the fan-out task."""

from __future__ import annotations

import asyncio
import time
import tomllib
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select

from gateway.config import parse_config
from gateway.daemon import context_for
from gateway.fanout import Context, Stats, expand_inline
from gateway.storage.db import create_engine, migrate
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


def _mo(now: float) -> dict[str, Any]:
    return {"id": "m1", "direction": "mo", "smsc": "s", "vmn": "5551000100",
            "msisdn": "15550001111", "sender": "15550001111", "recipient": "5551000100",
            "text": "hello", "data_coding": 0, "segments": 1, "keyword": None,
            "route": "default", "status": "received", "created_at": now, "updated_at": now,
            "attempts": 0, "fanout": 1}


async def _run(tmp_path: Path, ctx: Any) -> tuple[Stats | None, list[Any], list[Any]]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path}/t.db")
    await migrate(engine)
    store = Store(engine)
    now = time.time()
    row = _mo(now)

    def write(conn: Any) -> Stats | None:
        conn.execute(insert(messages).values(**row))
        return expand_inline(conn, ctx, now, [row])

    try:
        stats = await store.transaction(write)
        async with engine.connect() as conn:
            msgs = (await conn.execute(select(messages.c.id, messages.c.fanout))).all()
            job_rows = (await conn.execute(select(jobs.c.kind, jobs.c.target))).all()
    finally:
        await store.close()
        await engine.dispose()
    return stats, msgs, job_rows


def test_inline_fanout_writes_the_jobs_in_the_same_commit(tmp_path: Path) -> None:
    ctx = context_for(_cfg())
    stats, msgs, job_rows = asyncio.run(_run(tmp_path, ctx))
    assert stats is not None and stats.mos == 1
    assert [j.kind for j in stats.ready] == ["webhook"]
    assert msgs == [("m1", 0)]
    assert job_rows == [("webhook", "http://127.0.0.1:9/hook")]


def test_a_failing_inline_fanout_keeps_the_mo_flagged(tmp_path: Path) -> None:
    good = context_for(_cfg())
    broken = Context(router=good.router, emitter=None)  # type: ignore[arg-type]
    stats, msgs, job_rows = asyncio.run(_run(tmp_path, broken))
    assert stats is None
    assert msgs == [("m1", 1)]  # stored, and left for the fan-out task
    assert job_rows == []
