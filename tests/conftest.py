"""Shared fixtures: the SMSC simulator, a database per test (SQLite file or a fresh
PostgreSQL database), and the gateway daemon as a real subprocess.

VMN_TEST_DB picks the backend of a run: `sqlite` (default) or `postgres`. `.ci/run`
runs the suite once with each. In a PostgreSQL run every database fixture (`db_url`,
`sqlite_url`) hands out a new, empty PostgreSQL database; in a SQLite run a new file.

VMN_LOOP picks the event loop (gateway/eventloop.py) of the tests themselves and of the
daemons they start: uvloop when installed (default), or `asyncio`. `.ci/run` runs the
SQLite pass on the default loop and the PostgreSQL pass with VMN_LOOP=asyncio."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from gateway import eventloop

sys.path.insert(0, str(Path(__file__).parent))
from simctl import Simulator

# Before any loop exists: pytest-asyncio and asyncio.run take the installed policy.
eventloop.install()

# No per-example deadline and no "input generation is slow" check for property tests: on
# two shared cores an example that takes 2 ms alone can take 300 ms, and hypothesis then
# fails a test that asserts nothing about time (most test files already set deadline=None
# one by one; the too_slow check failed test_backoff once in CI's PostgreSQL pass).
settings.register_profile("vmn", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("vmn")

REPO = Path(__file__).resolve().parent.parent
PG_URL = os.environ.get("VMN_TEST_PG", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
TEST_DB = os.environ.get("VMN_TEST_DB", "sqlite")
if TEST_DB not in ("sqlite", "postgres"):
    raise RuntimeError(f"VMN_TEST_DB must be sqlite or postgres (got {TEST_DB!r})")


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator.start() as s:
        yield s


def _pg_admin(sql: str) -> None:
    import asyncpg

    async def go() -> None:
        dsn = PG_URL.replace("postgresql+asyncpg", "postgresql")
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(go())


def _fresh_pg() -> Iterator[str]:
    name = f"vmn_t_{uuid.uuid4().hex[:12]}"
    _pg_admin(f"CREATE DATABASE {name}")
    base = PG_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        _pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


# The parameter id stays "sqlite" / "postgres", so `-k postgres` keeps working.
@pytest.fixture(params=["sqlite"] if TEST_DB == "sqlite"
                else [pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database URL with nothing in it: a SQLite file, or a new PostgreSQL database
    (the backend of this run, see VMN_TEST_DB)."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path}/gateway.db"
        return
    yield from _fresh_pg()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> Iterator[str]:
    """The database of tests that need only one backend: a SQLite file, or a new
    PostgreSQL database when VMN_TEST_DB=postgres (the name predates that switch)."""
    if TEST_DB == "postgres":
        yield from _fresh_pg()
        return
    yield f"sqlite+aiosqlite:///{tmp_path}/gateway.db"


def run_sql(url: str, *statements: str) -> None:
    """Run statements on a test database of either backend, outside the gateway."""
    if url.startswith("sqlite"):
        import sqlite3

        db = sqlite3.connect(url.split("///", 1)[1], isolation_level=None, timeout=30)
        try:
            for sql in statements:
                db.execute(sql)
        finally:
            db.close()
        return
    import asyncpg

    async def go() -> None:
        conn = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
        try:
            for sql in statements:
                await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(go())


SMSC_DEFAULTS: dict[str, float] = {
    "reconnect_min": 0.2, "reconnect_max": 2.0, "enquire_link_interval": 5,
}


def gateway_config(*, db: str, sim: Simulator, extra_gateway: str = "", smsc_extra: str = "",
                   numbers: str = "", name: str = "test", **smsc: float) -> str:
    """A config for one bind to the simulator; keyword arguments override [[smsc]] keys."""
    options = "\n".join(f"{k} = {v}" for k, v in {**SMSC_DEFAULTS, **smsc}.items())
    return f"""
[gateway]
name = "{name}"
database = "{db}"
mt_poll_interval = 0.1
{extra_gateway}

[[smsc]]
name = "sim"
host = "127.0.0.1"
port = {sim.smpp_port}
system_id = "{sim.system_id}"
password = "{sim.password}"
{options}
{smsc_extra}

{numbers or DEFAULT_NUMBERS}
"""


DEFAULT_NUMBERS = """
[[number]]
vmn = "5551000100"
[number.default]
"""


class Gateway:
    """`vmn-gateway run` in a subprocess, plus the CLI against the same config."""

    def __init__(self, config_path: Path, log_path: Path) -> None:
        self.config_path = config_path
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Gateway:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gateway", "run", "-c", str(self.config_path)],
                cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
            )
        return self

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        res = subprocess.run(
            [sys.executable, "-m", "gateway", *args, "-c", str(self.config_path)]
            if args[0] not in ("send",) else
            [sys.executable, "-m", "gateway", args[0], "-c", str(self.config_path), *args[1:]],
            cwd=REPO, capture_output=True, text=True, timeout=60,
        )
        if check and res.returncode != 0:
            raise AssertionError(f"cli {args} failed: {res.stderr}")
        return res

    def logs(self, *filters: str) -> list[dict[str, Any]]:
        out = self.cli("logs", "--json", "--limit", "0", *filters).stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def mos(self) -> list[dict[str, Any]]:
        return [r for r in self.logs() if r["direction"] == "mo"]

    def send(self, sender: str, to: str, text: str) -> str:
        return self.cli("send", "--from", sender, "--to", to, text).stdout.strip()

    def log_lines(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def log_events(self, event: str) -> list[dict[str, Any]]:
        return [e for e in self.log_lines() if e.get("event") == event]

    def terminate(self, timeout: float = 20.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@pytest.fixture
def make_gateway(tmp_path: Path) -> Iterator[Callable[..., Gateway]]:
    started: list[Gateway] = []

    def make(config: str, *, start: bool = True) -> Gateway:
        path = tmp_path / f"gateway{len(started)}.toml"
        path.write_text(config)
        gw = Gateway(path, tmp_path / f"gateway{len(started)}.log")
        started.append(gw)
        return gw.start() if start else gw

    yield make
    for gw in started:
        if gw.running:
            gw.kill()


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05,
             what: str = "condition") -> Any:
    """Poll a test-side predicate (never used inside the product)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise TimeoutError(f"timed out waiting for {what}; last value: {last!r}")
