"""The action worker process (`[gateway] action_workers = 1`): runs the actions' network
work (webhook requests, SMTP sessions, MQTT publishes) in a second process, so that on
a multi-core host it gets a core of its own instead of sharing the daemon's event loop
with the acks.

The daemon keeps the queue: it writes, claims, dispatches and records every job exactly
as it does without a worker (one writer, group commits, leases, retries). Only
`Action.run` crosses the process boundary: the daemon's outbox runs a `RemoteAction`
per kind, which sends the job over a socketpair and waits for its `Result`. Each side
sends what accumulated during one event-loop turn as one frame (a 4-byte length, then
a pickled list of tuples; the peer is our own child, started with the socket).

If the worker dies, the jobs it held come back as retryable failures (an attempt is
recorded, the job is retried with backoff: at-least-once, as after a crash), and the
daemon starts a new worker. SIGHUP to the daemon is passed on: the worker re-reads the
configuration (callback profiles, SMTP settings) after the daemon accepted it.
"""

from __future__ import annotations

import asyncio
import contextlib
import pickle
import signal
import socket
import struct
import sys
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import structlog

from gateway.actions.base import Action, Job, LazyJson, Outcome, Result
from gateway.actions.webhook import WebhookAction
from gateway.config import Config, ConfigError, load_config

log = structlog.get_logger("gateway.worker")

_LEN = struct.Struct("!I")
JobMsg = tuple[int, str, str, str, int, bytes]  # id, kind, target, event_id, attempts, raw
ResultMsg = tuple[int, str, str, int | None, float]  # id, outcome, detail, status, ms


class Channel(asyncio.Protocol):
    """Framed, batched messages over a stream socket: `send` queues an item; everything
    queued in one event-loop turn goes out as one frame."""

    def __init__(self, on_items: Callable[[list[Any]], None],
                 on_lost: Callable[[], None]) -> None:
        self.on_items = on_items
        self.on_lost = on_lost
        self.transport: asyncio.Transport | None = None
        self._out: list[Any] = []
        self._buf = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def send(self, item: Any) -> None:
        if not self._out:
            asyncio.get_running_loop().call_soon(self._flush)
        self._out.append(item)

    def _flush(self) -> None:
        items, self._out = self._out, []
        if self.transport is None or self.transport.is_closing():
            return
        frame = pickle.dumps(items, protocol=pickle.HIGHEST_PROTOCOL)
        self.transport.write(_LEN.pack(len(frame)) + frame)

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        pos = 0
        while len(buf) - pos >= 4:
            (n,) = _LEN.unpack_from(buf, pos)
            if len(buf) - pos - 4 < n:
                break
            items = pickle.loads(buf[pos + 4 : pos + 4 + n])
            pos += 4 + n
            self.on_items(items)
        if pos:
            del buf[:pos]

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.on_lost()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


# --- the daemon's side ----------------------------------------------------------------
class RemoteAction:
    """Stands in the daemon's outbox for an action the worker runs."""

    kind: ClassVar[str] = "remote"

    def __init__(self, name: str, concurrency: int, worker: WorkerProcess) -> None:
        self.name = name
        self.concurrency = concurrency
        self.worker = worker

    async def run(self, job: Job) -> Result:
        return await self.worker.call(job)

    async def close(self) -> None:
        """The worker's own actions are closed when it stops."""


class WorkerProcess:
    """The daemon's handle on its action worker: start, call, restart, reload, stop."""

    CONNECT_WAIT = 10.0  # how long a job waits for a (re)starting worker

    def __init__(self, config_file: str) -> None:
        self.config_file = config_file
        self.proc: asyncio.subprocess.Process | None = None
        self.channel: Channel | None = None
        self.connected = asyncio.Event()
        self._pending: dict[int, asyncio.Future[Result]] = {}
        self._stopping = False

    def remote(self, actions: Mapping[str, Action]) -> dict[str, Action]:
        """Proxies for `actions` (same kinds and concurrency), run by the worker."""
        return {k: RemoteAction(k, a.concurrency, self) for k, a in actions.items()}

    async def call(self, job: Job) -> Result:
        if not self.connected.is_set():
            try:
                await asyncio.wait_for(self.connected.wait(), self.CONNECT_WAIT)
            except TimeoutError:
                return Result(outcome=Outcome.RETRY, detail="action worker not running")
        channel = self.channel
        if channel is None or job.id in self._pending:
            return Result(outcome=Outcome.RETRY, detail="action worker not running")
        fut: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._pending[job.id] = fut
        channel.send((job.id, job.kind, job.target, job.event_id, job.attempts, job.body()))
        try:
            return await fut
        finally:
            self._pending.pop(job.id, None)

    def _on_results(self, items: list[ResultMsg]) -> None:
        pending = self._pending
        for job_id, outcome, detail, status, ms in items:
            fut = pending.get(job_id)
            if fut is not None and not fut.done():
                fut.set_result(Result(outcome=Outcome(outcome), detail=detail, status=status,
                                      latency_ms=ms))

    def _on_lost(self) -> None:
        self.connected.clear()
        self.channel = None
        for fut in self._pending.values():
            if not fut.done():
                fut.set_result(Result(outcome=Outcome.RETRY,
                                      detail="the action worker exited before answering"))

    async def run(self) -> None:
        """Keep one worker running until `stop()`, restarting it if it dies."""
        loop = asyncio.get_running_loop()
        delay = 1.0
        while not self._stopping:
            ours, theirs = socket.socketpair()
            try:
                self.proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "gateway", "action-worker", "-c", self.config_file,
                    "--fd", str(theirs.fileno()), pass_fds=(theirs.fileno(),),
                    stdin=asyncio.subprocess.DEVNULL)
            finally:
                theirs.close()
            _, channel = await loop.create_unix_connection(
                lambda: Channel(self._on_results, self._on_lost), sock=ours)
            self.channel = channel
            self.connected.set()
            log.info("worker.spawned", pid=self.proc.pid)
            rc = await self.proc.wait()
            channel.close()
            self._on_lost()
            if self._stopping:
                return
            log.error("worker.died", returncode=rc, restart_in=delay)
            await asyncio.sleep(delay)
            delay = min(30.0, delay * 2)

    def reload(self) -> None:
        """Pass a (validated) reload on: the worker re-reads the file."""
        proc = self.proc
        if proc is not None and proc.returncode is None:
            proc.send_signal(signal.SIGHUP)

    async def stop(self, timeout: float) -> None:
        self._stopping = True
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()


# --- the worker's side ----------------------------------------------------------------
async def run(cfg: Config, fd: int) -> int:
    """The worker process: run every job the daemon sends, answer with its Result."""
    holder = [cfg]
    gw = cfg.gateway
    actions: dict[str, Action] = {"webhook": WebhookAction(
        lambda: holder[0].callback_profiles,
        callback_secret=lambda: a.callback_secret_value() if (a := holder[0].api) else None)}
    link = None
    if cfg.smtp is not None:
        from gateway.actions.email import EmailAction

        actions["email"] = EmailAction(
            lambda: holder[0].smtp,
            reply_domain=lambda: er.domain if (er := holder[0].email_replies) else None)
    if cfg.mqtt is not None:
        from gateway.actions.mqtt import MqttAction, MqttLink

        # A publisher only: the daemon owns the status topic, its will and the commands.
        link = MqttLink(cfg.mqtt, gateway_name=gw.name, on_command=None, announce=False)
        actions["mqtt"] = MqttAction(link, qos=cfg.mqtt.qos)

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    running: set[asyncio.Task[None]] = set()

    async def run_one(job: Job) -> None:
        action = actions.get(job.kind)
        if action is None:
            res = Result(outcome=Outcome.RETRY, detail=f"no {job.kind} action in the worker")
        else:
            try:
                res = await action.run(job)
            except Exception as exc:  # an action must not raise; if it does, retry
                res = Result(outcome=Outcome.RETRY, detail=f"internal error: {exc!r}")
        channel.send((job.id, res.outcome.value, res.detail, res.status, res.latency_ms))

    def on_jobs(items: list[JobMsg]) -> None:
        for job_id, kind, target, event_id, attempts, raw in items:
            job = Job(id=job_id, kind=kind, target=target, event_id=event_id,
                      payload=LazyJson(raw), attempts=attempts, raw=raw)
            task = loop.create_task(run_one(job))
            running.add(task)
            task.add_done_callback(running.discard)

    def reload() -> None:
        try:
            holder[0] = load_config(cfg.source_file)
        except (ConfigError, ValueError) as exc:
            log.error("worker.reload_rejected", error=str(exc))
        else:
            log.info("worker.reloaded")

    _, channel = await loop.create_unix_connection(
        lambda: Channel(on_jobs, stop.set), sock=socket.socket(fileno=fd))
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, reload)
    log.info("worker.started", actions=sorted(actions))
    link_task = loop.create_task(link.run(), name="mqtt") if link is not None else None
    try:
        await stop.wait()
        # Let the jobs in hand finish (the daemon waits for them too), then close.
        if running:
            await asyncio.wait(running, timeout=gw.shutdown_timeout / 2)
        await asyncio.sleep(0)  # the last results' flush
        channel.close()
    finally:
        for action in actions.values():
            with contextlib.suppress(Exception):
                await action.close()
        if link is not None:
            await link.stop()
        if link_task is not None:
            link_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await link_task
    log.info("worker.stopped")
    return 0
