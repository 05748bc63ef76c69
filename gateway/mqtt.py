"""The MQTT link: one broker connection for the whole daemon, events out and commands in.

`MqttLink` owns the connection (SPEC §4): it keeps it up with a reconnect loop (capped
exponential backoff with jitter, `gateway.backoff`), registers the last will (retained
``offline`` on ``P/gateway/{name}/status``), publishes the retained ``online`` once
connected, subscribes to the command topic ``P/mt/send`` and hands every command payload
to `on_command`. `MqttLink.publish` returns only once the broker has acknowledged the
message (PUBACK for QoS 1)::

    link = MqttLink(cfg, gateway_name="gw1", on_command=queue_mt)
    async with link:                      # runs link.run() in a background task
        await link.publish("vmn/mo/5551000100", b"{...}", qos=1)
    # leaving: retained "offline" published, then a clean DISCONNECT

The protocol is ours: `gateway.mqttproto`, a sans-IO MQTT 3.1.1 client codec, behind an
asyncio protocol (`_Client`) that owns the transport (TLS verified, with SNI, for
``mqtts://``), the keepalive timer and the futures a publish or subscribe waits on.
Publishes queued in one loop turn go out in one write. One codec per connection; the
caller (the outbox) retries what was not acknowledged. What a persistent session needs
of a broken connection is carried into the next codec (`mqttproto.SessionState`): the
packet id counter, and the ids of QoS 2 publishes without PUBCOMP, which the broker may
still hold: they are released (PUBREL) after the CONNACK and never given to a new
publish before their PUBCOMP, so a new event is never taken for a duplicate of one the
broker holds (MQTT 3.1.1 §4.4).

Commands are acknowledged to the broker (PUBACK) only once `on_command` has returned,
that is once the command is stored: while it raises (the database is down) the link
retries it with backoff, and a command not stored when the connection or the link
stops stays un-acknowledged in the persistent session, for the broker to deliver again.
Several instances share the command topic as one subscription group
(``$share/<command_group>/P/mt/send``): the broker hands each command to one of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Self, cast

import structlog

from gateway import backoff, mqttproto
from gateway.config import MqttConfig
from gateway.log import describe_error

__all__ = [
    "COMMAND_SUFFIX",
    "CommandHandler",
    "MqttCodeError",
    "MqttConnectionLostError",
    "MqttError",
    "MqttLink",
    "MqttLinkError",
    "MqttNotConnectedError",
    "MqttPublishTimeoutError",
    "ack_name",
    "topic",
]

log = structlog.get_logger("gateway.mqtt")

COMMAND_SUFFIX = ("mt", "send")
STATUS_ONLINE = b"online"
STATUS_OFFLINE = b"offline"

# Returns once the command is stored (or recorded as refused); raises when it is not.
CommandHandler = Callable[[bytes], Awaitable[None]]


def topic(prefix: str, *parts: str) -> str:
    """``topic("vmn", "mo", "5551234567")`` -> ``"vmn/mo/5551234567"``.

    ValueError if a level is empty or holds a wildcard (``+``, ``#``) or NUL: those can
    not be published to.
    """
    levels = (prefix, *parts)
    for level in levels:
        if not level or any(c in level for c in "+#\0"):
            raise ValueError(f"invalid MQTT topic level {level!r} in {'/'.join(levels)!r}")
    return "/".join(levels)


def ack_name(qos: int) -> str:
    return _ACK_NAMES.get(qos, "ack")


_ACK_NAMES = {0: "sent (QoS 0)", 1: "PUBACK", 2: "PUBCOMP"}


class MqttError(Exception):
    """The broker connection failed, or the broker refused or broke something."""


class MqttCodeError(MqttError):
    """The broker refused the connection: `rc` is the CONNACK return code (1-5)."""

    def __init__(self, rc: int, what: str) -> None:
        super().__init__(what)
        self.rc = rc
        self.what = what

    def __str__(self) -> str:
        return f"{self.what}: {mqttproto.connack_name(self.rc)} (CONNACK code {self.rc})"


class MqttLinkError(MqttError):
    """A publish through the link failed; the message says why."""


class MqttNotConnectedError(MqttLinkError):
    """No broker connection came up within the publish timeout."""


class MqttConnectionLostError(MqttLinkError):
    """The connection broke (or the link stopped) before the broker acknowledged."""


class MqttPublishTimeoutError(MqttLinkError):
    """Connected, but the broker did not acknowledge within the publish timeout."""


# --------------------------------------------------------------------------- one connection


class _Client(asyncio.Protocol):
    """One broker connection: the `mqttproto.Connection` codec behind an asyncio
    protocol. The codec decides every MQTT rule and answer; this owns the transport,
    the futures, the keepalive timer and when bytes are written."""

    def __init__(self, loop: asyncio.AbstractEventLoop, keepalive: int,
                 resume: mqttproto.SessionState | None = None) -> None:
        self.loop = loop
        # resume: the previous connection's state, for a persistent session
        self.proto = mqttproto.Connection(resume=resume)
        self.keepalive = keepalive
        # The CONNACK; None: the connection ended before it.
        self.connack: asyncio.Future[mqttproto.ConnAck | None] = loop.create_future()
        self.lost: asyncio.Future[None] = loop.create_future()  # done: no longer usable
        self.error: MqttError | None = None  # why it was lost (None: on purpose)
        self.acks: dict[int, tuple[asyncio.Future[None], int]] = {}  # mid -> (publish, qos)
        self.subacks: dict[int, asyncio.Future[tuple[int, ...]]] = {}
        self.messages: asyncio.Queue[mqttproto.Publish] = asyncio.Queue()
        self._transport: asyncio.WriteTransport | None = None
        self._flush_due = False
        self._closing = False  # DISCONNECT sent: the end of the connection is ours
        self._closed = False
        self._timer: asyncio.TimerHandle | None = None
        self._last_in = self._last_out = 0.0
        self._ping_sent: float | None = None

    # ---------------------------------------------------------------- life

    async def connect(self, host: str, port: int, tls: bool, timeout: float,
                      **connect: Any) -> None:
        """TCP (+TLS, verified, with SNI) connect, CONNECT, and wait up to `timeout` in
        all for the CONNACK. `connect`: `mqttproto.Connection.connect`'s arguments."""
        self.proto.connect(keepalive=self.keepalive, **connect)  # written once connected
        context = ssl.create_default_context() if tls else None
        try:
            async with asyncio.timeout(timeout):
                await self.loop.create_connection(
                    lambda: self, host, port, ssl=context,
                    server_hostname=host if context is not None else None)
                ack = await asyncio.shield(self.connack)
        except TimeoutError:
            raise MqttError("Operation timed out") from None
        except OSError as exc:  # refused, unreachable, TLS verification, ...
            raise MqttError(str(exc) or type(exc).__name__) from None
        if ack is None:
            raise self.error or MqttError("Disconnected before CONNACK")
        if ack.return_code:
            raise MqttCodeError(ack.return_code, "Connection refused")

    async def disconnect(self, timeout: float) -> None:
        """A clean DISCONNECT (the broker then drops the will), waited up to `timeout`."""
        transport = self._transport
        if not self.lost.done() and transport is not None and not self._closing:
            self._closing = True
            self.proto.disconnect()
            self._flush()
            transport.close()  # after what is buffered, DISCONNECT last
            await asyncio.wait({self.lost}, timeout=timeout)
        self.close()

    def close(self) -> None:
        """Drop the connection now (no DISCONNECT): after a failure, or abandoned."""
        if self._closed:
            return
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._transport is not None:
            self._transport.abort()
        self._lose(None)

    def _lose(self, error: MqttError | None) -> None:
        if self.lost.done():
            return
        self.error = error
        self.lost.set_result(None)
        if not self.connack.done():
            self.connack.set_result(None)
        for fut, qos in self.acks.values():
            if not fut.done():
                fut.set_exception(MqttConnectionLostError(
                    f"connection lost before {ack_name(qos)}"))
        for sub in self.subacks.values():
            if not sub.done():
                sub.set_exception(error or MqttError("Disconnected"))

    def _fail(self, error: MqttError) -> None:
        self._lose(error)
        self.close()

    # ---------------------------------------------------------------- operations

    async def publish(self, name: str, payload: bytes, qos: int, retain: bool,
                      deadline: float, timeout: float) -> None:
        """Publish; return once acknowledged (QoS 0: once handed to the connection).
        ValueError (`mqttproto.LocalProtocolError`) for a topic, QoS or size MQTT
        refuses."""
        if self.lost.done() or self._closing:
            raise MqttConnectionLostError(f"connection lost before {ack_name(qos)}")
        if qos and self.proto.in_flight >= 0xFFFF:
            # Every packet id is taken (the broker acknowledges nothing): this
            # connection cannot go on; the caller retries on the next one.
            self._fail(MqttError("65,535 publishes unacknowledged"))
            raise MqttConnectionLostError(f"connection lost before {ack_name(qos)}")
        mid = self.proto.publish(name, payload, qos, retain)
        self._wrote()
        if not qos:
            return
        loop = self.loop
        fut: asyncio.Future[None] = loop.create_future()
        self.acks[mid] = (fut, qos)
        timer = loop.call_at(deadline, _expire, fut, f"no {ack_name(qos)} within {timeout:g}s")
        try:
            await fut
        finally:
            timer.cancel()
            self.acks.pop(mid, None)

    async def subscribe(self, name: str, qos: int, timeout: float) -> None:
        """SUBSCRIBE and wait for the SUBACK; MqttError if the broker refuses (0x80)."""
        if self.lost.done() or self._closing:
            raise self.error or MqttError("Disconnected")
        mid = self.proto.subscribe([(name, qos)])
        self._wrote()
        fut: asyncio.Future[tuple[int, ...]] = self.loop.create_future()
        self.subacks[mid] = fut
        try:
            async with asyncio.timeout(timeout):
                granted = await fut
        except TimeoutError:
            raise MqttError("Operation timed out") from None
        finally:
            self.subacks.pop(mid, None)
        if granted[0] == mqttproto.SUBACK_FAILURE:
            raise MqttError(f"the broker refused the subscription to {name!r} (SUBACK 0x80)")

    async def next_message(self) -> mqttproto.Publish:
        """The next message received; MqttError once the connection is lost."""
        if not self.messages.empty():
            return self.messages.get_nowait()
        if self.lost.done():
            raise self.error or MqttError("Disconnected during message iteration")
        getter = asyncio.ensure_future(self.messages.get())
        waits: set[asyncio.Future[Any]] = {getter, self.lost}
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not getter.done():
                getter.cancel()
        if getter.done() and not getter.cancelled():
            return getter.result()
        raise self.error or MqttError("Disconnected during message iteration")

    def ack(self, message: mqttproto.Publish) -> None:
        """PUBACK (PUBREC for QoS 2) a received message; nothing for QoS 0 or once the
        connection is gone (the broker then delivers it again)."""
        if message.qos and not self.lost.done() and not self._closing:
            self.proto.ack(message.mid, message.qos)
            self._wrote()

    # ---------------------------------------------------------------- writing

    def _wrote(self) -> None:
        """The codec has bytes to send: one write per loop turn, however many calls
        queued them (publishes from many tasks in one turn become one send())."""
        if not self._flush_due:
            self._flush_due = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_due = False
        transport = self._transport
        if transport is None or self._closed:
            return  # before connection_made (it writes what is queued), or gone
        data = self.proto.data_to_send()
        if data:
            transport.write(data)
            self._last_out = self.loop.time()

    # ---------------------------------------------------------------- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._closed:  # abandoned while connecting
            transport.close()
            return
        # No isinstance check: uvloop's transports are not asyncio.Transport subclasses.
        self._transport = cast(asyncio.WriteTransport, transport)
        self._last_in = self.loop.time()
        self._flush()  # the CONNECT
        if self.keepalive:
            self._timer = self.loop.call_at(self._last_in + self.keepalive, self._tick)

    def data_received(self, data: bytes) -> None:
        self._last_in = self.loop.time()
        proto = self.proto
        proto.receive_data(data)
        try:
            while (event := proto.next_event()) is not mqttproto.NEED_DATA:
                if isinstance(event, mqttproto.PubAck | mqttproto.PubComp):
                    entry = self.acks.pop(event.mid, None)
                    if entry is not None and not entry[0].done():
                        entry[0].set_result(None)
                elif isinstance(event, mqttproto.Publish):
                    self.messages.put_nowait(event)
                elif isinstance(event, mqttproto.SubAck):
                    sub = self.subacks.pop(event.mid, None)
                    if sub is not None and not sub.done():
                        sub.set_result(event.granted)
                elif isinstance(event, mqttproto.PingResp):
                    self._ping_sent = None
                elif isinstance(event, mqttproto.ConnAck) and not self.connack.done():
                    self.connack.set_result(event)
        except mqttproto.RemoteProtocolError as exc:
            self._fail(MqttError(f"protocol error from the broker: {exc}"))
            return
        self._wrote()  # the codec's own answers (PUBREL, PUBCOMP), if any

    def eof_received(self) -> bool | None:
        return None  # the broker closed its side: close ours (connection_lost follows)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._closing or self._closed:
            self._lose(None)
        elif exc is not None:
            self._lose(MqttError(str(exc) or type(exc).__name__))
        else:
            self._lose(MqttError("connection closed by the broker"))

    # ---------------------------------------------------------------- keepalive

    def _tick(self) -> None:
        """PINGREQ when nothing was sent or received for `keepalive` seconds (MQTT
        3.1.1 §3.1.2.10); the connection is lost when its PINGRESP takes as long."""
        self._timer = None
        if self._closed or self._transport is None:
            return
        now = self.loop.time()
        keepalive = self.keepalive
        if self._ping_sent is not None:
            if now - self._ping_sent >= keepalive:
                self._fail(MqttError(f"no PINGRESP within {keepalive}s"))
                return
            due = self._ping_sent + keepalive
        elif now - self._last_out >= keepalive or now - self._last_in >= keepalive:
            self.proto.ping()
            self._flush()
            self._ping_sent = now
            due = now + keepalive
        else:
            due = min(self._last_out, self._last_in) + keepalive
        self._timer = self.loop.call_at(due, self._tick)


# --------------------------------------------------------------------------- the link


class MqttLink:
    """The daemon's one MQTT connection: events out, commands in, status with last will.

    `run()` is the reconnect loop (run it as a task, or use ``async with link``);
    `stop()` publishes the retained ``offline`` and disconnects cleanly. `connected` is
    set while a connection is up and the status/subscription are in place.
    """

    def __init__(
        self,
        cfg: MqttConfig,
        *,
        gateway_name: str,
        on_command: CommandHandler | None,
        reconnect_min: float = 1.0,
        reconnect_max: float = 30.0,
        keepalive: int = 30,
        timeout: float = 10.0,
        announce: bool = True,
    ) -> None:
        if not 0 < reconnect_min <= reconnect_max:
            raise ValueError("expected 0 < reconnect_min <= reconnect_max")
        self.cfg = cfg
        self.gateway_name = gateway_name
        # announce=False: a publisher only (an action worker process): no status, no will.
        self.announce = announce
        self.client_id = cfg.client_id or f"vmn-gateway-{gateway_name}"
        if not announce:
            self.client_id += "-actions"
        self.status_topic = topic(cfg.topic_prefix, "gateway", gateway_name, "status")
        self.command_topic = topic(cfg.topic_prefix, *COMMAND_SUFFIX)
        # What is subscribed: the topic itself, or the instances' shared subscription.
        self.command_filter = (f"$share/{cfg.command_group}/{self.command_topic}"
                               if cfg.command_group else self.command_topic)
        self.connected = asyncio.Event()
        self._on_command = on_command
        self._reconnect_min = reconnect_min
        self._reconnect_max = reconnect_max
        self._keepalive = keepalive
        self._timeout = timeout  # connect/CONNACK, subscribe, status publishes, disconnect
        self._conn: _Client | None = None
        self._stopping = asyncio.Event()
        self._idle = asyncio.Event()  # clear while on_command runs
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._own_task = False

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Self:
        self._task = asyncio.create_task(self.run(), name=f"mqtt-link-{self.gateway_name}")
        self._own_task = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def run(self) -> None:
        """Connect, and reconnect after every failure, until `stop()` (or cancellation)."""
        current = asyncio.current_task()
        if self._task is not None and self._task is not current and not self._task.done():
            raise RuntimeError("MqttLink.run() is already running")
        self._task = current
        loop = asyncio.get_running_loop()
        attempt = 0
        # Handed from each connection to the next: with a persistent session the broker
        # may still hold packet ids of our QoS 2 publishes (see mqttproto).
        resume: mqttproto.SessionState | None = None
        while not self._stopping.is_set():
            up_since: float | None = None
            conn = _Client(loop, self._keepalive, resume)
            try:
                await conn.connect(self.cfg.host, self.cfg.port, self.cfg.tls, self._timeout,
                                   **self._connect_args())
                up_since = loop.time()
                try:
                    await self._session(conn)
                finally:
                    await conn.disconnect(self._timeout)
                return  # stopped: "offline" published, DISCONNECT sent
            except (MqttError, OSError) as exc:
                error = str(exc) or type(exc).__name__
            except Exception as exc:  # a bug: keep the link alive
                log.exception("mqtt.error", error=repr(exc))
                error = repr(exc)
            finally:
                conn.close()
                resume = conn.proto.session_state()
            if up_since is not None and loop.time() - up_since >= self._reconnect_max:
                attempt = 0  # a connection that lasted: start the backoff afresh
            delay = backoff.delay(attempt, self._reconnect_min, self._reconnect_max,
                                  floor=self._reconnect_min)
            attempt += 1
            log.warning(
                "mqtt.disconnected",
                host=self.cfg.host,
                port=self.cfg.port,
                error=error,
                was_connected=up_since is not None,
                attempt=attempt,
                delay=round(delay, 3),
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)

    async def stop(self, timeout: float = 10.0) -> None:
        """Publish the retained ``offline``, disconnect, and end `run()`. Idempotent."""
        self._stopping.set()
        self.connected.clear()
        task = self._task
        if task is None or task is asyncio.current_task():
            return
        if not task.done():
            done, _ = await asyncio.wait({task}, timeout=timeout)
            if not done:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._own_task and not task.cancelled() and task.exception() is not None:
            log.error("mqtt.link_failed", error=repr(task.exception()))
        log.info("mqtt.stopped", host=self.cfg.host, port=self.cfg.port)

    def _connect_args(self) -> dict[str, Any]:
        """The CONNECT of every connection (`mqttproto.Connection.connect`)."""
        cfg = self.cfg
        return {
            "client_id": self.client_id,
            # With a command subscription, a persistent session: the broker keeps the
            # commands (QoS 1) published while the gateway is away and delivers them
            # when it is back. A publisher-only link (action worker) needs no session.
            "clean_session": not (self.announce and self._on_command is not None),
            "username": cfg.username,
            "password": cfg.password_value() if cfg.username is not None else None,
            "will": mqttproto.Will(topic=self.status_topic, payload=STATUS_OFFLINE, qos=1,
                                   retain=True) if self.announce else None,
        }

    async def _session(self, conn: _Client) -> None:
        """One connection's life, from CONNACK to `stop()` or an MqttError."""
        try:
            # Subscribed before "online": a command sent on seeing "online" is never
            # published before its subscription exists (the first connection ever).
            if self._on_command is not None:
                await conn.subscribe(self.command_filter, 1, self._timeout)
            if self.announce:
                await self._status(conn, STATUS_ONLINE)
            self._conn = conn
            self.connected.set()
            log.info(
                "mqtt.connected",
                host=self.cfg.host,
                port=self.cfg.port,
                client_id=self.client_id,
                status_topic=self.status_topic,
                command_topic=self.command_filter if self._on_command is not None else None,
            )
            try:
                await self._serve(conn)
            except asyncio.CancelledError:
                await self._say_offline(conn)
                raise
            await self._say_offline(conn)
        finally:
            self.connected.clear()
            self._conn = None

    async def _serve(self, conn: _Client) -> None:
        """Dispatch commands until stop() (returns) or the connection breaks (raises)."""
        consume = asyncio.create_task(self._consume(conn))
        stop = asyncio.create_task(self._stopping.wait())
        try:
            done, _ = await asyncio.wait({consume, stop}, return_when=asyncio.FIRST_COMPLETED)
            if consume in done:
                consume.result()  # raises the MqttError that ended the iteration
                raise MqttError("message iteration ended")
            # Stopping: new publishes wait (then RETRY); let a command being queued finish.
            self.connected.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), self._timeout)
        finally:
            for task in (consume, stop):
                task.cancel()
            await asyncio.gather(consume, stop, return_exceptions=True)

    async def _consume(self, conn: _Client) -> None:
        # Run even without a subscription: it raises MqttError on disconnection.
        while True:
            message = await conn.next_message()
            handler = self._on_command
            if handler is None or message.topic != self.command_topic:
                conn.ack(message)  # nothing of ours: never leave it pending
                continue
            payload = message.payload
            self._idle.clear()
            try:
                stored = await self._store_command(conn, handler, payload)
            finally:
                self._idle.set()
            if stored:
                conn.ack(message)

    async def _store_command(self, conn: _Client, handler: CommandHandler,
                             payload: bytes) -> bool:
        """Run `handler` until it stores the command: True. False when the link stops or
        the connection is lost first: the command is then not acknowledged, and the
        broker delivers it again (to this session when it is back)."""
        attempt = 0
        while True:
            try:
                await handler(payload)
                return True
            except Exception as exc:
                # Capped lower than the reconnects: the database may be back any moment.
                delay = backoff.delay(
                    attempt, self._reconnect_min,
                    max(self._reconnect_min, min(self._reconnect_max, 5.0)),
                    floor=self._reconnect_min)
                attempt += 1
                log.warning("mqtt.command_not_stored", size=len(payload), attempt=attempt,
                            delay=round(delay, 3), error=describe_error(exc))
            stopping = asyncio.ensure_future(self._stopping.wait())
            waits: set[asyncio.Future[Any]] = {stopping, conn.lost}
            try:
                done, _ = await asyncio.wait(waits, timeout=delay,
                                             return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopping.cancel()
            if done:
                return False

    async def _status(self, conn: _Client, status: bytes) -> None:
        deadline = asyncio.get_running_loop().time() + self._timeout
        await conn.publish(self.status_topic, status, 1, True, deadline, self._timeout)

    async def _say_offline(self, conn: _Client) -> None:
        if not self.announce:
            return
        try:
            await self._status(conn, STATUS_OFFLINE)
        except (MqttError, OSError) as exc:
            log.warning("mqtt.offline_not_published", error=str(exc))

    # ------------------------------------------------------------------ publishing

    async def publish(
        self,
        topic: str,
        payload: bytes,
        qos: int = 1,
        *,
        retain: bool = False,
        timeout: float = 10.0,
    ) -> None:
        """Publish and return once the broker has acknowledged: PUBACK (QoS 1), PUBCOMP
        (QoS 2), handed to the connection (QoS 0).

        Waits up to `timeout` seconds in all (for a connection, then for the ack).
        Raises `MqttNotConnectedError`, `MqttConnectionLostError`,
        `MqttPublishTimeoutError`, or ValueError (invalid topic or QoS, payload too
        large).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        conn = self._conn
        while conn is None or conn.lost.done():
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise MqttNotConnectedError(
                    f"not connected to {self.cfg.host}:{self.cfg.port} (waited {timeout:g}s)"
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.connected.wait(), remaining)
            conn = self._conn
        await conn.publish(topic, payload, qos, retain, deadline, timeout)


def _expire(fut: asyncio.Future[None], detail: str) -> None:
    if not fut.done():
        fut.set_exception(MqttPublishTimeoutError(detail))
