"""Queries. The intake's inserts use positional driver SQL (executemany over tuples):
SQLAlchemy's per-row parameter processing would cost more than the commit itself.
Everything else uses SQLAlchemy Core."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, MutableSequence, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

from sqlalchemy import and_, func, or_, select
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.mo import Receipt
from gateway.model import MessageRow, MtStatus, PartRow, QueuedMt, ReceiptRow, iso
from gateway.mt_policy import Verdict
from gateway.storage import mts
from gateway.storage.db import (
    DEFAULT_WAL_LIMIT,
    WalGuard,
    create_sync_engine,
    placeholders,
    reader,
    wal_path,
)
from gateway.storage.jobs import EventJobs, NoEvents
from gateway.storage.jobs import redrive as redrive_jobs
from gateway.storage.schema import (
    job_attempts,
    jobs,
    leads,
    messages,
    mo_parts,
    mt_segments,
    opt_history,
    opt_state,
    poll_votes,
    receipts,
    status_history,
)
from gateway.storage.values import fit, length, limits, storable_row

# The intake's rows (gateway/model.py) are NamedTuples whose fields are the columns of
# the INSERTs, in order. The driver is handed them as plain tuples (`tuple(row)`, 0.3 us
# a row): sqlite3 binds a tuple subclass through its generic sequence path, measured at
# 690 us against 440 us for the executemany of 50 message rows.
_MSG_COLS = MessageRow._fields
_PART_COLS = PartRow._fields
_RECEIPT_COLS = ReceiptRow._fields
_MSG_LIMITS = limits(messages, _MSG_COLS)
_PART_LIMITS = limits(mo_parts, _PART_COLS)
_RECEIPT_LIMITS = limits(receipts, _RECEIPT_COLS)
_CONCAT_KEY_LEN = length(mo_parts.c.concat_key)

P = ParamSpec("P")
T = TypeVar("T")


class Emitters(Protocol):
    """Where the store takes the event emitter from at each write: the daemon's running
    configuration (swapped on reload), or one fixed emitter."""

    @property
    def emitter(self) -> EventJobs: ...


@dataclass(slots=True)
class FixedEmitter:
    emitter: EventJobs


@dataclass(frozen=True, slots=True)
class OpenPart:
    smsc: str
    concat_key: str
    seq: int
    total: int
    data_coding: int
    body: bytes
    received_at: float
    raw_pdu: bytes


def _driver(conn: Connection) -> Any:
    """The writer's sqlite3 connection under SQLAlchemy's (PRAGMAs, checkpoints)."""
    raw = conn.connection.driver_connection
    assert raw is not None
    return raw


class Store:
    """All database access of the daemon and the CLI."""

    def __init__(self, engine: AsyncEngine, *, synchronous: str = "FULL",
                 wal_limit: int = DEFAULT_WAL_LIMIT, emitters: Emitters | None = None,
                 on_jobs: Callable[[], None] | None = None) -> None:
        self.engine = engine
        self.reader = reader(engine)
        self.is_sqlite = engine.dialect.name == "sqlite"
        # The daemon's: its running configuration's emitter ([mqtt], callback profiles).
        # None (the CLI, tests): no jobs are planned (`NoEvents`).
        self._emitters: Emitters = FixedEmitter(NoEvents()) if emitters is None else emitters
        # Called after a write queued jobs (MT status events): wakes the outbox.
        self.on_jobs: Callable[[], None] = _nothing if on_jobs is None else on_jobs
        # SQLite: every write transaction runs on one thread with a blocking connection,
        # one hop per transaction. Through aiosqlite each statement is a round trip to
        # its thread: measured here, a 3-row commit took 2.1 ms at the median and 17 ms
        # at p99 that way, against 0.5 / 2.0 ms with one hop.
        self._executor: ThreadPoolExecutor | None = None
        self._sync_conn: Connection | None = None
        self._synchronous = synchronous
        self._sync_durable = True
        # SQLite: write transactions other than the intake's completed so far on the
        # single writer; the intake tells from it whether a batch of its waited behind
        # one (pipeline.py `_start`). PostgreSQL: stays 0 (no single writer to wait on).
        self.other_writes = 0
        self.wal: WalGuard | None = None
        self._read_executor: ThreadPoolExecutor | None = None
        if self.is_sqlite:
            # Reads of many statements (the message log, the HTTP API) in one hop to a
            # thread of their own, on a deferred transaction: never queued in front of
            # the intake's commits. (On the loop they would block it; through aiosqlite
            # every statement is a hop; bench/api_bench.py measured all three.)
            self._read_executor = ThreadPoolExecutor(1, thread_name_prefix="sqlite-reader")
            self._read_engine = create_sync_engine(str(engine.url)).execution_options(
                sqlite_begin="DEFERRED")
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="sqlite-writer")
            self._sync_engine = create_sync_engine(str(engine.url), synchronous=synchronous)
            path = wal_path(engine.url.render_as_string(hide_password=False))
            self.wal = None if path is None else WalGuard(path, wal_limit)
        n = placeholders
        self._ins_msg = (
            f"INSERT INTO messages ({', '.join(_MSG_COLS)}, attempts) "
            f"VALUES ({n(engine, len(_MSG_COLS))}, 0)"
        )
        self._ins_part = (
            f"INSERT INTO mo_parts ({', '.join(_PART_COLS)}) "
            f"VALUES ({n(engine, len(_PART_COLS))})"
        )
        self._ins_receipt = (
            f"INSERT INTO receipts ({', '.join(_RECEIPT_COLS)}, matched) "
            f"VALUES ({n(engine, len(_RECEIPT_COLS))}, 0)"
        )
        p = n(engine, 2).split(", ")
        self._close_group = (
            f"UPDATE mo_parts SET message_id = {p[0]} "
            f"WHERE concat_key = {p[1]} AND message_id IS NULL"
        )

    @property
    def emitter(self) -> EventJobs:
        return self._emitters.emitter

    @emitter.setter
    def emitter(self, emitter: EventJobs) -> None:
        """One emitter from now on (tests, the CLI)."""
        self._emitters = FixedEmitter(emitter)

    async def close(self) -> None:
        if self._read_executor is not None:
            self._read_executor.shutdown()
        if self._executor is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._close_sync)
            self._executor.shutdown()
            self._sync_engine.dispose()
            self._read_engine.dispose()

    def _close_sync(self) -> None:
        if self._sync_conn is not None:
            self._sync_conn.close()
            self._sync_conn = None

    # -- the single writer ------------------------------------------------------------
    async def transaction(self, fn: Callable[Concatenate[Connection, P], T],
                          *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `fn(conn, ...)` in one durable write transaction: on the SQLite writer
        thread, or on a pooled PostgreSQL connection."""
        try:
            return await self._durable(fn, *args, **kwargs)
        finally:
            self._wrote()

    async def _durable(self, fn: Callable[Concatenate[Connection, P], T],
                       *args: P.args, **kwargs: P.kwargs) -> T:
        if self._executor is not None:
            return await asyncio.get_running_loop().run_in_executor(
                self._executor, lambda: self._run_sync(fn, True, *args, **kwargs))
        async with self.engine.begin() as conn:
            return await conn.run_sync(fn, *args, **kwargs)

    async def relaxed(self, fn: Callable[Concatenate[Connection, P], T],
                      *args: P.args, **kwargs: P.kwargs) -> T:
        """Like `transaction`, for bookkeeping whose loss on a power failure only makes
        work run again (job claims and outcomes, fan-out, which is atomic with clearing
        its flag): it commits without waiting for the disk (SQLite: synchronous=NORMAL,
        PostgreSQL: synchronous_commit=off, for that transaction; the next durable
        commit flushes it too)."""
        try:
            if self._executor is not None:
                return await asyncio.get_running_loop().run_in_executor(
                    self._executor, lambda: self._run_sync(fn, False, *args, **kwargs))
            async with self.engine.begin() as conn:
                # PostgreSQL: the same, for this transaction only (the session's setting
                # is the durability mode's, see storage/db.py).
                await conn.exec_driver_sql("SET LOCAL synchronous_commit TO off")
                return await conn.run_sync(fn, *args, **kwargs)
        finally:
            self._wrote()

    def _wrote(self) -> None:
        """A write other than the intake's is over (`other_writes`)."""
        if self._executor is not None:
            self.other_writes += 1

    def _writer(self) -> Connection:
        """The writer thread's connection (opened again after a failure)."""
        conn = self._sync_conn
        if conn is None or conn.closed or conn.invalidated:
            conn = self._sync_conn = self._sync_engine.connect()
            # Checkpoints copy the WAL into the database file and fsync it: tens of ms.
            # Not on the ack path: `checkpoint()` runs them on another connection.
            conn.exec_driver_sql("PRAGMA wal_autocheckpoint=0")
            conn.commit()
            self._sync_durable = True
        return conn

    def _run_sync(self, fn: Callable[Concatenate[Connection, P], T], durable: bool,
                  *args: P.args, **kwargs: P.kwargs) -> T:
        conn = self._writer()
        if durable != self._sync_durable and self._synchronous == "FULL":
            # On the driver connection: through SQLAlchemy it would autobegin a
            # transaction, and SQLite refuses to change the level inside one.
            _driver(conn).execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
            self._sync_durable = durable
        try:
            with conn.begin():
                result = fn(conn, *args, **kwargs)
        except Exception:
            self._close_sync()
            raise
        if self.wal is not None:
            self.wal.after_write(_driver(conn))
        return result

    async def read(self, fn: Callable[Concatenate[Connection, P], T],
                   *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `fn(conn, ...)` read-only in one hop: on SQLite on the reader thread
        (through aiosqlite every statement would be a hop of its own), on PostgreSQL on
        a pooled connection."""
        if self._read_executor is not None:
            return await asyncio.get_running_loop().run_in_executor(
                self._read_executor, lambda: self._read_sync(fn, *args, **kwargs))
        async with self.reader.connect() as conn:
            return await conn.run_sync(fn, *args, **kwargs)

    def _read_sync(self, fn: Callable[Concatenate[Connection, P], T],
                   *args: P.args, **kwargs: P.kwargs) -> T:
        with self._read_engine.connect() as conn, conn.begin():
            return fn(conn, *args, **kwargs)

    async def checkpoint(self) -> None:
        """A PASSIVE WAL checkpoint (SQLite), which never blocks the writer; then, if the
        WAL is over its limit, its restart on the writer: only what was written during
        the pass is left to copy (`WalGuard`)."""
        if not self.is_sqlite:
            return
        async with self.reader.connect() as conn:
            await conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
        if self.wal is not None and self._executor is not None and self.wal.due():
            try:
                await asyncio.get_running_loop().run_in_executor(
                    self._executor, self._after_passive)
            finally:
                self._wrote()  # it held the writer: the intake's next batch waited

    def _after_passive(self) -> None:
        assert self.wal is not None
        self.wal.after_passive(_driver(self._writer()))

    # -- intake -----------------------------------------------------------------------
    async def write_intake(
        self,
        msgs: MutableSequence[MessageRow],
        parts: Sequence[PartRow],
        closed_groups: Sequence[tuple[str, str]],
        receipt_rows: Sequence[ReceiptRow],
        receipt_list: Sequence[Receipt] = (),
        then: Callable[[Connection], T] | None = None,
    ) -> T | None:
        """One transaction for a whole batch of inbound PDUs; `then(conn)`, if given,
        runs last in the same transaction and its result is returned.

        Every value is stored in its safe form (see storage/values.py), so that no MO
        or receipt can make the batch fail for what it holds: a row of `msgs` that
        needed it is replaced in `msgs` itself, so that what runs after (the fan-out,
        the events) sees the text that was stored, and the receipts of `receipt_list`
        are corrected the same way."""
        self._make_storable(msgs, receipt_rows, receipt_list)
        return await self._durable(self._write_intake, msgs, parts, closed_groups,
                                   receipt_rows, receipt_list, then)

    @staticmethod
    def _make_storable(msgs: MutableSequence[MessageRow], receipt_rows: Sequence[ReceiptRow],
                       receipt_list: Sequence[Receipt]) -> None:
        for i, row in enumerate(msgs):
            fixed = storable_row(row, _MSG_LIMITS)
            if fixed is not None:
                msgs[i] = fixed
        if len(receipt_list) != len(receipt_rows):
            return  # not parallel: the rows are fitted at insert time only
        for receipt_row, r in zip(receipt_rows, receipt_list, strict=True):
            ok = storable_row(receipt_row, _RECEIPT_LIMITS)
            if ok is not None:
                r.smsc_message_id, r.state, r.error = ok.smsc_message_id, ok.state, ok.error

    def _write_intake(
        self,
        conn: Connection,
        msgs: Sequence[MessageRow],
        parts: Sequence[PartRow],
        closed_groups: Sequence[tuple[str, str]],
        receipt_rows: Sequence[ReceiptRow],
        receipt_list: Sequence[Receipt],
        then: Callable[[Connection], T] | None = None,
    ) -> T | None:
        if parts:
            conn.exec_driver_sql(self._ins_part, [tuple(storable_row(p, _PART_LIMITS) or p)
                                                  for p in parts])
        if msgs:
            conn.exec_driver_sql(self._ins_msg, list(map(tuple, msgs)))
        if closed_groups:
            conn.exec_driver_sql(self._close_group, [(m, fit(k, _CONCAT_KEY_LEN))
                                                     for m, k in closed_groups])
        if receipt_rows:
            mts.lock_receipt_ids(conn, [r.smsc_message_id for r in receipt_list])
            conn.exec_driver_sql(self._ins_receipt,
                                 [tuple(storable_row(r, _RECEIPT_LIMITS) or r)
                                  for r in receipt_rows])
            mts.apply_receipts(conn, self.emitter, receipt_list, time.time())
        return None if then is None else then(conn)

    async def open_parts(self) -> list[OpenPart]:
        async with self.reader.connect() as conn:
            rows = await conn.execute(
                select(mo_parts.c.smsc, mo_parts.c.concat_key, mo_parts.c.seq,
                       mo_parts.c.total, mo_parts.c.data_coding, mo_parts.c.body,
                       mo_parts.c.received_at, mo_parts.c.raw_pdu)
                .where(mo_parts.c.message_id.is_(None))
                .order_by(mo_parts.c.id)
            )
            return [OpenPart(*r) for r in rows]

    # -- MT ---------------------------------------------------------------------------
    async def queue_mt(self, *, sender: str, recipient: str, text: str,
                       in_reply_to: str | None = None, client_ref: str | None = None,
                       smsc: str | None = None, notify: str | None = None,
                       exempt: bool = False) -> str:
        return await self.transaction(
            mts.insert_mt, self.emitter, sender=sender, recipient=recipient, text=text,
            now=time.time(), smsc=smsc, in_reply_to=in_reply_to, client_ref=client_ref,
            notify=notify, exempt=exempt)

    async def claim_mts(self, limit: int, lease: float,
                        max_attempts: int | None = None) -> mts.Claimed:
        """Take up to `limit` due MTs for sending, leased for `lease` seconds (an
        instance that dies mid-send gives them back when the lease runs out); those to
        opted-out numbers come back `blocked` instead, those claimed `max_attempts`
        times already `failed` (see `mts.claim`)."""
        now = time.time()
        async with self.reader.connect() as conn:  # cheap check without the write lock
            first = await conn.execute(select(messages.c.id).where(
                mts.QUEUED_MTS, messages.c.next_attempt_at <= now).limit(1))
            if first.first() is None:
                return mts.Claimed([], [])
        claimed = await self.transaction(mts.claim, self.emitter, limit, lease, now,
                                         max_attempts)
        if claimed.blocked or claimed.failed:
            self.on_jobs()  # their mt_status events
        return claimed

    async def mt_guard(self, items: Sequence[QueuedMt],
                       lease: float) -> list[Verdict]:
        """Before submit_sm (see `mts.guard`). Not durable: a lost renewal only
        shortens a lease, a lost `blocked` is decided again at the next claim."""
        verdicts = await self.relaxed(mts.guard, self.emitter, items, lease, time.time())
        if Verdict.BLOCKED in verdicts:
            self.on_jobs()
        return verdicts

    async def mt_check(self, items: Sequence[QueuedMt]) -> list[Verdict]:
        """`mts.check`: on PostgreSQL on a reader connection (no commit to flush); on
        SQLite on the writer thread, one hop (through aiosqlite every statement is one)."""
        if self.is_sqlite:
            return await self.relaxed(mts.check, items)
        async with self.reader.connect() as conn:
            return await conn.run_sync(mts.check, items)

    async def mt_submitted(self, msg_id: str, *, smsc: str, data_coding: int,
                           segment_ids: Sequence[str | None], token: str | None = None,
                           unconfirmed: str | None = None,
                           status: MtStatus = MtStatus.SUBMITTED,
                           id_form: str = "auto") -> bool:
        done = await self.transaction(mts.submitted, self.emitter, msg_id, smsc=smsc,
                                      data_coding=data_coding, segment_ids=segment_ids,
                                      now=time.time(), token=token, unconfirmed=unconfirmed,
                                      status=status, id_form=id_form)
        self.on_jobs()
        return done

    async def mt_retry(self, msg_id: str, *, error: str, delay: float,
                       token: str | None = None) -> bool:
        return await self.transaction(mts.retry, msg_id, error=error, delay=delay,
                                      now=time.time(), token=token)

    async def mt_release(self, msg_id: str, *, token: str, delay: float) -> bool:
        return await self.transaction(mts.release, msg_id, token=token, delay=delay,
                                      now=time.time())

    async def mt_failed(self, msg_id: str, *, error: str,
                        status: MtStatus = MtStatus.FAILED, token: str | None = None) -> bool:
        done = await self.transaction(mts.final, self.emitter, msg_id, status, error=error,
                                      now=time.time(), token=token)
        self.on_jobs()
        return done

    # -- reading ----------------------------------------------------------------------
    async def list_messages(self, **filters: Any) -> list[dict[str, Any]]:
        """The message log: `list_messages` (below), read in one hop."""
        return await self.read(list_messages, **filters)

    async def redrive(self, *, kind: str | None = None, ids: Sequence[int] = ()) -> int:
        n = await self.transaction(redrive_jobs, time.time(), kind=kind, ids=ids)
        self.on_jobs()
        return n

    async def job_statuses(self, ids: Sequence[int]) -> dict[int, str]:
        """The status of each of the jobs `ids` that exists."""
        async with self.reader.connect() as conn:
            return {i: st for i, st in await conn.execute(
                select(jobs.c.id, jobs.c.status).where(jobs.c.id.in_(list(ids))))}

    async def optins(self, *, vmn: str | None = None, state: str | None = None,
                     msisdn: str | None = None) -> list[dict[str, Any]]:
        """Current opt states, oldest change first (`vmn` "*": every sender ID)."""
        o = opt_state.c
        q = select(o.msisdn, o.vmn, o.state, o.keyword, o.updated_at).order_by(o.updated_at)
        if vmn:
            q = q.where(o.vmn.in_([vmn, "*"]))
        if state:
            q = q.where(o.state == state)
        if msisdn:
            q = q.where(o.msisdn == msisdn)
        async with self.reader.connect() as conn:
            return [dict(r._mapping) for r in await conn.execute(q)]

    async def opt_history(self, *, vmn: str | None = None, state: str | None = None,
                          msisdn: str | None = None,
                          since: float | None = None) -> list[dict[str, Any]]:
        """Every opt keyword received, oldest first."""
        h = opt_history.c
        q = select(h.at, h.msisdn, h.vmn, h.received_on, h.state, h.keyword, h.changed,
                   h.message_id, h.source).order_by(h.at, h.id)
        if vmn:
            q = q.where((h.vmn == vmn) | (h.received_on == vmn))
        if state:
            q = q.where(h.state == state)
        if msisdn:
            q = q.where(h.msisdn == msisdn)
        if since is not None:
            q = q.where(h.at >= since)
        async with self.reader.connect() as conn:
            return [dict(r._mapping) for r in await conn.execute(q)]

    async def polls(self, name: str | None = None) -> dict[str, dict[str, int]]:
        p = poll_votes.c
        q = select(p.poll, p.option, func.count()).group_by(p.poll, p.option)
        if name:
            q = q.where(p.poll == name)
        out: dict[str, dict[str, int]] = {}
        async with self.reader.connect() as conn:
            for poll, option, n in await conn.execute(q.order_by(p.poll, p.option)):
                out.setdefault(poll, {})[option] = int(n)
        return out

    async def leads(self, *, vmn: str | None = None,
                    since: float | None = None) -> list[dict[str, Any]]:
        """One row per (VMN, msisdn, keyword), first captured first; `since` keeps the
        leads seen (last) at or after it."""
        c = leads.c
        q = select(c.at, c.last_at, c.count, c.vmn, c.msisdn, c.keyword, c.text,
                   c.message_id).order_by(c.id)
        if vmn:
            q = q.where(c.vmn == vmn)
        if since is not None:
            q = q.where(c.last_at >= since)
        async with self.reader.connect() as conn:
            return [dict(r._mapping) for r in await conn.execute(q)]


def _nothing() -> None:
    pass


def list_messages(
    conn: Connection, *, vmn: str | None = None, msisdn: str | None = None,
    since: float | None = None, route: str | None = None, limit: int = 100,
    routes: Sequence[str] = (), ids: Sequence[str] = (),
    vmns: Sequence[str] = (), direction: str | None = None, status: str | None = None,
    until: float | None = None, before: tuple[float, str] | None = None,
) -> list[dict[str, Any]]:
    """Newest `limit` rows matching the filters (`routes`, `vmns`: any of them;
    `until`: created before it; `before`: older than the (created_at, id) of a row,
    for paging), returned oldest first; an MO carries its counted poll `vote` and
    whether it is a `lead`."""
    m = messages.c
    q = select(m.id, m.direction, m.smsc, m.vmn, m.msisdn, m.sender, m.recipient,
               m.text, m.data_coding, m.segments, m.keyword, m.route, m.status, m.error,
               m.in_reply_to, m.client_ref, m.created_at, m.updated_at,
               m.receipt_stat, m.receipt_err)
    if vmn:
        q = q.where(m.vmn == vmn)
    if msisdn:
        q = q.where(m.msisdn == msisdn)
    if since is not None:
        q = q.where(m.created_at >= since)
    if route:
        routes = (*routes, route)
    if routes:
        q = q.where(m.route.in_(list(routes)))
    if ids:
        q = q.where(m.id.in_(list(ids)))
    if vmns:
        q = q.where(m.vmn.in_(list(vmns)))
    if direction:
        q = q.where(m.direction == direction)
    if status:
        q = q.where(m.status == status)
    if until is not None:
        q = q.where(m.created_at < until)
    if before is not None:
        q = q.where(or_(m.created_at < before[0],
                        and_(m.created_at == before[0], m.id < before[1])))
    q = q.order_by(m.created_at.desc(), m.id.desc())
    if limit:
        q = q.limit(limit)
    rows = [dict(r._mapping) for r in conn.execute(q)]
    ids = [r["id"] for r in rows if r["direction"] == "mt"]
    smsc_ids: dict[str, list[str]] = {}
    history: dict[str, list[dict[str, Any]]] = {}
    if ids:
        h = status_history.c
        for mid, st, at, detail in conn.execute(
            select(h.message_id, h.status, h.at, h.detail)
            .where(h.message_id.in_(ids)).order_by(h.id)
        ):
            history.setdefault(mid, []).append(
                {"status": st, "at": iso(at), "detail": detail})
        for mid, sid in conn.execute(
            select(mt_segments.c.message_id, mt_segments.c.smsc_message_id)
            .where(mt_segments.c.message_id.in_(ids)).order_by(mt_segments.c.seq)
        ):
            smsc_ids.setdefault(mid, []).append(sid)
    actions: dict[str, list[dict[str, Any]]] = {}
    all_ids = [r["id"] for r in rows]
    mo_ids = [r["id"] for r in rows if r["direction"] == "mo"]
    votes: dict[str, dict[str, str]] = {}
    lead_ids: set[str] = set()
    if mo_ids:
        p = poll_votes.c
        for mid, poll, option in conn.execute(
                select(p.message_id, p.poll, p.option)
                .where(p.message_id.in_(mo_ids))):
            votes[mid] = {"poll": poll, "option": option}
        lead_ids = {mid for (mid,) in conn.execute(
            select(leads.c.message_id).where(leads.c.message_id.in_(mo_ids)))}
    if all_ids:
        j = jobs.c
        job_rows = [dict(x._mapping) for x in conn.execute(
            select(j.id, j.message_id, j.kind, j.target, j.status, j.attempts,
                   j.max_attempts, j.last_status, j.last_error)
            .where(j.message_id.in_(all_ids)).order_by(j.id))]
        tries: dict[int, list[dict[str, Any]]] = {}
        if job_rows:
            a = job_attempts.c
            for x in conn.execute(
                select(a.job_id, a.attempt, a.at, a.outcome, a.status, a.latency_ms,
                       a.detail).where(a.job_id.in_([jr["id"] for jr in job_rows]))
                # In time order: attempt numbers restarted at 1 after a
                # redrive before they were counted across redrives.
                .order_by(a.job_id, a.at, a.id)
            ):
                tries.setdefault(x.job_id, []).append({
                    "attempt": x.attempt, "at": iso(x.at), "outcome": x.outcome,
                    "status": x.status, "latency_ms": x.latency_ms,
                    "detail": x.detail})
        for jr in job_rows:
            jr["attempts_log"] = tries.get(jr["id"], [])
            actions.setdefault(jr.pop("message_id"), []).append(jr)
    for r in rows:
        r["smsc_message_ids"] = smsc_ids.get(r["id"], [])
        r["history"] = history.get(r["id"], [])
        r["actions"] = actions.get(r["id"], [])
        if r["direction"] == "mo":
            r["vote"] = votes.get(r["id"])
            r["lead"] = r["id"] in lead_ids
    rows.reverse()
    return rows
