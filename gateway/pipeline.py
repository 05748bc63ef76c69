"""MO intake: classify -> reassemble -> persist (group commit) -> acknowledge.

`on_mo` runs in the session's `data_received` and only appends to the open batch.
The writer loop commits whatever accumulated while the previous commit ran (natural
group commit: no timer), then writes every deliver_sm_resp of the batch. A failed
commit answers the whole batch with ESME_RX_T_APPN so the SMSC redelivers it, and undoes
what the batch did to the in-memory state (reassembly groups).

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
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy.engine import Connection

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
from gateway.model import MoStatus, new_id
from gateway.msisdn import canonical_or_raw
from gateway.reassembly import Group, Reassembler
from gateway.redelivery import Fate, Suspects
from gateway.routing.router import Decision, Route, Router
from gateway.smpp.connection import encode_empty_resp
from gateway.smpp.pdu import CommandStatus, DataSm, DeliverSm
from gateway.smpp.session import Link
from gateway.smpp.text import decode_text, join_parts
from gateway.storage import intake_state
from gateway.storage.repo import MessageRow, PartRow, ReceiptRow, Store

log = structlog.get_logger("gateway.intake")

_UNROUTED = Decision(route=Route.UNROUTED, vmn=None)
_UNROUTED_ROUTE = Route.UNROUTED.value
_UNROUTED_LABEL = "unrouted"  # the vmn label of every MO to a number not configured
BUSY_BATCH = 64  # a batch this big means MOs arrive faster than one per commit time
BUSY_HOLD = 0.05
QUIET_MAX_WAIT = 0.25
_ALWAYS_FAN_OUT = frozenset({Route.OPTOUT, Route.OPTIN, Route.HELP})


@dataclass(slots=True)
class Batch:
    messages: list[MessageRow] = field(default_factory=list)
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
    # what `Intake.inline` returned (it ran in the batch's transaction), if it ran
    expanded: Any = None

    def __len__(self) -> int:
        return len(self.acks)


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
        self._committing: Batch | None = None
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        # Until when the intake counts as under a burst: background writers wait for it
        # (briefly) so that a burst of MOs is acknowledged first and drained afterwards.
        self._busy_until = 0.0
        self.on_committed: list[Callable[[Batch], None]] = []
        # Run in the intake's own transaction when a batch is small (the intake is not
        # under a burst): the fan-out of its MOs, whose jobs then start as soon as the
        # acks go out instead of one more transaction later. Under a burst the fan-out
        # runs apart, after the acks, so that it never slows them.
        self.inline: Callable[[Connection, list[MessageRow]], Any] | None = None
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
                self._close_group(self._batch, group, MoStatus.RECEIVED, None, now)
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
        return router.route(destination, text, datetime.fromtimestamp(at, UTC))

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
            batch.acks.append((link, pdu.command_id, pdu.sequence_number, None, now, None))
            receipt = parse_receipt(pdu)
            if receipt is not None:
                batch.receipts.append(
                    ((smsc, receipt.smsc_message_id, receipt.state, receipt.error, raw, now),
                     receipt)
                )
            else:
                log.warning("intake.unparsable_receipt", smsc=smsc, raw=raw.hex())
            self._wake.set()
            return
        if self.reject_unrouted and self.route(pdu.destination_addr, "", now).reject:
            # Refused, not stored: answered now (no durability to wait for).
            link.write(encode_empty_resp(pdu.command_id, pdu.sequence_number,
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
                    batch.acks.append((link, pdu.command_id, pdu.sequence_number, origin,
                                       now, key))
                    batch.duplicates += 1
                    self._wake.set()
                    return
        batch.acks.append((link, pdu.command_id, pdu.sequence_number, None, now, key))
        # One spelling per person (opt-out state is keyed by it); lru_cached.
        source = canonical_or_raw(pdu.source_addr, self.country_code, ton=pdu.source_addr_ton)
        part, body = split_part(pdu, smsc)
        dc = pdu.data_coding
        if part is None:
            text = decode_text(body, dc)
            d = self.route(pdu.destination_addr, text, now)
            batch.messages.append((
                new_id(), "mo", smsc, d.vmn or pdu.destination_addr, source,
                source, pdu.destination_addr, text, dc, 1,
                MoStatus.RECEIVED.value, now, now, raw, key, d.keyword, d.route.value,
                self._fanout_flag(d),
            ))
        else:
            ckey = part.concat_key
            batch.parts.append(
                (smsc, ckey.stored(), part.seq, part.total, dc, part.body, raw, now, key)
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
            self._close_group(self._batch, g, MoStatus.INCOMPLETE, None, now, reason="cap")

    def _close_group(self, batch: Batch, group: Group, status: MoStatus, raw: bytes | None,
                     now: float, *, reason: str = "timeout", source: str | None = None) -> None:
        """`source`: the sender's canonical number when the closing PDU gave it (with its
        type of number); else it is read from the group's key, without one."""
        smsc, dest = group.key.smsc, group.key.destination
        if source is None:
            source = canonical_or_raw(group.key.source, self.country_code)
        text = join_parts(group.bodies(), group.data_coding)
        if status is MoStatus.INCOMPLETE:
            log.warning("intake.incomplete_mo", smsc=smsc, source=source, destination=dest,
                        received=sorted(group.parts), missing=group.missing(),
                        total=group.total, reason=reason)
        msg_id = new_id()
        d = self.route(dest, text, group.first_at)
        batch.messages.append((
            msg_id, "mo", smsc, d.vmn or dest, source, source, dest, text, group.data_coding,
            group.total, status.value, group.first_at, now, None, None, d.keyword,
            d.route.value, self._fanout_flag(d),
        ))
        batch.closed_groups.append((msg_id, group.key.stored()))
        batch.closed_groups.extend((msg_id, alias) for alias in group.aliases)
        batch.closed.append(group)

    def expire_groups(self) -> int:
        """Deliver the parts of groups past `reassembly_timeout` as incomplete MOs."""
        now = self.clock()
        groups = self.reassembler.expired(now, self.reassembly_timeout)
        for g in groups:
            self._close_group(self._batch, g, MoStatus.INCOMPLETE, None, now)
        if groups:
            self._wake.set()
        return len(groups)

    # -- writer -----------------------------------------------------------------------
    async def run(self) -> None:
        """The single writer: commit, ack, repeat while work accumulated meanwhile."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch = self._batch
            if not batch.acks and not batch.messages:
                continue
            if len(batch.acks) >= BUSY_BATCH:
                # The SMSC sends a window, waits for the acks, sends again: the intake
                # looks idle between windows, so a burst lasts a little past each one.
                self._busy_until = time.monotonic() + BUSY_HOLD
            self._idle.clear()
            self._batch = Batch()
            self._committing = batch
            try:
                await self._commit(batch)
            finally:
                self._committing = None
                if not self._batch.acks and not self._batch.messages:
                    self._idle.set()

    async def _commit(self, batch: Batch) -> None:
        status = CommandStatus.ESME_ROK
        started = time.perf_counter()
        inline = self.inline
        then = None
        if inline is not None and batch.messages and len(batch.acks) < BUSY_BATCH:
            msgs = batch.messages

            def then(conn: Connection) -> Any:
                return inline(conn, msgs)
        try:
            batch.expanded = await self.store.write_intake(
                batch.messages, batch.parts, batch.closed_groups,
                [row for row, _ in batch.receipts], [r for _, r in batch.receipts], then,
            )
        except Exception as exc:  # the DB failed: let the SMSC redeliver
            status = CommandStatus.ESME_RX_T_APPN
            batch.fate.ok = False
            self._undo(batch)
            self.stats["failed_commits"] += 1
            log.error("intake.commit_failed", error=describe_error(exc), pdus=len(batch.acks))
        else:
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
                route = m[16]
                vr = (_UNROUTED_LABEL if route == _UNROUTED_ROUTE else m[3], route)
                by_route[vr] = by_route.get(vr, 0) + 1
        self._ack(batch, status)
        self.ack_latency.observe_since(batch.acks, 4, self.clock())
        if status == CommandStatus.ESME_ROK:
            for hook in self.on_committed:
                hook(batch)
            if batch.receipts:
                self.store.on_jobs()

    def _undo(self, batch: Batch) -> None:
        """Forget what a failed batch did in memory, so its redelivery is taken afresh.
        (A suspect key whose original was in it is ignored: see `Suspects.take`.)"""
        reassembler = self.reassembler
        for group in batch.closed:
            reassembler.restore(group)
        for ckey, seq in batch.part_adds:
            reassembler.forget_part(ckey, seq)

    def _ack(self, batch: Batch, status: int) -> None:
        by_link: dict[Link, tuple[list[bytes], list[str]]] = {}
        failed = CommandStatus.ESME_RX_T_APPN
        ok = CommandStatus.ESME_ROK
        for link, cid, seq, origin, _at, key in batch.acks:
            out = by_link.get(link)
            if out is None:
                out = by_link[link] = ([], [])
            st = status if origin is None or origin.ok else failed
            out[0].append(encode_empty_resp(cid, seq, st))
            if key is not None and st == ok:
                out[1].append(key)
        if status == ok and by_link and self.dedup_window > 0:
            self._late(batch, min(link.response_timeout for link in by_link))
        for link, (chunks, keys) in by_link.items():
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
        for batch in (self._committing, self._batch):
            if batch is None:
                continue
            for ack_link, _cid, _seq, origin, _at, mo_key in batch.acks:
                if ack_link is link and mo_key is not None:
                    suspects.add(mo_key, now, batch.fate if origin is None else origin)
                    unanswered += 1
        if in_flight or unanswered:
            log.info("intake.redelivery_expected", smsc=link.name, in_flight=len(in_flight),
                     unanswered=unanswered)

    async def quiet(self) -> None:
        """Return when the intake is not under a burst, or after QUIET_MAX_WAIT: the
        drains yield to the acks, but are never starved."""
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
