"""What /metrics reads from the database (gateway/admin.py), once per scrape: the
action queues, the MT send queue, and counters over the append-only tables."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection


class Tail:
    """Counts the rows of an append-only table (`status_history`, `job_attempts`) by
    label, from the rows added since the daemon started: a Prometheus counter.

    Ids are assigned before commit, so on PostgreSQL a row can become visible after
    rows with higher ids. The last `SLACK` ids are therefore re-read on every scrape
    (remembering which were counted); rows older than that are counted in one GROUP BY.
    """

    SLACK = 1000

    def __init__(self, table: str, id_col: str, labels: str, joins: str = "") -> None:
        self._max = f"SELECT max({id_col}) FROM {table}"
        self._grouped = (f"SELECT {labels}, count(*) FROM {table} {joins} "
                         f"WHERE {id_col} > :lo AND {id_col} <= :hi GROUP BY {labels}")
        self._rows = f"SELECT {id_col}, {labels} FROM {table} {joins} WHERE {id_col} > :lo"
        self.mark: int | None = None  # every id <= mark is counted
        self.seen: dict[int, tuple[str, ...]] = {}  # ids > mark that are counted
        self.counts: dict[tuple[str, ...], int] = {}

    async def start(self, conn: AsyncConnection) -> None:
        self.mark = int((await conn.execute(text(self._max))).scalar() or 0)

    async def refresh(self, conn: AsyncConnection) -> None:
        if self.mark is None:
            await self.start(conn)
            return
        # Every query first, then the update with no await in between: a scrape cut off
        # half-way (timeout, database error) changes nothing, rather than counting the
        # GROUP BY rows again at the next scrape.
        mark = self.mark
        hi = int((await conn.execute(text(self._max))).scalar() or 0)
        cut = hi - self.SLACK
        grouped: list[Any] = []
        if cut > mark:
            grouped = list(await conn.execute(text(self._grouped), {"lo": mark, "hi": cut}))
            mark = cut
        recent = list(await conn.execute(text(self._rows), {"lo": mark}))
        counts, seen = self.counts, self.seen
        for row in grouped:
            key = tuple(str(v) for v in row[:-1])
            counts[key] = counts.get(key, 0) + int(row[-1])
        if mark != self.mark:
            for row_id in [i for i in seen if i <= mark]:
                key = seen.pop(row_id)
                counts[key] -= 1  # counted one by one before, and again in the GROUP BY
            self.mark = mark
        for row in recent:
            row_id = int(row[0])
            if row_id not in seen:
                key = tuple(str(v) for v in row[1:])
                seen[row_id] = key
                counts[key] = counts.get(key, 0) + 1


def mt_status_tail() -> Tail:
    """MT status changes (`status_history`), by status."""
    return Tail("status_history", "id", "status")


def attempts_tail() -> Tail:
    """Action attempts (`job_attempts`), by job kind and outcome."""
    return Tail("job_attempts a", "a.id", "coalesce(j.kind, ''), a.outcome",
                "LEFT JOIN jobs j ON j.id = a.job_id")


async def action_queues(conn: AsyncConnection) -> dict[str, tuple[int, float | None]]:
    """Pending jobs per kind: (how many, created_at of the oldest)."""
    out: dict[str, tuple[int, float | None]] = {}
    for kind, n, oldest in await conn.execute(text(
            "SELECT kind, count(*), min(created_at) FROM jobs "
            "WHERE status = 'pending' GROUP BY kind")):
        out[str(kind)] = (int(n), None if oldest is None else float(oldest))
    return out


async def mt_queue(conn: AsyncConnection) -> dict[str, int]:
    """MTs waiting to be sent, per status (queued, sending)."""
    out: dict[str, int] = {}
    # Matches the partial index ix_messages_queue: MOs are never scanned.
    for status, n in await conn.execute(text(
            "SELECT status, count(*) FROM messages "
            "WHERE direction = 'mt' AND status IN ('queued', 'sending') GROUP BY status")):
        out[str(status)] = int(n)
    return out


async def ping(conn: AsyncConnection) -> None:
    """Raises unless the database answers a query."""
    # Reads a table: on SQLite a bare SELECT 1 would not touch the file.
    await conn.execute(text("SELECT 1 FROM messages LIMIT 1"))
