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
