"""MO intake: classify -> reassemble -> persist (group commit) -> acknowledge.

`on_mo` runs in the session's `data_received` and only appends to the open batch.
The writer loop commits whatever accumulated while the previous commit ran (natural
group commit: no timer), then writes every deliver_sm_resp of the batch. A commit that
fails because the database is out of reach answers the whole batch with ESME_RX_T_APPN
so the SMSC redelivers it, and undoes what the batch did to the in-memory state
(reassembly groups). Any other failure is taken for a row the database refuses: the
batch is committed again in halves (`_isolate`) until the PDUs whose rows are refused
are found; the rest is stored and acknowledged, only those are answered ESME_RX_T_APPN
(transient: once the cause is fixed their redelivery is stored; a permanent error would
make the SMSC drop a person's message) and logged (`intake.row_refused`).

The same text twice is two messages. Only a redelivery is folded (acknowledged, counted
as a duplicate, not stored): the first PDU with the dedup key of an MO whose answer may
not have reached the SMSC (see gateway/redelivery.py): unanswered or in flight when its
connection dropped (`on_link_lost`), or answered later than the bind's response timeout
(`_ack`). A redelivery that arrives while its original is still being committed is
answered with the original's fate, never acknowledged ahead of it.

After a crash (no graceful stop recorded) the MOs received within the longest response
timeout before the last one stored are suspect: their answers may have been unwritten
or in flight. A graceful stop records the suspects left (normally none: the SMSC
answered the unbind after reading every answer), so the next start folds exactly those.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import pairwise

import structlog

from gateway.config import Unrouted
from gateway.log import describe_error
from gateway.metrics import Histogram
from gateway.mo import (
    ConcatKey,
    Receipt,
    dedup_key,
    is_receipt,
    key_of_stored_part,
    parse_receipt,
    split_part,
)
from gateway.model import MessageRow, MoStatus, PartRow, ReceiptRow, new_id
from gateway.msisdn import canonical_or_raw
from gateway.reassembly import Group, Reassembler
from gateway.redelivery import Fate, Suspects
from gateway.routing.router import Decision, Route, Router
from gateway.smpp.pdu import CommandStatus, DataSm, DeliverSm
from gateway.smpp.session import Link
from gateway.smpp.text import decode_text, join_parts
from gateway.storage import intake_state
from gateway.storage.db import connection_lost
from gateway.storage.repo import Store

log = structlog.get_logger("gateway.intake")

_UNROUTED = Decision(route=Route.UNROUTED, vmn=None)
_UNROUTED_ROUTE = Route.UNROUTED.value
_UNROUTED_LABEL = "unrouted"  # the vmn label of every MO to a number not configured
# The intake counts as under a burst (see `quiet`) when one batch holds BUSY_BATCH PDUs
# (MOs arrive much faster than one per commit time: at 1,000/s a batch holds one or two;
# an SMSC sending as fast as its window lets it fills one with a whole window), or when
# it acknowledged more than BUSY_RATE PDUs a second over the last BUSY_SPAN. A batch that
# waited behind another write (a drain's step on the single SQLite writer) does not count
# for its size: at a steady 4,500 MO/s a step of 6 ms made the next batch 30-45 PDUs, so
# each drain step made the drains wait again, and fan-out fell to one step a second
# (90k MOs flagged after 30 s) though the intake had room to spare. Over BUSY_SPAN, such
# a catch-up batch moves the rate by a few percent only.
BUSY_BATCH = 32
BUSY_RATE = 10_000.0
BUSY_SPAN = 0.1
BUSY_HOLD = 0.05
# During a burst each drain (fan-out, each kind's claims and outcomes) takes one step per
# QUIET_MAX_WAIT: a step is up to 128 MOs' fan-out or a claim of jobs, ~0.5 ms of CPU per
# MO. When the intake is CPU-bound (durability = "crash", no fsync to wait for) a step
# every 0.25 s took a quarter of the CPU from the acks (40k burst, webhook + MQTT: 0.51
# of the no-action ack rate); one a second leaves them 0.83 (docs/PERFORMANCE.md).
QUIET_MAX_WAIT = 1.0
# A drain (fan-out, job dispatch) with this much waiting no longer yields to the acks:
# under a flood that does not end the backlog stays bounded (its age: this many MOs at the
# actions' own rate) instead of growing while acks go first. Below it a burst is acked at
# the intake's own rate and its actions follow (they are durable: nothing waits in
# memory beyond the fan-out's and outbox's high-water marks). At 10,000 a 40k burst
# was acked at 0.26-0.37 of the no-action rate (the drains took the GIL back after the
# first 10k); above the burst, 0.96 (docs/PERFORMANCE.md, "Acks first").
DRAIN_BACKLOG = 100_000
_ALWAYS_FAN_OUT = frozenset({Route.OPTOUT, Route.OPTIN, Route.HELP})
# Transactions `_isolate` may spend on one failed batch: one refused row among 1,000
# PDUs takes about 20. Beyond it (many rows refused, or all of them for a cause that is
# not theirs) what is left is answered ESME_RX_T_APPN and sorted out on redelivery.
ISOLATE_MAX_TRIES = 64
_NO_ROWS = (0, 0, 0, 0, 0, 0, 0)
# MessageRow(...) on the ack path without the NamedTuple's Python-level __new__ (the
# same tuple, all 18 fields in order): on_mo took 2.3 us more per MO with it.
_new_row = tuple.__new__
# An enum's `.value` is a Python property (~0.2 us): read once; `str()` of a StrEnum
# member is its value, from C.
_RECEIVED = MoStatus.RECEIVED.value
# How the intake routed an MO, kept beside its row (`Batch.routed`) and handed to the
# fan-out with it: (the row as routed, the decision, the router that made it).
Routing = tuple[MessageRow, Decision, Router | None]


@dataclass(slots=True)
class Batch:
    messages: list[MessageRow] = field(default_factory=list)
    # parallel to `messages`: how each was routed (see `handoff`)
    routed: list[Routing] = field(default_factory=list)
    parts: list[PartRow] = field(default_factory=list)
    # (message_id, concat_key) of groups that completed or timed out in this batch
    closed_groups: list[tuple[str, str]] = field(default_factory=list)
    receipts: list[tuple[ReceiptRow, Receipt]] = field(default_factory=list)
    # (link, command_id, sequence_number, fate of the original for a duplicate,
    #  time received, dedup key), in arrival order
    acks: list[tuple[Link, int, int, Fate | None, float, str | None]] = field(
        default_factory=list)
    duplicates: int = 0
    # what to undo in memory if the commit fails
    part_adds: list[tuple[ConcatKey, int]] = field(default_factory=list)
    closed: list[Group] = field(default_factory=list)
    fate: Fate = field(default_factory=Fate)
    # Where each unit starts in (acks, messages, parts, closed_groups, receipts,
    # part_adds, closed): a unit is one PDU answered with the rows it produced (the
    # message of a group it completed included), or one group closed without a PDU
    # (timeout, cap, restart). Read only when the batch's commit fails (`_isolate`).
    starts: list[tuple[int, int, int, int, int, int, int]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.acks)

    def mark(self) -> None:
        """Start a unit: called before its ack or rows are appended."""
        self.starts.append((len(self.acks), len(self.messages), len(self.parts),
                            len(self.closed_groups), len(self.receipts),
                            len(self.part_adds), len(self.closed)))

    def units(self) -> list[Batch]:
        """The units, in arrival order, each as a batch of its own."""
        ends = (len(self.acks), len(self.messages), len(self.parts), len(self.closed_groups),
                len(self.receipts), len(self.part_adds), len(self.closed))
        bounds = [_NO_ROWS, *self.starts, ends]
        out = []
        for a, b in pairwise(bounds):
            if a == b:
                continue
            out.append(Batch(
                messages=self.messages[a[1]:b[1]], routed=self.routed[a[1]:b[1]],
                parts=self.parts[a[2]:b[2]],
                closed_groups=self.closed_groups[a[3]:b[3]],
                receipts=self.receipts[a[4]:b[4]], acks=self.acks[a[0]:b[0]],
                part_adds=self.part_adds[a[5]:b[5]], closed=self.closed[a[6]:b[6]]))
        return out

    @classmethod
    def join(cls, units: list[Batch], fate: Fate) -> Batch:
        out = cls(fate=fate)
        for u in units:
            out.messages += u.messages
            out.routed += u.routed
            out.parts += u.parts
            out.closed_groups += u.closed_groups
            out.receipts += u.receipts
            out.acks += u.acks
            out.part_adds += u.part_adds
            out.closed += u.closed
        out.duplicates = sum(1 for a in out.acks if a[3] is not None)
        return out

    @property
    def has_rows(self) -> bool:
        return bool(self.messages or self.parts or self.receipts or self.closed_groups)

    def handoff(self) -> list[tuple[MessageRow, Decision | None, Router | None]]:
        """The committed MOs that need fan-out, as stored, with the intake's routing
        decision (None where the row stored is not the one routed: a value was put in
        its storable form, see `Store.write_intake`; the fan-out routes it again)."""
        return [(m, d if m is routed else None, router)
                for m, (routed, d, router) in zip(self.messages, self.routed, strict=True)
                if m.fanout]


class Intake:
    """The MoHandler of every session: durable intake with group commit."""

    def __init__(
        self,
        store: Store,
        *,
        dedup_window: float,
        reassembly_timeout: float,
        response_timeout: float = 10.0,
        instance: str = "vmn-gateway",
        reassembly_max_groups: int = 0,
        reassembly_max_bytes: int = 0,
        max_commits: int = 1,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.dedup_window = dedup_window
        self.reassembly_timeout = reassembly_timeout
        # the longest response timeout of the binds: what is suspect after a crash
        self.response_timeout = response_timeout
        self.instance = instance
        self.clock = clock
        self._caps = {"max_groups": reassembly_max_groups, "max_bytes": reassembly_max_bytes}
        self.reassembler = Reassembler(**self._caps)
        self.suspects = Suspects(dedup_window)
        self._batch = Batch()
        # Batches being committed, oldest first; `_alone`: one that runs by itself.
        self._committing: list[Batch] = []
        self._alone = False
        self.max_commits = max_commits
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        # Until when the intake counts as under a burst: background writers wait for it
        # (briefly) so that a burst of MOs is acknowledged first and drained afterwards.
        self._busy_until = 0.0
        # (time, acks) of the batches started over the last BUSY_SPAN, and their sum
        self._recent: deque[tuple[float, int]] = deque()
        self._recent_acks = 0
        self._other_writes = 0  # store.other_writes at the last batch's start
        # Called after each commit, once its acks are written: the fan-out takes the
        # MOs from there, in a transaction of its own (never in the acks' one).
        self.on_committed: list[Callable[[Batch], None]] = []
        self.router: Router | None = None
        self.reject_unrouted = False
        self.country_code = "1"  # [gateway] country_code, from set_router
        self._active: frozenset[int] = frozenset()
        self.events_enabled = False
        self.stats = {"mo": 0, "parts": 0, "receipts": 0, "duplicates": 0, "commits": 0,
                      "failed_commits": 0}
        # Read by the admin listener at scrape time; updated once per batch.
        self.mo_by_route: dict[tuple[str, str], int] = {}  # (vmn, route) -> MOs stored
        self.ack_latency = Histogram()  # deliver_sm received -> its resp written
        self.commit_latency = Histogram()  # one intake transaction

    # -- start-up ---------------------------------------------------------------------
    async def load_state(self) -> None:
        """Reload open reassembly groups and the suspect keys (see the module doc), and
        record that this instance runs (a stop not recorded is a crash)."""
        now = self.clock()
        reassembler = self.reassembler = Reassembler(**self._caps)
        for p in await self.store.open_parts():
            ckey = key_of_stored_part(p.smsc, p.concat_key, p.raw_pdu, p.total)
            group, _ = reassembler.add(ckey, p.total, p.seq, p.body, p.data_coding,
                                       p.received_at)
            group = group or reassembler.groups[ckey]
            if p.concat_key != ckey.stored():
                group.aliases.add(p.concat_key)
            if group.complete:  # its last part was stored, the message not (a crash)
                self._close_group(self._batch, group, MoStatus.RECEIVED, None, now,
                                  alone=True)
        self._evict(now)
        if self._batch.messages:
            self._wake.set()
        self.suspects.clear()
        graceful, rows = await self.store.transaction(
            intake_state.start, self.instance, since=now - self.dedup_window,
            crash_horizon=self.response_timeout)
        if self.dedup_window > 0:
            for key, since in rows:
                self.suspects.add(key, since)
        log.info("intake.suspects_loaded", after="stop" if graceful else "crash",
                 suspects=len(self.suspects))

    async def save_state(self) -> None:
        """Record a graceful stop with the suspects left: call it once everything
        received was committed and answered (or reported lost with its link)."""
        now = self.clock()
        left = self.suspects.live(now)
        await self.store.transaction(intake_state.stop, self.instance, now, left)
        log.info("intake.suspects_saved", suspects=len(left))

    # -- routing ----------------------------------------------------------------------
    def set_router(self, router: Router, *, events: bool) -> None:
        """Swap the routing table (start-up and SIGHUP): one assignment, atomic for the
        event loop. `events`: every MO has at least its MQTT event to fan out."""
        active = set()
        for number in router.config.numbers:
            for a in (number.default, *number.keywords):
                if a.action_names() or a.expiry_reply:
                    active.add(id(a))
        self._active = frozenset(active)
        self.events_enabled = events
        self.reject_unrouted = router.config.gateway.unrouted is Unrouted.REJECT
        self.country_code = router.config.gateway.country_code
        self.router = router

    def route(self, destination: str, text: str, at: float) -> Decision:
        router = self.router
        if router is None:
            return _UNROUTED
        return router.route(destination, text, at)

    def _fanout_flag(self, d: Decision) -> int:
        """1 when the MO has something to do after it is stored."""
        if self.events_enabled or d.route in _ALWAYS_FAN_OUT:
            return 1
        return 1 if d.action is not None and id(d.action) in self._active else 0

    # -- hot path ---------------------------------------------------------------------
    def on_mo(self, link: Link, pdu: DeliverSm | DataSm, raw: bytes) -> None:
        batch = self._batch
        now = self.clock()
        smsc = link.name
        if is_receipt(pdu):
            batch.mark()
            batch.acks.append((link, pdu.command_id, pdu.sequence_number, None, now, None))
            receipt = parse_receipt(pdu)
            if receipt is not None:
                batch.receipts.append(
                    (ReceiptRow(smsc, receipt.smsc_message_id, receipt.state, receipt.error,
                                raw, now), receipt)
                )
            else:
                log.warning("intake.unparsable_receipt", smsc=smsc, raw=raw.hex())
            self._wake.set()
            return
        # A whole MO is routed here, once: the decision is stored, and handed to the
        # fan-out with the row. A part is routed when its group closes.
        part, body = split_part(pdu, smsc)
        dc = pdu.data_coding
        router = self.router
        if part is None:
            text = decode_text(body, dc)
            d = self.route(pdu.destination_addr, text, now)
            reject = d.reject
        else:
            reject = (self.reject_unrouted
                      and self.route(pdu.destination_addr, "", now).reject)
        if reject:
            # Refused, not stored: answered now (no durability to wait for).
            link.write(link.conn.ack(pdu.command_id, pdu.sequence_number,
                                     CommandStatus.ESME_RINVDSTADR))
            log.info("intake.unrouted_rejected", smsc=smsc, destination=pdu.destination_addr)
            return
        key: str | None = None
        if self.dedup_window > 0:
            key = dedup_key(smsc, pdu)
            if self.suspects.keys:
                redelivery, origin = self.suspects.take(key, now)
                if redelivery:
                    # Answered with the original's fate (see `_ack`): None = committed.
                    batch.mark()
                    batch.acks.append((link, pdu.command_id, pdu.sequence_number, origin,
                                       now, key))
                    batch.duplicates += 1
                    self._wake.set()
                    return
        batch.mark()
        batch.acks.append((link, pdu.command_id, pdu.sequence_number, None, now, key))
        # One spelling per person (opt-out state is keyed by it); lru_cached.
        source = canonical_or_raw(pdu.source_addr, self.country_code, ton=pdu.source_addr_ton)
        if part is None:
            row = _new_row(MessageRow, (
                new_id(), "mo", smsc, d.vmn or pdu.destination_addr, source,
                source, pdu.destination_addr, text, dc, 1,
                _RECEIVED, now, now, raw, key, d.keyword, str(d.route),
                self._fanout_flag(d),
            ))
            batch.messages.append(row)
            batch.routed.append((row, d, router))
        else:
            ckey = part.concat_key
            batch.parts.append(
                PartRow(smsc, ckey.stored(), part.seq, part.total, dc, part.body, raw, now,
                        key)
            )
            group, new = self.reassembler.add(ckey, part.total, part.seq, part.body, dc, now)
            if new:
                batch.part_adds.append((ckey, part.seq))
            if group is not None:
                self._close_group(batch, group, MoStatus.RECEIVED, raw, now, source=source)
            elif new:
                self._evict(now)
        self._wake.set()

    def _evict(self, now: float) -> None:
        """Deliver the oldest open groups as incomplete MOs while the reassembly memory
        is over its caps (`reassembly_max_groups`, `reassembly_max_bytes`)."""
        for g in self.reassembler.over_cap():
            self._close_group(self._batch, g, MoStatus.INCOMPLETE, None, now, reason="cap",
                              alone=True)

    def _close_group(self, batch: Batch, group: Group, status: MoStatus, raw: bytes | None,
                     now: float, *, reason: str = "timeout", source: str | None = None,
                     alone: bool = False) -> None:
        """`source`: the sender's canonical number when the closing PDU gave it (with its
        type of number); else it is read from the group's key, without one. `alone`:
        closed without a PDU (timeout, cap, restart), a unit of its own."""
        if alone:
            batch.mark()
        smsc, dest = group.key.smsc, group.key.destination
        if source is None:
            source = canonical_or_raw(group.key.source, self.country_code)
        text = join_parts(group.bodies(), group.data_coding)
        if status is MoStatus.INCOMPLETE:
            log.warning("intake.incomplete_mo", smsc=smsc, source=source, destination=dest,
                        received=sorted(group.parts), missing=group.missing(),
                        total=group.total, reason=reason)
        msg_id = new_id()
        router = self.router
        d = self.route(dest, text, group.first_at)
        row = MessageRow(
            msg_id, "mo", smsc, d.vmn or dest, source, source, dest, text, group.data_coding,
            group.total, status.value, group.first_at, now, None, None, d.keyword,
            d.route.value, self._fanout_flag(d),
        )
        batch.messages.append(row)
        batch.routed.append((row, d, router))
        batch.closed_groups.append((msg_id, group.key.stored()))
        batch.closed_groups.extend((msg_id, alias) for alias in group.aliases)
        batch.closed.append(group)

    def expire_groups(self) -> int:
        """Deliver the parts of groups past `reassembly_timeout` as incomplete MOs."""
        now = self.clock()
        groups = self.reassembler.expired(now, self.reassembly_timeout)
        for g in groups:
            self._close_group(self._batch, g, MoStatus.INCOMPLETE, None, now, alone=True)
        if groups:
            self._wake.set()
        return len(groups)

    # -- writer -----------------------------------------------------------------------
    async def run(self) -> None:
        """The writer: commit, ack, repeat while work accumulated meanwhile.

        Up to `max_commits` batches commit at once (PostgreSQL: one WAL flush then covers
        several commits; SQLite has one writer thread, so 1). A batch that must come
        after the others runs alone (`_ordered`): then nothing else is in flight."""
        in_flight: set[asyncio.Task[None]] = set()
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while True:
                    for task in [t for t in in_flight if t.done()]:
                        in_flight.discard(task)
                        task.result()  # a bug in a commit stops the writer, as before
                    batch = self._batch
                    if not batch.acks and not batch.messages:
                        break
                    alone = self.max_commits == 1 or _ordered(batch)
                    if not in_flight or (not alone and not self._alone
                                         and len(in_flight) < self.max_commits):
                        self._start(batch, alone)
                        if self.max_commits == 1:
                            await self._commit_one(batch)
                            break
                        task = asyncio.create_task(self._commit_one(batch))
                        task.add_done_callback(lambda _t: self._wake.set())
                        in_flight.add(task)
                        continue
                    await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in in_flight:
                task.cancel()

    def _start(self, batch: Batch, alone: bool) -> None:
        writes = self.store.other_writes
        self._note_rate(len(batch.acks), waited=writes != self._other_writes)
        self._other_writes = writes
        self._idle.clear()
        self._batch = Batch()
        self._committing.append(batch)
        self._alone = alone

    async def _commit_one(self, batch: Batch) -> None:
        try:
            await self._commit(batch)
        finally:
            # by identity: batches compare by content
            self._committing = [b for b in self._committing if b is not batch]
            if not self._committing:
                self._alone = False
                if not self._batch.acks and not self._batch.messages:
                    self._idle.set()

    def _note_rate(self, acks: int, *, waited: bool = False) -> None:
        """Mark a burst (see BUSY_BATCH, BUSY_RATE): the SMSC sends a window, waits for
        the acks, sends again, so the intake looks idle between windows; a burst lasts
        BUSY_HOLD past the last sign of one. `waited`: another write ran since the last
        batch started, so this one may be large for that reason alone."""
        now = time.monotonic()
        if acks >= BUSY_BATCH and not waited:
            self._busy_until = now + BUSY_HOLD
        recent = self._recent
        recent.append((now, acks))
        self._recent_acks += acks
        since = now - BUSY_SPAN
        while recent[0][0] < since:
            self._recent_acks -= recent.popleft()[1]
        if self._recent_acks >= BUSY_RATE * BUSY_SPAN:
            self._busy_until = now + BUSY_HOLD

    async def _commit(self, batch: Batch) -> None:
        started = time.perf_counter()
        try:
            await self.store.write_intake(
                batch.messages, batch.parts, batch.closed_groups,
                [row for row, _ in batch.receipts], [r for _, r in batch.receipts],
            )
        except Exception as exc:  # the DB failed: let the SMSC redeliver
            self.stats["failed_commits"] += 1
            log.error("intake.commit_failed", error=describe_error(exc), pdus=len(batch.acks))
            if connection_lost(exc) or len(batch.starts) < 2:
                self._refuse(batch)
                return
            # A row the database refuses: store and acknowledge the others.
            batch, refused = await self._isolate(batch, exc)
            self._refuse(refused)
            if not batch.acks and not batch.has_rows:
                return
        batch.fate.ok = True
        stats = self.stats
        stats["commits"] += 1
        stats["mo"] += len(batch.messages)
        stats["parts"] += len(batch.parts)
        stats["receipts"] += len(batch.receipts)
        stats["duplicates"] += batch.duplicates
        self.commit_latency.observe(time.perf_counter() - started)
        by_route = self.mo_by_route
        for m in batch.messages:
            # An unrouted MO's "vmn" is whatever destination the SMSC sent: one
            # label value for them all, or each new number is a new series.
            route = m.route
            vr = (_UNROUTED_LABEL if route == _UNROUTED_ROUTE else m.vmn, route)
            by_route[vr] = by_route.get(vr, 0) + 1
        self._ack(batch, CommandStatus.ESME_ROK)
        self.ack_latency.observe_since(batch.acks, 4, self.clock())
        for hook in self.on_committed:
            hook(batch)
        if batch.receipts:
            self.store.on_jobs()

    def _refuse(self, batch: Batch) -> None:
        """Answer a batch that is not stored ESME_RX_T_APPN (the SMSC redelivers it)."""
        batch.fate.ok = False
        self._undo(batch)
        self._ack(batch, CommandStatus.ESME_RX_T_APPN)
        self.ack_latency.observe_since(batch.acks, 4, self.clock())

    async def _isolate(self, batch: Batch, error: BaseException) -> tuple[Batch, Batch]:
        """Commit what of `batch` the database takes: (what was stored, with the batch's
        fate; what was not, with a fate of its own). Its units are committed in halves,
        and the halves of a half that fails, down to the pieces refused alone. A piece
        is a unit with the units holding parts of a group it closes: the message of a
        group is stored with its parts (those of earlier batches are stored already)."""
        units = batch.units()
        pieces = _pieces(units)
        stored = [i for piece in pieces if not _has_rows(units, piece) for i in piece]
        # (pieces, why they failed if known, why their parent failed if a right half)
        todo: list[tuple[list[list[int]], BaseException | None, BaseException | None]] = [
            ([p for p in pieces if _has_rows(units, p)], error, None)]
        refused: list[tuple[list[int], BaseException]] = []
        unresolved: list[int] = []
        tries = 0
        while todo:
            run, failure, parent = todo.pop()
            if not run:
                continue
            if failure is None:
                if tries >= ISOLATE_MAX_TRIES:
                    unresolved += (i for piece in run for i in piece)
                    continue
                tries += 1
                run_units = Batch.join([units[i] for i in sorted(
                    i for piece in run for i in piece)], batch.fate)
                try:
                    await self.store.write_intake(
                        run_units.messages, run_units.parts, run_units.closed_groups,
                        [row for row, _ in run_units.receipts],
                        [r for _, r in run_units.receipts])
                except Exception as exc:
                    if connection_lost(exc):  # not the rows' fault: stop here
                        log.error("intake.commit_failed", error=describe_error(exc),
                                  pdus=len(run_units.acks))
                        unresolved += (i for r, _, _ in todo for piece in r for i in piece)
                        unresolved += (i for piece in run for i in piece)
                        break
                    failure = exc
                else:
                    stored += (i for piece in run for i in piece)
                    if parent is None and todo and todo[-1][2] is not None:
                        # a left half stored: the failure is in its right half
                        right, _, known = todo.pop()
                        todo.append((right, known, None))
                    continue
            if len(run) == 1:
                refused.append((run[0], failure))
            elif tries >= ISOLATE_MAX_TRIES:
                unresolved += (i for piece in run for i in piece)
            else:
                half = len(run) // 2
                todo.append((run[half:], None, failure))
                todo.append((run[:half], None, None))  # popped first: arrival order kept
        for piece, cause in refused:
            why = describe_error(cause)
            for i in piece:
                u = units[i]
                if u.acks:
                    for link, _cid, seq, _origin, _at, _key in u.acks:
                        log.error("intake.row_refused", smsc=link.name, sequence_number=seq,
                                  error=why)
                else:  # a group closed without a PDU (timeout, cap)
                    log.error("intake.row_refused", smsc=u.messages[0].smsc,
                              sequence_number=None, error=why)
        kept = set(stored)
        ok = Batch.join([u for i, u in enumerate(units) if i in kept], batch.fate)
        failed = Batch.join([u for i, u in enumerate(units) if i not in kept], Fate(False))
        log.warning("intake.isolated", pdus=len(batch.acks), stored=len(ok.acks),
                    refused=sum(len(units[i].acks) for p, _ in refused for i in p),
                    unresolved=sum(len(units[i].acks) for i in unresolved),
                    transactions=tries)
        self._forget_fate(failed, batch.fate)
        return ok, failed

    def _forget_fate(self, failed: Batch, fate: Fate) -> None:
        """The MOs of `failed` shared `fate` (which is about to say stored) with the rest
        of their batch: a suspect key of theirs, or a redelivery of theirs already folded
        in the open batch, gets the failed fate, so that it is taken afresh or answered
        with the error (see `Suspects.take`, `_ack`)."""
        keys = {a[5] for a in failed.acks if a[5] is not None}
        if not keys:
            return
        suspects = self.suspects.keys
        for key in keys:
            entry = suspects.get(key)
            if entry is not None and entry[1] is fate:
                suspects[key] = (entry[0], failed.fate)
        acks = self._batch.acks
        for n, (link, cid, seq, origin, at, mo_key) in enumerate(acks):
            if origin is fate and mo_key in keys:
                acks[n] = (link, cid, seq, failed.fate, at, mo_key)

    def _undo(self, batch: Batch) -> None:
        """Forget what a failed batch did in memory, so its redelivery is taken afresh.
        (A suspect key whose original was in it is ignored: see `Suspects.take`.)"""
        reassembler = self.reassembler
        for group in batch.closed:
            reassembler.restore(group)
        for ckey, seq in batch.part_adds:
            reassembler.forget_part(ckey, seq)

    def _ack(self, batch: Batch, status: int) -> None:
        # per link: its answers (made by its connection, `conn.ack`), the keys answered
        # ESME_ROK, and the connection's `ack`; one write per link
        by_link: dict[Link, tuple[list[bytes], list[str], Callable[[int, int, int], bytes]]] = {}
        failed = CommandStatus.ESME_RX_T_APPN
        ok = CommandStatus.ESME_ROK
        for link, cid, seq, origin, _at, key in batch.acks:
            out = by_link.get(link)
            if out is None:
                out = by_link[link] = ([], [], link.conn.ack)
            st = status if origin is None or origin.ok else failed
            out[0].append(out[2](cid, seq, st))
            if key is not None and st == ok:
                out[1].append(key)
        if status == ok and by_link and self.dedup_window > 0:
            self._late(batch, min(link.response_timeout for link in by_link))
        for link, (chunks, keys, _) in by_link.items():
            link.write_responses(b"".join(chunks), keys)

    def _late(self, batch: Batch, shortest: float) -> None:
        """MOs answered ESME_ROK later than their bind's response timeout: the SMSC may
        have given up on the answer and will send them again."""
        now = self.clock()
        acks = batch.acks
        if now - acks[0][4] <= shortest:
            return  # in arrival order: the oldest is not late, so none is
        late = 0
        for link, _cid, _seq, origin, at, key in acks:
            if key is not None and now - at > link.response_timeout and (
                    origin is None or origin.ok):
                self.suspects.add(key, now)
                late += 1
        if late:
            log.warning("intake.late_answer", pdus=late, waited=round(now - acks[0][4], 3))

    def on_link_lost(self, link: Link, in_flight: list[str]) -> None:
        """`link` dropped: the MOs it took whose answers were in flight, or are not
        written yet (in the batch being committed or the open one), may be redelivered."""
        now = self.clock()
        suspects = self.suspects
        for key in in_flight:
            suspects.add(key, now)
        unanswered = 0
        for batch in (*self._committing, self._batch):
            for ack_link, _cid, _seq, origin, _at, mo_key in batch.acks:
                if ack_link is link and mo_key is not None:
                    suspects.add(mo_key, now, batch.fate if origin is None else origin)
                    unanswered += 1
        if in_flight or unanswered:
            log.info("intake.redelivery_expected", smsc=link.name, in_flight=len(in_flight),
                     unanswered=unanswered)

    def busy(self) -> bool:
        """Whether the intake has work in hand: a batch committing, PDUs waiting for the
        next commit, or a burst seen in the last BUSY_HOLD. The API's gate (gateway/api/
        gate.py) holds API requests while it is true (briefly: at most its max_wait)."""
        return (bool(self._committing) or bool(self._batch.acks)
                or time.monotonic() < self._busy_until)

    async def quiet(self, backlog: int = 0) -> None:
        """Return when the intake is not under a burst, or after QUIET_MAX_WAIT, or at
        once when the caller has `backlog` >= DRAIN_BACKLOG items waiting: the drains
        yield to the acks, but are never starved, and their backlog stays bounded."""
        if backlog >= DRAIN_BACKLOG:
            return
        start = time.monotonic()
        while True:
            now = time.monotonic()
            left = min(self._busy_until, start + QUIET_MAX_WAIT) - now
            if left <= 0:
                return
            await asyncio.sleep(left)

    async def drain(self, timeout: float) -> bool:
        """Wait until everything received so far is committed and answered."""
        if self._batch.acks or self._batch.messages:
            self._idle.clear()
            self._wake.set()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True


def _ordered(batch: Batch) -> bool:
    """Whether a batch must commit after every batch before it, and alone: it closes a
    long MO (the parts stored by earlier batches must be there), stores parts, applies
    receipts, or answers a redelivery with its original's fate (which an earlier batch
    may still be deciding). Plain single-part MOs commit side by side."""
    return bool(batch.parts or batch.closed_groups or batch.receipts or batch.duplicates)


def _has_rows(units: list[Batch], piece: list[int]) -> bool:
    return any(units[i].has_rows for i in piece)


def _pieces(units: list[Batch]) -> list[list[int]]:
    """The units (indices) that are committed or refused together, in arrival order: a
    unit that closes a group with the earlier units of the batch holding its parts."""
    root = list(range(len(units)))

    def find(i: int) -> int:
        while root[i] != i:
            root[i] = root[root[i]]
            i = root[i]
        return i

    holders: dict[str, list[int]] = {}  # concat key -> units with a part of it
    for i, u in enumerate(units):
        for p in u.parts:
            holders.setdefault(p.concat_key, []).append(i)
        for _msg_id, ckey in u.closed_groups:
            for j in holders.pop(ckey, ()):
                root[find(j)] = find(i)
    pieces: dict[int, list[int]] = {}
    for i in range(len(units)):
        pieces.setdefault(find(i), []).append(i)
    return sorted(pieces.values())
