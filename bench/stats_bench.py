#!/usr/bin/env python3
"""How long `GET /v1/stats` takes to count at 1M+ stored messages (issue 13).

One database per backend (a SQLite file, a new PostgreSQL database) is migrated to the
head revision and gets `--rows` messages (MO and MT, 7 VMNs) spread evenly over
`--days` days, written by the database itself (a recursive CTE on SQLite,
generate_series on PostgreSQL); PostgreSQL is then VACUUM ANALYZEd (what autovacuum
does after a bulk load; an index-only scan needs the visibility map). Then, in the
same run, the gateway's own query (`storage/stats.counts`, per hour) over one day and
over every day, in two variants:

- `index`: as the API runs it (ix_messages_stats, migration 0011);
- `no_index`: the same query with the index unusable (SQLite `NOT INDEXED`,
  PostgreSQL `enable_indexscan/indexonlyscan/bitmapscan = off`): a table scan, what the
  query costs without the migration's index.

Each is timed `--runs` times (alternating); the figures are medians, with the plan.

    .venv/bin/python bench/stats_bench.py --json-out bench/results-stats.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy.engine import Connection

from gateway.storage import stats
from gateway.storage.db import create_engine, migrate

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
T0 = 1_760_000_000.0
DAY = 86400.0

_COLS = ("id, direction, vmn, msisdn, sender, recipient, text, status, created_at, "
         "updated_at, data_coding, segments, attempts, fanout, exempt")


def fill_sql(dialect: str, rows: int, days: int) -> str:
    gap = days * DAY / rows
    if dialect == "sqlite":
        return (f"WITH RECURSIVE g(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM g "
                f"WHERE x < {rows}) INSERT INTO messages ({_COLS}) SELECT 'b' || x, "
                "CASE WHEN x % 3 = 0 THEN 'mt' ELSE 'mo' END, '555100' || (x % 7), "
                "'1555' || (x % 100000), '1555', '5551000100', 'hello', 'received', "
                f"{T0} + x * {gap}, {T0} + x * {gap}, 0, 1, 0, 0, 0 FROM g")
    return (f"INSERT INTO messages ({_COLS}) SELECT 'b' || x, "
            "CASE WHEN x % 3 = 0 THEN 'mt' ELSE 'mo' END, '555100' || (x % 7), "
            "'1555' || (x % 100000), '1555', '5551000100', 'hello', 'received', "
            f"{T0} + x * {gap}, {T0} + x * {gap}, 0, 1, 0, 0, 0 "
            f"FROM generate_series(1, {rows}) AS x")


def timed(conn: Connection, *, since: float, until: float, use_index: bool) -> float:
    sqlite = conn.dialect.name == "sqlite"
    if not use_index:
        if sqlite:
            sql = str(stats._query("sqlite", since=since, until=until, step=3600, vmns=())
                      .compile(conn, compile_kwargs={"literal_binds": True}))
            sql = sql.replace("FROM messages", "FROM messages NOT INDEXED")
            t = time.perf_counter()
            conn.exec_driver_sql(sql).fetchall()
            return time.perf_counter() - t
        for knob in ("indexscan", "indexonlyscan", "bitmapscan"):
            conn.exec_driver_sql(f"SET enable_{knob} = off")
    t = time.perf_counter()
    got = stats.counts(conn, since=since, until=until, step=3600)
    took = time.perf_counter() - t
    if not use_index:
        conn.exec_driver_sql("RESET ALL")
    assert got
    return took


async def backend(name: str, url: str, rows: int, days: int, runs: int) -> dict[str, Any]:
    engine = create_engine(url)
    await migrate(engine)
    t = time.perf_counter()
    async with engine.begin() as conn:
        await conn.exec_driver_sql(fill_sql(engine.dialect.name, rows, days))
    load = time.perf_counter() - t
    if name == "postgres":
        async with engine.connect() as conn:
            raw = await conn.get_raw_connection()
            await raw.driver_connection.execute("VACUUM ANALYZE messages")  # type: ignore[union-attr]
    else:
        async with engine.begin() as conn:
            await conn.exec_driver_sql("ANALYZE")
    out: dict[str, Any] = {"rows": rows, "days": days, "load_s": round(load, 1)}
    windows = {"one_day": (T0 + 3 * DAY, T0 + 4 * DAY), "all_days": (T0, T0 + days * DAY)}
    async with engine.connect() as conn:
        for label, (since, until) in windows.items():
            times: dict[str, list[float]] = {"index": [], "no_index": []}
            for i in range(runs):
                order = ("index", "no_index") if i % 2 == 0 else ("no_index", "index")
                for variant in order:
                    times[variant].append(await conn.run_sync(
                        lambda c, v=variant, s=since, u=until: timed(c, since=s, until=u,
                                                   use_index=v == "index")))
            med = {k: statistics.median(v) for k, v in times.items()}
            out[label] = {"rows_in_window": round(rows * (until - since) / (days * DAY)),
                          "index_ms": round(med["index"] * 1000, 1),
                          "no_index_ms": round(med["no_index"] * 1000, 1),
                          "index_over_no_index": round(med["index"] / med["no_index"], 3),
                          "runs_ms": {k: [round(x * 1000, 1) for x in v]
                                      for k, v in times.items()}}
        out["plan_one_day"] = await conn.run_sync(
            lambda c: stats.plan(c, since=T0 + 3 * DAY, until=T0 + 4 * DAY, step=3600))
    await engine.dispose()
    return out


async def pg_admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--days", type=int, default=10)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--backends", default="sqlite,postgres")
    ap.add_argument("--json-out")
    args = ap.parse_args()
    results: dict[str, Any] = {}
    for name in args.backends.split(","):
        if name == "sqlite":
            with tempfile.TemporaryDirectory() as d:
                url = f"sqlite+aiosqlite:///{d}/stats.db"
                results[name] = await backend(name, url, args.rows, args.days, args.runs)
        else:
            db = f"vmn_bench_{uuid.uuid4().hex[:10]}"
            await pg_admin(f"CREATE DATABASE {db}")
            try:
                url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{db}"
                results[name] = await backend(name, url, args.rows, args.days, args.runs)
            finally:
                await pg_admin(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        print(name, json.dumps({k: v for k, v in results[name].items()
                                if k != "plan_one_day"}, indent=1), flush=True)
        print(results[name]["plan_one_day"], flush=True)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
