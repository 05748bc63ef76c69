"""Composition root: builds storage, intake, sessions and the MT sender; owns the task
group, the signals and systemd notifications; shuts down in order."""

from __future__ import annotations

import asyncio
import signal
import sys
from contextlib import suppress

import structlog

from gateway import sdnotify
from gateway.config import Config, ConfigError, load_config
from gateway.mt import MtSender
from gateway.pipeline import Intake
from gateway.smpp.session import SmppSession
from gateway.storage.db import create_engine, migrate
from gateway.storage.repo import Store

log = structlog.get_logger("gateway.daemon")


class Daemon:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self._stop = asyncio.Event()
        self._signals = 0

    def request_stop(self) -> None:
        self._signals += 1
        if self._signals > 1:
            log.warning("daemon.forced_exit")
            raise SystemExit(1)
        log.info("daemon.stopping")
        self._stop.set()

    def reload(self) -> None:
        try:
            new = load_config(self.cfg.source_file)
        except ConfigError as exc:
            log.error("config.reload_rejected", error=str(exc))
            return
        self.cfg = new
        log.info("config.reloaded", file=new.source_file, numbers=len(new.numbers))

    async def run(self) -> int:
        # The writer thread holds the GIL between rows; a shorter switch interval keeps
        # it from delaying the event loop (and the acks) by up to the default 5 ms.
        sys.setswitchinterval(0.0005)
        cfg = self.cfg
        gw = cfg.gateway
        engine = create_engine(gw.database, synchronous=gw.sqlite_synchronous.value)
        await migrate(engine)
        store = Store(engine, synchronous=gw.sqlite_synchronous.value)
        intake = Intake(store, dedup_window=gw.dedup_window,
                        reassembly_timeout=gw.reassembly_timeout)
        await intake.load_state()
        sessions = [SmppSession(s, intake) for s in cfg.smsc]
        mt = MtSender(store, sessions, poll_interval=gw.mt_poll_interval)

        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.request_stop)
        loop.add_signal_handler(signal.SIGINT, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        admin = None
        if gw.admin_listen:
            from gateway.admin import build_app, serve
            from gateway.config import split_host_port

            host, port = split_host_port(gw.admin_listen)
            admin = await serve(build_app(intake, sessions), host, port)
            log.info("admin.listening", host=host, port=port)
        log.info("daemon.started", name=gw.name, smsc=[s.name for s in sessions],
                 open_groups=len(intake.reassembler))
        try:
            async with asyncio.TaskGroup() as tg:
                tasks = [
                    tg.create_task(intake.run(), name="intake"),
                    tg.create_task(mt.run(), name="mt"),
                    tg.create_task(self._expire_loop(intake), name="reassembly-timeout"),
                    tg.create_task(self._ready(sessions), name="sd-notify"),
                    tg.create_task(self._checkpoint_loop(store), name="wal-checkpoint"),
                ]
                tasks += [tg.create_task(s.run(), name=f"smpp:{s.name}") for s in sessions]
                await self._stop.wait()
                await self._shutdown(intake, sessions, mt)
                for t in tasks:
                    t.cancel()
        finally:
            if admin is not None:
                await admin.cleanup()
            await store.close()
            await engine.dispose()
            sdnotify.notify("STOPPING=1")
        log.info("daemon.stopped", **intake.stats)
        return 0

    async def _shutdown(self, intake: Intake, sessions: list[SmppSession], mt: MtSender) -> None:
        """Stop taking work, finish in-flight work up to the deadline, unbind."""
        deadline = self.cfg.gateway.shutdown_timeout
        sdnotify.notify("STOPPING=1")
        await mt.stop(deadline / 2)
        if not await intake.drain(deadline / 2):
            log.warning("daemon.drain_timeout")
        await asyncio.gather(*(s.stop() for s in sessions))
        await intake.drain(deadline / 4)

    async def _expire_loop(self, intake: Intake) -> None:
        period = max(0.5, min(5.0, intake.reassembly_timeout / 4))
        while True:
            await asyncio.sleep(period)
            intake.expire_groups()

    async def _checkpoint_loop(self, store: Store) -> None:
        """SQLite: move the WAL into the database off the ack path, once a second."""
        if store.engine.dialect.name != "sqlite":
            return
        while True:
            await asyncio.sleep(1.0)
            try:
                await store.checkpoint()
            except Exception as exc:
                log.warning("storage.checkpoint_failed", error=str(exc))

    async def _ready(self, sessions: list[SmppSession]) -> None:
        """READY=1 after the first bind, or after one bind timeout when no SMSC answers
        yet (the daemon is up and retrying); then keep the watchdog fed."""
        waits = [asyncio.ensure_future(s.bound.wait()) for s in sessions]
        timeout = max((s.cfg.bind_timeout for s in sessions), default=0.0)
        if waits:
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        for w in waits:
            w.cancel()
        sdnotify.notify("READY=1")
        log.info("daemon.ready", bound=[s.name for s in sessions if s.is_bound])
        interval = sdnotify.watchdog_interval()
        while interval:
            await asyncio.sleep(interval)
            sdnotify.notify("WATCHDOG=1")


async def run(cfg: Config) -> int:
    daemon = Daemon(cfg)
    with suppress(asyncio.CancelledError):
        return await daemon.run()
    return 0
