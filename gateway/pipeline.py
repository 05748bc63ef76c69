"""MO intake: classify -> reassemble -> persist (group commit) -> acknowledge.

`on_mo` runs in the session's `data_received` and only appends to the open batch.
The writer loop commits whatever accumulated while the previous commit ran (natural
group commit: no timer), then writes every deliver_sm_resp of the batch. A failed
commit answers the whole batch with ESME_RX_T_APPN so the SMSC redelivers it, and undoes
what the batch did to the in-memory state (recent dedup keys, reassembly groups). A
redelivery that arrives while its original is still being committed is answered with
the original's fate, never acknowledged ahead of it.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy.engine import Connection

from gateway.config import Unrouted
from gateway.metrics import Histogram
from gateway.mo import Receipt, dedup_key, is_receipt, parse_receipt, split_part
from gateway.model import MoStatus, new_id
from gateway.msisdn import canonical_or_raw
from gateway.reassembly import Group, Reassembler
from gateway.routing.router import Decision, Route, Router
from gateway.smpp.connection import encode_empty_resp
from gateway.smpp.pdu import CommandStatus, DataSm, DeliverSm
from gateway.smpp.session import Link
from gateway.smpp.text import decode_text, join_parts
from gateway.storage.repo import MessageRow, PartRow, ReceiptRow, Store

log = structlog.get_logger("gateway.intake")

_UNROUTED = Decision(route=Route.UNROUTED, vmn=None)
BUSY_BATCH = 64  # a batch this big means MOs arrive faster than one per commit time
BUSY_HOLD = 0.05
QUIET_MAX_WAIT = 0.25
_ALWAYS_FAN_OUT = frozenset({Route.OPTOUT, Route.OPTIN, Route.HELP})


class Fate:
    """Whether a batch's commit succeeded: None until it finished. Small on purpose: the
    dedup map keeps one per key for the whole window, never the batch's rows."""

    __slots__ = ("ok",)

    def __init__(self, ok: bool | None = None) -> None:
        self.ok = ok


@dataclass(slots=True)
class Batch:
    messages: list[MessageRow] = field(default_factory=list)
    parts: list[PartRow] = field(default_factory=list)
    # (message_id, concat_key) of groups that completed or timed out in this batch
    closed_groups: list[tuple[str, str]] = field(default_factory=list)
    receipts: list[tuple[ReceiptRow, Receipt]] = field(default_factory=list)
    # (link, command_id, sequence_number, fate of the original for a duplicate,
    #  time received), in arrival order
    acks: list[tuple[Link, int, int, Fate | None, float]] = field(default_factory=list)
    duplicates: int = 0
    # what to undo in memory if the commit fails
    keys: list[str] = field(default_factory=list)
    part_adds: list[tuple[str, int]] = field(default_factory=list)
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
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.dedup_window = dedup_window
        self.reassembly_timeout = reassembly_timeout
        self.clock = clock
        self.reassembler = Reassembler()
        # key -> time first seen. str -> float only, so the garbage collector never
        # scans it (it can hold hundreds of thousands of keys).
        self.recent: dict[str, float] = {}
        # keys of batches not yet committed -> that batch's fate
        self._pending_keys: dict[str, Fate] = {}
        self._recent_order: deque[tuple[float, str]] = deque()
        self._batch = Batch()
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
        """Reload open reassembly groups and recent dedup keys from the database."""
        now = self.clock()
        self.reassembler = Reassembler()
        for p in await self.store.open_parts():
            self.reassembler.add(p.concat_key, p.total, p.seq, p.body, p.data_coding,
                                 p.received_at)
        self.recent.clear()
        self._recent_order.clear()
        self._pending_keys.clear()
        if self.dedup_window > 0:
            for key, at in await self.store.recent_dedup_keys(now - self.dedup_window):
                self._remember(key, at)

    def _remember(self, key: str, at: float) -> None:
        self.recent[key] = at
        self._recent_order.append((at, key))

    def _prune_recent(self, now: float) -> None:
        order, recent, horizon = self._recent_order, self.recent, now - self.dedup_window
        while order and order[0][0] < horizon:
            at, key = order.popleft()
            if recent.get(key) == at:
                del recent[key]

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
        ack = (link, pdu.command_id, pdu.sequence_number, None, now)
        if is_receipt(pdu):
            batch.acks.append(ack)
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
            seen = self.recent.get(key)
            if seen is not None and now - seen <= self.dedup_window:
                # Answered with the original's fate (see `_ack`): None = committed.
                batch.acks.append((link, pdu.command_id, pdu.sequence_number,
                                   self._pending_keys.get(key), now))
                batch.duplicates += 1
                self._wake.set()
                return
            self._remember(key, now)
            self._pending_keys[key] = batch.fate
            batch.keys.append(key)
        batch.acks.append(ack)
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
            batch.parts.append(
                (smsc, part.concat_key, part.seq, part.total, dc, part.body, raw, now, key)
            )
            group, new = self.reassembler.add(part.concat_key, part.total, part.seq,
                                              part.body, dc, now)
            if new:
                batch.part_adds.append((part.concat_key, part.seq))
            if group is not None:
                self._close_group(batch, group, smsc, source, pdu.destination_addr,
                                  MoStatus.RECEIVED, raw, now)
        self._wake.set()

    def _close_group(self, batch: Batch, group: Group, smsc: str, source: str, dest: str,
                     status: MoStatus, raw: bytes | None, now: float) -> None:
        text = join_parts(group.bodies(), group.data_coding)
        if status is MoStatus.INCOMPLETE:
            log.warning("intake.incomplete_mo", smsc=smsc, source=source, destination=dest,
                        received=sorted(group.parts), missing=group.missing(),
                        total=group.total)
        msg_id = new_id()
        d = self.route(dest, text, group.first_at)
        batch.messages.append((
            msg_id, "mo", smsc, d.vmn or dest, source, source, dest, text, group.data_coding,
            group.total, status.value, group.first_at, now, None, None, d.keyword,
            d.route.value, self._fanout_flag(d),
        ))
        batch.closed_groups.append((msg_id, group.key))
        batch.closed.append(group)

    def expire_groups(self) -> int:
        """Deliver the parts of groups past `reassembly_timeout` as incomplete MOs."""
        now = self.clock()
        groups = self.reassembler.expired(now, self.reassembly_timeout)
        for g in groups:
            smsc, source, dest = g.key.split("|", 3)[:3]
            self._close_group(self._batch, g, smsc, canonical_or_raw(source, self.country_code),
                              dest, MoStatus.INCOMPLETE,
                              None, now)
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
            try:
                await self._commit(batch)
            finally:
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
            log.error("intake.commit_failed", error=str(exc), pdus=len(batch.acks))
        else:
            batch.fate.ok = True
            pending = self._pending_keys
            for key in batch.keys:
                if pending.get(key) is batch.fate:
                    del pending[key]
            stats = self.stats
            stats["commits"] += 1
            stats["mo"] += len(batch.messages)
            stats["parts"] += len(batch.parts)
            stats["receipts"] += len(batch.receipts)
            stats["duplicates"] += batch.duplicates
            self.commit_latency.observe(time.perf_counter() - started)
            by_route = self.mo_by_route
            for m in batch.messages:
                vr = (m[3], m[16])  # vmn, route
                by_route[vr] = by_route.get(vr, 0) + 1
            if self.dedup_window > 0:
                self._prune_recent(self.clock())
        self._ack(batch, status)
        self.ack_latency.observe_since(batch.acks, 4, self.clock())
        if status == CommandStatus.ESME_ROK:
            for hook in self.on_committed:
                hook(batch)
            if batch.receipts:
                self.store.on_jobs()

    def _undo(self, batch: Batch) -> None:
        """Forget what a failed batch did in memory, so its redelivery is taken afresh."""
        recent, pending = self.recent, self._pending_keys
        for key in batch.keys:
            if pending.get(key) is batch.fate:
                del pending[key]
                recent.pop(key, None)
        groups = self.reassembler.groups
        for group in batch.closed:
            groups.setdefault(group.key, group)
        for key, seq in batch.part_adds:
            g = groups.get(key)
            if g is not None:
                g.parts.pop(seq, None)
                if not g.parts:
                    del groups[key]

    @staticmethod
    def _ack(batch: Batch, status: int) -> None:
        by_link: dict[Link, list[bytes]] = {}
        failed = CommandStatus.ESME_RX_T_APPN
        for link, cid, seq, origin, _at in batch.acks:
            out = by_link.get(link)
            if out is None:
                out = by_link[link] = []
            st = status if origin is None or origin.ok else failed
            out.append(encode_empty_resp(cid, seq, st))
        for link, chunks in by_link.items():
            link.write_responses(b"".join(chunks))

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
