"""The durable action queue (`jobs`, `job_attempts`): enqueue, claim, finish, redrive.
Plain functions over a blocking Connection; the caller runs them inside
`Store.transaction` (the single writer), so they group-commit with everything else."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from sqlalchemy import and_, func, select, text, update
from sqlalchemy.engine import Connection

from gateway import backoff
from gateway.model import (
    Job,
    JobKind,
    JobRow,
    LazyJson,
    MtStatusChange,
    Outcome,
    Result,
    new_id,
)
from gateway.storage.db import placeholders
from gateway.storage.schema import job_attempts, jobs

PENDING, DONE, FAILED, DEAD = "pending", "done", "failed", "dead"
LEASE = 300.0  # a claimed job comes back after this long if its instance died
_PENDING_SQL = text("status = 'pending'")  # literal: matches the partial index


def event_json(payload: Mapping[str, Any]) -> str:
    """The stored (and sent, and signed) body of an event: exactly
    `json.dumps(payload, separators=(",", ":"), ensure_ascii=False)` (SPEC §5), made by
    orjson (~0.3 us against ~5 us an event). orjson writes some floats differently
    (1e-05 as 0.00001) and refuses lone surrogates, integers beyond 64 bits and non-str
    keys: a payload with a float, or one orjson refuses, goes through json.dumps."""
    if _PLAIN.issuperset(map(type, payload.values())) or not _has_float(payload):
        try:
            return orjson.dumps(payload).decode()
        except TypeError:  # orjson.JSONEncodeError is one
            pass
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)


_PLAIN = frozenset({str, int, bool, type(None)})  # a payload of these has no float


def _has_float(value: Any) -> bool:
    if type(value) is dict:
        return any(_has_float(v) for v in value.values())
    if type(value) is list or type(value) is tuple:
        return any(_has_float(v) for v in value)
    return isinstance(value, float)


class EventJobs(Protocol):
    """What storage needs from the action layer to announce an event it records (an MT's
    status): the event and the jobs that deliver it (gateway/actions/emitter.py
    `Emitter` builds and decides; storage only hands it the recorded change)."""

    @property
    def mqtt_prefix(self) -> str | None: ...

    def event(self, payload: Mapping[str, Any], *topic_parts: str, message_id: str | None,
              now: float, webhook: str | None = None,
              after: int | None = None) -> list[JobRow]: ...

    def mt_status(self, change: MtStatusChange) -> list[JobRow]: ...


class NoEvents:
    """The Store's when it is given no emitter (the CLI, tests): plans no job. Which jobs
    an event becomes is the action layer's (gateway/actions/emitter.py `Emitter`); a
    caller that wants them passes it (`Store(engine, emitters=FixedEmitter(Emitter()))`)."""

    mqtt_prefix: str | None = None

    def event(self, payload: Mapping[str, Any], *topic_parts: str, message_id: str | None,
              now: float, webhook: str | None = None,
              after: int | None = None) -> list[JobRow]:
        return []

    def mt_status(self, change: MtStatusChange) -> list[JobRow]:
        return []


_JOB_COLS = JobRow._fields  # the column order of `insert_jobs`
_ATTEMPT_COLS = ("job_id", "attempt", "at", "outcome", "status", "latency_ms", "detail")


_INSTANCE = random.getrandbits(8)
_job_seq = 0


def new_job_id() -> int:
    """Ids chosen here, not by the database, so that the jobs a fan-out creates can be
    handed to the workers without reading them back: 31 bits of seconds, 8 random bits
    per process (instances sharing a database), 24 bits of sequence."""
    global _job_seq
    _job_seq = (_job_seq + 1) & 0xFFFFFF
    return (int(time.time()) << 32) | (_INSTANCE << 24) | _job_seq


def job_row(kind: str, target: str, body: str, message_id: str | None, now: float,
            after: int | None, max_attempts: int, /) -> JobRow:
    """A new pending job, as a row for `insert_jobs` (column order: `_JOB_COLS`).
    Positional: fan-out makes thousands a second."""
    return JobRow(new_job_id(), kind, target, new_id(), message_id, after, body, PENDING, 0,
                  max_attempts, now, now, now)


def ready_job(row: JobRow, lease_until: float) -> tuple[JobRow, Job]:
    """Mark a new job row as already claimed by this instance (leased until
    `lease_until`) and return it with the Job to run now."""
    raw = row.payload.encode()
    job = Job(id=row.id, kind=row.kind, target=row.target, event_id=row.event_id,
              payload=LazyJson(raw), attempts=0, raw=raw)
    return JobRow(*row[:10], lease_until, *row[11:]), job  # next_attempt_at (_replace: 3x)


def insert_jobs(conn: Connection, rows: Sequence[JobRow]) -> None:
    """Positional executemany: per-row dict processing would dominate at thousands of
    events a second."""
    if rows:
        conn.exec_driver_sql(
            f"INSERT INTO jobs ({', '.join(_JOB_COLS)}) "
            f"VALUES ({placeholders(conn, len(_JOB_COLS))})",
            list(map(tuple, rows)))  # exact tuples: see storage/repo.py


def last_webhook(conn: Connection, message_ids: Sequence[str], target: str) -> int | None:
    """The newest webhook job to `target` about any of `message_ids`: what a new one
    about the same conversation must wait for."""
    row = conn.execute(select(func.max(jobs.c.id)).where(
        jobs.c.kind == JobKind.WEBHOOK.value, jobs.c.target == target,
        jobs.c.message_id.in_(list(message_ids)))).first()
    return None if row is None else row[0]


def claim(conn: Connection, kind: str, limit: int, lease: float, now: float) -> list[Job]:
    """Up to `limit` due jobs of `kind`, leased: pushed `lease` seconds ahead so that an
    instance that dies mid-run gives them back."""
    prev = jobs.alias("prev")
    waiting = (select(prev.c.id).where(prev.c.id == jobs.c.after, prev.c.status == PENDING)
               .exists())
    # Attempts recorded in earlier rounds: a redrive resets `attempts` (the budget) but
    # the attempt log keeps counting.
    recorded = (select(func.coalesce(func.max(job_attempts.c.attempt), 0))
                .where(job_attempts.c.job_id == jobs.c.id).scalar_subquery())
    q = (select(jobs.c.id, jobs.c.target, jobs.c.event_id, jobs.c.payload, jobs.c.attempts,
                recorded)
         .where(_PENDING_SQL, jobs.c.kind == kind, jobs.c.next_attempt_at <= now, ~waiting)
         .order_by(jobs.c.next_attempt_at, jobs.c.id).limit(limit))
    if conn.dialect.name == "postgresql":
        q = q.with_for_update(skip_locked=True)
    rows = conn.execute(q).all()
    if not rows:
        return []
    conn.execute(update(jobs).where(jobs.c.id.in_([r[0] for r in rows]))
                 .values(next_attempt_at=now + lease))
    out = []
    for r in rows:
        raw = r[3].encode()
        out.append(Job(id=r[0], kind=kind, target=r[1], event_id=r[2], payload=LazyJson(raw),
                       attempts=r[4], raw=raw, earlier=max(0, r[5] - r[4])))
    return out


@dataclass(frozen=True, slots=True)
class Backoff:
    base: float = 1.0
    cap: float = 300.0

    def delay(self, attempts: int) -> float:
        """Exponential with jitter: base * 2^(attempts-1), within [50%, 100%], capped."""
        return backoff.delay(attempts - 1, self.base, self.cap)


def finish(conn: Connection, results: Sequence[tuple[Job, Result]], backoff: Backoff,
           now: float) -> list[tuple[Job, str]]:
    """Record each attempt; done, failed, rescheduled or dead-lettered. Returns the jobs
    that ended badly this time, with their final status (failed/dead)."""
    ended: list[tuple[Job, str]] = []
    attempt_rows = []
    done_ids = []
    retry_ids = [j.id for j, r in results if r.outcome is Outcome.RETRY]
    max_of: dict[int, int] = {}
    if retry_ids:
        for job_id, most in conn.execute(select(jobs.c.id, jobs.c.max_attempts)
                                         .where(jobs.c.id.in_(retry_ids))):
            max_of[job_id] = most
    for job, res in results:
        n = job.attempts + 1
        attempt_rows.append((job.id, job.attempt, now, res.outcome.value, res.status,
                             round(res.latency_ms, 3), res.detail))
        if res.outcome is Outcome.OK:
            done_ids.append(job.id)
            continue
        values: dict[str, Any] = {"attempts": n, "last_status": res.status,
                                  "last_error": res.detail, "updated_at": now}
        if res.outcome is Outcome.FAIL:
            values["status"] = FAILED
            ended.append((job, FAILED))
        elif n >= max_of.get(job.id, n):
            values["status"] = DEAD
            ended.append((job, DEAD))
        else:
            values["next_attempt_at"] = now + backoff.delay(n)
        conn.execute(update(jobs).where(jobs.c.id == job.id).values(**values))
    if done_ids:
        # Positional executemany: an expanding IN list is re-rendered by SQLAlchemy on
        # every call, which showed in profiles at thousands of jobs a second.
        m = placeholders(conn, 2).split(", ")
        conn.exec_driver_sql(
            f"UPDATE jobs SET status = '{DONE}', attempts = attempts + 1, last_status = NULL, "
            f"last_error = NULL, updated_at = {m[0]} WHERE id = {m[1]}",
            [(now, i) for i in done_ids])
    if attempt_rows:
        conn.exec_driver_sql(
            f"INSERT INTO job_attempts ({', '.join(_ATTEMPT_COLS)}) "
            f"VALUES ({placeholders(conn, len(_ATTEMPT_COLS))})", attempt_rows)
    return ended


def redrive(conn: Connection, now: float, *, kind: str | None = None,
            ids: Sequence[int] = ()) -> int:
    """Re-queue dead-lettered (and failed, when named by id) jobs with fresh attempts."""
    cond = [jobs.c.status == DEAD] if not ids else [jobs.c.id.in_(list(ids)),
                                                   jobs.c.status.in_([DEAD, FAILED])]
    if kind:
        cond.append(jobs.c.kind == kind)
    res = conn.execute(update(jobs).where(and_(*cond)).values(
        status=PENDING, attempts=0, next_attempt_at=now, updated_at=now))
    return int(res.rowcount or 0)
