"""Running as a service (issue 5): systemd notifications, the stop sequence, /healthz and
/metrics, the unit file (systemd-analyze) and the compose file (docker-compose).

The daemon runs as a real subprocess against the SMSC simulator; the systemd side is a
unix datagram socket this test owns, given to the daemon as $NOTIFY_SOCKET."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, Gateway, gateway_config, run_sql, wait_for
from peers import free_port, http_get
from prometheus_client.parser import text_string_to_metric_families
from simctl import Simulator

from gateway.config import GatewayConfig

VMN = "5551000100"
CUSTOMER = "15551234567"
UNIT = REPO / "systemd" / "vmn-gateway.service"
MAX_EXPOSURE = 2.0

KEYWORD_NUMBERS = f"""
[[number]]
vmn = "{VMN}"
[number.default]
[[number.keyword]]
keyword = "JOIN"
"""


# --------------------------------------------------------------------------- helpers


class NotifySocket:
    """What systemd would listen on: a unix datagram socket, with SO_PASSCRED so that
    every message carries the sender's pid (NotifyAccess=main needs the main process)."""

    def __init__(self) -> None:
        self._dir = tempfile.mkdtemp(prefix="sdn-", dir="/tmp")  # short: sun_path limit
        self.path = os.path.join(self._dir, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, int, str]] = []  # (monotonic, sender pid, text)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)

    def _read(self) -> None:
        creds = struct.calcsize("iII")
        while not self._stop.is_set():
            try:
                data, anc, _flags, _addr = self.sock.recvmsg(4096, socket.CMSG_SPACE(creds))
            except TimeoutError:
                continue
            except OSError:
                return
            pid = -1
            for level, kind, payload in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = struct.unpack("iII", payload[:creds])[0]
            self.messages.append((time.monotonic(), pid, data.decode()))

    def __enter__(self) -> NotifySocket:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()
        shutil.rmtree(self._dir, ignore_errors=True)

    def lines(self) -> list[str]:
        """Every assignment received, in order ("READY=1", "STATUS=...", ...)."""
        return [line for _, _, text in self.messages for line in text.split("\n") if line]

    def wait_line(self, wanted: str, after: int = 0, timeout: float = 30.0) -> int:
        """Index (in `lines()`) of the first `wanted` at or after index `after`."""
        def find() -> int | None:
            lines = self.lines()
            for i in range(after, len(lines)):
                if lines[i] == wanted:
                    return i + 1  # never 0, so that wait_for sees it as found
            return None

        return int(wait_for(find, timeout, what=f"{wanted!r} on NOTIFY_SOCKET")) - 1


def scrape(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """/metrics parsed by prometheus-client's own parser: (sample, labels) -> value."""
    status, body = http_get(port, "/metrics")
    assert status == 200, body
    out = {}
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def sample(metrics: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str,
           **labels: str) -> float:
    key = (name, frozenset(labels.items()))
    assert key in metrics, f"{name}{labels} not in /metrics: {sorted(k for k, _ in metrics)}"
    return metrics[key]


def dockerfile_healthcheck() -> list[str]:
    """The exec-form CMD of docker/Dockerfile's HEALTHCHECK, as Docker would parse it."""
    text = (REPO / "docker" / "Dockerfile").read_text()
    m = re.search(r"^HEALTHCHECK[^\n]*\\\n\s*CMD (\[.*\])\s*$", text, re.M)
    assert m, "no exec-form HEALTHCHECK CMD in docker/Dockerfile"
    cmd: list[str] = json.loads(m.group(1))
    return cmd


def run_healthcheck(port: int) -> int:
    cmd = dockerfile_healthcheck()
    assert cmd[0] == "python"
    res = subprocess.run([sys.executable, *cmd[1:]], env={**os.environ,
                         "VMN_ADMIN_PORT": str(port)}, capture_output=True, timeout=30)
    return res.returncode


def require(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} is not installed: `apt-get install -y {package}` "
                    f"(.ci/run does this when it runs as root)")
    return path


@pytest.fixture
def notify() -> Iterator[NotifySocket]:
    with NotifySocket() as ns:
        yield ns


# --------------------------------------------------------------------------- systemd notify


def test_notify_ready_watchdog_status_and_stopping(
        sim: Simulator, sqlite_url: str, make_gateway: Callable[..., Gateway],
        notify: NotifySocket, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", notify.path)
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")  # WatchdogSec=2: a ping every second
    gw = make_gateway(gateway_config(db=sqlite_url, sim=sim, reconnect_max=1.0))
    assert gw.proc is not None
    ready = notify.wait_line("READY=1")
    assert notify.lines()[ready + 1] == "STATUS=1/1 binds up: sim bound"  # same datagram
    first_ping = notify.wait_line("WATCHDOG=1", after=ready)
    wait_for(lambda: notify.lines()[first_ping:].count("WATCHDOG=1") >= 4, timeout=30,
             what="4 watchdog pings")
    pings = [at for at, _, text in notify.messages if text == "WATCHDOG=1"]
    # Each ping well within WatchdogSec of the previous one (they are sent every half).
    assert max(b - a for a, b in pairwise(pings)) < 2.0, pings

    # The SMSC goes away and comes back: STATUS= follows the bind.
    sim.configure(password="changed")
    sim.drop()
    down = notify.wait_line("STATUS=0/1 binds up: sim down", after=ready)
    sim.configure(password=sim.password)
    notify.wait_line("STATUS=1/1 binds up: sim bound", after=down)

    before_stop = len(notify.lines())
    assert gw.terminate() == 0
    stopping = notify.wait_line("STOPPING=1", after=before_stop, timeout=5)
    assert any(line.startswith("STATUS=stopping") for line in notify.lines()[stopping:])
    # Every message came from the daemon's main process (NotifyAccess=main).
    assert {pid for _, pid, _ in notify.messages} == {gw.proc.pid}


def test_without_notify_socket_the_daemon_runs_and_stops(
        sim: Simulator, sqlite_url: str, make_gateway: Callable[..., Gateway],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.setenv("WATCHDOG_USEC", "200000")  # ignored without a socket
    gw = make_gateway(gateway_config(db=sqlite_url, sim=sim))
    sim.wait_bound(timeout=20)
    wait_for(lambda: gw.log_events("daemon.ready"), what="daemon.ready")
    assert gw.terminate() == 0


# --------------------------------------------------------------------------- lifecycle


def test_sigterm_mid_burst_exits_0_unbinds_and_keeps_every_acked_mo(
        sim: Simulator, db_url: str, make_gateway: Callable[..., Gateway]) -> None:
    deadline = 8.0
    count = 30000
    gw = make_gateway(gateway_config(db=db_url, sim=sim,
                                     extra_gateway=f"shutdown_timeout = {deadline}"))
    assert gw.proc is not None
    sim.wait_bound(timeout=20)
    sim.burst(count=count, window=50, source=CUSTOMER, destination=VMN, prefix="term-")
    sim.wait_for(lambda: len(sim.burst_status()["acked_ok"]) >= 500, timeout=60,
                 message="500 MOs acknowledged")
    signalled = time.monotonic()
    gw.proc.send_signal(signal.SIGTERM)
    rc = gw.proc.wait(deadline + 30)
    took = time.monotonic() - signalled
    assert rc == 0, gw.log_path.read_text()[-3000:]
    # Within the drain deadline, plus a generous allowance for interpreter exit.
    assert took < deadline + 5, took

    assert sim.state()["unbinds_received"] == 1
    assert gw.log_events("smpp.unbound") and gw.log_events("daemon.stopped")
    acked = sim.burst_status()["acked_ok"]
    sim.cancel_burst()
    assert 0 < len(acked) < count, "the signal did not land in the middle of the burst"
    texts = Counter(m["text"] for m in gw.mos())
    missing = [t for t in acked if texts[t] == 0]
    doubled = [t for t, n in texts.items() if n > 1]
    assert not missing, f"{len(missing)} acknowledged MOs not stored, e.g. {missing[:5]}"
    assert not doubled, f"{len(doubled)} MOs stored twice, e.g. {doubled[:5]}"


def test_a_second_signal_forces_exit(sim: Simulator, sqlite_url: str,
                                     make_gateway: Callable[..., Gateway]) -> None:
    """The first SIGTERM waits for an MT whose submit_sm_resp the SMSC holds back (for
    up to a quarter of a 60 s deadline); the second one ends the process at once."""
    sim.configure(ack_delay_ms=60000)
    gw = make_gateway(gateway_config(db=sqlite_url, sim=sim,
                                     extra_gateway="shutdown_timeout = 60"))
    assert gw.proc is not None
    sim.wait_bound(timeout=20)
    gw.send(VMN, CUSTOMER, "held back")
    sim.wait_submits(1, timeout=30)
    gw.proc.send_signal(signal.SIGTERM)
    wait_for(lambda: gw.log_events("daemon.stopping"), what="daemon.stopping")
    assert gw.running  # still waiting for the submit_sm_resp
    gw.proc.send_signal(signal.SIGINT)
    rc = gw.proc.wait(15)
    assert rc != 0
    assert gw.log_events("daemon.forced_exit")


# --------------------------------------------------------------------------- admin


def test_healthz_follows_the_bind_and_metrics_count_the_mos(
        sim: Simulator, db_url: str, make_gateway: Callable[..., Gateway]) -> None:
    port = free_port()
    gw = make_gateway(gateway_config(
        db=db_url, sim=sim, numbers=KEYWORD_NUMBERS, reconnect_max=1.0,
        extra_gateway=f'admin_listen = "127.0.0.1:{port}"'))
    sim.wait_bound(timeout=20)
    _, body = wait_for(lambda: (lambda r: r if r[0] == 200 else None)(
        http_get(port, "/healthz")), what="/healthz 200")
    health = json.loads(body)
    assert health["ok"] is True and health["database"] is True
    assert health["binds"]["sim"]["state"] == "bound"
    assert run_healthcheck(port) == 0  # docker/Dockerfile's HEALTHCHECK command

    keyword, default = 6, 4
    for i in range(keyword):
        assert sim.mo(source=CUSTOMER, destination=VMN, text=f"JOIN {i}")["statuses"] == [0]
    for i in range(default):
        assert sim.mo(source=CUSTOMER, destination=VMN, text=f"hello {i}")["statuses"] == [0]
    # The same text again, answered in time: a new message (SPEC §3 step 2).
    assert sim.mo(source=CUSTOMER, destination=VMN, text="hello 0")["statuses"] == [0]
    default += 1
    assert len(gw.mos()) == keyword + default  # acknowledged means stored

    m = scrape(port)
    assert sample(m, "vmn_mo_received_total", vmn=VMN, route="keyword") == keyword
    assert sample(m, "vmn_mo_received_total", vmn=VMN, route="default") == default
    assert sample(m, "vmn_intake_mo_total") == keyword + default
    assert sample(m, "vmn_intake_duplicates_total") == 0
    deliver_sms = keyword + default
    assert sample(m, "vmn_deliver_sm_resp_latency_seconds_count") == deliver_sms
    assert sample(m, "vmn_deliver_sm_resp_latency_seconds_bucket", le="+Inf") == deliver_sms
    assert sample(m, "vmn_deliver_sm_resp_latency_seconds_sum") > 0
    commits = sample(m, "vmn_intake_commits_total")
    assert 1 <= commits <= deliver_sms
    assert sample(m, "vmn_db_commit_latency_seconds_count") == commits
    assert sample(m, "vmn_smpp_bound", smsc="sim") == 1
    assert sample(m, "vmn_smpp_window_outstanding", smsc="sim") == 0
    assert sample(m, "vmn_database_up") == 1
    assert sample(m, "vmn_action_queue_depth", kind="webhook") == 0
    assert sample(m, "vmn_action_queue_oldest_age_seconds", kind="webhook") == 0

    # An MT: queued, then submitted, counted from the database by status.
    gw.send(VMN, CUSTOMER, "an MT")
    sim.wait_submits(1, timeout=30)

    def mt_counted() -> dict[Any, float] | None:
        m = scrape(port)
        got = {dict(labels)["status"]: v for (name, labels), v in m.items()
               if name == "vmn_mt_status_total"}
        return m if got.get("queued") == 1 and got.get("submitted") == 1 else None

    m = wait_for(mt_counted, what="vmn_mt_status_total queued 1, submitted 1")
    assert sample(m, "vmn_mt_queue", status="queued") == 0

    # The simulator goes away: 503, the bind is down, the database still answers.
    smpp_port = sim.smpp_port
    sim.stop()
    _, body = wait_for(lambda: (lambda r: r if r[0] == 503 else None)(
        http_get(port, "/healthz")), what="/healthz 503")
    health = json.loads(body)
    assert health["ok"] is False and health["database"] is True
    assert health["binds"]["sim"]["state"] == "down"
    assert run_healthcheck(port) == 1
    assert sample(scrape(port), "vmn_smpp_bound", smsc="sim") == 0

    # It comes back on the same port: re-bind, 200 again.
    with Simulator.start(smpp_port=smpp_port) as back:
        back.wait_bound(timeout=30)
        wait_for(lambda: http_get(port, "/healthz")[0] == 200, what="/healthz 200 again")
        assert sample(scrape(port), "vmn_smpp_reconnects_total", smsc="sim") >= 1
        if db_url.startswith("postgresql"):
            # The database stops answering (no new connections, existing ones cut):
            # 503 with the bind up; back to 200 once it answers again.
            name = db_url.rsplit("/", 1)[1]
            run_sql(db_url.rsplit("/", 1)[0] + "/postgres",
                    f"ALTER DATABASE {name} ALLOW_CONNECTIONS false",
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    f"WHERE datname = '{name}' AND pid <> pg_backend_pid()")
            try:
                _, body = wait_for(lambda: (lambda r: r if r[0] == 503 else None)(
                    http_get(port, "/healthz")), what="/healthz 503 without the database")
                assert json.loads(body)["database"] is False
                assert sample(scrape(port), "vmn_database_up") == 0
            finally:
                run_sql(db_url.rsplit("/", 1)[0] + "/postgres",
                        f"ALTER DATABASE {name} ALLOW_CONNECTIONS true")
            wait_for(lambda: http_get(port, "/healthz")[0] == 200,
                     what="/healthz 200 with the database back")
        assert gw.terminate() == 0


# --------------------------------------------------------------------------- unit file


def _unit_settings() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")) and "=" in line:
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def test_unit_has_every_directive_of_the_issue() -> None:
    u = _unit_settings()

    def one(key: str) -> str:
        assert key in u, f"{key}= missing from {UNIT.name}"
        return u[key][-1]

    assert one("Type") == "notify"
    assert one("NotifyAccess") == "main"
    assert float(one("WatchdogSec")) > 0
    assert one("Restart") == "on-failure"
    assert one("DynamicUser") == "yes" or ("User" in u and "Group" in u)
    assert one("StateDirectory") == "vmn-gateway"
    assert one("ConfigurationDirectory") == "vmn-gateway"
    assert one("NoNewPrivileges") == "yes"
    assert one("ProtectSystem") == "strict"
    assert one("ProtectHome") in ("yes", "read-only", "tmpfs")
    assert one("PrivateTmp") == "yes"
    assert u["CapabilityBoundingSet"] == [""]  # no capabilities at all
    assert one("RestrictAddressFamilies").split() == ["AF_INET", "AF_INET6", "AF_UNIX"]
    assert u["SystemCallFilter"][0] == "@system-service"
    assert "-HUP" in one("ExecReload") and "$MAINPID" in one("ExecReload")
    # The file is checked before the signal: a rejected file fails `systemctl reload`.
    assert u["ExecReload"][0].endswith("vmn-gateway check -c /etc/vmn-gateway/gateway.toml")
    assert one("SyslogIdentifier") == "vmn-gateway"
    # systemd must not SIGKILL a daemon that is still within its own drain deadline.
    assert float(one("TimeoutStopSec")) > GatewayConfig().shutdown_timeout + 5
    assert one("ExecStart").endswith("vmn-gateway run -c /etc/vmn-gateway/gateway.toml")


def test_systemd_analyze_verify_passes(tmp_path: Path) -> None:
    """`systemd-analyze verify` checks that ExecStart's binary exists. The unit names the
    installed path (/opt/vmn-gateway/.venv/bin/vmn-gateway), which does not exist here, so
    the unit is verified as it is with exactly that one complaint allowed, and a copy
    pointing ExecStart at this checkout's venv must verify without any output."""
    tool = require("systemd-analyze", "systemd")
    installed = "/opt/vmn-gateway/.venv/bin/vmn-gateway"
    res = subprocess.run([tool, "verify", str(UNIT)], capture_output=True, text=True,
                         timeout=60, cwd=tmp_path)
    complaints = [line for line in (res.stdout + res.stderr).splitlines() if line.strip()]
    if not Path(installed).exists():
        other = [c for c in complaints if f"Command {installed} is not executable" not in c]
        assert not other, complaints
    else:
        assert res.returncode == 0 and not complaints, complaints

    binary = REPO / ".venv" / "bin" / "vmn-gateway"
    assert binary.exists(), f"{binary} missing: run scripts/setup.sh"
    copy = tmp_path / UNIT.name
    copy.write_text(UNIT.read_text().replace(f"={installed}", f"={binary}"))
    res = subprocess.run([tool, "verify", str(copy)], capture_output=True, text=True,
                         timeout=60, cwd=tmp_path)
    out = (res.stdout + res.stderr).strip()
    assert res.returncode == 0 and not out, out


def test_systemd_analyze_security_exposure_at_most_2() -> None:
    tool = require("systemd-analyze", "systemd")
    res = subprocess.run([tool, "security", "--offline=true", "--no-pager", str(UNIT)],
                         capture_output=True, text=True, timeout=60)
    m = re.search(r"Overall exposure level for vmn-gateway\.service: (\d+(?:\.\d+)?)",
                  res.stdout)
    assert m, res.stdout + res.stderr
    exposure = float(m.group(1))
    print(f"systemd-analyze security: overall exposure {exposure}")
    assert exposure <= MAX_EXPOSURE, res.stdout
    readme = (REPO / "README.md").read_text()
    assert f"exposure {exposure}" in readme or f"exposure level {exposure}" in readme, (
        f"README.md does not report the measured exposure ({exposure})")


# --------------------------------------------------------------------------- docker


def test_docker_compose_config_validates(tmp_path: Path) -> None:
    """What can be checked without a Docker engine: Debian's docker-compose 1.29 parses
    and validates the compose file, the compose configuration passes `vmn-gateway check`,
    and the Dockerfile's shape (its HEALTHCHECK command runs in the admin test)."""
    tool = require("docker-compose", "docker-compose")
    compose = REPO / "docker" / "compose.yaml"
    res = subprocess.run([tool, "-f", str(compose), "config"], capture_output=True,
                         text=True, timeout=120, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    res = subprocess.run([tool, "-f", str(compose), "config", "--services"],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert set(res.stdout.split()) == {"gateway", "mosquitto", "postgres", "smsc"}

    check = subprocess.run(
        [sys.executable, "-m", "gateway", "check", "-c", str(REPO / "docker" / "gateway.toml")],
        env={**os.environ, "VMN_DATABASE_URL": "postgresql+asyncpg://vmn:vmn@postgres/vmn"},
        capture_output=True, text=True, timeout=60, cwd=REPO)
    assert check.returncode == 0, check.stdout + check.stderr

    dockerfile = (REPO / "docker" / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", dockerfile, re.M)
    assert len(stages) >= 2, "the Dockerfile is not multi-stage"
    final = dockerfile[dockerfile.rindex("\nFROM "):]
    assert re.search(r"^USER\s+(?!root|0\b)\S+", final, re.M), "final stage runs as root"
    assert "COPY --from=" in final
    assert not re.search(r"apt-get|gcc|build-essential|pip install", final), (
        "build tools in the final stage")
    assert "/healthz" in " ".join(dockerfile_healthcheck())
