"""Durable action queue workers: claim due jobs, run them through their `Action` with
a per-kind concurrency limit, record every attempt, retry with backoff, dead-letter.

A slow or dead downstream only fills its own kind's slots: it never blocks the SMPP
session, the intake, or the other kinds.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping

import structlog

from gateway import backoff
from gateway.actions.base import Action, Job, Outcome, Result
from gateway.storage import jobs as jobq
from gateway.storage.repo import Store

log = structlog.get_logger("gateway.outbox")

LEASE = jobq.LEASE
# Outcomes are committed in groups: when fewer than FINISH_BATCH are waiting, the finish
# loop gathers for FINISH_GATHER seconds first. At a steady 1,000 MO/s that is tens of
# small write transactions a second instead of one per job and kind, each of which
# would make the next intake commit (and its acks) wait on the single writer. A job's
# slot is free as soon as its action returns; only jobs that wait on it (`after`) and
# the log see its outcome up to FINISH_GATHER later.
FINISH_BATCH = 64
FINISH_GATHER = 0.02
# A job whose action has not returned after JOB_TIMEOUT is recorded as a retryable
# failure (its task cancelled). One sweep every SWEEP_INTERVAL for all jobs, instead
# of a timer (asyncio.timeout) per job: at thousands of jobs a second those showed.
JOB_TIMEOUT = LEASE / 2
SWEEP_INTERVAL = 5.0
# Jobs started per event-loop iteration: between slices the loop reads the sockets, so
# the SMSC's PDUs (and their acks) do not wait behind a claim of hundreds of jobs
# (an MQTT publish or an HTTP request is tens of microseconds each).
DISPATCH_SLICE = 16
_TIMED_OUT = Result(outcome=Outcome.RETRY, detail="action did not finish in time")


class _Kind:
    """The worker state of one action kind."""

    def __init__(self, action: Action) -> None:
        self.action = action
        self.wake = asyncio.Event()
        self.results: list[tuple[Job, Result]] = []
        self.have_results = asyncio.Event()
        self.inflight = 0  # running
        self.unrecorded = 0  # finished, outcome not committed yet
        self.slot_free = asyncio.Event()
        self.ready: deque[Job] = deque()  # claimed at creation: no DB round trip
        # job id -> (when it started, the job, its task: None when the action calls back)
        self.running: dict[int, tuple[float, Job, asyncio.Task[None] | None]] = {}
        # An action that takes a callback (the workers' RemoteAction) needs no task.
        self.start: Callable[[Job, Callable[[Result], None]], None] | None = getattr(
            action, "start", None)


class Outbox:
    def __init__(self, store: Store, actions: Mapping[str, Action], *,
                 backoff: jobq.Backoff, poll_interval: float = 0.5,
                 quiet: Callable[[int], Awaitable[None]] | None = None,
                 upstream: Callable[[], int] | None = None) -> None:
        self.store = store
        self.quiet = quiet
        # MOs waiting for fan-out (in the database when fan-out paused on `queued`):
        # counted with the jobs in memory as the backlog the drains weigh against acks.
        self.upstream = upstream
        self.kinds = {kind: _Kind(action) for kind, action in actions.items()}
        self.backoff = backoff
        self.poll_interval = poll_interval
        self.stats: dict[str, int] = {"ok": 0, "retry": 0, "fail": 0, "dead": 0}
        self._stopping = False

    def dispatch(self, jobs: Iterable[Job]) -> None:
        """Run jobs that were written already claimed by this instance."""
        for job in jobs:
            k = self.kinds.get(job.kind)
            if k is not None:  # no such action configured: the lease brings it back
                k.ready.append(job)
                k.wake.set()

    def queued(self) -> int:
        """Jobs held in memory waiting for a slot (all kinds): fan-out pauses on it."""
        return sum(len(k.ready) for k in self.kinds.values())

    def wake(self, kind: str | None = None) -> None:
        for name, k in self.kinds.items():
            if kind is None or kind == name:
                k.wake.set()

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            for name, k in self.kinds.items():
                tg.create_task(self._claim_loop(name, k, tg), name=f"outbox-claim:{name}")
                tg.create_task(self._finish_loop(name, k), name=f"outbox-finish:{name}")
            tg.create_task(self._sweep_loop(), name="outbox-sweep")

    async def _claim_loop(self, name: str, k: _Kind, tg: asyncio.TaskGroup) -> None:
        limit = k.action.concurrency
        # Claim in sizeable batches: each claim is a write transaction.
        low_water = max(1, limit // 4)
        while not self._stopping:
            free = limit - k.inflight
            if free <= 0 or (k.inflight and free < low_water):
                k.slot_free.clear()
                await k.slot_free.wait()
                continue
            k.wake.clear()
            if self.quiet is not None:
                # acks first: wait while the intake is busy, unless far behind
                behind = self.upstream() if self.upstream is not None else 0
                await self.quiet(len(k.ready) + behind)
                free = limit - k.inflight  # jobs may have finished meanwhile
            if k.ready:
                batch = [k.ready.popleft() for _ in range(min(free, len(k.ready)))]
            else:
                try:
                    batch = await self.store.relaxed(jobq.claim, name, free, LEASE,
                                                     time.time())
                except Exception as exc:
                    log.error("outbox.claim_failed", kind=name, error=str(exc))
                    batch = []
            now = time.monotonic()
            start = k.start
            for i, job in enumerate(batch):
                if i and not i % DISPATCH_SLICE:
                    await asyncio.sleep(0)  # let the loop read the sockets (acks first)
                k.inflight += 1
                if start is not None:
                    k.running[job.id] = (now, job, None)
                    start(job, functools.partial(self._done, k, job))
                else:
                    task = tg.create_task(self._run_one(k, job))
                    k.running[job.id] = (now, job, task)
            if len(batch) < free and not k.ready:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(k.wake.wait(), self.poll_interval)

    async def _run_one(self, k: _Kind, job: Job) -> None:
        try:
            res = await k.action.run(job)
        except asyncio.CancelledError:
            if job.id in k.running:
                raise  # shutting down
            return  # timed out: the sweep recorded it
        except Exception as exc:  # an action must not raise; if it does, retry
            res = Result(outcome=Outcome.RETRY, detail=f"internal error: {exc!r}")
        self._done(k, job, res)

    def _done(self, k: _Kind, job: Job, res: Result) -> None:
        if k.running.pop(job.id, None) is None:
            return  # timed out already (the sweep recorded it)
        k.inflight -= 1
        k.unrecorded += 1
        k.slot_free.set()
        k.results.append((job, res))
        k.have_results.set()

    async def _sweep_loop(self) -> None:
        """Record jobs running longer than JOB_TIMEOUT as retryable failures."""
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            limit = time.monotonic() - JOB_TIMEOUT
            for k in self.kinds.values():
                late = [(job, task) for at, job, task in k.running.values() if at < limit]
                for job, task in late:
                    self._done(k, job, _TIMED_OUT)
                    if task is not None:
                        task.cancel()

    async def _finish_loop(self, name: str, k: _Kind) -> None:
        """Group-commits the outcomes of whatever finished since the last commit."""
        while True:
            await k.have_results.wait()
            if len(k.results) < FINISH_BATCH and not self._stopping:
                await asyncio.sleep(FINISH_GATHER)
            k.have_results.clear()
            batch, k.results = k.results, []
            if not batch:
                continue
            if self.quiet is not None:
                await self.quiet(len(batch))
                batch += k.results  # whatever finished meanwhile goes in the same commit
                k.results = []
            now = time.time()
            try:
                # Losing an outcome on a power failure only re-runs the job.
                ended = await self.store.relaxed(jobq.finish, batch, self.backoff, now)
            except Exception as exc:
                # Not recorded: the lease brings these jobs back (at-least-once).
                log.error("outbox.finish_failed", kind=name, error=str(exc), jobs=len(batch))
                ended = []
            k.unrecorded -= len(batch)
            k.slot_free.set()  # also tells stop() that outcomes were recorded
            soonest: float | None = None
            dead = {j.id: status for j, status in ended}
            for job, res in batch:
                self.stats[res.outcome.value] += 1
                if res.outcome is Outcome.OK:
                    continue
                status = dead.get(job.id)
                if status == jobq.DEAD:
                    self.stats["dead"] += 1
                if status == jobq.DEAD:
                    # The last attempt of its budget: nothing retries it but a redrive.
                    log.error("action.dead_lettered", kind=name, job=job.id,
                              target=job.target, attempt=job.attempt, outcome="dead",
                              status=res.status, detail=res.detail,
                              latency_ms=round(res.latency_ms, 1), final=status)
                    continue
                log.warning("action.attempt_failed", kind=name, job=job.id,
                            target=job.target, attempt=job.attempt,
                            outcome=res.outcome.value, status=res.status, detail=res.detail,
                            latency_ms=round(res.latency_ms, 1), final=status)
                if status is None:
                    delay = backoff.delay(job.attempts, self.backoff.base, self.backoff.cap,
                                          jitter=0)
                    soonest = delay if soonest is None else min(soonest, delay)
            if soonest is not None:
                asyncio.get_running_loop().call_later(min(soonest, self.backoff.cap) + 0.01,
                                                      k.wake.set)

    async def stop(self, timeout: float) -> None:
        """Stop claiming; wait up to `timeout` for in-flight jobs to be recorded."""
        self._stopping = True
        for k in self.kinds.values():
            k.wake.set()
            k.slot_free.set()
        async def drained(k: _Kind) -> None:
            while k.inflight or k.unrecorded:
                k.slot_free.clear()
                await k.slot_free.wait()

        waits = [asyncio.ensure_future(drained(k)) for k in self.kinds.values()]
        if waits:
            _done, pending = await asyncio.wait(waits, timeout=timeout)
            for w in pending:
                w.cancel()
            if pending:
                log.warning("outbox.shutdown_cut_off",
                            inflight={n: k.inflight for n, k in self.kinds.items()},
                            unrecorded={n: k.unrecorded for n, k in self.kinds.items()})
        for k in self.kinds.values():
            await k.action.close()
