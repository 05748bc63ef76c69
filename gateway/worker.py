"""The action worker process (`[gateway] action_workers = 1`): runs the outbox (webhooks,
emails, MQTT events) in a second process, so that on a multi-core host the drains get
a core of their own instead of sharing the daemon's event loop with the acks.

It claims jobs from the database like any instance (leases make that safe) and is
woken by a byte on its stdin each time the daemon queued jobs; it also polls every
`mt_poll_interval`. The daemon starts it, restarts it if it dies, and stops it."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys

import structlog

from gateway.actions.base import Action
from gateway.actions.webhook import WebhookAction
from gateway.config import Config
from gateway.outbox import Outbox
from gateway.storage import jobs as jobq
from gateway.storage.db import create_engine
from gateway.storage.repo import Store

log = structlog.get_logger("gateway.worker")


class _Wake(asyncio.Protocol):
    def __init__(self, outbox: Outbox, closed: asyncio.Event) -> None:
        self.outbox = outbox
        self.closed = closed

    def data_received(self, data: bytes) -> None:
        self.outbox.wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.set()  # the daemon is gone: stop too


async def run(cfg: Config) -> int:
    gw = cfg.gateway
    engine = create_engine(gw.database, synchronous=gw.sqlite_synchronous.value)
    store = Store(engine, synchronous=gw.sqlite_synchronous.value)
    actions: dict[str, Action] = {"webhook": WebhookAction(lambda: cfg.callback_profiles)}
    link = None
    if cfg.smtp is not None:
        from gateway.actions.email import EmailAction

        actions["email"] = EmailAction(
            lambda: cfg.smtp,
            reply_domain=lambda: cfg.email_replies.domain if cfg.email_replies else None)
    if cfg.mqtt is not None:
        from gateway.actions.mqtt import MqttAction, MqttLink

        link = MqttLink(cfg.mqtt, gateway_name=gw.name, on_command=None, announce=False)
        actions["mqtt"] = MqttAction(link, qos=cfg.mqtt.qos)
    outbox = Outbox(store, actions, backoff=jobq.Backoff(gw.retry_base, gw.retry_max),
                    poll_interval=gw.mt_poll_interval)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    await loop.connect_read_pipe(lambda: _Wake(outbox, stop), sys.stdin)
    log.info("worker.started", actions=sorted(actions))
    try:
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(outbox.run(), name="outbox")]
            if link is not None:
                tasks.append(tg.create_task(link.run(), name="mqtt"))
            await stop.wait()
            await outbox.stop(gw.shutdown_timeout / 2)
            if link is not None:
                await link.stop()
            for t in tasks:
                t.cancel()
    finally:
        await store.close()
        await engine.dispose()
    log.info("worker.stopped", **outbox.stats)
    return 0


class WorkerProcess:
    """The daemon's handle on its action worker: start, poke, restart, stop."""

    def __init__(self, config_file: str) -> None:
        self.config_file = config_file
        self.proc: asyncio.subprocess.Process | None = None
        self._stopping = False

    async def run(self) -> None:
        """Keep one worker running until `stop()`, restarting it if it dies."""
        delay = 1.0
        while not self._stopping:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "gateway", "action-worker", "-c", self.config_file,
                stdin=asyncio.subprocess.PIPE)
            log.info("worker.spawned", pid=self.proc.pid)
            rc = await self.proc.wait()
            if self._stopping:
                return
            log.error("worker.died", returncode=rc, restart_in=delay)
            await asyncio.sleep(delay)
            delay = min(30.0, delay * 2)

    def poke(self) -> None:
        proc = self.proc
        if proc is not None and proc.stdin is not None and proc.returncode is None:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                proc.stdin.write(b".")

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
