"""The MO path first (issue 13): while the intake has a batch committing, an API read
waits at the gate; it is answered once the commit is done. A real Intake and Store
(SQLite and PostgreSQL: `db_url`), the API served by uvicorn on a real port."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from fastapi.staticfiles import StaticFiles
from peers import free_port
from starlette.exceptions import HTTPException
from test_durability import _intake, _mo
from test_pg_robust import _Bind

from gateway.api.app import ConsoleFiles, build_app
from gateway.api.context import ApiContext
from gateway.api.server import ApiServer
from gateway.config import parse_config
from gateway.storage import apikeys

CONFIG: dict[str, Any] = {"smsc": [{"name": "sim", "system_id": "test"}],
                          "api": {"listen": "127.0.0.1:8080"}}


async def test_api_reads_wait_while_the_intake_commits_and_run_after(db_url: str) -> None:
    engine, store, intake = await _intake(db_url, max_commits=1)
    # The intake's commit is held until `release` is set: the intake is busy meanwhile.
    release = asyncio.Event()
    real = store.write_intake

    async def write_intake(*args: Any) -> Any:
        await release.wait()
        return await real(*args)

    store.write_intake = write_intake
    cfg = parse_config(CONFIG, file="gate.toml", env={})
    key = await store.transaction(apikeys.create, name="gate", scopes=frozenset({"read"}),
                                  now=time.time())
    ctx = ApiContext(config=lambda: cfg, store=store, intake_busy=intake.busy)
    # A long bounded wait: within this test the gate opens only when the intake is idle.
    server = ApiServer(build_app(ctx, gate_wait=30.0), f"127.0.0.1:{free_port()}")
    writer = asyncio.create_task(intake.run())
    try:
        async with asyncio.TaskGroup() as tg:
            server.start(tg)
            base = f"http://127.0.0.1:{server.port}"
            async with aiohttp.ClientSession(
                    headers={"Authorization": f"Bearer {key}"}) as http:
                async def get() -> tuple[int, float]:
                    async with http.get(f"{base}/v1/messages?limit=5") as r:
                        await r.read()
                        return r.status, time.monotonic()

                assert (await get())[0] == 200  # idle: answered at once
                bind = _Bind()
                pdu, raw = _mo(1, "15550001234", b"burst")
                intake.on_mo(bind, pdu, raw)
                for _ in range(100):  # the writer takes the batch
                    await asyncio.sleep(0.01)
                    if intake._committing:
                        break
                assert intake.busy()
                reads = [asyncio.create_task(get()) for _ in range(3)]
                await asyncio.sleep(0.5)
                assert not any(r.done() for r in reads), "an API read ran during the commit"
                released = time.monotonic()
                release.set()
                done = await asyncio.wait_for(asyncio.gather(*reads), 10)
                assert [status for status, _ in done] == [200, 200, 200]
                assert all(at >= released for _, at in done)
                assert bind.statuses == {1: 0}  # the MO was acked
                await server.stop(2.0)
    finally:
        writer.cancel()
        await store.close()
        await engine.dispose()


async def test_nothing_is_parsed_during_a_burst_and_the_oldest_goes_every_max_wait(
        db_url: str) -> None:
    """While the intake is busy an API connection's bytes are held unparsed (any path:
    /openapi.json is not behind the /v1/ gate, and was answered at once before); the
    oldest held connection goes after `hold_max`, all of them when the burst ends."""
    engine, store, _ = await _intake(db_url, max_commits=1)
    busy = [False]
    cfg = parse_config(CONFIG, file="gate.toml", env={})
    ctx = ApiContext(config=lambda: cfg, store=store, intake_busy=lambda: busy[0])
    server = ApiServer(build_app(ctx, gate_wait=0.05), f"127.0.0.1:{free_port()}",
                       hold_max=2.0)
    try:
        async with asyncio.TaskGroup() as tg:
            server.start(tg)
            base = f"http://127.0.0.1:{server.port}"
            # one connection per request: each is held on its own
            async with aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(force_close=True)) as http:
                async def get() -> tuple[int, float]:
                    async with http.get(f"{base}/openapi.json") as r:
                        await r.read()
                        return r.status, time.monotonic()

                assert (await get())[0] == 200  # idle: at once
                assert server.held_reads.holds == 0
                busy[0] = True
                start = time.monotonic()
                first = asyncio.create_task(get())
                await asyncio.sleep(1.0)
                later = [asyncio.create_task(get()) for _ in range(2)]
                await asyncio.sleep(0.3)
                assert not first.done() and not any(r.done() for r in later), \
                    "an API request was parsed and answered during the burst"
                assert server.held_reads.holds == 3
                status, at = await asyncio.wait_for(first, 10)
                assert status == 200 and at - start >= 2.0  # the oldest, after hold_max
                assert not any(r.done() for r in later)  # the others still held (till ~3 s)
                ended = time.monotonic()
                busy[0] = False
                done = await asyncio.wait_for(asyncio.gather(*later), 10)
                assert [s for s, _ in done] == [200, 200]
                assert all(t >= ended for _, t in done)
            await server.stop(2.0)
    finally:
        await store.close()
        await engine.dispose()


@pytest.mark.parametrize(("method", "status"), [("GET", 404), ("HEAD", 404), ("POST", 405)])
async def test_an_unknown_api_path_is_answered_without_a_file_lookup(
        method: str, status: int, tmp_path: Path) -> None:
    """/v1/... that no route took went to the console's StaticFiles, which looked for a
    file (and a 404.html) in a worker thread: two thread hops per unknown-path request."""
    (tmp_path / "index.html").write_text("<html></html>")
    files = ConsoleFiles(directory=str(tmp_path), html=True)

    def lookup(path: str) -> Any:
        raise AssertionError(f"looked for a file: {path}")

    files.lookup_path = lookup  # type: ignore[method-assign]
    for path in ("v1/nothing", "v1", "v1/messages/x/y"):
        with pytest.raises(HTTPException) as err:
            await files.get_response(path, {"type": "http", "method": method})
        assert err.value.status_code == status
    files.lookup_path = StaticFiles.lookup_path.__get__(files)  # type: ignore[method-assign]
    response = await files.get_response("index.html", {"type": "http", "method": "GET",
                                                        "headers": []})
    assert response.status_code == 200  # the console's own files still served
