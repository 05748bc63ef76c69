"""Fan-out: expand each stored, routed MO into its actions, durably, right after the
intake committed it (off the ack path).

An MO is stored with `fanout = 1` and acknowledged; the intake then hands it to this
loop, which takes such MOs in batches and, in one transaction per batch (never the
intake's: the acks do not wait for it): clears the flag, queues the MTs (auto-reply,
forward_sms, expiry/STOP/START/HELP replies, poll invalid_reply), the jobs (webhook,
forward_email, MQTT events), updates opt-in/opt-out state, poll votes and leads. A crash
before the commit leaves the flag set, so the batch is expanded again after a restart
(the loop starts with a scan for flagged MOs). Nothing is expanded twice: the flag is
cleared first, by a statement that returns the MOs whose flag it cleared, and only
those are expanded (an MO handed over by the intake and also found by a scan, or by
another instance on the same PostgreSQL database, is expanded by whichever clears its
flag).

Memory stays bounded under sustained load or a slow downstream: when the workers'
in-memory queues (the jobs fanned out and not started yet) reach HIGH_WATER, fan-out
stops taking MOs; the intake's MOs handed over meanwhile are not kept (they stay
flagged in the database, which is the queue) and, once the in-memory queues are down to
LOW_WATER, the scan takes them from there, oldest first.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import structlog
from sqlalchemy.engine import Connection

from gateway.actions.emitter import Emitter
from gateway.actions.kind import Effects, Step
from gateway.actions.registry import ROUTES, STEPS
from gateway.actions.webhook import target
from gateway.config import Config, NumberConfig
from gateway.events import mo_event
from gateway.model import Job, JobRow, MessageRow
from gateway.routing.router import Decision, Route, Router
from gateway.storage.fanout import claim, flagged
from gateway.storage.jobs import LEASE, insert_jobs, ready_job
from gateway.storage.repo import Store

log = structlog.get_logger("gateway.fanout")

BATCH = 128  # MOs per fan-out transaction: an intake commit waits at most one
# Jobs waiting in memory for a worker slot (all kinds) at which fan-out pauses, and the
# level it resumes at. A batch of BATCH MOs may overshoot HIGH_WATER by its jobs.
HIGH_WATER = 4096
LOW_WATER = 1024
QUEUE_CAP = 8 * BATCH  # MOs handed over by the intake and held in memory, at most
PAUSE_POLL = 0.02  # seconds between looks at the in-memory queues while paused


@dataclass(frozen=True, slots=True)
class Context:
    """What fan-out needs from the configuration; rebuilt on reload."""

    router: Router
    emitter: Emitter
    email_domain: str | None = None
    token_ttl_days: int = 30
    # id(configuration) -> the steps it enables (fan-out's writer thread only; the
    # configurations live as long as `router`, so their ids stay theirs)
    steps: dict[int, tuple[Step, ...]] = field(default_factory=dict, compare=False)

    @property
    def cfg(self) -> Config:
        return self.router.config


@dataclass(slots=True)
class Stats:
    mos: int = 0
    mts: int = 0
    jobs: int = 0
    opt_changes: list[tuple[str, str, str]] = field(default_factory=list)
    ready: list[Job] = field(default_factory=list)  # claimed already: run them now


class Routed(NamedTuple):
    """An MO to expand, with the intake's routing `decision` made by `router` (None: an
    MO found in the database, routed here)."""

    mo: MessageRow
    decision: Decision | None = None
    router: Router | None = None


def expand(conn: Connection, ctx: Context, now: float,
           given: Sequence[Routed] | None = None, limit: int = BATCH) -> Stats:
    """Expand `given` MOs (handed over by the intake right after its commit), or the
    flagged MOs found in the database (after a restart or a failure)."""
    rows: Sequence[Routed] = ([Routed(m) for m in flagged(conn, limit)] if given is None
                              else given)
    stats = Stats()
    if not rows:
        return stats
    taken = claim(conn, [r.mo.id for r in rows])
    if len(taken) != len(rows):
        rows = [r for r in rows if r.mo.id in taken]  # expanded elsewhere already
        if not rows:
            return stats
    # First every MO's own event (so replies' status webhooks can wait for it), then
    # everything else. The MO events are claimed by this instance as they are written
    # and handed straight to the workers (no claim round trip).
    planned = [_plan(ctx, r) for r in rows]
    first: list[JobRow] = []
    lease_until = now + LEASE
    for r, (_d, webhook, ev) in zip(rows, planned, strict=True):
        mo = r.mo
        for row in ctx.emitter.event(ev, "mo", mo.vmn, message_id=mo.id, now=now,
                                     webhook=webhook):
            row, job = ready_job(row, lease_until)
            stats.ready.append(job)
            first.append(row)
    insert_jobs(conn, first)
    job_rows: list[JobRow] = []
    for r, (d, webhook, ev) in zip(rows, planned, strict=True):
        _expand_one(conn, ctx, r.mo, d, webhook, ev, now, job_rows, stats)
    insert_jobs(conn, job_rows)
    stats.jobs += len(first)
    stats.mos = len(rows)
    stats.jobs += len(job_rows)
    return stats


def mo_rows(
    committed: Iterable[tuple[MessageRow, Decision | None, Router | None]],
) -> list[Routed]:
    """The MOs the intake committed that need fan-out (`pipeline.Batch.handoff`: the
    row, the intake's decision and its router), as `expand` takes them."""
    return [Routed(m, d, router) for m, d, router in committed]


def _plan(ctx: Context, r: Routed) -> tuple[Decision, str | None, dict[str, Any]]:
    """(routing decision, webhook target of the MO event, the MO event)."""
    mo = r.mo
    d = r.decision
    if d is None or r.router is not ctx.router:
        # Routing is a pure function of the text, the destination and the time of
        # receipt: the intake's decision, unless the configuration was reloaded since
        # (then the running one decides, as for an MO found in the database).
        d = ctx.router.route(mo.recipient, mo.text, mo.created_at)
    # STOP/START/HELP: the MO event goes to MQTT only; `[optout] callback_profile`
    # hears the `opt` event of the change (see actions/opt.py).
    webhook = target(d.action) if d.route in (Route.KEYWORD, Route.DEFAULT) else None
    return d, webhook, mo_event(mo)


def _expand_one(conn: Connection, ctx: Context, mo: MessageRow, d: Decision,
                webhook: str | None, ev: Mapping[str, Any], now: float,
                job_rows: list[JobRow], stats: Stats) -> None:
    """The steps of the MO's action kinds (gateway/actions/registry.py): the kind that
    answers its route alone (STOP/START/HELP, an expired keyword), or every kind its
    configuration enables, in the registry's order."""
    number = d.number
    if number is None:
        return  # unrouted (accepted): the event is all
    action = d.action
    alone = ROUTES.get(d.route)
    if alone is None:
        assert action is not None
        steps = ctx.steps.get(id(action))
        if steps is None:  # the steps its configuration enables, worked out once
            steps = ctx.steps[id(action)] = tuple(s for on, s in STEPS if on(action))
        if not steps:
            return  # events only (webhook, MQTT: the MO's event, written already)
        fx = _effects(conn, ctx, mo, d, number, webhook, ev, now, job_rows, stats)
        for step in steps:
            step(fx, action)
    else:
        fx = _effects(conn, ctx, mo, d, number, webhook, ev, now, job_rows, stats)
        alone(fx, action)
    stats.mts += fx.mts


def _effects(conn: Connection, ctx: Context, mo: MessageRow, d: Decision,
             number: NumberConfig, webhook: str | None, ev: Mapping[str, Any], now: float,
             job_rows: list[JobRow], stats: Stats) -> Effects:
    values = {"from": mo.sender, "vmn": number.vmn, "keyword": d.keyword or "",
              "text": mo.text, "args": d.args}
    return Effects(conn, ctx, mo, d, number, values, webhook, ev, now, job_rows,
                   stats.opt_changes)


class Fanout:
    """Runs `expand` on the MOs the intake just committed, and on flagged MOs found in
    the database at start-up, after a failure, or when it had to leave them there (its
    own queue full, or the workers' in-memory queues above `high_water`: `backlog`)."""

    def __init__(self, store: Store, context: Callable[[], Context],
                 on_expanded: Callable[[Stats], None],
                 quiet: Callable[[int], Awaitable[None]] | None = None,
                 backlog: Callable[[], int] | None = None, *,
                 high_water: int = HIGH_WATER, low_water: int = LOW_WATER,
                 queue_cap: int = QUEUE_CAP) -> None:
        if not 0 <= low_water < high_water:
            raise ValueError("need 0 <= low_water < high_water")
        self.store = store
        self.context = context
        self.on_expanded = on_expanded
        self.quiet = quiet
        self.backlog = backlog
        self.high_water = high_water
        self.low_water = low_water
        self.queue_cap = queue_cap
        self.paused = False
        self.pauses = 0  # times fan-out paused on the workers' queues (for tests, logs)
        self._queue: list[Routed] = []
        self._scan = True  # MOs left flagged from before a restart
        self._left = 0  # MOs left flagged by `submit` since the last scan began
        self._deferred = 0  # about how many are waiting in the database: the drain's backlog
        self._wake = asyncio.Event()
        self._wake.set()

    def waiting(self) -> int:
        """About how many MOs wait for their fan-out (in memory or flagged in the DB)."""
        return len(self._queue) + self._deferred

    def submit(self, rows: list[Routed]) -> None:
        if not rows:
            return
        if self._scan or self.paused or len(self._queue) + len(rows) > self.queue_cap:
            # Committed with their flag set: the scan finds them (nothing kept here).
            self._scan = True
            self._left += len(rows)
            self._deferred += len(rows)
        else:
            self._queue.extend(rows)
        self._wake.set()

    async def _room(self) -> None:
        """Wait while the workers' in-memory queues are above the high-water mark,
        until they are down to the low-water mark."""
        if self.backlog is None or self.backlog() < self.high_water:
            return
        self.paused = True
        self.pauses += 1
        log.info("fanout.paused", queued=self.backlog(), high_water=self.high_water)
        try:
            while self.backlog() > self.low_water:
                await asyncio.sleep(PAUSE_POLL)
        finally:
            self.paused = False
        log.info("fanout.resumed", queued=self.backlog())

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue or self._scan:
                await self._room()
                if self.quiet is not None:
                    # acks first: wait while the intake is busy, unless far behind
                    await self.quiet(self.waiting())
                given = None
                if self._queue:
                    given, self._queue = self._queue[:BATCH], self._queue[BATCH:]
                else:
                    self._left = 0  # what `submit` leaves from now on needs another scan
                try:
                    # Atomic with clearing the flags: if a power failure loses it, the
                    # MOs are simply expanded again, so no need to wait for the disk.
                    stats = await self.store.relaxed(expand, self.context(), time.time(),
                                                     given)
                except Exception as exc:
                    log.error("fanout.failed", error=str(exc))
                    self._scan = True  # those rows stay flagged: found again
                    await asyncio.sleep(1.0)
                    continue
                if given is None:
                    self._deferred = max(0, self._deferred - stats.mos)
                    if stats.mos < BATCH and not self._left:
                        self._scan = False
                        self._deferred = 0
                if stats.mos:
                    self.on_expanded(stats)
