"""SIGHUP is honest (issue 10 point 1): a reload applies a change or names, per key path,
what needs a restart; /metrics counts the reloads by result with the loaded file's hash
and time; `systemctl reload` checks the file before it signals.

The diff is a pure function (unit tests); the rest runs the real daemon against the
simulator."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from conftest import REPO, Gateway, gateway_config, wait_for
from peers import free_port, http_get
from prometheus_client.parser import text_string_to_metric_families
from simctl import Simulator

from gateway.config import parse_config
from gateway.reload import ConfigState, diff, effective, file_hash, needs_restart

VMN = "5551000100"
CUSTOMER = "15551234567"
UNIT = REPO / "systemd" / "vmn-gateway.service"

BASE = {
    "gateway": {"name": "t"},
    "smsc": [{"name": "a", "system_id": "x", "window": 10},
             {"name": "b", "system_id": "y"}],
    "number": [{"vmn": VMN, "default": {},
                "keyword": [{"keyword": "JOIN", "reply": "hi"}]}],
}


def cfg(**over: object) -> object:
    data = {**BASE, **over}
    return parse_config(data, file="t.toml", env={})


# --------------------------------------------------------------------------- the diff


def test_diff_names_each_changed_key_path() -> None:
    old = cfg()
    assert diff(old, old) == []  # type: ignore[arg-type]
    new = cfg(smsc=[{"name": "b", "system_id": "y"},  # reordered: no change
                    {"name": "a", "system_id": "x", "window": 20}])
    assert diff(old, new) == ["smsc.a.window"]  # type: ignore[arg-type]
    new = cfg(number=[{"vmn": VMN, "default": {},
                       "keyword": [{"keyword": "JOIN", "reply": "hello"},
                                   {"keyword": "HOURS"}]}])
    changed = diff(old, new)  # type: ignore[arg-type]
    assert f"number.{VMN}.keyword.JOIN.reply" in changed
    assert any(k.startswith(f"number.{VMN}.keyword.HOURS.") for k in changed)
    assert needs_restart(old, new, changed) == []  # type: ignore[arg-type]


def test_sections_built_at_start_need_a_restart() -> None:
    old = cfg()
    new = cfg(mqtt={"url": "mqtt://127.0.0.1:1883"},
              smsc=[{"name": "a", "system_id": "x", "window": 20},
                    {"name": "b", "system_id": "y"}],
              gateway={"name": "t", "max_attempts": 3, "database": "sqlite:///other.db"})
    changed = diff(old, new)  # type: ignore[arg-type]
    restart = needs_restart(old, new, changed)  # type: ignore[arg-type]
    assert "smsc.a.window" in restart
    assert "gateway.database" in restart
    assert any(k == "mqtt" or k.startswith("mqtt.") for k in restart)
    assert "gateway.max_attempts" in changed and "gateway.max_attempts" not in restart
    # What runs after the reload: the live parts of `new`, the rest as it was.
    eff = effective(old, new)  # type: ignore[arg-type]
    assert eff.mqtt is None and eff.smsc[0].window == 10
    assert eff.gateway.database == old.gateway.database  # type: ignore[attr-defined]
    assert eff.gateway.max_attempts == 3
    # The next reload of the same file still says what waits for a restart.
    assert set(needs_restart(eff, new, diff(eff, new))) == set(restart)


def test_a_changed_secret_is_a_change() -> None:
    old = cfg(smsc=[{"name": "a", "system_id": "x", "password": "one"},
                    {"name": "b", "system_id": "y"}])
    new = cfg(smsc=[{"name": "a", "system_id": "x", "password": "two"},
                    {"name": "b", "system_id": "y"}])
    assert diff(old, new) == ["smsc.a.password"]  # type: ignore[arg-type]


def test_hash_number_is_the_first_52_bits(tmp_path: Path) -> None:
    f = tmp_path / "x.toml"
    f.write_text("x = 1\n")
    state = ConfigState(sha256=file_hash(str(f)))
    assert state.hash_number == int(state.sha256, 16) >> (256 - 52)
    assert float(state.hash_number) == state.hash_number  # exact in a gauge


# --------------------------------------------------------------------------- the daemon


def scrape(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    status, body = http_get(port, "/metrics")
    assert status == 200, body
    return {(s.name, frozenset(s.labels.items())): s.value
            for fam in text_string_to_metric_families(body) for s in fam.samples}


def reloads(port: int) -> dict[str, float]:
    m = scrape(port)
    return {r: m[("vmn_config_reloads_total", frozenset({("result", r)}))]
            for r in ("applied", "partial", "rejected")}


def hup_and_wait(gw: Gateway, port: int, result: str, before: dict[str, float]) -> None:
    assert gw.proc is not None
    gw.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: reloads(port)[result] == before[result] + 1, what=f"a {result} reload")


def check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", "check", "-c", str(path)],
                          cwd=REPO, capture_output=True, text=True, timeout=60)


def test_reload_applies_routing_names_restart_keys_and_counts(
        sim: Simulator, db_url: str, make_gateway: Callable[..., Gateway]) -> None:
    port = free_port()
    extra = f'admin_listen = "127.0.0.1:{port}"'
    gw = make_gateway(gateway_config(db=db_url, sim=sim, extra_gateway=extra))
    sim.wait_bound(timeout=20)
    wait_for(lambda: http_get(port, "/metrics")[0] == 200, what="/metrics")
    m = scrape(port)
    assert reloads(port) == {"applied": 0, "partial": 0, "rejected": 0}
    first_hash = file_hash(str(gw.config_path))
    assert m[("vmn_config_info", frozenset({("sha256", first_hash[:12])}))] == 1
    assert m[("vmn_config_hash", frozenset())] == int(first_hash[:13], 16)
    loaded = m[("vmn_config_loaded_timestamp_seconds", frozenset())]

    # 1. A keyword added: applied live.
    numbers = f"""
[[number]]
vmn = "{VMN}"
[number.default]
[[number.keyword]]
keyword = "JOIN"
"""
    gw.config_path.write_text(gateway_config(db=db_url, sim=sim, extra_gateway=extra,
                                             numbers=numbers))
    hup_and_wait(gw, port, "applied", {"applied": 0})
    assert not gw.log_events("config.restart_needed")
    assert sim.mo(source=CUSTOMER, destination=VMN, text="JOIN now")["statuses"] == [0]
    line = wait_for(lambda: gw.log_events("mo.received"), what="mo.received")[0]
    assert line["route"] == "keyword" and line["keyword"] == "JOIN"
    m = scrape(port)
    new_hash = file_hash(str(gw.config_path))
    assert m[("vmn_config_info", frozenset({("sha256", new_hash[:12])}))] == 1
    assert m[("vmn_config_loaded_timestamp_seconds", frozenset())] >= loaded

    # 2. [mqtt] added and the window changed: not applied, named at warning.
    gw.config_path.write_text(gateway_config(
        db=db_url, sim=sim, extra_gateway=extra, numbers=numbers, window=3,
        smsc_extra='\n[mqtt]\nurl = "mqtt://127.0.0.1:1883"\n'))
    assert check(gw.config_path).returncode == 0
    hup_and_wait(gw, port, "partial", {"partial": 0})
    warning = wait_for(lambda: gw.log_events("config.restart_needed"),
                       what="config.restart_needed")[0]
    assert warning["level"] == "warning"
    assert "smsc.sim.window" in warning["keys"]
    assert any(k == "mqtt" or k.startswith("mqtt.") for k in warning["keys"])
    m = scrape(port)
    assert m[("vmn_smpp_window_size", frozenset({("smsc", "sim")}))] == 10  # not applied
    assert m[("vmn_config_restart_needed", frozenset())] > 0
    assert "vmn_mqtt_connected" not in {k for k, _ in m}

    # 3. A broken file: rejected by `check` (ExecReload fails) and by SIGHUP.
    gw.config_path.write_text("[gateway\n")
    res = check(gw.config_path)
    assert res.returncode != 0 and "invalid TOML" in res.stderr
    hup_and_wait(gw, port, "rejected", {"rejected": 0})
    assert reloads(port) == {"applied": 1, "partial": 1, "rejected": 1}
    assert gw.log_events("config.reload_rejected")
    assert gw.running
    assert gw.terminate() == 0


def test_exec_reload_checks_the_file_before_signalling() -> None:
    lines = [ln.split("=", 1)[1] for ln in UNIT.read_text().splitlines()
             if ln.startswith("ExecReload=")]
    assert len(lines) == 2, lines
    assert lines[0].split()[1:] == ["check", "-c", "/etc/vmn-gateway/gateway.toml"]
    assert lines[0].split()[0].endswith("/vmn-gateway")
    assert lines[1] == "/bin/kill -HUP $MAINPID"


def test_log_level_needs_a_restart() -> None:
    """structlog caches each logger's level on first use: not applied live, so said."""
    old = cfg()
    new = cfg(gateway={"name": "t", "log_level": "debug"})
    assert needs_restart(old, new, diff(old, new)) == ["gateway.log_level"]  # type: ignore[arg-type]
    assert effective(old, new).gateway.log_level == old.gateway.log_level  # type: ignore[attr-defined]
