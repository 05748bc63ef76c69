"""What the intake needs to know at start-up about how the last run ended: a graceful
stop records its suspect keys (MOs the SMSC may redeliver, see gateway/redelivery.py);
no record means a crash, and then the MOs stored just before the end are suspect.

Two small writes per run (start and stop), never one per MO.
"""

from __future__ import annotations

import json

from sqlalchemy import delete, insert, select
from sqlalchemy.engine import Connection

from gateway.storage.schema import intake_runs, messages, mo_parts

_PAGE = 1000


def start(conn: Connection, instance: str, *, since: float,
          crash_horizon: float) -> tuple[bool, list[tuple[str, float]]]:
    """(graceful, [(dedup key, since)]) for the run that ended, and mark this one as
    running. After a crash: every MO or part received within `crash_horizon` seconds
    before the last one stored (its answer may have been unwritten or in flight), but
    nothing older than `since`."""
    row = conn.execute(
        select(intake_runs.c.stopped_at, intake_runs.c.suspects)
        .where(intake_runs.c.instance == instance)
    ).first()
    conn.execute(delete(intake_runs).where(intake_runs.c.instance == instance))
    conn.execute(insert(intake_runs).values(instance=instance, stopped_at=None,
                                            suspects=None))
    if row is not None and row.stopped_at is not None:
        left = [(str(k), float(t)) for k, t in json.loads(row.suspects or "[]")]
        return True, sorted(((k, t) for k, t in left if t >= since), key=lambda kt: kt[1])
    return False, _tail(conn, since, crash_horizon)


def stop(conn: Connection, instance: str, at: float,
         suspects: list[tuple[str, float]]) -> None:
    """Record a graceful stop at `at` with the suspects left."""
    conn.execute(delete(intake_runs).where(intake_runs.c.instance == instance))
    conn.execute(insert(intake_runs).values(instance=instance, stopped_at=at,
                                            suspects=json.dumps(suspects)))


def _tail(conn: Connection, since: float, horizon: float) -> list[tuple[str, float]]:
    last_mo = conn.execute(
        select(messages.c.created_at).where(messages.c.dedup_key.is_not(None))
        .order_by(messages.c.created_at.desc()).limit(1)
    ).scalar()
    last_part = conn.execute(
        select(mo_parts.c.received_at).order_by(mo_parts.c.id.desc()).limit(1)
    ).scalar()
    ends = [t for t in (last_mo, last_part) if t is not None]
    if not ends:
        return []
    start_at = max(since, max(ends) - horizon)
    out = [(k, t) for k, t in conn.execute(
        select(messages.c.dedup_key, messages.c.created_at).where(
            messages.c.created_at >= start_at, messages.c.dedup_key.is_not(None)))]
    # Parts have no index on time: walk back from the newest (ids grow with arrival).
    before: int | None = None
    while True:
        q = select(mo_parts.c.id, mo_parts.c.dedup_key, mo_parts.c.received_at)
        if before is not None:
            q = q.where(mo_parts.c.id < before)
        page = conn.execute(q.order_by(mo_parts.c.id.desc()).limit(_PAGE)).all()
        for _id, key, at in page:
            if at >= start_at and key is not None:
                out.append((key, at))
        if len(page) < _PAGE or page[-1].received_at < start_at:
            break
        before = page[-1].id
    out.sort(key=lambda kt: kt[1])
    return out
