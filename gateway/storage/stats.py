"""MO and MT counts per VMN per time step (`GET /v1/stats`, the console's chart).

Counted from `ix_messages_stats (created_at, vmn, direction)` alone: the range on
`created_at` selects the index entries of the window and the grouping needs no table
row, so the cost is the number of messages in the window, whatever the table holds
(tests/test_api_read_stats.py shows the plan on both databases; docs/PERFORMANCE.md the
timing at 1M rows)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Integer, Select, cast, func, select
from sqlalchemy.engine import Connection

from gateway.storage.schema import messages


@dataclass(frozen=True, slots=True)
class Count:
    bucket: int  # index of the step from `since`
    vmn: str
    direction: str  # mo | mt
    n: int


def _query(dialect: str, *, since: float, until: float, step: float,
           vmns: Sequence[str]) -> Select[tuple[int, str, str, int]]:
    m = messages.c
    # floor() of a non-negative value: SQLite's cast truncates; PostgreSQL's rounds.
    ratio = (m.created_at - since) / step
    bucket = cast(ratio if dialect == "sqlite" else func.floor(ratio), Integer)
    q = (select(bucket.label("bucket"), m.vmn, m.direction, func.count().label("n"))
         .where(m.created_at >= since, m.created_at < until)
         .group_by(bucket, m.vmn, m.direction))
    return q.where(m.vmn.in_(list(vmns))) if vmns else q


def counts(conn: Connection, *, since: float, until: float, step: float,
           vmns: Sequence[str] = ()) -> list[Count]:
    """Messages with `since <= created_at < until`, per step of `step` seconds counted
    from `since`, per VMN (an MT's VMN is its sender) and direction."""
    q = _query(conn.dialect.name, since=since, until=until, step=step, vmns=vmns)
    return [Count(int(b), v, d, int(n)) for b, v, d, n in conn.execute(q)]


def plan(conn: Connection, *, since: float, until: float, step: float,
         analyze: bool = False) -> str:
    """The database's plan for `counts` (EXPLAIN), for the tests and the benchmark."""
    q = _query(conn.dialect.name, since=since, until=until, step=step, vmns=())
    sql = str(q.compile(conn, compile_kwargs={"literal_binds": True}))
    if conn.dialect.name == "sqlite":
        prefix = "EXPLAIN QUERY PLAN "
    else:
        prefix = "EXPLAIN (ANALYZE, BUFFERS) " if analyze else "EXPLAIN "
    rows = conn.exec_driver_sql(prefix + sql).fetchall()
    return "\n".join(" ".join(str(c) for c in r) for r in rows)
