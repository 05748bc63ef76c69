"""/metrics stays bounded and exact (issue 9 point 13): unrouted destinations are one
label value, and scrapes that overlap count every status change once."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiohttp
from conftest import Gateway, gateway_config, wait_for
from peers import free_port, http_get
from prometheus_client.parser import text_string_to_metric_families
from simctl import Simulator
from sqlalchemy import text

from gateway.admin import Metrics, build_app, serve
from gateway.pipeline import Intake
from gateway.storage.db import create_engine, migrate
from gateway.storage.repo import Store

VMN = "5551000100"
CUSTOMER = "15551234567"


def series(body: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {tuple(sorted(s.labels.items())): s.value
            for family in text_string_to_metric_families(body) for s in family.samples
            if s.name == name}


def test_distinct_unrouted_destinations_are_one_series(
        sim: Simulator, db_url: str, make_gateway: Callable[..., Gateway]) -> None:
    """20,000 MOs to distinct unrouted destinations made 20,002 series."""
    port = free_port()
    gw = make_gateway(gateway_config(db=db_url, sim=sim,
                                     extra_gateway=f'admin_listen = "127.0.0.1:{port}"'))
    sim.wait_bound(timeout=20)
    unrouted = 40
    for i in range(unrouted):
        res = sim.mo(source=CUSTOMER, destination=f"5559{i:06d}", text=f"lost {i}")
        assert res["statuses"] == [0]
    assert sim.mo(source=CUSTOMER, destination=VMN, text="hello")["statuses"] == [0]
    wait_for(lambda: len(gw.mos()) == unrouted + 1, what="every MO stored")
    status, body = http_get(port, "/metrics")
    assert status == 200
    assert series(body, "vmn_mo_received_total") == {
        (("route", "unrouted"), ("vmn", "unrouted")): unrouted,
        (("route", "default"), ("vmn", VMN)): 1,
    }
    # The MOs themselves keep the number they were sent to.
    assert {m["vmn"] for m in gw.mos()} == {VMN, *(f"5559{i:06d}" for i in range(unrouted))}


async def test_concurrent_scrapes_count_every_status_change_once(db_url: str) -> None:
    """8 scrapes at once counted `vmn_mt_status_total` 2,400 against 1,200: each one
    added the same rows to the shared counts across its awaits."""
    engine = create_engine(db_url)
    await migrate(engine)
    store = Store(engine)
    intake = Intake(store, dedup_window=0, reassembly_timeout=60)
    metrics = Metrics(intake, [], store, kinds=[])
    await metrics.start()
    rows = {"queued": 3000, "submitted": 2500, "delivered": 1500}  # > Tail.SLACK apart
    async with engine.begin() as conn:
        n = 0
        for status, count in rows.items():
            await conn.execute(
                text("INSERT INTO status_history (message_id, status, at) VALUES (:m, :s, 0)"),
                [{"m": f"mt{n + i}", "s": status} for i in range(count)])
            n += count
    port = free_port()
    runner = await serve(build_app(metrics), "127.0.0.1", port)
    expected = {(("status", s),): float(c) for s, c in rows.items()}
    try:
        async with aiohttp.ClientSession() as http:
            async def scrape() -> dict[tuple[tuple[str, str], ...], float]:
                async with http.get(f"http://127.0.0.1:{port}/metrics") as r:
                    assert r.status == 200
                    return series(await r.text(), "vmn_mt_status_total")

            results = await asyncio.gather(*(scrape() for _ in range(8)))
            assert results == [expected] * 8
            assert await scrape() == expected
            async with engine.begin() as conn:
                await conn.execute(text(
                    "INSERT INTO status_history (message_id, status, at) "
                    "VALUES ('late', 'failed', 0)"))
            results = await asyncio.gather(*(scrape() for _ in range(8)))
            assert results == [{**expected, (("status", "failed"),): 1.0}] * 8
    finally:
        await runner.cleanup()
        await store.close()
        await engine.dispose()
