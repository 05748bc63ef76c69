"""Composition root: builds storage, intake, routing, sessions, the MT sender, the
fan-out and the action outbox; owns the task group, the signals and systemd
notifications; shuts down in order.

`Daemon.run` is four named steps: `_build` (every part, in `Parts`, wired by
constructor arguments; where two parts need each other, a small named object made
first carries the edge: `Doorbell` (storage -> outbox), `Backlog` (outbox -> fan-out),
`Committed` (intake -> fan-out and the MO log), `AfterFanout` (fan-out -> MT sender and
outbox)), `_start` (listeners, signals), `_serve` (the task group until a stop is
asked) and `_shutdown` then `_close` (in order, within `shutdown_timeout`). The running
configuration is the daemon's (`cfg`, `context`, swapped in one step on reload): the
parts read it through it (the store's event emitter: `Store(emitters=daemon)`)."""

from __future__ import annotations

import asyncio
import fcntl
import gc
import os
import signal
import sys
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Any

import structlog

from gateway import commands, eventloop, reload, sdnotify
from gateway.actions import registry
from gateway.actions.base import Action
from gateway.actions.emitter import Emitter
from gateway.actions.kind import Runtime
from gateway.addressing import addressing
from gateway.binds import BindControl, session_settings
from gateway.config import Config, ConfigError, load_config, split_host_port
from gateway.dynnumbers import LiveNumbers, Merged
from gateway.email_replies import ReplyRefused
from gateway.fanout import Context, Fanout, Stats, mo_rows
from gateway.log import describe_error, json_line
from gateway.model import MessageRow
from gateway.mt import MtSender
from gateway.outbox import Outbox
from gateway.pipeline import Batch, Intake
from gateway.routing.router import Router
from gateway.smpp.session import SmppSession
from gateway.storage import jobs as jobq
from gateway.storage import mts
from gateway.storage.db import (
    SchemaError,
    connection_lost,
    create_engine,
    ensure_schema,
    prepare_schema,
    sqlite_synchronous,
    wal_path,
)
from gateway.storage.repo import Store
from gateway.worker import WorkerPool

if TYPE_CHECKING:  # optional parts, imported when configured
    from aiohttp import web
    from sqlalchemy.ext.asyncio import AsyncEngine

    from gateway.actions.mqtt import MqttLink
    from gateway.api.server import ApiServer
    from gateway.email_replies import EmailReplyServer

log = structlog.get_logger("gateway.daemon")

# How long the binds wait for the action workers to start (`_bind`); then they bind
# anyway (the acks do not need the workers; their jobs wait in the queue).
WORKER_READY_WAIT = 10.0
# SQLite: a PASSIVE checkpoint this often, off the writer (and at once when the WAL is
# over its limit, see `_checkpoint_loop`).
CHECKPOINT_INTERVAL = 1.0


# SMPP 3.4 appendix B receipt states.
STATS = frozenset({"DELIVRD", "EXPIRED", "DELETED", "UNDELIV", "ACCEPTD", "UNKNOWN",
                   "REJECTD", "ENROUTE"})


class AlreadyRunning(Exception):
    """Another daemon holds the lock of this SQLite database."""


def lock_database(url: str) -> IO[str] | None:
    """SQLite: an exclusive lock on `<db>.lock`, held for the life of the process (the
    kernel drops it when the process ends, however it ends). Two daemons on one file
    would both bind and both claim the same MTs. PostgreSQL needs none: several
    instances may share a database (leases fence their work)."""
    wal = wal_path(url)
    if wal is None:
        return None
    path = str(wal)[: -len("-wal")] + ".lock"
    f = open(path, "a")  # noqa: SIM115 - held until the process exits
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        raise AlreadyRunning(f"another vmn-gateway is already running on this database "
                             f"({path} is locked)") from None
    return f


class CommandNotStored(Exception):
    """An MQTT command could not be stored (the message says why, without its data)."""


def emitter_for(cfg: Config) -> Emitter:
    return Emitter(
        mqtt_prefix=cfg.mqtt.topic_prefix if cfg.mqtt else None,
        max_attempts=cfg.gateway.max_attempts,
        profile_attempts={n: p.max_attempts for n, p in cfg.callback_profiles.items()},
        callback_attempts=cfg.api.callback_max_attempts if cfg.api else 8,
    )


def context_for(cfg: Config) -> Context:
    er = cfg.email_replies
    return Context(router=Router(cfg), emitter=emitter_for(cfg),
                   email_domain=er.domain if er else None,
                   token_ttl_days=er.token_ttl if er else 30)


def write_mo_lines(rows: list[MessageRow], *, debug: bool) -> None:
    """The `mo.received` lines of one committed batch, as structlog's JSON renderer
    writes them, in one write: under a burst, a structlog call per MO (processors,
    redaction, a flush per line) halved the acknowledged MO/s."""
    ts = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    dumps = json_line
    out = []
    for m in rows:
        out.append(dumps({"id": m.id, "smsc": m.smsc, "vmn": m.vmn, "from": m.sender,
                          "route": m.route, "keyword": m.keyword, "event": "mo.received",
                          "level": "info", "timestamp": ts}))
        if debug:
            out.append(dumps({"id": m.id, "text": m.text, "event": "mo.text",
                              "level": "debug", "timestamp": ts}))
    out.append("")
    sys.stdout.write("\n".join(out))
    sys.stdout.flush()


class Doorbell:
    """Rung by the storage after a write queued jobs (MT status events...); wakes the
    outbox. Made before both, so that neither is built holding the other."""

    __slots__ = ("_listeners",)

    def __init__(self) -> None:
        self._listeners: list[Callable[[], None]] = []

    def listen(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    def __call__(self) -> None:
        for listener in self._listeners:
            listener()


class Backlog:
    """The MOs waiting for their fan-out, as the outbox weighs them (`Outbox.upstream`):
    the outbox is built before the fan-out, which reads the outbox's queue."""

    __slots__ = ("fanout",)

    def __init__(self) -> None:
        self.fanout: Fanout | None = None

    def waiting(self) -> int:
        return 0 if self.fanout is None else self.fanout.waiting()


class AfterFanout:
    """Called with each fan-out batch's `Stats`: wakes the MT sender for the MTs queued,
    hands the jobs claimed already to the outbox, wakes it for the others."""

    __slots__ = ("mt", "outbox")

    def __init__(self, mt: MtSender, outbox: Outbox) -> None:
        self.mt = mt
        self.outbox = outbox

    def __call__(self, stats: Stats) -> None:
        if stats.mts:
            self.mt.wake()
        self.outbox.dispatch(stats.ready)
        if stats.jobs > len(stats.ready):
            self.outbox.wake()


class MoLog:
    """The receipts counted by stat (for /metrics) and the `mo.received` lines of each
    committed batch, one per MO (the text only at debug), at the running log level."""

    def __init__(self, config: Callable[[], Config], receipts: dict[str, int]) -> None:
        self.config = config
        self.receipts = receipts
        self.plain = not sys.stdout.isatty()  # log.configure's choice: JSON lines

    def __call__(self, batch: Batch) -> None:
        receipts = self.receipts
        for _, r in batch.receipts:
            # The SMSC writes the stat: an odd one is "other", not a new series.
            stat = r.state.upper() if r.state.upper() in STATS else "other"
            receipts[stat] = receipts.get(stat, 0) + 1
        level = self.config().gateway.log_level.value
        if not batch.messages or level not in ("debug", "info"):
            return
        if self.plain:
            write_mo_lines(batch.messages, debug=level == "debug")
            return
        for m in batch.messages:
            log.info("mo.received", id=m.id, smsc=m.smsc, vmn=m.vmn, route=m.route,
                     keyword=m.keyword, **{"from": m.sender})
            if level == "debug":
                log.debug("mo.text", id=m.id, text=m.text)


class Committed:
    """The intake's commit hook (after the commit and the acks): the MOs to the fan-out
    with the intake's routing decisions, then their log lines."""

    __slots__ = ("fanout", "mo_log")

    def __init__(self, fanout: Fanout, mo_log: MoLog) -> None:
        self.fanout = fanout
        self.mo_log = mo_log

    def committed(self, batch: Batch) -> None:
        self.fanout.submit(mo_rows(batch.handoff()))
        self.mo_log(batch)


@dataclass(slots=True)
class Parts:
    """What the daemon is made of: built by `Daemon._build`, started, served, shut down.
    `cfg`: the configuration at start-up (what a reload cannot change)."""

    cfg: Config
    engine: AsyncEngine
    store: Store
    numbers: LiveNumbers
    intake: Intake
    sessions: list[SmppSession]
    mt: MtSender
    actions: dict[str, Action]
    mqtt_link: MqttLink | None
    worker: WorkerPool | None
    outbox: Outbox
    fanout: Fanout
    receipts: dict[str, int]  # delivery receipts by stat, for /metrics
    replies: EmailReplyServer | None = None
    admin: web.AppRunner | None = None
    api: ApiServer | None = None


class Daemon:
    def __init__(self, cfg: Config) -> None:
        # `cfg`: what runs, the file's configuration with the numbers stored through the
        # API (gateway/dynnumbers.py); `file_cfg`: the file's alone, what a reload diffs.
        self.cfg = self.file_cfg = cfg
        self.context = context_for(cfg)
        self.numbers: LiveNumbers | None = None
        self._stop = asyncio.Event()
        self._signals = 0
        self.intake: Intake | None = None
        self._tg: asyncio.TaskGroup | None = None
        self._reloading: asyncio.Task[None] | None = None
        self._worker: WorkerPool | None = None
        self._lock: IO[str] | None = None
        self._locked = False  # main() took the lock before migrating
        self.config_state = reload.ConfigState()
        if cfg.source_file:
            with suppress(OSError):
                self.config_state.sha256 = reload.file_hash(cfg.source_file)

    def request_stop(self) -> None:
        self._signals += 1
        if self._signals > 1:
            log.warning("daemon.forced_exit")
            # Out at once, without unwinding the event loop (which would print the
            # tracebacks of every cancelled task): what is committed is safe, the
            # rest is redelivered by the SMSC or retried from the queues.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(1)
        log.info("daemon.stopping")
        self._stop.set()

    def on_sighup(self) -> None:
        if self._tg is None:
            return
        if self._reloading is not None and not self._reloading.done():
            log.info("config.reload_pending")
            return
        self._reloading = self._tg.create_task(self.reload(), name="reload")

    async def reload(self) -> None:
        """SIGHUP: validate the file, compile the new routing (in a thread: 100k keywords
        take about a second, which the acks must not wait for), then swap it in one
        step. An invalid file is logged and the running configuration stays. What cannot
        be applied live (gateway/reload.py) keeps running as it is and is named, per key
        path, in `config.restart_needed`."""
        old = self.file_cfg
        state = self.config_state

        def build() -> tuple[Config, list[str], list[str], str]:
            digest = reload.file_hash(old.source_file)
            loaded = load_config(old.source_file)
            changed = reload.diff(old, loaded)
            restart = reload.needs_restart(old, loaded, changed)
            new = reload.effective(old, loaded)
            return new, changed, restart, digest

        try:
            new, changed, restart, digest = await asyncio.to_thread(build)
        except (ConfigError, ValueError, OSError) as exc:
            state.reloads["rejected"] += 1
            log.error("config.reload_rejected", error=str(exc))
            return
        self.file_cfg = new
        if self.numbers is not None:
            # Merged with the numbers stored through the API, then installed.
            await self.numbers.rebuild(new)
        else:
            await self._install(Merged(new))
        state.reloads["partial" if restart else "applied"] += 1
        state.sha256, state.loaded_at, state.restart_needed = digest, time.time(), restart
        if restart:
            log.warning("config.restart_needed", keys=restart,
                        applied=[k for k in changed if k not in restart])
        if self._worker is not None:
            self._worker.reload()
        running = self.cfg
        log.info("config.reloaded", file=new.source_file, sha256=digest[:12],
                 result="partial" if restart else "applied", changed=changed,
                 numbers=len(running.numbers),
                 keywords=sum(len(n.keywords) for n in running.numbers))

    async def _install(self, merged: Merged) -> None:
        """Compile the routing of `merged` in a thread (100k keywords take about a
        second, which the acks must not wait for), then swap it in one step."""
        context = await asyncio.to_thread(context_for, merged.config)
        self.cfg, self.context = merged.config, context
        if self.intake is not None:
            self.intake.set_router(context.router, events=merged.config.mqtt is not None)

    @property
    def emitter(self) -> Emitter:
        """The event emitter of the running configuration (`Emitters`, read by the
        storage at each write: a reload swaps it with the routing)."""
        return self.context.emitter

    def running_config(self) -> Config:
        return self.cfg

    async def run(self) -> int:
        """Build, start, serve until asked to stop, shut down in order."""
        # The writer thread holds the GIL between rows; a shorter switch interval keeps
        # it from delaying the event loop (and the acks) by up to the default 5 ms.
        sys.setswitchinterval(0.0005)
        if not self._locked:
            try:
                self._lock = lock_database(self.cfg.gateway.database)
            except AlreadyRunning as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 1
        try:
            parts = await self._build()
        except SchemaError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        if not await self._start(parts):
            return 1
        try:
            await self._serve(parts)
        finally:
            await self._close(parts)
        log.info("daemon.stopped", **parts.intake.stats, **parts.outbox.stats)
        return 0

    # -- build: every part, wired by constructor arguments ------------------------------
    async def _build(self) -> Parts:
        cfg = self.cfg  # the file's: what a reload cannot change is read from it
        gw = cfg.gateway
        engine = create_engine(gw.database, durability=gw.durability.value)
        try:  # migrated in a child process when not current: alembic stays out of this one
            await ensure_schema(engine, country_code=gw.country_code)
        except SchemaError:
            await engine.dispose()
            raise
        # Jobs queued by a write (MT status events...) wake the outbox, which needs the
        # store: the store rings the bell, the outbox listens (connected below).
        jobs_queued = Doorbell()
        store = Store(engine, synchronous=sqlite_synchronous(gw.durability.value),
                                   wal_limit=gw.sqlite_wal_limit, emitters=self,
                                   on_jobs=jobs_queued)
        numbers = self.numbers = LiveNumbers(store, cfg, self._install)
        if (await numbers.load()).api_vmns:
            await self._install(numbers.merged)
        intake = self.intake = Intake(
            store, dedup_window=gw.dedup_window, reassembly_timeout=gw.reassembly_timeout,
            response_timeout=max(s.response_timeout for s in cfg.smsc), instance=gw.name,
            reassembly_max_groups=gw.reassembly_max_groups,
            reassembly_max_bytes=gw.reassembly_max_bytes,
            max_commits=1 if store.is_sqlite else gw.pg_intake_commits)
        intake.set_router(self.context.router, events=cfg.mqtt is not None)
        await intake.load_state()
        sessions = [SmppSession(session_settings(s), intake) for s in cfg.smsc]
        mt = MtSender(store, sessions, smscs=cfg.smsc, poll_interval=gw.mt_poll_interval,
                      addressing=addressing(self.running_config))
        actions, mqtt_link = self._actions(cfg, store, mt)
        worker = None
        if gw.action_workers:
            worker = self._worker = WorkerPool(cfg.source_file, gw.action_workers)
            actions = worker.remote(actions)  # the queue stays here; the worker runs them
        backlog = Backlog()
        outbox = Outbox(store, actions, backoff=jobq.Backoff(gw.retry_base, gw.retry_max),
                        poll_interval=gw.mt_poll_interval, quiet=intake.quiet,
                        upstream=backlog.waiting)
        jobs_queued.listen(outbox.wake)
        fanout = Fanout(store, self.current_context, AfterFanout(mt, outbox),
                        quiet=intake.quiet, backlog=outbox.queued)
        backlog.fanout = fanout
        receipts: dict[str, int] = {}
        intake.on_committed.append(
            Committed(fanout, MoLog(self.running_config, receipts)).committed)
        return Parts(cfg=cfg, engine=engine, store=store, numbers=numbers, intake=intake,
                     sessions=sessions, mt=mt, actions=actions, mqtt_link=mqtt_link,
                     worker=worker, outbox=outbox, fanout=fanout, receipts=receipts)

    def current_context(self) -> Context:
        return self.context

    def _actions(self, cfg: Config, store: Store,
                 mt: MtSender) -> tuple[dict[str, Action], MqttLink | None]:
        """The runner of each job kind configured (the registry's), and the MQTT link if
        there is one."""
        mqtt_link = None
        if cfg.mqtt is not None:
            from gateway.actions.mqtt import MqttLink

            mqtt_link = MqttLink(cfg.mqtt, gateway_name=cfg.gateway.name,
                                 on_command=lambda p: self._command(store, mt, p))
        return registry.runners(cfg, Runtime(lambda: self.cfg, mqtt_link)), mqtt_link

    # -- start: the listeners, the signals ---------------------------------------------
    async def _start(self, parts: Parts) -> bool:
        """Start the email reply listener, take the signals over, open the admin and API
        listeners. False (the API port is taken: said on stderr) when the daemon
        cannot run."""
        cfg = parts.cfg
        store, mt = parts.store, parts.mt
        if cfg.email_replies is not None:
            from gateway.email_replies import EmailReplyServer
            from gateway.storage.tokens import DbReplyTokens

            er = cfg.email_replies
            parts.replies = EmailReplyServer(
                listen=er.listen, domain=er.domain, tokens=DbReplyTokens(store),
                accept_from=er.accept_from, max_replies_per_token=er.max_replies_per_token,
                on_reply=lambda t, text, _f: self._reply(store, mt, t, text))
            await parts.replies.start()
            log.info("email_replies.listening", listen=cfg.email_replies.listen)

        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.request_stop)
        loop.add_signal_handler(signal.SIGINT, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, self.on_sighup)
        if cfg.gateway.admin_listen:
            from gateway.admin import Metrics, build_app, serve

            host, port = split_host_port(cfg.gateway.admin_listen)
            link = parts.mqtt_link
            metrics = Metrics(parts.intake, parts.sessions, store, kinds=list(parts.actions),
                              mqtt_connected=link.connected if link else None,
                              config=self.config_state, receipts=parts.receipts)
            await metrics.start()
            parts.admin = await serve(build_app(metrics), host, port)
            log.info("admin.listening", host=host, port=port)
        if cfg.api is not None:
            from gateway.api.app import build_app as build_api
            from gateway.api.context import ApiContext
            from gateway.api.server import ApiServer

            ctx = ApiContext(config=self.running_config, store=store, wake_mt=mt.wake,
                             binds=BindControl(parts.sessions, parts.intake.drain),
                             numbers=parts.numbers, intake_busy=parts.intake.busy)
            api = parts.api = ApiServer(build_api(ctx), cfg.api.listen)
            try:
                api.bind()
            except OSError as exc:
                print(f"error: {cfg.source_file}: api.listen: cannot listen on "
                      f"{cfg.api.listen}: {exc.strerror or exc}", file=sys.stderr)
                if parts.admin is not None:
                    await parts.admin.cleanup()
                await store.close()
                await parts.engine.dispose()
                return False
        # Everything built so far lives as long as the process: keep it out of the
        # collector's full scans (which grow with it and stall the loop for tens of ms),
        # and collect the young generation less often.
        gc.collect()
        gc.freeze()
        gc.set_threshold(20_000, 50, 100)
        log.info("daemon.started", name=cfg.gateway.name, loop=eventloop.running(),
                 smsc=[s.name for s in parts.sessions],
                 open_groups=len(parts.intake.reassembler), actions=sorted(parts.actions))
        return True

    # -- serve: the task group, until asked to stop -----------------------------------
    async def _serve(self, parts: Parts) -> None:
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            tasks = self._tasks(tg, parts)
            await self._stop.wait()
            await self._shutdown(parts)
            for t in tasks:
                t.cancel()
            if self._reloading is not None:
                self._reloading.cancel()

    def _tasks(self, tg: asyncio.TaskGroup, parts: Parts) -> list[asyncio.Task[Any]]:
        intake, store = parts.intake, parts.store
        tasks: list[asyncio.Task[Any]] = [
            tg.create_task(intake.run(), name="intake"),
            tg.create_task(parts.mt.run(), name="mt"),
            tg.create_task(parts.fanout.run(), name="fanout"),
            tg.create_task(parts.outbox.run(), name="outbox"),
            tg.create_task(self._expire_loop(intake), name="reassembly-timeout"),
            tg.create_task(self._ready(parts.sessions), name="sd-notify"),
            tg.create_task(self._checkpoint_loop(store), name="wal-checkpoint"),
            tg.create_task(parts.numbers.watch(), name="numbers"),
        ]
        if parts.mqtt_link is not None:
            tasks.append(tg.create_task(parts.mqtt_link.run(), name="mqtt"))
        if parts.worker is not None:
            tasks.append(tg.create_task(parts.worker.run(), name="action-worker"))
        tasks += [tg.create_task(self._bind(s, parts.worker), name=f"smpp:{s.name}")
                  for s in parts.sessions]
        if parts.api is not None:
            parts.api.start(tg)
        return tasks

    @staticmethod
    async def _bind(session: SmppSession, worker: WorkerPool | None) -> None:
        """Run a bind once the action workers are up (at most WORKER_READY_WAIT): an
        SMSC delivers its backlog as soon as we bind, and N interpreters importing beside
        the intake took a third of the acks' CPU from the first seconds of it."""
        if worker is not None and not await worker.wait_ready(WORKER_READY_WAIT):
            log.warning("daemon.workers_not_ready", waited=WORKER_READY_WAIT)
        await session.run()

    # -- shutdown: in order, within [gateway] shutdown_timeout --------------------------
    async def _shutdown(self, parts: Parts) -> None:
        """No new work from the API first; then the MT sender, the intake (drained), the
        binds, the outbox (`_finish`); then the action workers, the email reply
        listener and the MQTT link. Every step gets a share of what is left."""
        loop = asyncio.get_running_loop()
        end = loop.time() + parts.cfg.gateway.shutdown_timeout
        if parts.api is not None:  # first: no new work from the API
            await parts.api.stop(max(0.5, (end - loop.time()) * 0.25))
        await self._finish(parts.intake, parts.sessions, parts.mt, parts.outbox, end)
        if parts.worker is not None:
            await parts.worker.stop(max(0.5, end - loop.time()))
        if parts.replies is not None:
            await parts.replies.stop()
        if parts.mqtt_link is not None:
            await parts.mqtt_link.stop(max(0.5, end - loop.time()))

    async def _close(self, parts: Parts) -> None:
        if parts.admin is not None:
            await parts.admin.cleanup()
        await parts.store.close()
        await parts.engine.dispose()
        sdnotify.notify("STOPPING=1")

    async def _command(self, store: Store, mt: MtSender, payload: bytes) -> None:
        """Store one MQTT command (queued, or `failed` with the reason). Raises when it
        could not be stored at all: the link then retries and does not acknowledge it."""
        try:
            msg_id, ok = await store.transaction(commands.record, store.emitter, payload,
                                                 self.cfg)
        except Exception as exc:
            if connection_lost(exc):
                raise CommandNotStored(describe_error(exc)) from None
            # The database refused the command itself: record that, so that the sender
            # hears of it; if even that fails, the database is the problem (retried).
            error = f"could not be stored: {describe_error(exc)}"
            try:
                msg_id, ok = await store.transaction(commands.record, store.emitter,
                                                     payload, self.cfg, error=error)
            except Exception as exc2:
                raise CommandNotStored(describe_error(exc2)) from None
        if ok:
            mt.wake()
        else:
            log.warning("mqtt.command_refused", id=msg_id)
        store.on_jobs()

    async def _reply(self, store: Store, mt: MtSender, target: Any, text: str) -> None:
        number = self.cfg.number(target.vmn)
        if number is None:
            raise ReplyRefused(f"the number {target.vmn} no longer takes replies")
        # The same check as every other send that enters from outside.
        try:
            cmd = commands.validate_send(self.cfg, to=target.msisdn, sender=number.sender_id,
                                         text=text)
        except commands.InvalidSend as exc:
            raise ReplyRefused(f"the reply cannot be sent as SMS: {exc}") from None
        await store.transaction(mts.insert_mt, store.emitter, sender=cmd.sender,
                                recipient=cmd.to, text=cmd.text, now=time.time(),
                                in_reply_to=target.mo_id)
        mt.wake()
        store.on_jobs()

    async def _finish(self, intake: Intake, sessions: list[SmppSession], mt: MtSender,
                      outbox: Outbox, end: float) -> None:
        """Stop taking work, finish in-flight work up to the deadline `end` (loop time),
        unbind. Every step gets a share of what is left, at least half a second."""
        loop = asyncio.get_running_loop()

        def left(share: float = 1.0) -> float:
            return max(0.5, (end - loop.time()) * share)

        sdnotify.notify("STOPPING=1")
        sdnotify.notify("STATUS=stopping: finishing in-flight work, unbinding")
        await mt.stop(left(0.25))
        # Commit and acknowledge what the SMSCs sent so far while the binds are up...
        if not await intake.drain(left(0.25)):
            log.warning("daemon.drain_timeout", step="before_unbind")
        # ...then unbind: deliver_sm that cross the unbind are refused (the SMSC
        # redelivers them), the ones already taken are committed and answered below.
        await asyncio.gather(*(s.stop(left(0.5)) for s in sessions))
        if not await intake.drain(left(0.5)):
            log.warning("daemon.drain_timeout", step="after_unbind")
        else:
            # Everything taken is answered or reported lost with its link: a graceful
            # stop, whose suspects the next start folds (not those of a crash).
            try:
                await intake.save_state()
            except Exception as exc:
                log.error("intake.save_state_failed", error=str(exc))
        await outbox.stop(left())

    async def _expire_loop(self, intake: Intake) -> None:
        period = max(0.5, min(5.0, intake.reassembly_timeout / 4))
        while True:
            await asyncio.sleep(period)
            intake.expire_groups()

    async def _checkpoint_loop(self, store: Store) -> None:
        """SQLite: move the WAL into the database off the ack path, once a second, and
        at once when the writer finds the WAL over its limit: the restart that follows
        a pass has little left to copy (`WalGuard`)."""
        if not store.is_sqlite:
            return
        due = asyncio.Event()
        loop = asyncio.get_running_loop()

        def wake() -> None:  # on the writer thread
            loop.call_soon_threadsafe(due.set)

        if store.wal is not None:
            store.wal.checkpointer = wake
        try:
            while True:
                with suppress(TimeoutError):
                    await asyncio.wait_for(due.wait(), CHECKPOINT_INTERVAL)
                due.clear()
                try:
                    await store.checkpoint()
                except Exception as exc:
                    log.warning("storage.checkpoint_failed", error=str(exc))
        finally:
            if store.wal is not None:
                store.wal.checkpointer = None  # the writer restarts on its own again

    def _status(self, sessions: list[SmppSession]) -> str:
        """The systemd STATUS= line: e.g. "1/2 binds up: alpha bound, beta down"."""
        up = sum(s.is_bound for s in sessions)
        states = ", ".join(f"{s.name} {s.state}" for s in sessions)
        stopping = "stopping: " if self._stop.is_set() else ""
        return f"{stopping}{up}/{len(sessions)} binds up: {states}"

    async def _ready(self, sessions: list[SmppSession]) -> None:
        """READY=1 after the first bind, or after one bind timeout when no SMSC answers
        yet (the daemon is up and retrying); then keep the watchdog fed."""
        waits = [asyncio.ensure_future(s.bound.wait()) for s in sessions]
        timeout = max((s.cfg.bind_timeout for s in sessions), default=0.0)
        if waits:
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        for w in waits:
            w.cancel()
        def changed(_session: SmppSession) -> None:
            sdnotify.notify(f"STATUS={self._status(sessions)}")

        for s in sessions:
            s.on_change.append(changed)
        sdnotify.notify(f"READY=1\nSTATUS={self._status(sessions)}")
        log.info("daemon.ready", bound=[s.name for s in sessions if s.is_bound])
        interval = sdnotify.watchdog_interval()
        while interval:
            await asyncio.sleep(interval)
            sdnotify.notify("WATCHDOG=1")


async def run(cfg: Config, lock: IO[str] | None = None, *, locked: bool = False) -> int:
    daemon = Daemon(cfg)
    if locked:  # main() holds the database's lock already
        daemon._lock, daemon._locked = lock, True
    with suppress(asyncio.CancelledError):
        return await daemon.run()
    return 0


def main(cfg: Config) -> int:
    """`vmn-gateway run`. Until the event loop takes SIGINT over (Daemon.run), a Ctrl-C
    ends the process at once, quietly: nothing has been taken from an SMSC yet, and a
    KeyboardInterrupt there printed a traceback from wherever start-up was. The schema is
    migrated here, before the loop and its threads, where a fork of this process can do
    it cheaply (alembic in the fork only); the database's lock is taken first, as
    before, so that a second daemon on a SQLite file stops before migrating it."""
    def early(_signum: int, _frame: object) -> None:
        print("vmn-gateway: interrupted during start-up", file=sys.stderr, flush=True)
        os._exit(130)

    signal.signal(signal.SIGINT, early)
    gw = cfg.gateway
    try:
        lock = lock_database(gw.database)
        prepare_schema(gw.database, country_code=gw.country_code)
    except (AlreadyRunning, SchemaError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        return asyncio.run(run(cfg, lock, locked=True))
    except KeyboardInterrupt:
        return 130
