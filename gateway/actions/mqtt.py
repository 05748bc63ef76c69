"""MQTT: one broker connection for the whole daemon, and the `mqtt` action on top of it.

`MqttLink` owns the single `aiomqtt.Client` connection (SPEC §4): it keeps it up with a
reconnect loop (capped exponential backoff with jitter), registers the last will
(retained ``offline`` on ``P/gateway/{name}/status``), publishes the retained ``online``
once connected, subscribes to the command topic ``P/mt/send`` and hands every command
payload to `on_command`. Events go out through `MqttLink.publish`, which returns only
once the broker has acknowledged the message (PUBACK for QoS 1)::

    link = MqttLink(cfg, gateway_name="gw1", on_command=queue_mt)
    async with link:                      # runs link.run() in a background task
        action = MqttAction(link, qos=cfg.qos)
        ...                               # the outbox calls action.run(job)
    # leaving: retained "offline" published, then a clean DISCONNECT

`MqttAction` never retries by itself: not connected, no PUBACK in time or a broken
connection is `Outcome.RETRY` and the outbox schedules the next attempt (the outbox is
what makes events durable across a broker outage). A QoS 1 event may therefore reach
subscribers more than once (a PUBACK lost with the connection); subscribers deduplicate
on the event's ``id``.

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
import math
import random
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, ClassVar, Self

import aiomqtt
import structlog

from gateway.actions.base import Job, Outcome, Result
from gateway.config import MqttConfig
from gateway.log import describe_error

__all__ = [
    "COMMAND_SUFFIX",
    "MqttAction",
    "MqttConnectionLostError",
    "MqttLink",
    "MqttLinkError",
    "MqttNotConnectedError",
    "MqttPublishTimeoutError",
    "backoff_delay",
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


def backoff_delay(
    attempt: int, low: float, high: float, rand: Callable[[], float] = random.random
) -> float:
    """Delay before reconnect attempt `attempt` (0-based): ``low * 2**attempt`` capped at
    `high`, with "equal jitter" (uniform in the upper half), never below `low`."""
    base = min(high, low * 2.0 ** min(attempt, 32))
    return max(low, base / 2 + rand() * base / 2)


class MqttLinkError(aiomqtt.MqttError):
    """A publish through the link failed; the message says why."""


class MqttNotConnectedError(MqttLinkError):
    """No broker connection came up within the publish timeout."""


class MqttConnectionLostError(MqttLinkError):
    """The connection broke (or the link stopped) before the broker acknowledged."""


class MqttPublishTimeoutError(MqttLinkError):
    """Connected, but the broker did not acknowledge within the publish timeout."""


@dataclass(slots=True)
class _Connection:
    client: aiomqtt.Client
    lost: asyncio.Future[None]  # resolved when this connection is no longer usable
    # publishes awaiting their ack -> the ack's name
    pending: dict[asyncio.Future[None], str] = field(default_factory=dict)
    fast: bool = False  # see `MqttLink.publish`


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
        self._conn: _Connection | None = None
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
            try:
                client = self._new_client()
                async with client:
                    up_since = loop.time()
                    await self._session(client)
                return  # stopped: "offline" published, DISCONNECT sent
            except (aiomqtt.MqttError, OSError) as exc:
                error = str(exc) or type(exc).__name__
            except Exception as exc:  # a bug or a paho surprise: keep the link alive
                log.exception("mqtt.error", error=repr(exc))
                error = repr(exc)
            if up_since is not None and loop.time() - up_since >= self._reconnect_max:
                attempt = 0  # a connection that lasted: start the backoff afresh
            delay = backoff_delay(attempt, self._reconnect_min, self._reconnect_max)
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

    def _new_client(self) -> aiomqtt.Client:
        cfg = self.cfg
        client = aiomqtt.Client(
            cfg.host,
            cfg.port,
            username=cfg.username,
            password=cfg.password_value(),
            identifier=self.client_id,
            will=aiomqtt.Will(self.status_topic, STATUS_OFFLINE, qos=1, retain=True)
            if self.announce else None,
            keepalive=self._keepalive,
            timeout=self._timeout,
            max_inflight_messages=self._max_inflight,
            max_queued_outgoing_messages=0,  # unlimited; the outbox bounds what is queued
            # With a command subscription, a persistent session: the broker keeps the
            # commands (QoS 1) published while the gateway is away and delivers them when
            # it is back. A publisher-only link (action worker) needs no session.
            clean_session=not (self.announce and self._on_command is not None),
            tls_context=ssl.create_default_context() if cfg.tls else None,
        )
        # aiomqtt warns on every call once more than 10 are pending; we want hundreds.
        client.pending_calls_threshold = 1 << 30
        if self._on_command is not None:
            # A command is acknowledged once stored (see `_consume`), not on arrival.
            # (aiomqtt 2.4 has no option for it; its paho client has.)
            client._client.manual_ack_set(True)
        return client

    async def _session(self, client: aiomqtt.Client) -> None:
        """One connection's life, from CONNACK to `stop()` or an MqttError."""
        conn = _Connection(client, asyncio.get_running_loop().create_future(),
                           fast=_fast_publish_ok(client))
        try:
            # Subscribed before "online": a command sent on seeing "online" is never
            # published before its subscription exists (the first connection ever).
            if self._on_command is not None:
                await client.subscribe(self.command_filter, qos=1)
            if self.announce:
                await client.publish(self.status_topic, STATUS_ONLINE, qos=1, retain=True)
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
                await self._serve(client)
            except asyncio.CancelledError:
                await self._say_offline(client)
                raise
            await self._say_offline(client)
        finally:
            self.connected.clear()
            self._conn = None
            if not conn.lost.done():
                conn.lost.set_result(None)
            for pub, ack in conn.pending.items():
                if not pub.done():
                    pub.set_exception(MqttConnectionLostError(f"connection lost before {ack}"))

    async def _serve(self, client: aiomqtt.Client) -> None:
        """Dispatch commands until stop() (returns) or the connection breaks (raises)."""
        consume = asyncio.create_task(self._consume(client))
        stop = asyncio.create_task(self._stopping.wait())
        try:
            done, _ = await asyncio.wait({consume, stop}, return_when=asyncio.FIRST_COMPLETED)
            if consume in done:
                consume.result()  # raises the MqttError that ended the iteration
                raise aiomqtt.MqttError("message iteration ended")
            # Stopping: new publishes wait (then RETRY); let a command being queued finish.
            self.connected.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), self._timeout)
        finally:
            for task in (consume, stop):
                task.cancel()
            await asyncio.gather(consume, stop, return_exceptions=True)

    async def _consume(self, client: aiomqtt.Client) -> None:
        # Iterated even without a subscription: it raises MqttError on disconnection.
        async for message in client.messages:
            handler = self._on_command
            if handler is None or not message.topic.matches(self.command_topic):
                _ack(client, message)  # nothing of ours: never leave it pending
                continue
            payload = _as_bytes(message.payload)
            self._idle.clear()
            try:
                stored = await self._store_command(client, handler, payload)
            finally:
                self._idle.set()
            if stored:
                _ack(client, message)

    async def _store_command(self, client: aiomqtt.Client, handler: CommandHandler,
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
                delay = backoff_delay(attempt, self._reconnect_min,
                                      max(self._reconnect_min, min(self._reconnect_max, 5.0)))
                attempt += 1
                log.warning("mqtt.command_not_stored", size=len(payload), attempt=attempt,
                            delay=round(delay, 3), error=describe_error(exc))
            waits: set[asyncio.Future[Any]] = {asyncio.ensure_future(self._stopping.wait())}
            lost = getattr(client, "_disconnected", None)
            if isinstance(lost, asyncio.Future):
                waits.add(lost)
            try:
                done, _ = await asyncio.wait(waits, timeout=delay,
                                             return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waits:
                    if w is not lost:
                        w.cancel()
            if done:
                return False

    async def _say_offline(self, client: aiomqtt.Client) -> None:
        if not self.announce:
            return
        try:
            await client.publish(
                self.status_topic, STATUS_OFFLINE, qos=1, retain=True, timeout=self._timeout
            )
        except (aiomqtt.MqttError, OSError) as exc:
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
        (QoS 2), written to the socket (QoS 0).

        Waits up to `timeout` seconds in all (for a connection, then for the ack).
        Raises `MqttNotConnectedError`, `MqttConnectionLostError`,
        `MqttPublishTimeoutError`, another `aiomqtt.MqttError` (paho refused it), or
        ValueError (invalid topic or QoS, payload too large).
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
        # Straight to paho, and the ack awaited on a plain future that paho's on_publish
        # resolves through aiomqtt's own table of pending publishes. aiomqtt's `publish`
        # does the same with a semaphore check, an asyncio.Event and two scans of every
        # pending call per message: with hundreds in flight that was most of the
        # per-event cost, the one the MQTT drain rate is made of. (aiomqtt is pinned;
        # `_fast_publish_ok` checks that the two attributes are there.)
        client = conn.client
        if not conn.fast:
            return await self._publish_slow(conn, topic, payload, qos, retain, deadline)
        info = client._client.publish(topic, payload, qos, retain)
        if info.rc != 0:  # paho refused it (e.g. not connected any more)
            raise aiomqtt.MqttCodeError(info.rc, "Could not publish message")
        if qos == 0 or info.is_published():
            return
        fut: asyncio.Future[None] = loop.create_future()
        mid = info.mid
        acks = client._pending_publishes
        acks[mid] = _Ack(fut)  # type: ignore[assignment]
        conn.pending[fut] = _ack_name(qos)
        timer = loop.call_at(deadline, _expire, fut,
                             f"no {_ack_name(qos)} within {timeout:g}s")
        try:
            await fut
        finally:
            timer.cancel()
            conn.pending.pop(fut, None)
            acks.pop(mid, None)

    async def _publish_slow(self, conn: _Connection, topic: str, payload: bytes, qos: int,
                            retain: bool, deadline: float) -> None:
        """Through aiomqtt's public `publish` (when its internals are not as expected)."""
        loop = asyncio.get_running_loop()
        pub: asyncio.Future[None] = loop.create_future()
        task = loop.create_task(conn.client.publish(topic, payload, qos, retain,
                                                    timeout=math.inf))
        task.add_done_callback(lambda t: _chain(t, pub))
        conn.pending[pub] = _ack_name(qos)
        timer = loop.call_at(deadline, _expire, pub, f"no {_ack_name(qos)} in time")
        try:
            await pub
        finally:
            timer.cancel()
            task.cancel()
            conn.pending.pop(pub, None)


class MqttAction:
    """The `mqtt` action: publish the job's payload as JSON on ``job.target`` (a full
    topic, prefix included) through the shared `MqttLink`."""

    kind: ClassVar[str] = "mqtt"

    def __init__(
        self,
        link: MqttLink,
        *,
        qos: int = 1,
        publish_timeout: float = 10.0,
        concurrency: int = 128,
    ) -> None:
        if qos not in (0, 1, 2):
            raise ValueError(f"expected qos 0, 1 or 2 (got {qos})")
        self.link = link
        self.qos = qos
        self.publish_timeout = publish_timeout
        self.concurrency = concurrency

    async def run(self, job: Job) -> Result:
        started = time.perf_counter()

        def result(outcome: Outcome, detail: str) -> Result:
            latency = (time.perf_counter() - started) * 1000
            return Result(outcome=outcome, detail=detail, latency_ms=round(latency, 3))

        target = job.target
        if not target or any(c in target for c in "+#\0"):
            return result(Outcome.FAIL, f"invalid topic {target!r}")
        try:
            payload = job.body()
        except (TypeError, ValueError) as exc:
            return result(Outcome.FAIL, f"payload is not JSON-serialisable: {exc}")
        try:
            await self.link.publish(target, payload, self.qos, timeout=self.publish_timeout)
        except MqttLinkError as exc:
            return result(Outcome.RETRY, str(exc))
        except aiomqtt.MqttError as exc:
            return result(Outcome.RETRY, f"publish failed: {exc}")
        except ValueError as exc:  # paho: bad topic/QoS, payload too large
            return result(Outcome.FAIL, f"publish refused: {exc}")
        except Exception as exc:  # never raise into the outbox
            return result(Outcome.RETRY, f"publish failed: {type(exc).__name__}: {exc}")
        return result(Outcome.OK, _ack_name(self.qos))

    async def close(self) -> None:
        """Nothing to do: the link belongs to whoever created it."""


class _Ack:
    """Stands for aiomqtt's asyncio.Event in its table of pending publishes: paho's
    on_publish calls `set()`."""

    __slots__ = ("fut",)

    def __init__(self, fut: asyncio.Future[None]) -> None:
        self.fut = fut

    def set(self) -> None:
        if not self.fut.done():
            self.fut.set_result(None)


def _expire(fut: asyncio.Future[None], detail: str) -> None:
    if not fut.done():
        fut.set_exception(MqttPublishTimeoutError(detail))


def _chain(task: asyncio.Task[None], fut: asyncio.Future[None]) -> None:
    if fut.done() or task.cancelled():
        return
    exc = task.exception()
    if exc is None:
        fut.set_result(None)
    else:
        fut.set_exception(exc)


def _fast_publish_ok(client: aiomqtt.Client) -> bool:
    return isinstance(getattr(client, "_pending_publishes", None), dict) and hasattr(
        getattr(client, "_client", None), "publish")


def _ack_name(qos: int) -> str:
    return {0: "sent (QoS 0)", 1: "PUBACK", 2: "PUBCOMP"}.get(qos, "ack")


def _ack(client: aiomqtt.Client, message: aiomqtt.Message) -> None:
    if message.qos > 0:
        client._client.ack(message.mid, message.qos)


def _as_bytes(payload: Any) -> bytes:
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, bytearray):
        return bytes(payload)
    if payload is None:
        return b""
    return str(payload).encode()
