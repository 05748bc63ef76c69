"""The paho-mqtt link as it was in gateway/mqtt.py before our own codec (kept for
`bench/mqtt_bench.py --paho`: the baseline of docs/PERFORMANCE.md, "Our own MQTT 3.1.1
codec"). The gateway no longer imports paho; do not use this outside the benches.

The original module docstring follows.

The MQTT link: one broker connection for the whole daemon, events out and commands in.

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

The protocol is paho-mqtt's, through its public external-loop API (paho's
``examples/loop_asyncio.py``): paho tells us when its socket opens, closes and wants
writing; the asyncio loop calls `loop_read`/`loop_write` when the socket is ready and
`loop_misc` (keepalive) every second. One paho client per connection: nothing of a
broken connection (its unacknowledged publishes) is carried into the next one; the
caller (the outbox) retries what was not acknowledged.

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
import threading
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Self

import paho.mqtt.client as paho
import structlog
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from gateway import backoff
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
MISC_INTERVAL = 1.0  # seconds between paho's keepalive checks (`loop_misc`)

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
    """The broker connection failed, or the broker or paho refused something."""


class MqttCodeError(MqttError):
    """paho refused a call, or the broker a connection: `rc` says why."""

    def __init__(self, rc: int | ReasonCode, what: str) -> None:
        super().__init__(what)
        self.rc = rc

    def __str__(self) -> str:
        if isinstance(self.rc, ReasonCode):
            return f"[code:{self.rc.value}] {self.rc}"
        return f"[code:{int(self.rc)}] {paho.error_string(self.rc)}"


class MqttLinkError(MqttError):
    """A publish through the link failed; the message says why."""


class MqttNotConnectedError(MqttLinkError):
    """No broker connection came up within the publish timeout."""


class MqttConnectionLostError(MqttLinkError):
    """The connection broke (or the link stopped) before the broker acknowledged."""


class MqttPublishTimeoutError(MqttLinkError):
    """Connected, but the broker did not acknowledge within the publish timeout."""


# --------------------------------------------------------------------------- one connection


class _Client:
    """One broker connection: a paho client whose socket the asyncio loop drives.

    paho calls `on_socket_open` (and the first `on_socket_register_write`) from the
    executor thread that runs its blocking `connect()`; every other callback runs on
    the loop, inside `loop_read`/`loop_write`/`loop_misc`.
    """

    def __init__(self, client: paho.Client, loop: asyncio.AbstractEventLoop) -> None:
        self.paho = client
        self.loop = loop
        self._thread = threading.get_ident()
        # The CONNACK's reason code; None: the connection ended before it.
        self.connack: asyncio.Future[ReasonCode | None] = loop.create_future()
        self.lost: asyncio.Future[None] = loop.create_future()  # done: no longer usable
        self.error: MqttError | None = None  # why it was lost (None: on purpose)
        self.acks: dict[int, tuple[asyncio.Future[None], int]] = {}  # mid -> (publish, qos)
        self.subacks: dict[int, asyncio.Future[None]] = {}
        self.messages: asyncio.Queue[paho.MQTTMessage] = asyncio.Queue()
        self._fd = -1
        self._misc: asyncio.TimerHandle | None = None
        self._closed = False
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.on_socket_open = self._on_socket_open
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_socket_register_write
        client.on_socket_unregister_write = self._on_socket_unregister_write

    # ---------------------------------------------------------------- life

    async def connect(self, host: str, port: int, keepalive: int, timeout: float) -> None:
        """TCP (+TLS) connect, CONNECT, and wait up to `timeout` for the CONNACK."""
        try:
            # paho's connect() blocks (DNS, TCP, TLS handshake): off the loop.
            await self.loop.run_in_executor(None, self.paho.connect, host, port, keepalive)
        except OSError as exc:
            raise MqttError(str(exc)) from None
        done, _ = await asyncio.wait({self.connack}, timeout=timeout)
        if not done:
            raise MqttError("Operation timed out")
        reason = self.connack.result()
        if reason is None:
            raise self.error or MqttError("Disconnected before CONNACK")
        if reason.is_failure:
            raise MqttCodeError(reason, "Connection refused")

    async def disconnect(self, timeout: float) -> None:
        """A clean DISCONNECT (the broker then drops the will), waited up to `timeout`."""
        if not self.lost.done() and self.paho.disconnect() == MQTTErrorCode.MQTT_ERR_SUCCESS:
            await asyncio.wait({self.lost}, timeout=timeout)
        self.close()

    def close(self) -> None:
        """Drop the connection now (no DISCONNECT): after a failure, or abandoned."""
        if self._closed:
            return
        self._closed = True
        self._unregister()
        sock = self.paho.socket()
        if sock is not None:
            sock.close()
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

    # ---------------------------------------------------------------- operations

    async def publish(self, name: str, payload: bytes, qos: int, retain: bool,
                      deadline: float, timeout: float) -> None:
        """Publish; return once acknowledged (QoS 0: once handed to paho)."""
        info = self.paho.publish(name, payload, qos, retain)
        if info.rc:  # paho refused it (e.g. not connected any more)
            raise MqttCodeError(info.rc, "Could not publish message")
        if qos == 0 or info.is_published():
            return
        loop = self.loop
        fut: asyncio.Future[None] = loop.create_future()
        mid = info.mid
        self.acks[mid] = (fut, qos)
        timer = loop.call_at(deadline, _expire, fut, f"no {ack_name(qos)} within {timeout:g}s")
        try:
            await fut
        finally:
            timer.cancel()
            self.acks.pop(mid, None)

    async def subscribe(self, name: str, qos: int, timeout: float) -> None:
        rc, mid = self.paho.subscribe(name, qos)
        if rc or mid is None:
            raise MqttCodeError(rc, "Could not subscribe to topic")
        fut: asyncio.Future[None] = self.loop.create_future()
        self.subacks[mid] = fut
        try:
            async with asyncio.timeout(timeout):
                await fut
        except TimeoutError:
            raise MqttError("Operation timed out") from None
        finally:
            self.subacks.pop(mid, None)

    async def next_message(self) -> paho.MQTTMessage:
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

    def ack(self, message: paho.MQTTMessage) -> None:
        """PUBACK a received message (with manual acks on; a no-op otherwise)."""
        if message.qos > 0 and not self.lost.done():
            self.paho.ack(message.mid, message.qos)

    # ---------------------------------------------------------------- paho callbacks

    def _on_connect(self, _c: paho.Client, _u: Any, _flags: paho.ConnectFlags,
                    reason: ReasonCode, _p: Properties | None) -> None:
        if not self.connack.done():
            self.connack.set_result(reason)

    def _on_disconnect(self, _c: paho.Client, _u: Any, _flags: paho.DisconnectFlags,
                       reason: ReasonCode, _p: Properties | None) -> None:
        self._lose(MqttCodeError(reason, "Unexpected disconnection")
                   if reason.is_failure else None)

    def _on_publish(self, _c: paho.Client, _u: Any, mid: int, _r: ReasonCode,
                    _p: Properties) -> None:
        entry = self.acks.pop(mid, None)
        if entry is not None and not entry[0].done():
            entry[0].set_result(None)

    def _on_subscribe(self, _c: paho.Client, _u: Any, mid: int, _r: list[ReasonCode],
                      _p: Properties | None) -> None:
        fut = self.subacks.pop(mid, None)
        if fut is not None and not fut.done():
            fut.set_result(None)

    def _on_message(self, _c: paho.Client, _u: Any, message: paho.MQTTMessage) -> None:
        self.messages.put_nowait(message)

    def _on_socket_open(self, _c: paho.Client, _u: Any, sock: Any) -> None:
        self._on_loop(self._opened, sock, sock.fileno())

    def _on_socket_close(self, _c: paho.Client, _u: Any, _sock: Any) -> None:
        self._on_loop(self._unregister)

    def _on_socket_register_write(self, _c: paho.Client, _u: Any, sock: Any) -> None:
        if threading.get_ident() == self._thread:
            self.loop.add_writer(sock.fileno(), self._writable)
        else:
            self.loop.call_soon_threadsafe(self._register_write, sock.fileno())

    def _on_socket_unregister_write(self, _c: paho.Client, _u: Any, sock: Any) -> None:
        self._on_loop(self.loop.remove_writer, sock.fileno())

    def _on_loop(self, fn: Callable[..., Any], *args: Any) -> None:
        if threading.get_ident() == self._thread:
            fn(*args)
        else:
            self.loop.call_soon_threadsafe(fn, *args)

    # ---------------------------------------------------------------- the loop's side

    def _opened(self, sock: Any, fd: int) -> None:
        if self._closed:  # abandoned while paho was still connecting
            sock.close()
            return
        self._fd = fd
        self.loop.add_reader(fd, self._readable)
        self._misc = self.loop.call_later(MISC_INTERVAL, self._tick)

    def _register_write(self, fd: int) -> None:
        if not self._closed and fd == self._fd:
            self.loop.add_writer(fd, self._writable)

    def _unregister(self) -> None:
        if self._fd >= 0:
            self.loop.remove_reader(self._fd)
            self.loop.remove_writer(self._fd)
            self._fd = -1
        if self._misc is not None:
            self._misc.cancel()
            self._misc = None

    def _readable(self) -> None:
        client = self.paho
        try:
            while client.loop_read() == MQTTErrorCode.MQTT_ERR_SUCCESS:
                # TLS may hold decrypted bytes the socket no longer signals
                sock = client.socket()
                if not isinstance(sock, ssl.SSLSocket) or not sock.pending():
                    break
        except Exception as exc:  # paho raises on a broken socket: the connection is gone
            self._fail(exc)

    def _writable(self) -> None:
        try:
            self.paho.loop_write()
        except Exception as exc:
            self._fail(exc)

    def _tick(self) -> None:
        self._misc = None
        try:
            rc = self.paho.loop_misc()
        except Exception as exc:
            self._fail(exc)
            return
        if rc == MQTTErrorCode.MQTT_ERR_SUCCESS and not self._closed and self._fd >= 0:
            self._misc = self.loop.call_later(MISC_INTERVAL, self._tick)

    def _fail(self, exc: Exception) -> None:
        self._lose(MqttError(str(exc) or type(exc).__name__))
        self.close()


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
        max_inflight: int = 0,
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
        # paho's in-flight window for QoS > 0 (default 20; 0 = no limit). The outbox's
        # concurrency is what bounds it; a limit > 0 also costs paho a scan of every
        # pending message on each PUBACK.
        self._max_inflight = max_inflight
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
        while not self._stopping.is_set():
            up_since: float | None = None
            conn = _Client(self._new_client(), loop)
            try:
                await conn.connect(self.cfg.host, self.cfg.port, self._keepalive, self._timeout)
                up_since = loop.time()
                try:
                    await self._session(conn)
                finally:
                    await conn.disconnect(self._timeout)
                return  # stopped: "offline" published, DISCONNECT sent
            except (MqttError, OSError) as exc:
                error = str(exc) or type(exc).__name__
            except Exception as exc:  # a bug or a paho surprise: keep the link alive
                log.exception("mqtt.error", error=repr(exc))
                error = repr(exc)
            finally:
                conn.close()
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

    def _new_client(self) -> paho.Client:
        cfg = self.cfg
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            # With a command subscription, a persistent session: the broker keeps the
            # commands (QoS 1) published while the gateway is away and delivers them
            # when it is back. A publisher-only link (action worker) needs no session.
            clean_session=not (self.announce and self._on_command is not None),
            protocol=paho.MQTTv311,
            reconnect_on_failure=False,  # `run()` reconnects, with a fresh client
        )
        client.max_inflight_messages_set(self._max_inflight)
        client.max_queued_messages_set(0)  # unlimited; the outbox bounds what is queued
        if cfg.username is not None:
            client.username_pw_set(cfg.username, cfg.password_value())
        if cfg.tls:
            client.tls_set_context(ssl.create_default_context())
        if self.announce:
            client.will_set(self.status_topic, STATUS_OFFLINE, qos=1, retain=True)
        if self._on_command is not None:
            client.manual_ack_set(True)  # a command is acknowledged once stored
        return client

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
            payload = bytes(message.payload)
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
        `MqttPublishTimeoutError`, `MqttCodeError` (paho refused it), or ValueError
        (invalid topic or QoS, payload too large).
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
