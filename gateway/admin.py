"""Optional HTTP listener (`[gateway] admin_listen`): /health and /metrics.

Metrics are read from the components' counters at scrape time, so the MO hot path
pays nothing for them."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from gateway.pipeline import Intake
from gateway.smpp.session import SmppSession

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _GatewayCollector(Collector):
    def __init__(self, intake: Intake, sessions: Sequence[SmppSession]) -> None:
        self.intake = intake
        self.sessions = sessions

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        stats = self.intake.stats
        for key, help_text in (
            ("mo", "MOs stored (after reassembly)"),
            ("parts", "MO parts stored"),
            ("receipts", "delivery receipts stored"),
            ("duplicates", "redelivered PDUs acknowledged without a second row"),
            ("commits", "intake transactions committed"),
            ("failed_commits", "intake transactions that failed (batch answered with an error)"),
        ):
            yield CounterMetricFamily(f"vmn_intake_{key}", help_text, value=stats[key])
        bound = GaugeMetricFamily("vmn_smpp_bound", "1 when the bind is up", labels=["smsc"])
        binds = CounterMetricFamily("vmn_smpp_reconnects", "reconnect attempts", labels=["smsc"])
        for s in self.sessions:
            bound.add_metric([s.name], 1.0 if s.is_bound else 0.0)
            binds.add_metric([s.name], s.reconnects)
        yield bound
        yield binds
        yield GaugeMetricFamily("vmn_reassembly_open_groups",
                                "long MOs waiting for parts", value=len(self.intake.reassembler))


def build_app(intake: Intake, sessions: Sequence[SmppSession]) -> web.Application:
    registry = CollectorRegistry()
    registry.register(_GatewayCollector(intake, sessions))

    async def health(_request: web.Request) -> web.Response:
        binds = {s.name: s.is_bound for s in sessions}
        ok = any(binds.values()) or not binds
        return web.json_response({"ok": ok, "binds": binds}, status=200 if ok else 503)

    async def metrics(_request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE})

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    return app


async def serve(app: web.Application, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
