"""`[gateway] durability`: what an acknowledged MO survives, on both backends.

* Both modes survive the daemon being killed: kill -9 in the middle of a burst loses no
  acknowledged MO (SQLite and PostgreSQL, per VMN_TEST_DB).
* "power-loss" on SQLite: strace attached to the running daemon shows an fdatasync (or
  fsync) of the WAL completing before every deliver_sm_resp is written to the socket;
  "crash" writes its acks without one per commit.
* Each mode sets its engine: SQLite PRAGMA synchronous FULL / NORMAL, PostgreSQL
  synchronous_commit on / off.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import Gateway, gateway_config
from simctl import Simulator
from sqlalchemy import text

from gateway.storage.db import create_engine, is_sqlite

VMN = "5551000100"
CUSTOMER = "15551234567"
MODES = ["power-loss", "crash"]


def _durability(mode: str) -> str:
    return f'durability = "{mode}"'


# --------------------------------------------------------------------------- the key


def test_the_key_defaults_to_power_loss_and_the_old_one_says_what_replaced_it() -> None:
    from gateway.config import ConfigError, Durability, parse_config

    smsc = {"smsc": [{"name": "sim", "system_id": "test"}]}
    cfg = parse_config(smsc, file="g.toml", env={})
    assert cfg.gateway.durability is Durability.POWER_LOSS
    assert cfg.gateway.pg_intake_commits == 4
    cfg = parse_config({**smsc, "gateway": {"durability": "CRASH"}}, file="g.toml", env={})
    assert cfg.gateway.durability is Durability.CRASH
    with pytest.raises(ConfigError) as err:
        parse_config({**smsc, "gateway": {"sqlite_synchronous": "NORMAL"}}, file="g.toml",
                     env={})
    assert 'durability = "crash"' in str(err.value)
    for bad in ({"durability": "fsync"}, {"pg_intake_commits": 0},
                {"pg_intake_commits": 9}):
        with pytest.raises(ConfigError):
            parse_config({**smsc, "gateway": bad}, file="g.toml", env={})


# --------------------------------------------------------------------------- engines


@pytest.mark.parametrize("mode", MODES)
def test_each_mode_sets_its_engine(db_url: str, mode: str) -> None:
    async def setting() -> str:
        engine = create_engine(db_url, durability=mode)
        try:
            async with engine.connect() as conn:
                if is_sqlite(db_url):
                    level = (await conn.execute(text("PRAGMA synchronous"))).scalar_one()
                    return {2: "FULL", 1: "NORMAL"}.get(level, str(level))
                return str((await conn.execute(text("SHOW synchronous_commit"))).scalar_one())
        finally:
            await engine.dispose()

    expected = {
        ("sqlite", "power-loss"): "FULL", ("sqlite", "crash"): "NORMAL",
        ("postgres", "power-loss"): "on", ("postgres", "crash"): "off",
    }
    backend = "sqlite" if is_sqlite(db_url) else "postgres"
    assert asyncio.run(setting()) == expected[(backend, mode)]


async def test_book_keeping_commits_never_wait_for_the_disk(db_url: str) -> None:
    """power-loss: an intake-style transaction flushes, a relaxed one (job claims and
    outcomes, the fan-out) does not, on either backend."""
    from sqlalchemy.engine import Connection

    from gateway.storage.db import migrate
    from gateway.storage.repo import Store

    def level(conn: Connection) -> str:
        if conn.dialect.name == "sqlite":
            raw = conn.exec_driver_sql("PRAGMA synchronous").scalar_one()
            return {2: "FULL", 1: "NORMAL"}.get(raw, str(raw))
        return str(conn.exec_driver_sql("SHOW synchronous_commit").scalar_one())

    engine = create_engine(db_url, durability="power-loss")
    await migrate(engine)
    store = Store(engine, synchronous="FULL")
    try:
        durable, relaxed = "FULL", "NORMAL"
        if not is_sqlite(db_url):
            durable, relaxed = "on", "off"
        assert await store.transaction(level) == durable
        assert await store.relaxed(level) == relaxed
        assert await store.transaction(level) == durable  # only for that transaction
    finally:
        await store.close()
        await engine.dispose()


# --------------------------------------------------------------------------- kill -9


@pytest.mark.parametrize("mode", MODES)
def test_sigkill_mid_burst_loses_nothing_acked(sim: Simulator, db_url: str, mode: str,
                                               make_gateway: Callable[..., Gateway]) -> None:
    """What both modes promise to survive: the process killed. Every MO the SMSC saw
    acknowledged is stored exactly once after a SIGKILL mid-burst and a restart."""
    count = 3000
    gw = make_gateway(gateway_config(db=db_url, sim=sim, extra_gateway=_durability(mode)))
    sim.wait_bound(timeout=20)
    sim.burst(count=count, window=50, source=CUSTOMER, destination=VMN, prefix="burst-",
              redeliver=True)
    sim.wait_for(lambda: len(sim.burst_status()["acked_ok"]) >= 600, timeout=30,
                 message="600 acked")
    gw.kill()
    acked_before_kill = set(sim.burst_status()["acked_ok"])
    assert 0 < len(acked_before_kill) < count
    gw.start()
    acked = sim.wait_burst_done(timeout=120)["acked_ok"]
    assert len(set(acked)) == count
    texts = Counter(m["text"] for m in gw.mos())
    missing = [t for t in acked_before_kill if texts[t] == 0]
    assert not missing, f"{len(missing)} acknowledged MOs lost, e.g. {missing[:5]}"
    assert not [t for t, n in texts.items() if n > 1]
    assert len(texts) == count


# --------------------------------------------------------------------------- fsync order

# strace -y names each fd's file and -xx prints every string in hex, the file names
# included: `fdatasync(7<\x2f\x74...>) = 0`; a deliver_sm_resp starts with its length
# (4 octets), then the command id 0x80000005.
_LINE = re.compile(r"^(\d+)\s+(.*)$")
_RESP = re.compile(r'^(?:sendto|write|writev)\(\d+<[^>]*>, \[?\{?(?:iov_base=)?'
                   r'"(?:\\x[0-9a-f]{2}){4}\\x80\\x00\\x00\\x05')
_SYNC = re.compile(r"^f(?:data)?sync\(\d+<([^>]*)>")


def _path(hexed: str) -> str:
    return bytes.fromhex(hexed.replace("\\x", "")).decode(errors="replace")


def strace_usable(tmp_path: Path) -> str | None:
    """None if strace can attach to a process here, else why not."""
    if shutil.which("strace") is None:
        return "strace is not installed (apt-get install strace; scripts/setup.sh does)"
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        res = subprocess.run(["strace", "-o", str(tmp_path / "probe.strace"), "-p",
                              str(sleeper.pid), "-e", "trace=none"],
                             capture_output=True, text=True, timeout=3)
        reason = res.stderr.strip() or f"strace exited {res.returncode}"
    except subprocess.TimeoutExpired:
        return None  # it attached and kept tracing until we gave up waiting
    finally:
        sleeper.kill()
        sleeper.wait()
    return f"strace cannot attach here: {reason}"


class Tracer:
    """strace -f attached to the running daemon (all its threads), until stop()."""

    def __init__(self, pid: int, out: Path) -> None:
        self.out = out
        self.proc = subprocess.Popen(
            ["strace", "-f", "-y", "-xx", "-s", "16", "-o", str(out), "-p", str(pid),
             "-e", "trace=fdatasync,fsync,sendto,write,writev"],
            stderr=subprocess.PIPE, text=True)
        assert self.proc.stderr is not None
        # "strace: Process N attached" (+ "with M threads"): then every thread is traced.
        line = self.proc.stderr.readline()
        if "attached" not in line:
            self.proc.kill()
            pytest.skip(f"strace cannot attach to the daemon: {line.strip()}")

    def stop(self) -> list[str]:
        self.proc.send_signal(signal.SIGINT)  # detaches and leaves the daemon running
        self.proc.wait(10)
        return self.out.read_text(errors="replace").splitlines()


def ack_syncs(lines: list[str], wal: str) -> list[int]:
    """For each deliver_sm_resp written, how many syncs of the WAL completed after the
    previous one was written and before it was (in the order strace saw them)."""
    pending: dict[str, str] = {}  # pid -> the file of its unfinished sync
    synced = 0
    counts: list[int] = []
    for raw in lines:
        m = _LINE.match(raw)
        if m is None:
            continue
        pid, call = m.groups()
        if call.startswith("<... f") and "resumed>" in call:  # a sync finishing
            if _path(pending.pop(pid, "")) == wal and " = 0" in call:
                synced += 1
            continue
        if _RESP.match(call):
            counts.append(synced)
            synced = 0
            continue
        s = _SYNC.match(call)
        if s is not None:
            if call.endswith("<unfinished ...>"):
                pending[pid] = s.group(1)
            elif _path(s.group(1)) == wal and call.rstrip().endswith("= 0"):
                synced += 1
    return counts


@pytest.mark.parametrize("mode", MODES)
def test_sqlite_syncs_the_wal_before_each_ack_only_in_power_loss_mode(
        sim: Simulator, tmp_path: Path, mode: str,
        make_gateway: Callable[..., Gateway]) -> None:
    """power-loss: every deliver_sm_resp is written after an fdatasync/fsync of the WAL
    that completed since the previous one (the MOs go one at a time, so one commit each).
    crash: the acks go out without one (only the once-a-second checkpoint syncs)."""
    reason = strace_usable(tmp_path)
    if reason is not None:
        pytest.skip(reason)
    db = tmp_path / "gateway.db"
    gw = make_gateway(gateway_config(db=f"sqlite+aiosqlite:///{db}", sim=sim,
                                     extra_gateway=_durability(mode)))
    sim.wait_bound(timeout=20)
    assert sim.mo(source=CUSTOMER, destination=VMN, text="warm-up")["statuses"] == [0]
    assert gw.proc is not None
    tracer = Tracer(gw.proc.pid, tmp_path / "daemon.strace")
    try:
        n = 30
        started = time.monotonic()
        for i in range(n):
            assert sim.mo(source=CUSTOMER, destination=VMN, text=f"mo {i}")["statuses"] == [0]
        elapsed = time.monotonic() - started
    finally:
        lines = tracer.stop()
    counts = ack_syncs(lines, str(db) + "-wal")
    assert len(counts) == n, (f"{len(counts)} deliver_sm_resp writes traced, expected {n}",
                              lines[-20:])
    if mode == "power-loss":
        unsynced = [i for i, c in enumerate(counts) if c == 0]
        assert not unsynced, f"acks written with no WAL sync before them: {unsynced}"
    else:
        # Only the daemon's once-a-second checkpoint syncs the WAL in this mode.
        assert sum(1 for c in counts if c) <= elapsed + 2, (counts, elapsed)
        assert sum(1 for c in counts if c) < n // 2, counts


# --------------------------------------------------------------------------- intake commits


async def _intake(db_url: str, max_commits: int) -> tuple[Any, Any, Any]:
    from gateway.pipeline import Intake
    from gateway.storage.db import migrate
    from gateway.storage.repo import Store

    engine = create_engine(db_url)
    await migrate(engine)
    store = Store(engine)
    intake = Intake(store, dedup_window=60, reassembly_timeout=60, max_commits=max_commits)
    await intake.load_state()
    return engine, store, intake


def _mo(seq: int, source: str, text: bytes, esm: int = 0) -> tuple[Any, bytes]:
    from test_pg_robust import deliver_sm

    from gateway.smpp.codec import decode

    raw = deliver_sm(seq, source, text, esm=esm)
    return decode(raw), raw


class _Watch:
    """Wraps Store.write_intake: how many run at once, and an optional hold per batch."""

    def __init__(self, store: Any, hold: Callable[[list[Any], list[Any]], float]) -> None:
        self.now = self.peak = 0
        real = store.write_intake

        async def write_intake(msgs: Any, parts: Any, *args: Any) -> Any:
            self.now += 1
            self.peak = max(self.peak, self.now)
            try:
                await asyncio.sleep(hold(list(msgs), list(parts)))
                return await real(msgs, parts, *args)
            finally:
                self.now -= 1

        store.write_intake = write_intake


async def test_plain_mos_commit_side_by_side_and_every_one_is_acked_once(db_url: str) -> None:
    """max_commits > 1: several intake transactions are in flight at once (on
    PostgreSQL one WAL flush then covers them), every MO is stored once and acked OK."""
    from test_pg_robust import _Bind, query

    engine, store, intake = await _intake(db_url, max_commits=4)
    watch = _Watch(store, lambda _m, _p: 0.02)
    writer = asyncio.create_task(intake.run())
    try:
        bind = _Bind()
        for i in range(1, 201):
            pdu, raw = _mo(i, f"1555{i:07d}", f"mo {i}".encode())
            intake.on_mo(bind, pdu, raw)
            if i % 10 == 0:
                await asyncio.sleep(0.005)  # the SMSC's next window
        assert await intake.drain(60)
        assert bind.statuses == {i: 0 for i in range(1, 201)}
        assert watch.peak > 1, "never more than one intake commit in flight"
        assert watch.peak <= 4
        rows = await asyncio.to_thread(query, db_url, "SELECT count(*), count(DISTINCT text) "
                                                      "FROM messages")
        assert rows == [(200, 200)]
    finally:
        writer.cancel()
        await store.close()
        await engine.dispose()


async def test_a_long_mo_closes_only_after_the_batch_with_its_first_part(db_url: str) -> None:
    """A batch that closes a long MO commits alone, after every batch before it: were it
    to commit beside the (slower) batch holding its first part, that part would be left
    behind, open forever. Here the batch with part 1 is held 0.3 s; plain MOs arrive
    meanwhile, then the last part."""
    from test_pg_robust import _Bind, _udh, query

    engine, store, intake = await _intake(db_url, max_commits=4)
    watch = _Watch(store, lambda _m, parts: 0.3 if any(p[2] == 1 for p in parts) else 0.0)
    writer = asyncio.create_task(intake.run())
    try:
        bind = _Bind()
        pdu, raw = _mo(1, "15550000401", _udh(9, 2, 1) + b"first half, ", esm=0x40)
        intake.on_mo(bind, pdu, raw)
        while not intake._committing:
            await asyncio.sleep(0)
        for i in range(2, 6):
            pdu, raw = _mo(i, f"1555000050{i}", b"plain")
            intake.on_mo(bind, pdu, raw)
            await asyncio.sleep(0.01)
        pdu, raw = _mo(6, "15550000401", _udh(9, 2, 2) + b"second half", esm=0x40)
        intake.on_mo(bind, pdu, raw)
        assert await intake.drain(60)
        assert bind.statuses == {i: 0 for i in range(1, 7)}
        assert await asyncio.to_thread(
            query, db_url, "SELECT count(*) FROM mo_parts WHERE message_id IS NULL") == [(0,)]
        texts = await asyncio.to_thread(query, db_url, "SELECT text FROM messages")
        assert ("first half, second half",) in texts and len(texts) == 5
        assert watch.peak == 1  # parts commit alone
    finally:
        writer.cancel()
        await store.close()
        await engine.dispose()
