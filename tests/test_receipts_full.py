"""A delivery receipt's `stat` and `err` are kept on the MT and shown in `logs`, `logs
--json` and the `mt_status` event (issue 10 point 10): the daemon, the simulator,
Mosquitto, SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conftest import Gateway, gateway_config, wait_for
from peers import MqttWatcher
from simctl import Simulator

VMN = "5551000100"


@pytest.fixture
def watcher() -> Iterator[MqttWatcher]:
    with MqttWatcher() as w:
        yield w


def test_receipt_stat_and_err_in_logs_json_and_event(
        sim: Simulator, db_url: str, watcher: MqttWatcher,
        make_gateway: Callable[..., Gateway]) -> None:
    mqtt = f'\n[mqtt]\nurl = "mqtt://127.0.0.1:1883"\ntopic_prefix = "{watcher.prefix}"\n' \
        f'client_id = "receipts-{watcher.prefix}"\n'
    gw = make_gateway(gateway_config(db=db_url, sim=sim, numbers=f"""
[[number]]
vmn = "{VMN}"
[number.default]
""").replace("\n[[smsc]]", mqtt + "\n[[smsc]]", 1))
    sim.wait_bound(timeout=20)
    undeliv = gw.send(VMN, "15550000001", "undeliverable")
    expired = gw.send(VMN, "15550000002", "expired, receipt text only")
    delivered = gw.send(VMN, "15550000003", "delivered")
    long_one = gw.send(VMN, "15550000004", "x" * 200)  # two parts: the second rejected
    subs = sim.wait_submits(5)
    ids: dict[str, list[str]] = {}
    for s in subs:
        ids.setdefault(s["destination_addr"], []).append(s["message_id"])

    def record(mt_id: str) -> dict[str, Any]:
        return next(r for r in gw.logs() if r["id"] == mt_id)

    wait_for(lambda: sum(r["status"] == "submitted" for r in gw.logs()) == 4,
             what="MTs submitted")
    for to, stat, err, via in [("15550000001", "UNDELIV", "001", "tlv"),
                               ("15550000002", "EXPIRED", "027", "text"),
                               ("15550000003", "DELIVRD", "000", "tlv")]:
        assert sim.receipt(message_id=ids[to][0], stat=stat, err=err, via=via,
                           source=to, destination=VMN)["status"] == 0
    first, second = ids["15550000004"]
    assert sim.receipt(message_id=first, stat="DELIVRD", err="000",
                       source="15550000004", destination=VMN)["status"] == 0
    assert sim.receipt(message_id=second, stat="REJECTD", err="00B",
                       source="15550000004", destination=VMN)["status"] == 0

    want = {undeliv: ("failed", {"stat": "UNDELIV", "err": "001"}),
            expired: ("failed", {"stat": "EXPIRED", "err": "027"}),
            delivered: ("delivered", {"stat": "DELIVRD", "err": "000"}),
            long_one: ("failed", {"stat": "REJECTD", "err": "00B"})}
    wait_for(lambda: {r["id"]: (r["status"], r["receipt"]) for r in gw.logs()
                      if r["id"] in want} == want, what="receipts in logs --json")
    assert record(undeliv)["error"] == "delivery failed"  # the existing field stays

    human = gw.cli("logs").stdout
    line = next(ln for ln in human.splitlines() if "'undeliverable'" in ln)
    assert "[failed stat=UNDELIV err=001]" in line
    assert "[delivered stat=DELIVRD err=000]" in \
        next(ln for ln in human.splitlines() if "'delivered'" in ln)

    def final_events() -> dict[str, tuple[str, Any]]:
        return {e["id"]: (e["status"], e["receipt"]) for e in watcher.events("mt_status")
                if e["status"] in ("delivered", "failed")}

    wait_for(lambda: final_events() == want, what="mt_status events with the receipt")
    early = [e for e in watcher.events("mt_status") if e["status"] == "submitted"]
    assert early and all(e["receipt"] is None for e in early)
