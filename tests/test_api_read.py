"""The API's read side against the real daemon, the simulator, Mosquitto and a real
HTTP receiver, on SQLite and PostgreSQL (`db_url`): a manual opt change (kept with
source `api`, announced like a keyword's, enforced on the MT path), polls and leads,
bind stop/start, stats."""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import pytest
from conftest import wait_for
from peers import HttpRecorder, MqttWatcher, free_port
from simctl import Simulator

A = "5551000100"
B = "5551000200"
C = "5551000300"  # replies go out from its sender ID
WHO = "15550001111"
OTHER = "15550002222"

if TYPE_CHECKING:  # a plugin (below): imported by pytest, so that its asserts are rewritten
    from apihelp import ApiGateway

pytest_plugins = ["apihelp"]  # the api_gateway and hooks fixtures


def numbers() -> str:
    return f"""
[[number]]
vmn = "{A}"
[number.default]
reply = "A got: {{text}}"

[[number.keyword]]
keyword = "VOTE"
reply = "Thanks for voting {{args}}"
[number.keyword.poll]
name = "colour"
options = ["RED", "BLUE", "GREEN"]

[[number.keyword]]
keyword = "BROCHURE"
lead = true

[[number]]
vmn = "{B}"
[number.default]
lead = true

[[number]]
vmn = "{C}"
sender_id = "ACME"
[number.default]
reply = "C got it"
"""


def extra_gateway(hooks: HttpRecorder, watcher: MqttWatcher, admin: int) -> str:
    return f"""retry_base = 0.05
retry_max = 0.3
admin_listen = "127.0.0.1:{admin}"

[mqtt]
url = "mqtt://127.0.0.1:1883"
topic_prefix = "{watcher.prefix}"
client_id = "apiread-{watcher.prefix}"

[callback_profiles.crm]
url = "{hooks.url('/opt')}"

[optout]
callback_profile = "crm"
"""


@pytest.fixture
def watcher() -> Iterator[MqttWatcher]:
    with MqttWatcher() as w:
        yield w


@pytest.fixture
def admin() -> int:
    return free_port()


@pytest.fixture
def g(api_gateway: Callable[..., ApiGateway], hooks: HttpRecorder,
      watcher: MqttWatcher, admin: int) -> ApiGateway:
    return api_gateway(numbers=numbers(), extra_gateway=extra_gateway(hooks, watcher, admin))


def mt_status(g: ApiGateway, mt_id: str) -> str | None:
    return next((r["status"] for r in g.gw.logs() if r["id"] == mt_id), None)


def healthz(port: int) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            return json.loads(r.read())  # type: ignore[no-any-return]
    except urllib.error.HTTPError as err:
        return json.loads(err.read())  # type: ignore[no-any-return]


def test_manual_opt_out_is_kept_announced_and_enforced(
        g: ApiGateway, sim: Simulator, hooks: HttpRecorder, watcher: MqttWatcher) -> None:
    manage = g.key("ops", scope="read,manage")
    # Any spelling of the number: stored in the one canonical form.
    r = g.call("PUT", f"/v1/optins/{A}/{quote('+1 (555) 000-1111')}", key=manage,
               json={"state": "out"})
    assert r.status == 200, r.text
    assert r.json() | {"at": None} == {"msisdn": WHO, "vmn": A, "state": "out",
                                        "changed": True, "at": None}
    # Announced like a keyword change: MQTT P/opt/{vmn} and [optout] callback_profile.
    event = wait_for(lambda: watcher.on(f"opt/{A}"), what="opt event")[0]
    assert {k: event[k] for k in ("type", "msisdn", "vmn", "state", "keyword", "source")} \
        == {"type": "opt", "msisdn": WHO, "vmn": A, "state": "out", "keyword": None,
            "source": "api"}
    hook = wait_for(lambda: [q for q in hooks.requests if q.path == "/opt"], what="callback")
    assert hook[0].json() == event
    # Enforced: an MT to that number from that VMN is blocked, never submitted.
    mt_id = g.gw.send(A, WHO, "after the API opt-out")
    assert wait_for(lambda: mt_status(g, mt_id) == "blocked", what="blocked MT")
    assert not [s for s in sim.submits() if s["destination_addr"] == WHO]
    # The same again: kept in the history, no change, no second event.
    r = g.call("PUT", f"/v1/optins/{A}/{WHO}", key=manage, json={"state": "out"})
    assert r.status == 200 and r.json()["changed"] is False
    hist = g.gw.cli("optins", "--history", "--csv").stdout.splitlines()
    assert hist[0].split(",")[-1] == "source"
    assert [line.split(",")[-1] for line in hist[1:]] == ["api", "api"]
    listed = g.call("GET", "/v1/optins?msisdn=5550001111", key=manage).json()
    assert [(i["msisdn"], i["state"], i["keyword"]) for i in listed["items"]] == [
        (WHO, "out", None)]
    # `*` (every sender) opts in again: the per-sender rows go, the next MT is sent.
    r = g.call("PUT", f"/v1/optins/*/{WHO}", key=manage, json={"state": "in"})
    assert r.status == 200 and r.json()["vmn"] == "*" and r.json()["changed"], r.text
    mt_id = g.gw.send(A, WHO, "welcome back")
    wait_for(lambda: [s for s in sim.submits() if s["destination_addr"] == WHO],
             what="the MT after opting in")
    assert len(watcher.events("opt")) == 2
    assert len(hooks.requests) == 2


def test_optin_errors_and_scopes(g: ApiGateway) -> None:
    manage = g.key("ops", scope="read,manage")
    reader = g.key("reader", scope="read")
    only_b = g.key("b-only", scope="read,manage", vmns=(B,))
    cases = [
        (manage, f"/v1/optins/{A}/{WHO}", {"state": "maybe"}, 422, "state"),
        (manage, f"/v1/optins/{A}/{WHO}", {"state": "out", "x": 1}, 422, "x"),
        (manage, f"/v1/optins/{A}/not-a-number", {"state": "out"}, 422, "path.msisdn"),
        (manage, f"/v1/optins/5559999999/{WHO}", {"state": "out"}, 404, None),
        (reader, f"/v1/optins/{A}/{WHO}", {"state": "out"}, 403, None),
        (only_b, f"/v1/optins/{A}/{WHO}", {"state": "out"}, 403, None),
        (only_b, f"/v1/optins/*/{WHO}", {"state": "out"}, 403, None),
    ]
    for key, path, body, status, loc in cases:
        r = g.call("PUT", path, key=key, json=body)
        assert r.status == status, (path, body, r.text)
        assert r.content_type == "application/problem+json"
        if loc is not None:
            assert loc in [e["loc"] for e in r.json()["errors"]], r.text
    assert g.call("GET", "/v1/optins", key=reader).json() == {"items": [], "next_cursor": None}
    # Paging: five changes, pages of two, every row once, in order.
    for i in range(5):
        r = g.call("PUT", f"/v1/optins/{B}/1555000300{i}", key=only_b, json={"state": "out"})
        assert r.status == 200, r.text
    seen: list[str] = []
    path = "/v1/optins?limit=2"
    while True:
        page = g.call("GET", path, key=reader).json()
        seen += [i["msisdn"] for i in page["items"]]
        if page["next_cursor"] is None:
            break
        path = f"/v1/optins?limit=2&cursor={page['next_cursor']}"
    assert sorted(seen) == [f"1555000300{i}" for i in range(5)] and len(seen) == 5
    assert g.call("GET", "/v1/optins?state=in", key=reader).json()["items"] == []
    forged = [base64.urlsafe_b64encode(c.encode()).decode() for c in (
        '["optins", [1, 2]]', '["optins", ["x", "y", "z"]]', '["leads", 3]', "[" * 5000)]
    for cursor in ["abc", *forged]:
        bad = g.call("GET", f"/v1/optins?cursor={cursor}", key=reader)
        assert bad.status == 422 and bad.json()["errors"][0]["loc"] == "query.cursor", \
            cursor[:40]
    for cursor in (["leads", 10**30], ["leads", True], ["leads", -1]):
        raw = base64.urlsafe_b64encode(json.dumps(cursor).encode()).decode()
        bad = g.call("GET", f"/v1/leads?cursor={raw}", key=reader)
        assert bad.status == 422 and bad.json()["errors"][0]["loc"] == "query.cursor", cursor
    assert g.call("GET", f"/v1/optins?vmn={A}", key=only_b).status == 403
    # NUL reaches no database (PostgreSQL cannot hold it): 422 naming the parameter.
    for path, loc in (("/v1/optins?vmn=%00", "query.vmn"),
                      ("/v1/leads?keyword=A%00", "query.keyword"),
                      ("/v1/leads?vmn=%00", "query.vmn"), ("/v1/polls/x%00", "path.name"),
                      ("/v1/stats?vmn=%00", "query.vmn")):
        r = g.call("GET", path, key=reader)
        assert r.status == 422 and r.json()["errors"][0]["loc"] == loc, (path, r.text)


def test_polls_and_leads(g: ApiGateway, sim: Simulator) -> None:
    reader = g.key("reader", scope="read")
    g.mo(WHO, A, "VOTE red")
    g.mo(OTHER, A, "VOTE blue")
    g.mo(OTHER, A, "BROCHURE please")
    g.mo(WHO, B, "hello B")
    g.mo(OTHER, B, "hello again")

    def leads() -> list[dict[str, Any]]:
        return g.call("GET", "/v1/leads", key=reader).json()["items"]  # type: ignore[no-any-return]

    wait_for(lambda: len(leads()) == 3, what="3 leads")
    poll = g.call("GET", "/v1/polls/colour", key=reader).json()
    assert poll == {"poll": "colour", "tally": {"RED": 1, "BLUE": 1, "GREEN": 0},
                    "votes": 2, "vmns": [A]}
    assert g.call("GET", "/v1/polls", key=reader).json() == {"items": [poll],
                                                             "next_cursor": None}
    missing = g.call("GET", "/v1/polls/nope", key=reader)
    assert missing.status == 404 and missing.content_type == "application/problem+json"
    # Leads, one a page: every lead once, first captured first.
    got, path, pages = [], "/v1/leads?limit=1", 0
    while path:
        page = g.call("GET", path, key=reader).json()
        got += page["items"]
        pages += 1
        path = f"/v1/leads?limit=1&cursor={page['next_cursor']}" if page["next_cursor"] \
            else ""
    assert [(x["vmn"], x["msisdn"], x["keyword"], x["count"]) for x in got] == [
        (A, OTHER, "BROCHURE", 1), (B, WHO, "", 1), (B, OTHER, "", 1)]
    assert pages == 3  # the last full page says there is no next one
    only_b = g.key("b-only", scope="read", vmns=(B,))
    assert {x["vmn"] for x in g.call("GET", "/v1/leads", key=only_b).json()["items"]} == {B}
    assert g.call("GET", "/v1/polls", key=only_b).json()["items"] == []
    by_number = g.call("GET", "/v1/leads?msisdn=" + quote("+1 555 000 1111"), key=reader).json()
    assert [x["vmn"] for x in by_number["items"]] == [B]


def test_bind_stop_and_start(g: ApiGateway, sim: Simulator, admin: int) -> None:
    manage = g.key("ops", scope="read,manage")
    g.mo(WHO, A, "hello")
    wait_for(lambda: g.call("GET", "/v1/binds", key=manage).json()["items"][0]["counters"]
             ["mo"] == 1, what="the MO counted")
    bind = g.call("GET", "/v1/binds", key=manage).json()["items"][0]
    assert bind["name"] == "sim" and bind["state"] == "bound" and bind["since"]
    wait_for(lambda: g.call("GET", "/v1/binds", key=manage).json()["items"][0]["counters"]
             ["mt"] == 1, what="the reply submitted")
    r = g.call("POST", "/v1/binds/sim/stop", key=manage)
    assert r.status == 200 and r.json()["state"] == "stopped", r.text
    sim.wait_unbound(timeout=10)  # a clean unbind, seen by the SMSC
    assert g.gw.log_events("smpp.unbound") and not g.gw.log_events("smpp.connection_lost")
    assert healthz(admin)["binds"]["sim"]["state"] == "stopped"
    assert "stopped" in g.gw.cli("status").stdout
    # It stays down: longer than the reconnect backoff (reconnect_max 2 s), no bind.
    mt_id = g.gw.send(A, WHO, "while the bind is stopped")
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        assert not sim.state()["binds"]
        time.sleep(0.2)
    assert mt_status(g, mt_id) == "queued"
    again = g.call("POST", "/v1/binds/sim/stop", key=manage)
    assert again.status == 200 and again.json()["state"] == "stopped"
    r = g.call("POST", "/v1/binds/sim/start", key=manage)
    assert r.status == 200 and r.json()["state"] in ("down", "bound"), r.text
    sim.wait_bound(timeout=10)
    wait_for(lambda: mt_status(g, mt_id) == "submitted" or mt_status(g, mt_id) == "delivered",
             what="the queued MT sent after start")
    assert g.call("GET", "/v1/binds", key=manage).json()["items"][0]["state"] == "bound"
    assert g.call("POST", "/v1/binds/nope/stop", key=manage).status == 404
    assert g.call("POST", "/v1/binds/sim/stop", key=g.key("r", scope="read")).status == 403
    limited = g.key("b-only", scope="read,manage", vmns=(B,))
    assert g.call("POST", "/v1/binds/sim/stop", key=limited).status == 403


def test_stats(g: ApiGateway, sim: Simulator) -> None:
    reader = g.key("reader", scope="read")
    for i in range(3):
        g.mo(WHO, A, f"hello {i}")
    g.mo(WHO, B, "to B")
    g.mo(WHO, C, "to C")
    wait_for(lambda: len([r for r in g.gw.logs() if r["direction"] == "mt"]) == 4,
             what="the replies queued")

    def series() -> dict[str, Any]:
        doc = g.call("GET", "/v1/stats?since=10m&step=1m", key=reader).json()
        return {s["vmn"]: s for s in doc["series"]} | {"_doc": doc}

    got = series()
    doc = got["_doc"]
    assert doc["step"] == 60 and len(doc["buckets"]) in (10, 11)
    assert len(got[A]["mo"]) == len(doc["buckets"])
    assert (got[A]["mo_total"], got[A]["mt_total"]) == (3, 3)
    assert (got[B]["mo_total"], got[B]["mt_total"]) == (1, 0)
    # C's reply went out from its sender ID: counted for C.
    assert (got[C]["mo_total"], got[C]["mt_total"]) == (1, 1) and "ACME" not in got
    assert sum(got[A]["mo"]) == 3
    only_b = g.key("b-only", scope="read", vmns=(B,))
    doc = g.call("GET", "/v1/stats?since=1h&step=5m", key=only_b).json()
    assert [s["vmn"] for s in doc["series"]] == [B]
    only_c = g.key("c-only", scope="read", vmns=(C,))
    doc = g.call("GET", "/v1/stats?since=1h&step=1h", key=only_c).json()
    assert [(s["vmn"], s["mo_total"], s["mt_total"]) for s in doc["series"]] == [(C, 1, 1)]
    for query, loc in (("step=0", "query.step"), ("step=fast", "query.step"),
                       ("step=" + "9" * 5000, "query.step"),
                       ("since=" + "9" * 400 + "d", "query.since"),
                       ("until=0001-01-01", "query.until"),
                       ("since=yesterday", "query.since"),
                       ("since=30d&step=1", "query.step"), ("since=1m&until=2h", "query.until")):
        r = g.call("GET", f"/v1/stats?{query}", key=reader)
        assert r.status == 422 and r.json()["errors"][0]["loc"] == loc, (query, r.text)
