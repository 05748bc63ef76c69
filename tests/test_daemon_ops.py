"""The daemon for an operator (issue 10 points 12 and 13): a received MO is a log line;
/healthz says why a bind is down; one daemon per SQLite file; a second SIGINT exits
without a traceback; `vmn-gateway status`; the Grafana dashboard's metrics exist.

Real daemon subprocesses against the SMSC simulator (and Mosquitto for the MQTT
gauges)."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from conftest import REPO, Gateway, gateway_config, wait_for
from peers import free_port, http_get
from simctl import Simulator

VMN = "5551000100"
CUSTOMER = "15551234567"
DASHBOARD = REPO / "docs" / "grafana" / "vmn-gateway.json"


def health(port: int) -> dict[str, Any] | None:
    status, body = http_get(port, "/healthz")
    return json.loads(body) if status in (200, 503) else None


def status_cli(gw: Gateway) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", "status", "-c",
                           str(gw.config_path)], cwd=REPO, capture_output=True, text=True,
                          timeout=60)


# --------------------------------------------------------------------------- point 12


def test_a_received_mo_is_a_log_line_with_the_text_only_at_debug(
        sim: Simulator, db_url: str, make_gateway: Callable[..., Gateway]) -> None:
    gw = make_gateway(gateway_config(db=db_url, sim=sim, extra_gateway='log_level = "debug"'))
    sim.wait_bound(timeout=20)
    assert sim.mo(source=CUSTOMER, destination=VMN, text="hello there")["statuses"] == [0]
    line = wait_for(lambda: gw.log_events("mo.received"), what="mo.received")[0]
    stored = gw.mos()[0]
    assert line["level"] == "info"
    assert line["id"] == stored["id"] and line["smsc"] == "sim" and line["vmn"] == VMN
    assert line["from"] == CUSTOMER and line["route"] == "default"
    assert "keyword" in line and "text" not in line
    assert "hello there" not in json.dumps(line)
    text = wait_for(lambda: gw.log_events("mo.text"), what="mo.text")[0]
    assert text == {**text, "id": stored["id"], "text": "hello there", "level": "debug"}
    assert gw.terminate() == 0


def test_at_info_the_text_is_not_logged(
        sim: Simulator, db_url: str, make_gateway: Callable[..., Gateway]) -> None:
    gw = make_gateway(gateway_config(db=db_url, sim=sim))
    sim.wait_bound(timeout=20)
    assert sim.mo(source=CUSTOMER, destination=VMN, text="secret words")["statuses"] == [0]
    wait_for(lambda: gw.log_events("mo.received"), what="mo.received")
    assert gw.terminate() == 0
    assert not gw.log_events("mo.text")
    assert "secret words" not in gw.log_path.read_text()


def test_healthz_and_status_say_why_a_bind_is_down(
        sim: Simulator, db_url: str, make_gateway: Callable[..., Gateway]) -> None:
    port = free_port()
    closed = free_port()  # nothing listens: connection refused
    config = gateway_config(db=db_url, sim=sim, extra_gateway=f'admin_listen = "127.0.0.1:{port}"',
                            smsc_extra=f"""
[[smsc]]
name = "nobody"
host = "127.0.0.1"
port = {closed}
system_id = "x"
reconnect_min = 0.2
reconnect_max = 1.0
""").replace(f'password = "{sim.password}"', 'password = "wrong"')
    gw = make_gateway(config)

    def failed() -> dict[str, Any] | None:
        h = health(port)
        binds = (h or {}).get("binds", {})
        return h if all(b.get("last_error") for b in binds.values()) and binds else None

    h = wait_for(failed, what="both binds with a last error")
    assert h["ok"] is False
    sim_bind, nobody = h["binds"]["sim"], h["binds"]["nobody"]
    assert sim_bind["state"] == "down" and "ESME_RINVPASWD" in sim_bind["last_error"]
    assert sim_bind["down_since"] and sim_bind["last_error_at"]
    assert "refused" in nobody["last_error"].lower(), nobody

    out = status_cli(gw)
    assert out.returncode == 0, out.stderr
    assert re.search(r"sim .*down .*ESME_RINVPASWD", out.stdout), out.stdout
    assert re.search(r"nobody .*down .*refused", out.stdout, re.I), out.stdout


def test_a_second_daemon_on_the_same_sqlite_file_refuses_to_start(
        sim: Simulator, tmp_path: Path, make_gateway: Callable[..., Gateway]) -> None:
    # SQLite only: on PostgreSQL several instances may share a database.
    url = f"sqlite+aiosqlite:///{tmp_path}/shared.db"
    first = make_gateway(gateway_config(db=url, sim=sim))
    sim.wait_bound(timeout=20)
    second = make_gateway(gateway_config(db=url, sim=sim))
    assert second.proc is not None
    rc = second.proc.wait(30)
    assert rc != 0
    lines = [ln for ln in second.log_path.read_text().splitlines() if ln.strip()]
    assert len(lines) == 1, lines
    assert "already running" in lines[0] and f"{tmp_path}/shared.db.lock" in lines[0]
    assert len(sim.state().get("sessions", [None])) <= 1 or first.running
    assert first.running
    assert first.terminate() == 0
    # The lock goes with the process: the next start works.
    third = make_gateway(gateway_config(db=url, sim=sim))
    sim.wait_bound(timeout=20)
    assert third.running
    assert third.terminate() == 0


def test_a_second_sigint_exits_without_a_traceback(
        sim: Simulator, db_url: str, make_gateway: Callable[..., Gateway]) -> None:
    sim.configure(ack_delay_ms=60000)
    gw = make_gateway(gateway_config(db=db_url, sim=sim, extra_gateway="shutdown_timeout = 60"))
    assert gw.proc is not None
    sim.wait_bound(timeout=20)
    gw.send(VMN, CUSTOMER, "held back")
    sim.wait_submits(1, timeout=30)
    gw.proc.send_signal(signal.SIGINT)
    wait_for(lambda: gw.log_events("daemon.stopping"), what="daemon.stopping")
    assert gw.running  # still waiting for the submit_sm_resp
    gw.proc.send_signal(signal.SIGINT)
    rc = gw.proc.wait(15)
    assert rc in (1, 130)
    text = gw.log_path.read_text()
    assert "Traceback" not in text, text
    assert gw.log_events("daemon.forced_exit")


# --------------------------------------------------------------------------- point 13


def test_status_prints_binds_rates_queues_and_the_oldest_action(
        sim: Simulator, db_url: str, make_gateway: Callable[..., Gateway]) -> None:
    port = free_port()
    dead_end = free_port()  # the webhook target: nothing listens, the job stays pending
    numbers = f"""
[[number]]
vmn = "{VMN}"
[number.default]
webhook = "http://127.0.0.1:{dead_end}/hook"
"""
    gw = make_gateway(gateway_config(db=db_url, sim=sim, numbers=numbers,
                                     extra_gateway=f'admin_listen = "127.0.0.1:{port}"\n'
                                                   "retry_base = 30"))
    sim.wait_bound(timeout=20)
    for i in range(3):
        assert sim.mo(source=CUSTOMER, destination=VMN, text=f"hi {i}")["statuses"] == [0]
    wait_for(lambda: health(port), what="/healthz")
    out = status_cli(gw)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert f"admin listener: http://127.0.0.1:{port}/healthz" in text
    assert re.search(r"status: ok, up \d+s", text), text
    assert re.search(r"sim .*bound +up \d+", text), text
    assert re.search(r"MO received +3/min", text), text
    assert re.search(r"action webhook +\d+ pending, oldest", text), text
    assert re.search(r"oldest pending action: job \S+ \(webhook\)", text), text

    # The admin listener gone: said so, and the database figures still printed.
    assert gw.terminate() == 0
    out = status_cli(gw)
    assert out.returncode == 0, out.stderr
    assert "unreachable" in out.stdout and "is the daemon running?" in out.stdout
    assert re.search(r"MO received +3/min", out.stdout), out.stdout
    assert "state unknown" in out.stdout


def test_status_of_a_missing_database_is_one_line(tmp_path: Path, sim: Simulator) -> None:
    config = tmp_path / "g.toml"
    config.write_text(gateway_config(db=f"sqlite+aiosqlite:///{tmp_path}/none.db", sim=sim))
    res = subprocess.run([sys.executable, "-m", "gateway", "status", "-c", str(config)],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert res.returncode == 1
    assert res.stderr.strip() == f"error: database {tmp_path}/none.db does not exist"
    assert not (tmp_path / "none.db").exists()


def test_the_dashboard_queries_only_metrics_the_daemon_exposes(
        sim: Simulator, db_url: str, make_gateway: Callable[..., Gateway]) -> None:
    dash = json.loads(DASHBOARD.read_text())
    assert dash["__inputs"][0]["type"] == "datasource"
    assert dash["__inputs"][0]["pluginId"] == "prometheus"
    assert dash["title"] and dash["uid"]
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    assert exprs
    queried = {n for e in exprs for n in re.findall(r"\bvmn_[a-z0-9_]+", e)}
    # Every kind of series the issue asks for.
    for wanted in ("vmn_mo_received_total", "vmn_mt_status_total",
                   "vmn_deliver_sm_resp_latency_seconds_bucket", "vmn_action_queue_depth",
                   "vmn_action_queue_oldest_age_seconds", "vmn_smpp_bound",
                   "vmn_receipts_total", "vmn_mt_queue"):
        assert wanted in queried, wanted

    port = free_port()
    gw = make_gateway(gateway_config(
        db=db_url, sim=sim, extra_gateway=f'admin_listen = "127.0.0.1:{port}"',
        smsc_extra='\n[mqtt]\nurl = "mqtt://127.0.0.1:1883"\n'))
    sim.wait_bound(timeout=20)
    assert sim.mo(source=CUSTOMER, destination=VMN, text="x")["statuses"] == [0]
    sent = gw.send(VMN, CUSTOMER, "y")
    sub = sim.wait_submits(1, timeout=30)[0]
    sim.receipt(message_id=sub["message_id"], stat="UNDELIV", err="001")

    def exposed() -> set[str] | None:
        status, body = http_get(port, "/metrics")
        names = set(re.findall(r"\bvmn_[a-z0-9_]+", body)) if status == 200 else set()
        return names if "vmn_receipts_total" in names and 'stat="UNDELIV"' in body else None

    names = wait_for(exposed, what="the receipt in /metrics")
    assert queried <= names, sorted(queried - names)
    assert sent
    assert gw.terminate() == 0


def test_sigint_during_start_up_exits_without_a_traceback(
        sim: Simulator, db_url: str, make_gateway: Callable[..., Gateway]) -> None:
    """Ctrl-C twice while the modules load or the database is migrated: no traceback
    (the old code printed a KeyboardInterrupt from inside an import)."""
    gw = make_gateway(gateway_config(db=db_url, sim=sim))
    assert gw.proc is not None
    # Half-way through the imports: pydantic's extension is mapped (gateway.config),
    # SQLAlchemy and the daemon are still to come.
    maps = Path(f"/proc/{gw.proc.pid}/maps")
    wait_for(lambda: "pydantic_core" in maps.read_text(), interval=0.005,
             what="the configuration module loading")
    gw.proc.send_signal(signal.SIGINT)
    gw.proc.send_signal(signal.SIGINT)
    rc = gw.proc.wait(30)
    assert rc in (1, 130, -signal.SIGINT), rc
    assert "Traceback" not in gw.log_path.read_text(), gw.log_path.read_text()
