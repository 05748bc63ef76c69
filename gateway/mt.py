"""MT dispatch: take queued MTs from the database, split them, submit every part on a
bound session, and record the SMSC's message ids (durable queue with retries)."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Sequence
from functools import partial

import structlog

from gateway.config import SmscConfig
from gateway.smpp.pdu import SubmitSm, status_name
from gateway.smpp.session import LinkClosed, SmppSession, SubmitError
from gateway.smpp.text import encode_mt
from gateway.storage.mts import QueuedMt
from gateway.storage.repo import Store

log = structlog.get_logger("gateway.mt")

LEASE = 120.0
MAX_RETRY_DELAY = 300.0


class MtSender:
    """Sends queued MTs. `wake()` after queueing one in-process; MTs queued by other
    processes (the `send` command, another instance) are found every `poll_interval`."""

    def __init__(self, store: Store, sessions: Sequence[SmppSession], *,
                 poll_interval: float = 0.5, max_attempts: int = 10,
                 concurrency: int = 32) -> None:
        self.store = store
        self.sessions = list(sessions)
        self.poll_interval = poll_interval
        self.max_attempts = max_attempts
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(concurrency)
        self._concurrency = concurrency
        self._rr = 0
        self._stopping = False
        self._inflight: set[asyncio.Task[None]] = set()

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
            while not self._stopping:
                if not any(s.is_bound for s in self.sessions):
                    await self._any_bound()
                    continue
                free = self._concurrency - len(self._inflight)
                try:
                    claimed = await self.store.claim_mts(free, LEASE) if free > 0 else None
                except Exception as exc:  # the database is down: retry at the next poll
                    log.error("mt.claim_failed", error=str(exc) or type(exc).__name__)
                    claimed = None
                batch = claimed.send if claimed is not None else []
                for mt in claimed.blocked if claimed is not None else ():
                    log.info("mt.blocked", id=mt.id, to=mt.recipient, sender=mt.sender)
                for mt in batch:
                    await self._slots.acquire()
                    task = tg.create_task(self._send(mt), name=f"mt:{mt.id}")
                    self._inflight.add(task)
                    task.add_done_callback(self._inflight.discard)
                if claimed is not None and len(batch) + len(claimed.blocked) == free:
                    continue
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll_interval)

    async def stop(self, timeout: float) -> None:
        """Stop claiming; let in-flight sends finish up to `timeout` (a cut-off one is
        re-sent after its lease: at-least-once)."""
        self._stopping = True
        self._wake.set()
        if self._inflight:
            _done, pending = await asyncio.wait(set(self._inflight), timeout=timeout)
            if pending:
                log.warning("mt.shutdown_cut_off", inflight=len(pending))

    async def _send(self, mt: QueuedMt) -> None:
        try:
            # (MTs to opted-out numbers never get here: the claim blocks them.)
            session = self._pick(mt.smsc)
            if session is None:
                await self.store.mt_retry(mt.id, error="no bound SMSC", delay=1.0)
                return
            try:
                encoding = encode_mt(mt.text, random.randrange(256))
            except ValueError as exc:
                await self.store.mt_failed(mt.id, error=str(exc))
                log.error("mt.unencodable", id=mt.id, error=str(exc))
                return
            cfg = session.cfg
            ids: list[str] = []
            try:
                for part in encoding.parts:
                    resp = await session.submit(partial(
                        _submit_sm, cfg=cfg, mt=mt, data_coding=encoding.data_coding,
                        short_message=part.short_message, esm_class=part.esm_class))
                    ids.append(resp.message_id)
            except (LinkClosed, TimeoutError) as exc:
                await self._retry_or_fail(mt, str(exc) or "submit_sm timed out")
                return
            except SubmitError as exc:
                await self.store.mt_failed(mt.id, error=str(exc))
                log.warning("mt.failed", id=mt.id, to=mt.recipient, error=str(exc))
                return
            await self.store.mt_submitted(mt.id, smsc=session.name,
                                          data_coding=encoding.data_coding, segment_ids=ids)
            log.info("mt.submitted", id=mt.id, to=mt.recipient, smsc=session.name,
                     parts=len(ids), smsc_message_ids=ids)
        except Exception as exc:  # the DB hiccuped: the lease gives the MT back later
            log.error("mt.send_error", id=mt.id, error=repr(exc))
        finally:
            self._slots.release()

    async def _retry_or_fail(self, mt: QueuedMt, error: str) -> None:
        if mt.attempts + 1 >= self.max_attempts:
            await self.store.mt_failed(mt.id, error=f"gave up after {mt.attempts + 1} "
                                                    f"attempts: {error}")
            log.error("mt.gave_up", id=mt.id, error=error)
            return
        delay = min(MAX_RETRY_DELAY, 2.0 ** mt.attempts) * random.uniform(0.5, 1.0)
        await self.store.mt_retry(mt.id, error=error, delay=delay)
        log.warning("mt.retry_scheduled", id=mt.id, error=error, delay=round(delay, 2))


def _submit_sm(seq: int, *, cfg: SmscConfig, mt: QueuedMt, data_coding: int,
               short_message: bytes, esm_class: int) -> SubmitSm:
    return SubmitSm(
        sequence_number=seq,
        source_addr_ton=cfg.source_ton,
        source_addr_npi=cfg.source_npi,
        source_addr=mt.sender,
        dest_addr_ton=cfg.dest_ton,
        dest_addr_npi=cfg.dest_npi,
        destination_addr=mt.recipient,
        esm_class=esm_class,
        registered_delivery=1 if cfg.registered_delivery else 0,
        data_coding=data_coding,
        short_message=short_message,
    )


__all__ = ["MtSender", "status_name"]
