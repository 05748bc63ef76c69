"""The action worker processes (`[gateway] action_workers = N`): run the actions'
network work (webhook requests, SMTP sessions, MQTT publishes) in N more processes, so
that on a multi-core host they get cores of their own instead of sharing the daemon's
event loop with the acks.

The daemon keeps the queue: it writes, claims, dispatches and records every job exactly
as it does without workers (one writer, group commits, leases, retries). Only
`Action.run` crosses the process boundary: the daemon's outbox runs a `RemoteAction`
per kind, which sends the job over a socketpair to a worker and is called back with
its `Result` (no task, no future per job). MQTT events go to a worker chosen by their
topic (one connection per topic: their order is kept), other jobs to the worker with
the fewest in hand. Each side sends what accumulated during one event-loop turn as one
frame: a 4-byte length, then the items in a plain binary layout (`encode_jobs`,
`encode_results`: fixed-size headers, UTF-8 strings, the stored body as it is; no
pickle).

A worker says it is ready (its imports done, its actions built) with an empty frame;
the daemon binds to its SMSCs only then (`WorkerPool.wait_ready`), so that a backlog an
SMSC delivers on bind is not acknowledged while N interpreters start beside it.

If a worker dies, the jobs it held come back as retryable failures (an attempt is
recorded, the job is retried with backoff: at-least-once, as after a crash), and the
daemon starts a new one. SIGHUP to the daemon is passed on: the workers re-read the
configuration (callback profiles, SMTP settings) after the daemon accepted it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import struct
import sys
import zlib
from collections.abc import Callable, Mapping
from typing import ClassVar, Generic, TypeVar, cast

import structlog

from gateway import backoff
from gateway.actions import registry
from gateway.actions.base import Action, Job, LazyJson, Outcome, Result
from gateway.actions.kind import Runtime
from gateway.config import Config, ConfigError, load_config

log = structlog.get_logger("gateway.worker")

INDEX_ENV = "VMN_ACTION_WORKER"  # the worker's number (0..N-1), set by the daemon
_LEN = struct.Struct("!I")
JobMsg = tuple[int, str, str, str, int, bytes]  # id, kind, target, event_id, attempts, raw
ResultMsg = tuple[int, Outcome, str, int | None, float]  # id, outcome, detail, status, ms
T = TypeVar("T")

# id, attempts, then the byte lengths of kind, target, event_id, raw
_JOB = struct.Struct("!qIIIII")
# id, outcome (index in _OUTCOMES), has a status, status, latency ms, length of detail
_RESULT = struct.Struct("!qBBidI")
_OUTCOMES = tuple(Outcome)  # members: no Outcome(value) lookup per result
_OUTCOME_INDEX = {v: i for i, v in enumerate(_OUTCOMES)}


def encode_jobs(items: list[JobMsg]) -> bytes:
    out: list[bytes] = []
    for job_id, kind, target, event_id, attempts, raw in items:
        k, t, e = kind.encode(), target.encode(), event_id.encode()
        out += (_JOB.pack(job_id, attempts, len(k), len(t), len(e), len(raw)), k, t, e, raw)
    return b"".join(out)


def decode_jobs(buf: bytes) -> list[JobMsg]:
    items: list[JobMsg] = []
    pos, end, size = 0, len(buf), _JOB.size
    while pos < end:
        job_id, attempts, nk, nt, ne, nr = _JOB.unpack_from(buf, pos)
        pos += size
        kind = buf[pos:pos + nk].decode()
        pos += nk
        target = buf[pos:pos + nt].decode()
        pos += nt
        event_id = buf[pos:pos + ne].decode()
        pos += ne
        items.append((job_id, kind, target, event_id, attempts, buf[pos:pos + nr]))
        pos += nr
    return items


def encode_results(items: list[ResultMsg]) -> bytes:
    out: list[bytes] = []
    for job_id, outcome, detail, status, ms in items:
        d = detail.encode("utf-8", "replace")
        out += (_RESULT.pack(job_id, _OUTCOME_INDEX[outcome], status is not None,
                             status or 0, ms, len(d)), d)
    return b"".join(out)


def decode_results(buf: bytes) -> list[ResultMsg]:
    items: list[ResultMsg] = []
    pos, end, size = 0, len(buf), _RESULT.size
    while pos < end:
        job_id, outcome, has_status, status, ms, nd = _RESULT.unpack_from(buf, pos)
        pos += size
        detail = buf[pos:pos + nd].decode("utf-8", "replace")
        pos += nd
        items.append((job_id, _OUTCOMES[outcome], detail, status if has_status else None, ms))
    return items


class Channel(asyncio.Protocol, Generic[T]):
    """Framed, batched messages over a stream socket: `send` queues an item; everything
    queued in one event-loop turn goes out as one frame (`encode`d; `decode` reads one
    back into the items handed to `on_items`)."""

    def __init__(self, on_items: Callable[[list[T]], None], on_lost: Callable[[], None],
                 encode: Callable[[list[T]], bytes],
                 decode: Callable[[bytes], list[T]]) -> None:
        self.on_items = on_items
        self.on_lost = on_lost
        self.encode = encode
        self.decode = decode
        self.transport: asyncio.Transport | None = None
        self._out: list[T] = []
        self._buf = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport: asyncio's, or uvloop's (not an asyncio.Transport subclass).
        self.transport = cast(asyncio.Transport, transport)

    def send(self, item: T) -> None:
        if not self._out:
            asyncio.get_running_loop().call_soon(self._flush)
        self._out.append(item)

    def send_empty(self) -> None:
        """An empty frame (nothing is queued yet): the worker's "ready"."""
        self._flush()

    def _flush(self) -> None:
        items, self._out = self._out, []
        if self.transport is None or self.transport.is_closing():
            return
        frame = self.encode(items)
        self.transport.write(_LEN.pack(len(frame)) + frame)

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        pos = 0
        while len(buf) - pos >= 4:
            (n,) = _LEN.unpack_from(buf, pos)
            if len(buf) - pos - 4 < n:
                break
            items = self.decode(bytes(buf[pos + 4 : pos + 4 + n]))
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
Done = Callable[[Result], None]


class RemoteAction:
    """Stands in the daemon's outbox for an action the workers run."""

    kind: ClassVar[str] = "remote"

    def __init__(self, name: str, concurrency: int, pool: WorkerPool) -> None:
        self.name = name
        self.concurrency = concurrency
        self.pool = pool

    def start(self, job: Job, done: Done) -> None:
        """Send `job` to a worker; `done(result)` is called when it answers (or dies)."""
        self.pool.start(job, done)

    async def run(self, job: Job) -> Result:
        fut: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self.pool.start(job, fut.set_result)
        return await fut

    async def close(self) -> None:
        """The workers' own actions are closed when they stop."""


class WorkerPool:
    """The daemon's handle on its action workers: start, call, reload, stop."""

    def __init__(self, config_file: str, count: int = 1) -> None:
        self.workers = [WorkerProcess(config_file, i) for i in range(max(1, count))]

    def remote(self, actions: Mapping[str, Action]) -> dict[str, Action]:
        """Proxies for `actions` (same kinds and concurrency), run by the workers."""
        return {k: RemoteAction(k, a.concurrency, self) for k, a in actions.items()}

    def start(self, job: Job, done: Done) -> None:
        workers = self.workers
        if len(workers) == 1:
            worker = workers[0]
        elif job.kind in registry.ORDERED_JOBS:  # one worker per target: kept in order
            worker = workers[zlib.crc32(job.target.encode()) % len(workers)]
        else:
            # the least loaded of those running (one restarting is taken last)
            worker = min(workers, key=lambda w: (w.channel is None, len(w.pending)))
        worker.start(job, done)

    async def wait_ready(self, timeout: float) -> bool:
        """Wait until every worker said it is ready, at most `timeout` seconds; whether
        they all did."""
        try:
            async with asyncio.timeout(timeout):
                for w in self.workers:
                    await w.ready.wait()
        except TimeoutError:
            return False
        return True

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            for w in self.workers:
                tg.create_task(w.run(), name=f"action-worker-{w.index}")

    def reload(self) -> None:
        for w in self.workers:
            w.reload()

    async def stop(self, timeout: float) -> None:
        await asyncio.gather(*(w.stop(timeout) for w in self.workers))


class WorkerProcess:
    """One action worker: start, call, restart, reload, stop."""

    CONNECT_WAIT = 10.0  # how long a job waits for a (re)starting worker

    def __init__(self, config_file: str, index: int = 0) -> None:
        self.config_file = config_file
        self.index = index
        self.proc: asyncio.subprocess.Process | None = None
        self.channel: Channel[JobMsg] | None = None
        self.connected = asyncio.Event()
        self.ready = asyncio.Event()  # its first frame came: it is up (stays set)
        self.pending: dict[int, Done] = {}
        self._waiting: list[tuple[Job, Done]] = []  # sent once the worker is connected
        self._stopping = False

    def start(self, job: Job, done: Done) -> None:
        if job.id in self.pending:
            done(Result(outcome=Outcome.RETRY, detail="action worker: job already running"))
            return
        channel = self.channel
        if channel is None:
            if not self._waiting:
                asyncio.get_running_loop().create_task(self._send_when_connected())
            self._waiting.append((job, done))
            return
        self.pending[job.id] = done
        channel.send((job.id, job.kind, job.target, job.event_id, job.attempts, job.body()))

    async def _send_when_connected(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.connected.wait(), self.CONNECT_WAIT)
        waiting, self._waiting = self._waiting, []
        for job, done in waiting:
            if self.channel is None:
                done(Result(outcome=Outcome.RETRY, detail="action worker not running"))
            else:
                self.start(job, done)

    def _on_results(self, items: list[ResultMsg]) -> None:
        if not items:  # the worker's ready frame (see `run` below)
            self.ready.set()
            return
        pending = self.pending
        for job_id, outcome, detail, status, ms in items:
            done = pending.pop(job_id, None)
            if done is not None:
                done(Result(outcome=outcome, detail=detail, status=status,
                            latency_ms=ms))

    def _on_lost(self) -> None:
        self.connected.clear()
        self.channel = None
        pending, self.pending = self.pending, {}
        for done in pending.values():
            done(Result(outcome=Outcome.RETRY,
                        detail="the action worker exited before answering"))

    async def run(self) -> None:
        """Keep this worker running until `stop()`, restarting it if it dies."""
        loop = asyncio.get_running_loop()
        restarts = 0
        while not self._stopping:
            ours, theirs = socket.socketpair()
            try:
                self.proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "gateway", "action-worker", "-c", self.config_file,
                    "--fd", str(theirs.fileno()), pass_fds=(theirs.fileno(),),
                    stdin=asyncio.subprocess.DEVNULL,
                    env={**os.environ, INDEX_ENV: str(self.index)})
            finally:
                theirs.close()
            _, channel = await loop.create_unix_connection(
                lambda: Channel(self._on_results, self._on_lost, encode_jobs, decode_results),
                sock=ours)
            self.channel = channel
            self.connected.set()
            log.info("worker.spawned", pid=self.proc.pid, index=self.index)
            rc = await self.proc.wait()
            channel.close()
            self._on_lost()
            if self._stopping:
                return
            delay = backoff.delay(restarts, 1.0, 30.0, jitter=0)
            restarts += 1
            log.error("worker.died", returncode=rc, restart_in=delay, index=self.index)
            await asyncio.sleep(delay)

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
    link = None
    if cfg.mqtt is not None:
        from gateway.actions.mqtt import MqttLink

        # A publisher only: the daemon owns the status topic, its will and the commands.
        link = MqttLink(cfg.mqtt, gateway_name=gw.name, on_command=None, announce=False)
        index = int(os.environ.get(INDEX_ENV) or 0)
        if index:  # one client id per worker: the broker drops a second session
            link.client_id += f"-{index}"
    actions: dict[str, Action] = registry.runners(cfg, Runtime(lambda: holder[0], link))

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
        channel.send((job.id, res.outcome, res.detail, res.status, res.latency_ms))

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
        lambda: Channel(on_jobs, stop.set, encode_results, decode_jobs),
        sock=socket.socket(fileno=fd))
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, reload)
    log.info("worker.started", actions=sorted(actions))
    channel.send_empty()  # ready: the daemon may bind now
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
