"""Optional HTTP listener (`[gateway] admin_listen`): /healthz (alias /health) and
/metrics.

Nothing here is on the MO path. The intake and the sessions keep plain ints and
small histograms (`gateway.metrics`); this module turns them into Prometheus metric
families when `/metrics` is scraped, together with what only the database knows (the
action queues, MT statuses, action attempts: these are shared with the action worker
process, the CLI and other instances), read once per scrape."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.metrics import Histogram
from gateway.model import JobKind
from gateway.pipeline import Intake
from gateway.reload import RESULTS, ConfigState
from gateway.smpp.session import SmppSession
from gateway.storage import metrics as dbm
from gateway.storage.db import wal_bytes
from gateway.storage.repo import Store

log = structlog.get_logger("gateway.admin")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DB_TIMEOUT = 2.0  # a database that does not answer a query in this time is down


@dataclass
class _Snapshot:
    """What the database said at the last scrape."""

    db_up: bool = False
    queues: dict[str, tuple[int, float | None]] = field(default_factory=dict)  # depth, oldest
    mt_queue: dict[str, int] = field(default_factory=dict)


class Metrics(Collector):
    """The gateway's metrics: in-memory counters plus a database snapshot per scrape."""

    def __init__(self, intake: Intake, sessions: Sequence[SmppSession], store: Store, *,
                 kinds: Sequence[str], mqtt_connected: asyncio.Event | None = None,
                 config: ConfigState | None = None,
                 receipts: dict[str, int] | None = None) -> None:
        self.config = config
        # Receipts stored since start, by their `stat` (DELIVRD, UNDELIV, ...).
        self.receipts = receipts if receipts is not None else {}
        self.intake = intake
        self.sessions = sessions
        self.store = store
        self.kinds = tuple(kinds)
        self.mqtt_connected = mqtt_connected
        self.mt_status = dbm.mt_status_tail()
        self.attempts = dbm.attempts_tail()
        self.snapshot = _Snapshot()
        # Scrapes overlap (several Prometheus servers, a retry after a timeout): each
        # `Tail.refresh` is a read-modify-write of its counts across awaits, so two at
        # once counted the same rows twice. One refresh at a time.
        self._refreshing = asyncio.Lock()

    async def start(self) -> None:
        """Counters start at the daemon's start (rows written before are not counted)."""
        async with self.store.reader.connect() as conn:
            await self.mt_status.start(conn)
            await self.attempts.start(conn)

    async def refresh(self) -> None:
        async with self._refreshing:
            await self._refresh()

    async def _refresh(self) -> None:
        snap = _Snapshot()
        try:
            async with asyncio.timeout(DB_TIMEOUT * 2):
                async with self.store.reader.connect() as conn:
                    await self._read(conn, snap)
        except Exception as exc:  # the metrics say so (vmn_database_up 0); log why
            log.warning("admin.metrics_db_failed", error=str(exc) or type(exc).__name__)
            snap.db_up = False
        self.snapshot = snap

    async def _read(self, conn: AsyncConnection, snap: _Snapshot) -> None:
        snap.queues.update(await dbm.action_queues(conn))
        snap.mt_queue.update(await dbm.mt_queue(conn))
        await self.mt_status.refresh(conn)
        await self.attempts.refresh(conn)
        snap.db_up = True

    def collect(self) -> Iterator[Metric]:
        intake, stats = self.intake, self.intake.stats
        mo = CounterMetricFamily("vmn_mo_received", "MOs stored, by VMN (\"unrouted\" for "
                                 "numbers not configured) and route", labels=["vmn", "route"])
        for (vmn, route), n in sorted(intake.mo_by_route.items()):
            mo.add_metric([vmn, route], n)
        yield mo
        for key, help_text in (
            ("mo", "MOs stored (after reassembly)"),
            ("parts", "MO parts stored"),
            ("receipts", "delivery receipts stored"),
            ("duplicates", "redelivered PDUs acknowledged without a second row"),
            ("commits", "intake transactions committed"),
            ("failed_commits", "intake transactions that failed (batch answered with an error)"),
        ):
            yield CounterMetricFamily(f"vmn_intake_{key}", help_text, value=stats[key])
        by_stat = CounterMetricFamily("vmn_receipts", "delivery receipts stored, by stat",
                                      labels=["stat"])
        for stat, n in sorted(self.receipts.items()):
            by_stat.add_metric([stat], n)
        yield by_stat
        if self.config is not None:
            yield from _config_metrics(self.config)
        yield _histogram("vmn_deliver_sm_resp_latency_seconds",
                         "deliver_sm received -> deliver_sm_resp written (after the commit)",
                         intake.ack_latency)
        yield _histogram("vmn_db_commit_latency_seconds",
                         "one intake transaction (the MOs of a group commit)",
                         intake.commit_latency)
        reassembler = intake.reassembler
        yield GaugeMetricFamily("vmn_reassembly_open_groups", "long MOs waiting for parts",
                                value=len(reassembler))
        yield GaugeMetricFamily("vmn_reassembly_open_bytes",
                                "part bodies held for open long MOs", value=reassembler.bytes)
        yield CounterMetricFamily("vmn_reassembly_evictions",
                                  "open long MOs delivered incomplete because the "
                                  "reassembly caps were reached", value=reassembler.evictions)
        wal = self.store.wal
        if wal is not None:
            yield GaugeMetricFamily("vmn_sqlite_wal_bytes", "size of the SQLite WAL file",
                                    value=wal_bytes(wal.path))
            yield CounterMetricFamily("vmn_sqlite_wal_truncations",
                                      "WAL checkpoints that restarted the file "
                                      "(sqlite_wal_limit reached)", value=wal.truncations)

        bound = GaugeMetricFamily("vmn_smpp_bound", "1 when the bind is up", labels=["smsc"])
        reconnects = CounterMetricFamily("vmn_smpp_reconnects", "reconnect attempts",
                                         labels=["smsc"])
        failures = CounterMetricFamily("vmn_smpp_bind_failures",
                                       "binds refused or timed out", labels=["smsc"])
        outstanding = GaugeMetricFamily("vmn_smpp_window_outstanding",
                                        "submit_sm in the window", labels=["smsc"])
        window = GaugeMetricFamily("vmn_smpp_window_size", "the bind's window",
                                   labels=["smsc"])
        for s in self.sessions:
            bound.add_metric([s.name], 1.0 if s.is_bound else 0.0)
            reconnects.add_metric([s.name], s.reconnects)
            failures.add_metric([s.name], s.bind_failures)
            outstanding.add_metric([s.name], s.outstanding)
            window.add_metric([s.name], s.cfg.window)
        yield from (bound, reconnects, failures, outstanding, window)

        snap = self.snapshot
        yield GaugeMetricFamily("vmn_database_up", "1 when the last scrape's queries worked",
                                value=1.0 if snap.db_up else 0.0)
        if not snap.db_up:
            return  # no stale or invented figures from the database
        mtq = GaugeMetricFamily("vmn_mt_queue", "MTs waiting to be sent", labels=["status"])
        for status in ("queued", "sending"):
            mtq.add_metric([status], snap.mt_queue.get(status, 0))
        yield mtq
        mts = CounterMetricFamily("vmn_mt_status", "MT status changes (status_history) "
                                  "since the daemon started, in this database",
                                  labels=["status"])
        for (status,), n in sorted(self.mt_status.counts.items()):
            mts.add_metric([status], n)
        yield mts

        depth = GaugeMetricFamily("vmn_action_queue_depth", "pending jobs", labels=["kind"])
        age = GaugeMetricFamily("vmn_action_queue_oldest_age_seconds",
                                "age of the oldest pending job", labels=["kind"])
        now = time.time()
        for kind in sorted(set(self.kinds) | set(snap.queues)):
            n, oldest = snap.queues.get(kind, (0, None))
            depth.add_metric([kind], n)
            age.add_metric([kind], 0.0 if oldest is None else max(0.0, now - oldest))
        yield from (depth, age)
        attempts = CounterMetricFamily("vmn_action_attempts", "action attempts since the "
                                       "daemon started, in this database",
                                       labels=["kind", "outcome"])
        failed = CounterMetricFamily("vmn_action_failures", "attempts that did not succeed "
                                     "(retry or fail)", labels=["kind"])
        per_kind_failed: dict[str, int] = {k: 0 for k in self.kinds}
        for (kind, outcome), n in sorted(self.attempts.counts.items()):
            attempts.add_metric([kind, outcome], n)
            if outcome != "ok":
                per_kind_failed[kind] = per_kind_failed.get(kind, 0) + n
        for kind, n in sorted(per_kind_failed.items()):
            failed.add_metric([kind], n)
        yield from (attempts, failed)
        if self.mqtt_connected is not None:
            yield GaugeMetricFamily("vmn_mqtt_outbox_depth",
                                    "MQTT events not yet acknowledged by the broker",
                                    value=snap.queues.get(JobKind.MQTT, (0, None))[0])
            yield GaugeMetricFamily("vmn_mqtt_connected", "1 when connected to the broker",
                                    value=1.0 if self.mqtt_connected.is_set() else 0.0)


def _config_metrics(c: ConfigState) -> Iterator[Metric]:
    reloads = CounterMetricFamily("vmn_config_reloads", "SIGHUP reloads by result "
                                  "(applied, partial: some keys need a restart, rejected)",
                                  labels=["result"])
    for result in RESULTS:
        reloads.add_metric([result], c.reloads.get(result, 0))
    yield reloads
    yield GaugeMetricFamily("vmn_config_loaded_timestamp_seconds",
                            "when the configuration in force was loaded", value=c.loaded_at)
    yield GaugeMetricFamily("vmn_config_hash", "the first 52 bits of the sha256 of the "
                            "loaded file", value=float(c.hash_number))
    info = GaugeMetricFamily("vmn_config_info", "the loaded file (sha256 prefix)",
                             labels=["sha256"])
    info.add_metric([c.sha256[:12]], 1.0)
    yield info
    yield GaugeMetricFamily("vmn_config_restart_needed", "changed keys that wait for a "
                            "restart", value=len(c.restart_needed))


def _histogram(name: str, help_text: str, h: Histogram) -> HistogramMetricFamily:
    return HistogramMetricFamily(name, help_text, buckets=h.buckets(), sum_value=h.sum)


def bind_states(sessions: Sequence[SmppSession]) -> dict[str, dict[str, Any]]:
    return {s.name: {"state": s.state, "host": s.cfg.host, "port": s.cfg.port,
                     "reconnects": s.reconnects, "outstanding": s.outstanding,
                     "bound_since": _iso(s.bound_since), "down_since": _iso(s.down_since),
                     "last_error": s.last_error,
                     "last_error_at": _iso(s.last_error_at)}
            for s in sessions}


def _iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, UTC).isoformat(
        timespec="seconds")


async def database_answers(store: Store) -> bool:
    try:
        async with asyncio.timeout(DB_TIMEOUT):
            async with store.reader.connect() as conn:
                await dbm.ping(conn)
    except Exception as exc:
        log.warning("admin.database_down", error=str(exc) or type(exc).__name__)
        return False
    return True


def build_app(metrics: Metrics) -> web.Application:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(metrics)
    sessions = metrics.sessions
    started_at = _iso(time.time())

    async def healthz(_request: web.Request) -> web.Response:
        """200 when at least one bind is up and the database answers, else 503."""
        binds = bind_states(sessions)
        db = await database_answers(metrics.store)
        ok = db and any(s.is_bound for s in sessions)
        return web.json_response({"ok": ok, "database": db, "started_at": started_at,
                                  "binds": binds},
                                 status=200 if ok else 503)

    async def scrape(_request: web.Request) -> web.Response:
        await metrics.refresh()
        return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/health", healthz)  # the name used before /healthz
    app.router.add_get("/metrics", scrape)
    return app


async def serve(app: web.Application, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
