"""MT dispatch: take queued MTs from the database, split them, submit every part on a
bound session, and record the SMSC's message ids (durable queue with retries).

One sender per MT. A claim leases an MT under a token. Immediately before every
submit_sm (each part, each retry after a throttle) a guard checks that the claim still
holds the MT and that the recipient has not opted out meanwhile (then the MT is
`blocked` and nothing is written to the SMSC); past half its lease, the lease is renewed
in the same step. Every status write checks the token too: a sender whose MT was
claimed again writes nothing and stops.

Every way a send can end is recorded: `submitted`, `failed` (refused by the SMSC, or a
text or PDU that cannot be encoded), `blocked`, or queued again with a limit of
`max_attempts` claims; an MT whose senders keep dying is `failed` by the claim.

Shutdown (`stop`): no new claims; an MT with no submit_sm written yet is given back
untried; one whose submit_sm is written waits for its answer until the deadline. If
none came, it is recorded `submitted` with an "unconfirmed" error and never sent again:
at most once, because a second copy on the handset is worse than one that the
application sees as unconfirmed and can re-send. While running, a submit_sm that times
out or whose connection drops before its answer is recorded `unknown` (visible, never
sent again) unless `[[smsc]] resend_unanswered = true`, for a carrier that
de-duplicates: then it is retried (logged `mt.unanswered`).

Carrier dialects (issue 16): the text is encoded in the bind's default alphabet; the
destination is addressed by the form of the recipient (gateway/addressing.py); an empty
message id in submit_sm_resp makes the MT receipt-less (a warning, and the note on the
MT). Replies to alphanumeric senders are never queued (`skipped`, storage/mts.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial

import structlog

from gateway import backoff
from gateway.addressing import Addressing, SourceAddress, destination_address, source_address
from gateway.config import SmscConfig
from gateway.model import MtStatus, QueuedMt
from gateway.mt_policy import Verdict
from gateway.smpp.codec import LocalProtocolError
from gateway.smpp.pdu import SubmitSm, status_name
from gateway.smpp.session import LinkClosed, SmppSession, SubmitError
from gateway.smpp.text import MtEncoding, encode_mt
from gateway.storage.mts import RECEIPTLESS
from gateway.storage.repo import Store

log = structlog.get_logger("gateway.mt")

LEASE = 120.0
MAX_RETRY_DELAY = 300.0
# A status write that raised (a database hiccup) is tried this often before the MT is
# left to its lease (and to the claim's attempt limit).
WRITE_ATTEMPTS = 3
# Of stop()'s timeout, the share spent waiting for submit_sm answers; the rest records.
ANSWER_SHARE = 0.8
UNCONFIRMED = ("unconfirmed: submit_sm written, no answer before shutdown (it may or may "
               "not have reached the SMSC); not sent again")
UNANSWERED = ("unknown: submit_sm written, no answer ({why}); it may or may not have "
              "reached the SMSC, and is not sent again ([[smsc]] resend_unanswered = false)")


class _LeaseLost(Exception):
    """The MT was claimed again (or is final already): this sender must not touch it."""


class _Blocked(Exception):
    """The recipient opted out; the guard recorded `blocked`."""


class _GiveBack(Exception):
    """Shutting down before any submit_sm of the MT was written."""


@dataclass(slots=True, eq=False)
class _Attempt:
    """One sender's hold on one MT."""

    mt: QueuedMt
    lease_until: float  # (UNIX time, a lower bound) nobody else can claim it before
    ids: list[str] = field(default_factory=list)  # message ids of the accepted parts
    unanswered: bool = False  # a submit_sm is (maybe) written, its answer not read yet
    scope: asyncio.Timeout | None = None  # ends the waits at the shutdown deadline
    smsc: str | None = None  # the bind it goes out on
    encoding: MtEncoding | None = None

    @property
    def maybe_sent(self) -> bool:
        return bool(self.ids) or self.unanswered


class MtSender:
    """Sends queued MTs. `wake()` after queueing one in-process; MTs queued by other
    processes (the `send` command, another instance) are found every `poll_interval`."""

    def __init__(self, store: Store, sessions: Sequence[SmppSession], *,
                 smscs: Sequence[SmscConfig], poll_interval: float = 0.5, max_attempts: int = 10,
                 concurrency: int = 32, lease: float | None = None,
                 addressing: Addressing | None = None) -> None:
        self.store = store
        # Without a configuration: automatic by the kind of sender, country code 1.
        self.addressing: Addressing = addressing or source_address
        self.sessions = list(sessions)
        # Each session's `[[smsc]]` entry: its MT knobs (addressing, receipts, ids).
        self.smscs = {s.name: s for s in smscs}
        self.poll_interval = poll_interval
        self.max_attempts = max_attempts
        # Renewed before every submit_sm: longer than a throttle pause (at most 30 s)
        # plus a response timeout, so only a stalled or dead sender loses it.
        self.lease = LEASE if lease is None else lease
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(concurrency)
        self._concurrency = concurrency
        self._rr = 0
        self._stopping = False
        self._deadline: float | None = None  # loop time: stop waiting for answers
        self._inflight: set[asyncio.Task[None]] = set()
        self._attempts: set[_Attempt] = set()
        # Guards waiting for the next check (see `_guard_loop`).
        self._guards: list[tuple[_Attempt, asyncio.Future[Verdict]]] = []
        self._guards_ready = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    def _pick(self, preferred: str | None) -> SmppSession | None:
        bound = [s for s in self.sessions if s.is_bound]
        if not bound:
            return None
        for s in bound:
            if s.name == preferred:
                return s
        self._rr = (self._rr + 1) % len(bound)
        return bound[self._rr]

    async def _any_bound(self) -> None:
        waits = [asyncio.ensure_future(s.bound.wait()) for s in self.sessions]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            guards = tg.create_task(self._guard_loop(), name="mt-guard")
            while not self._stopping:
                if not any(s.is_bound for s in self.sessions):
                    await self._any_bound()
                    continue
                free = self._concurrency - len(self._inflight)
                claimed_at = time.time()
                try:
                    claimed = (await self.store.claim_mts(free, self.lease, self.max_attempts)
                               if free > 0 else None)
                except Exception as exc:  # the database is down: retry at the next poll
                    log.error("mt.claim_failed", error=str(exc) or type(exc).__name__)
                    claimed = None
                batch = claimed.send if claimed is not None else []
                for mt in claimed.blocked if claimed is not None else ():
                    log.info("mt.blocked", id=mt.id, to=mt.recipient, sender=mt.sender)
                for mt in claimed.failed if claimed is not None else ():
                    log.error("mt.gave_up", id=mt.id, attempts=mt.attempts,
                              error="claimed max_attempts times, never finished")
                for mt in batch:
                    await self._slots.acquire()
                    task = tg.create_task(self._send(_Attempt(mt, claimed_at + self.lease)),
                                          name=f"mt:{mt.id}")
                    self._inflight.add(task)
                    task.add_done_callback(self._inflight.discard)
                if claimed is not None and (len(batch) + len(claimed.blocked)
                                            + len(claimed.failed)) == free:
                    continue
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll_interval)
            while self._inflight:  # they may still need a guard
                await asyncio.wait(set(self._inflight))
            guards.cancel()

    async def _guard_loop(self) -> None:
        """Checks the guards of every submit_sm about to be written at the same moment
        together: under load, a window's worth for the cost of one. A read decides
        most (the claim still holds, opted in, over half of the lease left); a write
        transaction renews the lease of the others and records `blocked`."""
        while True:
            await self._guards_ready.wait()
            self._guards_ready.clear()
            batch, self._guards = self._guards, []
            if not batch:
                continue
            try:
                verdicts = await self.store.mt_check([a.mt for a, _ in batch])
                now = time.time()
                again = [i for i, (a, _) in enumerate(batch)
                         if verdicts[i] is Verdict.BLOCKED or (
                             verdicts[i] is Verdict.SEND
                             and a.lease_until - now < self.lease / 2)]
                if again:
                    renewed = await self.store.mt_guard([batch[i][0].mt for i in again],
                                                        self.lease)
                    for i, verdict in zip(again, renewed, strict=True):
                        verdicts[i] = verdict
                        if verdict is Verdict.SEND:
                            batch[i][0].lease_until = now + self.lease
            except Exception as exc:  # each sender handles it as its own error
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for (_, fut), verdict in zip(batch, verdicts, strict=True):
                if not fut.done():  # (cancelled: its sender hit the shutdown deadline)
                    fut.set_result(verdict)

    async def stop(self, timeout: float) -> None:
        """Stop claiming. MTs not submitted yet are given back; the answers of submit_sm
        already written are awaited for most of `timeout`, and an MT whose answer did
        not come is recorded `submitted` (unconfirmed), never left to be sent again."""
        self._stopping = True
        self._wake.set()
        loop = asyncio.get_running_loop()
        self._deadline = loop.time() + timeout * ANSWER_SHARE
        for attempt in self._attempts:
            if attempt.scope is not None:
                attempt.scope.reschedule(self._deadline)
        if self._inflight:
            _done, pending = await asyncio.wait(set(self._inflight), timeout=timeout)
            if pending:  # stuck recording (the database): their leases give them back
                for task in pending:
                    task.cancel()
                log.warning("mt.shutdown_cut_off", inflight=len(pending))

    async def _send(self, attempt: _Attempt) -> None:
        mt = attempt.mt
        self._attempts.add(attempt)
        try:
            await self._attempt(attempt)
        except _LeaseLost as exc:
            log.warning("mt.lease_lost", id=mt.id, step=str(exc),
                        error="claimed again or final already: this sender stops")
        except Exception as exc:  # a bug or the database: an ordinary, counted attempt
            log.error("mt.send_error", id=mt.id, error=repr(exc))
            try:
                if attempt.maybe_sent:
                    await self._unconfirmed(attempt, f"error after submit_sm: {exc!r}")
                else:
                    await self._retry_or_fail(attempt, f"internal error: {exc!r}")
            except _LeaseLost as lost:
                log.warning("mt.lease_lost", id=mt.id, step=str(lost))
            except Exception as again:  # the lease, then the claim's limit, take over
                log.error("mt.record_failed", id=mt.id, error=repr(again))
        finally:
            self._attempts.discard(attempt)
            self._slots.release()

    async def _attempt(self, a: _Attempt) -> None:
        mt = a.mt
        session = self._pick(mt.smsc)
        if session is None:
            await self._give_back(a, "no bound SMSC", delay=1.0)
            return
        try:
            encoding = a.encoding = encode_mt(mt.text, random.randrange(256),
                                              session.cfg.default_alphabet, mt.coding)
        except Exception as exc:  # ValueError (too long, lone surrogate): it never will
            await self._fail(a, f"cannot encode the text: {exc}")
            log.error("mt.unencodable", id=mt.id, error=str(exc))
            return
        a.smsc = session.name
        try:
            async with asyncio.timeout(self._deadline) as scope:
                a.scope = scope
                for part in encoding.parts:
                    make = partial(self._make, a, cfg=self.smscs[session.name],
                                   data_coding=encoding.data_coding,
                                   short_message=part.short_message, esm_class=part.esm_class)
                    resp = await session.submit(make, before=partial(self._before, a))
                    a.unanswered = False
                    a.ids.append(resp.message_id)
        except _Blocked:
            log.info("mt.blocked", id=mt.id, to=mt.recipient, sender=mt.sender,
                     at="submit")
            return
        except _GiveBack:
            await self._give_back(a, "shutting down", delay=0.0)
            return
        except LocalProtocolError as exc:  # the codec refused the PDU: it always will
            a.unanswered = False
            await self._fail(a, f"submit_sm cannot be encoded: {exc}")
            log.error("mt.unencodable", id=mt.id, error=str(exc))
            return
        except (LinkClosed, TimeoutError) as exc:
            # (TimeoutError: the submit_sm's response timeout, or the shutdown deadline)
            if self._stopping and not a.maybe_sent:
                await self._give_back(a, "shutting down", delay=0.0)
            elif self._stopping:
                await self._unconfirmed(a, UNCONFIRMED)
            elif a.unanswered and not self.smscs[session.name].resend_unanswered:
                why = str(exc) or f"timed out after {session.cfg.response_timeout:g} s"
                await self._unconfirmed(a, UNANSWERED.format(why=why), MtStatus.UNKNOWN)
            else:
                if a.maybe_sent:
                    log.warning("mt.unanswered", id=mt.id, error=str(exc) or "timed out",
                                note="may have reached the SMSC; sent again")
                await self._retry_or_fail(a, str(exc) or "submit_sm timed out")
            return
        except SubmitError as exc:
            await self._fail(a, str(exc))
            log.warning("mt.failed", id=mt.id, to=mt.recipient, error=str(exc))
            return
        finally:
            a.scope = None
        note = None
        if not all(a.ids):
            note = RECEIPTLESS
            log.warning("mt.no_message_id", id=mt.id, to=mt.recipient, smsc=session.name,
                        smsc_message_ids=a.ids, error=note)
        await self._write("submitted", lambda: self.store.mt_submitted(
            mt.id, smsc=session.name, data_coding=encoding.data_coding, segment_ids=a.ids,
            token=mt.token, unconfirmed=note, id_form=self.smscs[session.name].message_id))
        log.info("mt.submitted", id=mt.id, to=mt.recipient, smsc=session.name,
                 parts=len(a.ids), smsc_message_ids=a.ids)

    def _make(self, a: _Attempt, seq: int, *, cfg: SmscConfig, data_coding: int,
              short_message: bytes, esm_class: int) -> SubmitSm:
        a.unanswered = True  # from here on the SMSC may have it
        return _submit_sm(seq, cfg=cfg, mt=a.mt, source=self.addressing(a.mt.sender, cfg),
                          data_coding=data_coding, short_message=short_message,
                          esm_class=esm_class)

    async def _before(self, a: _Attempt) -> None:
        """Immediately before each write of a submit_sm (see `SmppSession.submit`)."""
        a.unanswered = False  # the previous write of this part was answered (throttled)
        if self._stopping and not a.ids:
            raise _GiveBack
        fut: asyncio.Future[Verdict] = asyncio.get_running_loop().create_future()
        self._guards.append((a, fut))
        self._guards_ready.set()
        verdict = await fut
        if verdict is Verdict.LOST:
            raise _LeaseLost("before submit_sm")
        if verdict is Verdict.BLOCKED:
            raise _Blocked

    async def _write(self, step: str, call: Callable[[], Awaitable[bool]]) -> None:
        """One fenced status write, tried again if it raises; False from it (0 rows:
        the lease is gone) raises _LeaseLost."""
        for n in range(1, WRITE_ATTEMPTS + 1):
            try:
                done = await call()
                break
            except Exception as exc:
                if n == WRITE_ATTEMPTS:
                    raise
                log.warning("mt.write_failed", step=step, error=repr(exc), attempt=n)
                await asyncio.sleep(0.2 * 2 ** n)
        if not done:
            raise _LeaseLost(step)

    async def _unconfirmed(self, a: _Attempt, note: str,
                           status: MtStatus = MtStatus.SUBMITTED) -> None:
        """Record an MT that may have reached the SMSC as `status` (submitted, or
        unknown) (the parts without an answer have no message id): it is never sent
        again."""
        mt, encoding = a.mt, a.encoding
        assert encoding is not None  # maybe_sent: it was encoded
        ids: list[str | None] = [*a.ids, *[None] * (len(encoding.parts) - len(a.ids))]
        smsc = a.smsc or mt.smsc or ""
        form = s.message_id if (s := self.smscs.get(smsc)) else "auto"
        await self._write("submitted", lambda: self.store.mt_submitted(
            mt.id, smsc=smsc, data_coding=encoding.data_coding, segment_ids=ids,
            token=mt.token, unconfirmed=note, status=status, id_form=form))
        log.warning("mt.unconfirmed" if status is MtStatus.SUBMITTED else "mt.unknown",
                    id=mt.id, to=mt.recipient, smsc=smsc, smsc_message_ids=a.ids,
                    parts=len(ids), error=note)

    async def _give_back(self, a: _Attempt, why: str, *, delay: float) -> None:
        await self._write("release", lambda: self.store.mt_release(
            a.mt.id, token=a.mt.token, delay=delay))
        log.info("mt.given_back", id=a.mt.id, reason=why)

    async def _fail(self, a: _Attempt, error: str) -> None:
        await self._write("failed", lambda: self.store.mt_failed(
            a.mt.id, error=error, token=a.mt.token))

    async def _retry_or_fail(self, a: _Attempt, error: str) -> None:
        mt = a.mt
        if mt.attempts + 1 >= self.max_attempts:
            await self._fail(a, f"gave up after {mt.attempts + 1} attempts: {error}")
            log.error("mt.gave_up", id=mt.id, error=error)
            return
        delay = backoff.delay(mt.attempts, 1.0, MAX_RETRY_DELAY)
        await self._write("retry", lambda: self.store.mt_retry(
            mt.id, error=error, delay=delay, token=mt.token))
        log.warning("mt.retry_scheduled", id=mt.id, error=error, delay=round(delay, 2))


def _submit_sm(seq: int, *, cfg: SmscConfig, mt: QueuedMt, source: SourceAddress,
               data_coding: int, short_message: bytes, esm_class: int) -> SubmitSm:
    dest = destination_address(mt.recipient, cfg)
    return SubmitSm(
        sequence_number=seq,
        source_addr_ton=source.ton,
        source_addr_npi=source.npi,
        source_addr=source.addr,
        dest_addr_ton=dest.ton,
        dest_addr_npi=dest.npi,
        destination_addr=dest.addr,
        esm_class=esm_class,
        registered_delivery=1 if cfg.registered_delivery else 0,
        data_coding=data_coding,
        short_message=short_message,
        validity_period="" if mt.validity is None else relative_time(mt.validity * 60),
    )


def relative_time(seconds: int) -> str:
    """SMPP 3.4 §7.1.1 relative time `YYMMDDhhmmss000R` for a period of `seconds`
    (days carry no months: at most 99 days here, far above any SMSC's limit)."""
    days, rest = divmod(max(0, seconds), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return f"0000{min(days, 99):02d}{hours:02d}{minutes:02d}{secs:02d}000R"


__all__ = ["MtSender", "status_name"]
