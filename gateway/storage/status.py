"""The gateway's figures at a glance, read-only: traffic over a recent window and the
depth and oldest entry of every queue. One place for the SQL that `vmn-gateway status`
(gateway/status.py) and `GET /v1/queues` (gateway/api/queues.py) both show.

Every queue is counted from a partial index (`ix_messages_queue`, `ix_messages_fanout`,
`ix_jobs_due`), so its cost is the queue's length, not the table's. The dead-lettered
and failed counts have no index: they read the jobs table."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import text
from sqlalchemy.engine import Connection

# The MT statuses of the send queue, in the order they are shown.
MT_WAITING = ("queued", "sending")


@dataclass(frozen=True, slots=True)
class Queue:
    depth: int
    oldest_at: float | None  # created_at of the oldest entry; None when empty


EMPTY = Queue(0, None)


@dataclass(frozen=True, slots=True)
class OldestJob:
    id: int
    kind: str
    created_at: float
    attempts: int


@dataclass(frozen=True, slots=True)
class Queues:
    mt: dict[str, Queue]  # per MT status in MT_WAITING (absent: empty)
    actions: dict[str, Queue]  # pending jobs per kind (webhook, mqtt, email, ...)
    fanout: Queue  # MOs committed whose actions are not expanded yet
    dead: int  # dead-lettered jobs (retries exhausted; `vmn-gateway redrive`)
    failed: int  # jobs failed for good (a permanent error)
    oldest_action: OldestJob | None = None


@dataclass(frozen=True, slots=True)
class Traffic:
    messages: dict[str, int] = field(default_factory=dict)  # per direction (mo, mt)
    mt_statuses: dict[str, int] = field(default_factory=dict)  # status changes of MTs


def traffic(conn: Connection, since: float) -> Traffic:
    """Messages created and MT status changes since `since`."""
    rows = conn.execute(text(
        "SELECT direction, count(*) FROM messages WHERE created_at >= :t "
        "GROUP BY direction"), {"t": since})
    created = {str(d): int(n) for d, n in rows}
    # The newest rows only: the history table has no index on `at`.
    rows = conn.execute(text(
        "SELECT status, count(*) FROM status_history WHERE at >= :t AND id > "
        "(SELECT coalesce(max(id), 0) - 100000 FROM status_history) "
        "GROUP BY status"), {"t": since})
    return Traffic(created, {str(s): int(n) for s, n in rows})


def queues(conn: Connection) -> Queues:
    """Every queue's depth and oldest entry, and the jobs that ended badly."""
    rows = conn.execute(text(
        "SELECT status, count(*), min(created_at) FROM messages "
        "WHERE direction = 'mt' AND status IN ('queued', 'sending') GROUP BY status"))
    mt = {str(s): Queue(int(n), float(o)) for s, n, o in rows}
    rows = conn.execute(text(
        "SELECT kind, count(*), min(created_at) FROM jobs WHERE status = 'pending' "
        "GROUP BY kind"))
    actions = {str(k): Queue(int(n), float(o)) for k, n, o in rows}
    n, o = conn.execute(text(
        "SELECT count(*), min(created_at) FROM messages WHERE fanout = 1")).one()
    fanout = Queue(int(n), None if o is None else float(o))
    row = conn.execute(text(
        "SELECT id, kind, created_at, attempts FROM jobs WHERE status = 'pending' "
        "ORDER BY created_at LIMIT 1")).first()
    oldest = None if row is None else OldestJob(int(row[0]), str(row[1]), float(row[2]),
                                                int(row[3]))
    ended = {str(s): int(c) for s, c in conn.execute(text(
        "SELECT status, count(*) FROM jobs WHERE status IN ('dead', 'failed') "
        "GROUP BY status"))}
    return Queues(mt=mt, actions=actions, fanout=fanout, dead=ended.get("dead", 0),
                  failed=ended.get("failed", 0), oldest_action=oldest)
