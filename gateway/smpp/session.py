"""asyncio shell over the sans-IO connection: socket, timers, window, reconnect.

One `SmppSession` per `[[smsc]]` entry. It keeps one TCP connection (`Link`) bound as a
transceiver, re-binding with capped exponential backoff and jitter when it is lost.
MOs go to an `MoHandler` that answers them later, after a durable commit, through
`Link.write_responses`, which keeps when each answer was written: when a connection
drops, the answers that may not have reached the SMSC (unwritten, or written less than
`response_timeout` earlier) are handed back to the handler, whose MOs the SMSC may
redeliver. MTs go out through `submit`, which keeps at most `window`
outstanding, honours the `throughput` cap and backs off when the SMSC throttles.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol, cast

import structlog

from gateway import backoff
from gateway.smpp.codec import FrameError, SmppError
from gateway.smpp.connection import (
    Answer,
    AnsweredLog,
    Connection,
    Event,
    Message,
    PeerUnbind,
    Replied,
)
from gateway.smpp.pdu import (
    BindTransceiver,
    CommandId,
    CommandStatus,
    DataSm,
    DeliverSm,
    EnquireLink,
    Pdu,
    SubmitSm,
    SubmitSmResp,
    Unbind,
    status_name,
)
from gateway.smpp.state import BindState

log = structlog.get_logger("gateway.smpp")

THROTTLE_STATUSES = frozenset({CommandStatus.ESME_RTHROTTLED, CommandStatus.ESME_RMSGQFUL})
MAX_THROTTLE_PAUSE = 30.0


@dataclass(frozen=True, slots=True)
class SessionSettings:
    """What one session needs to know about its SMSC (the daemon builds it from the
    `[[smsc]]` entry; the MT knobs of that entry are the MT sender's)."""

    name: str
    host: str
    port: int
    system_id: str
    password: str = field(default="", repr=False)
    system_type: str = ""
    enquire_link_interval: float = 30.0
    window: int = 10
    throughput: float = 0.0
    reconnect_min: float = 1.0
    reconnect_max: float = 60.0
    bind_timeout: float = 10.0
    # Ours for submit_sm / enquire_link, and assumed to be the SMSC's for deliver_sm.
    response_timeout: float = 10.0
    throttle_backoff: float = 1.0
    default_alphabet: str = "gsm"  # what data_coding 0 means (gsm, ascii, latin1)


class MoHandler(Protocol):
    """Receives every deliver_sm / data_sm; answers it later via `link.write_responses`."""

    def on_mo(self, link: Link, pdu: DeliverSm | DataSm, raw: bytes) -> None: ...

    def on_link_lost(self, link: Link, in_flight: list[str]) -> None:
        """`link` dropped after taking MOs: `in_flight` are the dedup keys whose answer
        was written less than the response timeout before; MOs not answered yet are
        the handler's to find."""


class SubmitError(Exception):
    """A submit_sm that failed for good (non-throttle error status, or no bind)."""

    def __init__(self, message: str, *, command_status: int | None = None) -> None:
        super().__init__(message)
        self.command_status = command_status


class LinkClosed(SubmitError):
    pass


class Link(asyncio.Protocol):
    """One TCP connection to the SMSC, owned by a session: it moves bytes between the
    socket and its `Connection` (which owns the protocol), and turns the connection's
    events into handler calls, written answers and resolved futures."""

    def __init__(self, session: SmppSession) -> None:
        self.session = session
        settings = session.cfg
        self.conn: Connection[asyncio.Future[Pdu]] = Connection(settings.default_alphabet)
        self.transport: asyncio.Transport | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.name = session.name
        # How long the SMSC waits for our answer to its deliver_sm before it counts it
        # lost (and redelivers): assumed to be our own response_timeout.
        self.response_timeout = settings.response_timeout
        self.answered = AnsweredLog(self.response_timeout)
        self._took_mo = False
        self._unbind_sent: float | None = None

    # -- asyncio.Protocol -------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport: asyncio's, or uvloop's (not an asyncio.Transport subclass).
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        waiters = self.conn.connection_lost()
        if self._took_mo:
            self.session.handler.on_link_lost(self, self.answered.in_flight(time.monotonic()))
        for fut in waiters:
            if not fut.done():
                fut.set_exception(LinkClosed("connection lost"))
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        conn = self.conn
        conn.receive_data(data)
        while True:
            try:
                event = conn.next_event()
            except FrameError as exc:
                log.error("smpp.framing_error", smsc=self.name, error=str(exc))
                self.abort()
                return
            if event is None:
                return
            if type(event) is Message:  # the hot path, first
                self._took_mo = True
                self.session.count_inbound(event.pdu)
                self.session.handler.on_mo(self, event.pdu, event.raw)
            else:
                self._dispatch(event)

    def _dispatch(self, event: Event[asyncio.Future[Pdu]]) -> None:
        if isinstance(event, Answer):
            pdu = event.pdu
            cid = pdu.command_id
            if cid == CommandId.UNBIND_RESP and self._unbind_sent is not None:
                # The SMSC read every answer written before our unbind (one stream, in
                # order): none of them is suspect, even if the socket closes at once.
                self.answered.settled(self._unbind_sent)
            fut = event.waiter
            if fut is not None and not fut.done():
                fut.set_result(pdu)
            elif cid == CommandId.GENERIC_NACK:
                log.warning(
                    "smpp.generic_nack", smsc=self.name,
                    status=status_name(pdu.command_status), sequence=pdu.sequence_number,
                )
        elif isinstance(event, Replied):
            if event.error is not None:
                exc = event.error
                log.warning(
                    "smpp.bad_pdu", smsc=self.name, error=str(exc),
                    status=status_name(exc.command_status), sequence=exc.sequence_number,
                )
            self.write(event.data)
        elif isinstance(event, PeerUnbind):
            log.info("smpp.unbind_received", smsc=self.name)
            self.write(event.data)
            self.session.on_peer_unbind()
            if self.transport is not None:
                self.transport.close()

    # -- output -----------------------------------------------------------------------
    @property
    def is_open(self) -> bool:
        return self.transport is not None and not self.closed.done()

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def write_responses(self, data: bytes, keys: list[str]) -> None:
        """Answers made by `conn.ack`, joined into one write; `keys` are the dedup keys
        of the MOs answered ESME_ROK. Dropped when this connection is gone: the SMSC
        redelivers unanswered MOs (reported with the loss)."""
        if self.closed.done():
            return
        self.write(data)
        if keys:
            self.answered.answered(time.monotonic(), keys)

    async def request(self, make: Callable[[int], Pdu], timeout: float) -> Pdu:
        """Send the request `make(seq)` and wait for its response (or generic_nack).
        Its future waits in the connection's pending table (a late answer finds it
        done, and is dropped)."""
        if not self.is_open:
            raise LinkClosed("not connected")
        conn = self.conn
        pdu = make(conn.next_sequence())
        if pdu.command_id == CommandId.UNBIND:
            self._unbind_sent = time.monotonic()
        fut: asyncio.Future[Pdu] = asyncio.get_running_loop().create_future()
        self.write(conn.send(pdu, fut))
        return await asyncio.wait_for(fut, timeout)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class TokenBucket:
    """`rate` tokens a second, bursts of at most `rate` (or 1)."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate)
        self.tokens = self.capacity
        self.stamp = time.monotonic()

    def delay(self) -> float:
        """Take a token; return how long to wait before using it (0 if none)."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        self.tokens -= 1.0
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


RECEIPT_BITS = 0x3C  # esm_class: SMSC delivery receipt / intermediate notification


@dataclass(slots=True)
class BindCounters:
    """Since the daemon started: plain ints, one increment per PDU."""

    mo: int = 0  # deliver_sm / data_sm other than receipts
    receipts: int = 0
    mt: int = 0  # submit_sm accepted (submit_sm_resp ESME_ROK)
    errors: int = 0  # submit_sm refused or unanswered, binds refused, connections lost


class SmppSession:
    """Keeps one transceiver bind to one SMSC alive, and sends MTs over it.

    `hold()` (the operator's stop, `POST /v1/binds/{name}/stop`) unbinds cleanly and
    keeps the bind down until `release()`; `stop()` is the daemon's shutdown."""

    def __init__(self, cfg: SessionSettings, handler: MoHandler) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.handler = handler
        self.link: Link | None = None
        self.bound = asyncio.Event()
        self._stopping = False
        # Held down by the operator: run() waits for `_released` instead of reconnecting.
        self._held = False
        self._released = asyncio.Event()
        self._released.set()
        self.counters = BindCounters()
        self.counters_since = time.time()
        self._window = asyncio.Semaphore(cfg.window)
        self._bucket = TokenBucket(cfg.throughput)
        self._paused_until = 0.0
        self._throttle_pause = cfg.throttle_backoff
        self.reconnects = 0
        self.bind_failures = 0
        # Why the bind is down and since when (wall clock), for /healthz.
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.down_since: float | None = time.time()
        self.bound_since: float | None = None
        self.outstanding = 0  # submit_sm in the window (sent or about to be)
        # Called on every bind state change (the daemon's systemd STATUS= line).
        self.on_change: list[Callable[[SmppSession], None]] = []

    @property
    def is_bound(self) -> bool:
        return self.bound.is_set() and self.link is not None and self.link.is_open

    @property
    def state(self) -> str:
        """bound, down (connecting or waiting to reconnect) or stopped (by the operator,
        or shutting down)."""
        if self._stopping or self._held:
            return "stopped"
        return "bound" if self.is_bound else "down"

    @property
    def held(self) -> bool:
        """Stopped by the operator (until `release()`)."""
        return self._held

    def count_inbound(self, pdu: DeliverSm | DataSm) -> None:
        if pdu.esm_class & RECEIPT_BITS:
            self.counters.receipts += 1
        else:
            self.counters.mo += 1

    def _set_bound(self, up: bool) -> None:
        if up == self.bound.is_set():
            return
        if up:
            self.bound.set()
            self.down_since, self.bound_since = None, time.time()
        else:
            self.bound.clear()
            self.down_since, self.bound_since = time.time(), None
        for hook in self.on_change:
            hook(self)

    # -- lifecycle --------------------------------------------------------------------
    async def run(self) -> None:
        """Connect, bind and stay bound until `stop()`; reconnect on any loss."""
        attempt = 0
        while not self._stopping:
            if self._held:
                await self._released.wait()
                attempt = 0
                continue
            ok = await self._connect_and_serve()
            if self._stopping:
                break
            if self._held:
                continue  # unbound on purpose: no reconnect until release()
            attempt = 0 if ok else attempt + 1
            delay = self._backoff(attempt)
            self.reconnects += 1
            log.info("smpp.reconnect_scheduled", smsc=self.name, delay=round(delay, 3),
                     attempt=attempt)
            await asyncio.sleep(delay)

    def _backoff(self, attempt: int) -> float:
        lo, hi = self.cfg.reconnect_min, self.cfg.reconnect_max
        return backoff.delay(attempt, lo, hi, jitter_from=1)  # the first one exact

    async def _connect_and_serve(self) -> bool:
        """One connection's life. True when it had been bound (reset the backoff)."""
        cfg = self.cfg
        loop = asyncio.get_running_loop()
        try:
            _, link = await asyncio.wait_for(
                loop.create_connection(lambda: Link(self), cfg.host, cfg.port),
                cfg.bind_timeout,
            )
        except (OSError, TimeoutError) as exc:
            log.warning("smpp.connect_failed", smsc=self.name, host=cfg.host, port=cfg.port,
                        error=str(exc) or type(exc).__name__)
            if isinstance(exc, TimeoutError):
                self._failed("connect: timed out")
            else:  # asyncio's message hides the reason ("Connect call failed (...)")
                reason = os.strerror(exc.errno) if exc.errno else str(exc)
                self._failed(f"connect to {cfg.host}:{cfg.port}: {reason}")
            return False
        self.link = link
        try:
            resp = await link.request(
                lambda seq: BindTransceiver(
                    sequence_number=seq,
                    system_id=cfg.system_id,
                    password=cfg.password,
                    system_type=cfg.system_type,
                ),
                cfg.bind_timeout,
            )
        except (TimeoutError, SmppError, LinkClosed) as exc:
            log.warning("smpp.bind_failed", smsc=self.name, error=str(exc) or type(exc).__name__)
            self.bind_failures += 1
            self._failed(f"bind: {str(exc) or type(exc).__name__}")
            link.abort()
            return False
        if resp.command_status != 0 or link.conn.state is not BindState.BOUND_TRX:
            self.bind_failures += 1
            log.error("smpp.bind_rejected", smsc=self.name, system_id=cfg.system_id,
                      status=status_name(resp.command_status))
            self._failed(f"bind refused: {status_name(resp.command_status)}")
            link.abort()
            return False
        log.info("smpp.bound", smsc=self.name, host=cfg.host, port=cfg.port,
                 system_id=cfg.system_id)
        if self._held or self._stopping:  # stopped while it was binding
            await self._unbind(link, cfg.response_timeout)
            return True
        self._set_bound(True)
        self._throttle_pause = cfg.throttle_backoff
        try:
            async with asyncio.TaskGroup() as tg:
                keepalive = tg.create_task(self._enquire_link_loop(link),
                                           name=f"enquire:{self.name}")
                await link.closed
                keepalive.cancel()
        finally:
            self._set_bound(False)
            if not self._stopping and not self._held:
                log.warning("smpp.connection_lost", smsc=self.name)
                self._failed("connection lost")
        return True

    def _failed(self, error: str) -> None:
        if self._held:
            return  # the operator's stop cut a bind attempt short: not an SMSC error
        self.last_error, self.last_error_at = error, time.time()
        self.counters.errors += 1

    async def _enquire_link_loop(self, link: Link) -> None:
        cfg = self.cfg
        while link.is_open:
            await asyncio.sleep(cfg.enquire_link_interval)
            if not link.conn.may_enquire():  # unbind sent: quiet until the close
                return
            try:
                await link.request(lambda seq: EnquireLink(sequence_number=seq),
                                   cfg.response_timeout)
            except TimeoutError:
                log.warning("smpp.enquire_link_timeout", smsc=self.name)
                link.abort()
                return
            except LinkClosed:
                return

    def on_peer_unbind(self) -> None:
        self._set_bound(False)

    async def stop(self, timeout: float = 5.0) -> None:
        """Unbind cleanly (wait for unbind_resp) and close, within `timeout` in all."""
        self._stopping = True
        self._released.set()  # a held bind's run() ends too
        await self._unbind(self.link, timeout)

    async def hold(self, timeout: float = 5.0) -> bool:
        """The operator's stop: unbind cleanly (as `stop`) and stay down until
        `release()`. False if it was held already."""
        if self._held:
            return False
        self._held = True
        self._released.clear()
        log.info("smpp.held", smsc=self.name)
        await self._unbind(self.link, timeout)
        if self.down_since is None or self.bound_since is not None:
            self.down_since, self.bound_since = time.time(), None
        for hook in self.on_change:
            hook(self)
        return True

    def release(self) -> bool:
        """Let a held bind connect again (at once). False if it was not held."""
        if not self._held:
            return False
        self._held = False
        self._released.set()
        log.info("smpp.released", smsc=self.name)
        for hook in self.on_change:
            hook(self)
        return True

    async def _unbind(self, link: Link | None, timeout: float) -> None:
        if link is None or not link.is_open:
            return
        end = time.monotonic() + timeout
        if link.conn.state is BindState.BOUND_TRX:
            try:
                await link.request(lambda seq: Unbind(sequence_number=seq), timeout)
                log.info("smpp.unbound", smsc=self.name)
            except (TimeoutError, SmppError, LinkClosed) as exc:
                log.warning("smpp.unbind_failed", smsc=self.name,
                            error=str(exc) or type(exc).__name__)
        if link.transport is not None:
            link.transport.close()
        await asyncio.wait({link.closed}, timeout=max(0.1, end - time.monotonic()))

    # -- MT ---------------------------------------------------------------------------
    async def submit(self, make: Callable[[int], SubmitSm], *,
                     before: Callable[[], Awaitable[None]] | None = None) -> SubmitSmResp:
        """Send one submit_sm; retry while the SMSC throttles. Raises SubmitError.

        `before()` is awaited immediately before every write of the PDU (the first and
        each retry after a throttle, however long the pauses were); whatever it raises
        aborts the submit unsent."""
        async with self._window:
            self.outstanding += 1
            try:
                return await self._submit_in_window(make, before)
            finally:
                self.outstanding -= 1

    async def _submit_in_window(self, make: Callable[[int], SubmitSm],
                                before: Callable[[], Awaitable[None]] | None,
                                ) -> SubmitSmResp:
        cfg = self.cfg
        while True:
            pause = self._paused_until - time.monotonic()
            if pause > 0:
                await asyncio.sleep(pause)
            wait = self._bucket.delay()
            if wait > 0:
                await asyncio.sleep(wait)
            if before is not None:
                await before()
            link = self.link
            if link is None or not self.is_bound:
                raise LinkClosed(f"{self.name} not bound")
            try:
                resp = await link.request(make, cfg.response_timeout)
            except TimeoutError:
                self.counters.errors += 1
                raise
            status = resp.command_status
            if status in THROTTLE_STATUSES:
                pause = self._throttle_pause
                self._throttle_pause = min(MAX_THROTTLE_PAUSE, pause * 2)
                self._paused_until = time.monotonic() + pause
                log.warning("smpp.throttled", smsc=self.name, status=status_name(status),
                            pause=round(pause, 3))
                continue
            self._throttle_pause = cfg.throttle_backoff
            if status != 0 or not isinstance(resp, SubmitSmResp):
                self.counters.errors += 1
                raise SubmitError(
                    f"submit_sm refused: {status_name(status)}", command_status=status
                )
            self.counters.mt += 1
            return resp
