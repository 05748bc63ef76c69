"""`/v1/numbers` end to end (SPEC §8, issue 13): numbers and keywords changed through
the API of one daemon route the next MO of another daemon sharing the PostgreSQL
database within 2 s; deleting a keyword falls back to the default; invalid bodies get
`check`'s key paths and words; the file's numbers are read-only (409); a restart keeps
what was stored. Real daemons, simulators, the CLI and HTTP on the wire."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from apihelp import ApiGateway, launch, request
from conftest import REPO, Gateway, _fresh_pg, gateway_config, wait_for
from simctl import Simulator

FILE_VMN = "5551000100"
VMN = "5551000200"
CUSTOMER = "15551234567"
PROBLEM = "application/problem+json"
pytest_plugins = ["apihelp"]  # the api_gateway fixture


def problem(r: Any, status: int, suffix: str) -> dict[str, Any]:
    assert r.status == status, (r.status, r.text)
    assert r.content_type == PROBLEM, r.headers
    body: dict[str, Any] = r.json()
    assert body["status"] == status and body["type"].endswith("/" + suffix), body
    return body


def route_of(gw: Gateway, sim: Simulator, text: str, vmn: str = VMN) -> tuple[str, Any]:
    """Send one MO through `sim` to `gw`; its (route, keyword) from `mo.received`."""
    before = len(gw.log_events("mo.received"))
    assert sim.mo(source=CUSTOMER, destination=vmn, text=text)["statuses"] == [0]
    line = wait_for(lambda: gw.log_events("mo.received")[before:], what="mo.received")[0]
    return line["route"], line["keyword"]


# --------------------------------------------------------------- two instances, one PG


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A new PostgreSQL database, whatever VMN_TEST_DB says: two instances share one."""
    yield from _fresh_pg()


def test_a_keyword_put_routes_on_a_second_instance_within_2s(
        pg_url: str, make_gateway: Callable[..., Gateway]) -> None:
    with Simulator.start() as sim_a, Simulator.start() as sim_b:
        g = launch(make_gateway, sim_a, pg_url, name="alpha")
        a = g.gw
        b = make_gateway(gateway_config(db=pg_url, sim=sim_b, name="beta"))
        sim_b.wait_bound(timeout=20)
        wait_for(lambda: b.log_events("daemon.ready"), what="beta ready")
        key = g.key("ops", scope="read,manage")

        r = g.call("PUT", f"/v1/numbers/{VMN}", key=key,
                   json={"default": {"reply": "we got it"}})
        assert r.status == 201, r.text
        assert r.json()["source"] == "api"
        wait_for(lambda: b.log_events("numbers.applied"), what="beta applies", timeout=2)
        assert route_of(b, sim_b, "JOIN now") == ("default", None)

        r = g.call("PUT", f"/v1/numbers/{VMN}/keywords/JOIN", key=key,
                   json={"reply": "welcome {from}", "aliases": ["SUBSCRIBE"]})
        assert r.status == 201, r.text
        put_at = time.monotonic()
        wait_for(lambda: len(b.log_events("numbers.applied")) == 2, what="beta applies",
                 timeout=2)
        assert time.monotonic() - put_at < 2.0
        assert route_of(b, sim_b, "join now") == ("keyword", "JOIN")
        assert route_of(b, sim_b, "subscribe") == ("keyword", "JOIN")
        # The instance that took the PUT had it before answering.
        assert route_of(a, sim_a, "JOIN") == ("keyword", "JOIN")

        r = g.call("DELETE", f"/v1/numbers/{VMN}/keywords/join", key=key)
        assert r.status == 204, r.text
        assert route_of(a, sim_a, "join now") == ("default", None)
        wait_for(lambda: len(b.log_events("numbers.applied")) == 3, what="beta applies",
                 timeout=2)
        assert route_of(b, sim_b, "join now") == ("default", None)
        assert a.terminate() == 0 and b.terminate() == 0


# --------------------------------------------------------------- one instance


def test_manage_read_and_refusals(api_gateway: Callable[..., ApiGateway]) -> None:
    g = api_gateway()
    key = g.key("ops", scope="read,manage")
    reader = g.key("viewer", scope="read")
    narrow = g.key("narrow", scope="read,manage", vmns=(VMN,))

    # The file's number: shown, read-only.
    r = g.call("GET", f"/v1/numbers/{FILE_VMN}", key=reader)
    assert r.status == 200 and r.json()["source"] == "file", r.text
    assert r.json() == {"vmn": FILE_VMN, "sender_id": FILE_VMN, "source": "file",
                        "default": {}, "keywords": []}
    body = problem(g.call("PUT", f"/v1/numbers/{FILE_VMN}", key=key,
                          json={"default": {}}), 409, "read-only")
    assert str(g.gw.config_path) in body["detail"]
    problem(g.call("PUT", f"/v1/numbers/{FILE_VMN}/keywords/JOIN", key=key, json={}),
            409, "read-only")
    problem(g.call("DELETE", f"/v1/numbers/{FILE_VMN}", key=key), 409, "read-only")
    problem(g.call("DELETE", f"/v1/numbers/{FILE_VMN}/keywords/X", key=key), 409,
            "read-only")

    # Not there (yet).
    problem(g.call("GET", f"/v1/numbers/{VMN}", key=reader), 404, "not-found")
    problem(g.call("PUT", f"/v1/numbers/{VMN}/keywords/JOIN", key=key, json={}), 404,
            "not-found")
    problem(g.call("DELETE", f"/v1/numbers/{VMN}", key=key), 404, "not-found")

    # Scopes and VMNs.
    problem(g.call("PUT", f"/v1/numbers/{VMN}", key=reader, json={"default": {}}), 403,
            "forbidden")
    problem(g.call("PUT", "/v1/numbers/5551000300", key=narrow, json={"default": {}}),
            403, "forbidden")

    # Create, replace, keyword create/replace, list.
    r = g.call("PUT", f"/v1/numbers/{VMN}", key=narrow,
               json={"sender_id": "ACME", "default": {"reply": "hi"},
                     "keywords": [{"keyword": "HOURS", "reply": "9-5"}]})
    assert r.status == 201, r.text
    r = g.call("PUT", f"/v1/numbers/{VMN}", key=narrow, json=r.json())  # GET's shape
    assert r.status == 200, r.text
    r = g.call("PUT", f"/v1/numbers/{VMN}/keywords/hours", key=key, json={"reply": "8-6"})
    assert r.status == 200, r.text
    assert r.json()["keywords"] == [{"keyword": "hours", "reply": "8-6"}]
    r = g.call("PUT", f"/v1/numbers/{VMN}/keywords/Join%20Now", key=key, json={})
    assert r.status == 201, r.text
    assert [k["keyword"] for k in r.json()["keywords"]] == ["hours", "Join Now"]
    r = g.call("GET", "/v1/numbers", key=reader)
    assert r.status == 200, r.text
    assert [(n["vmn"], n["source"]) for n in r.json()["items"]] == [
        (FILE_VMN, "file"), (VMN, "api")]
    assert r.json()["next_cursor"] is None
    page = g.call("GET", "/v1/numbers?limit=1", key=reader).json()
    assert [n["vmn"] for n in page["items"]] == [FILE_VMN]
    page = g.call("GET", f"/v1/numbers?limit=1&cursor={page['next_cursor']}",
                  key=reader).json()
    assert [n["vmn"] for n in page["items"]] == [VMN] and page["next_cursor"] is None
    # A key limited to some VMNs sees only those.
    r = g.call("GET", "/v1/numbers", key=narrow)
    assert [n["vmn"] for n in r.json()["items"]] == [VMN]
    problem(g.call("DELETE", f"/v1/numbers/{VMN}/keywords/NOPE", key=key), 404,
            "not-found")
    assert g.call("DELETE", f"/v1/numbers/{VMN}", key=key).status == 204
    problem(g.call("GET", f"/v1/numbers/{VMN}", key=reader), 404, "not-found")


def toml_value(value: Any) -> str:
    """JSON -> a TOML inline value (enough for these tests)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"


def check_says(tmp: Path, base_config: str, number: dict[str, Any]) -> tuple[str, str]:
    """(key path, words) of `vmn-gateway check` for `number` as the file's number[1]."""
    table = "\n[[number]]\n" + "\n".join(
        f"{'keyword' if k == 'keywords' else k} = {toml_value(v)}" for k, v in number.items())
    path = tmp / "check.toml"
    path.write_text(base_config + table)
    res = subprocess.run([sys.executable, "-m", "gateway", "check", "-c", str(path)],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert res.returncode == 1, res
    line = res.stderr.strip().splitlines()[-1]
    key_path, words = line.split(f"{path}: ", 1)[1].split(": ", 1)
    return key_path, words


INVALID = [
    {"default": {}, "keywords": [{"keyword": "JOIN", "reply": "hi {name}"}]},
    {"default": {}, "keywords": [{"keyword": "STOP"}]},
    {"default": {"callback_profile": "crm"}},
    {"default": {}, "keywords": [{"keyword": "A", "expires": "next tuesday"}]},
    {"default": {}, "keywords": [{"keyword": "JOIN"}, {"keyword": "GO", "aliases": ["Join"]}]},
    {"default": {}, "keywords": [{"keyword": "A", "webhook": "ftp://x"}]},
    {"default": {"reply": "x", "opt_in": True, "opt_out": True}},
]


def test_invalid_bodies_name_the_key_path_in_the_words_of_check(
        api_gateway: Callable[..., ApiGateway], tmp_path: Path) -> None:
    g = api_gateway(bound=False)
    key = g.key("ops", scope="read,manage")
    base = g.gw.config_path.read_text()
    for number in INVALID:
        r = g.call("PUT", f"/v1/numbers/{VMN}", key=key, json=number)
        body = problem(r, 422, "invalid")
        [error] = body["errors"]
        key_path, words = check_says(tmp_path, base, {"vmn": VMN, **number})
        assert "number[1]." + error["loc"].replace("keywords[", "keyword[", 1) == key_path
        assert error["msg"] == words.replace("number[1].keyword[", "keywords[")
    # An unknown key: every one named, with the suggestion `check` would make.
    body = problem(g.call("PUT", f"/v1/numbers/{VMN}", key=key,
                          json={"default": {"repyl": "x"}, "sender": "A"}), 422, "invalid")
    assert {(e["loc"], e["msg"]) for e in body["errors"]} == {
        ("default.repyl", "unknown key (did you mean reply?)"),
        ("sender", "unknown key (did you mean sender_id?)")}
    problem(g.call("PUT", "/v1/numbers/12345678", key=key, json={"default": {}}), 422,
            "invalid")
    # A keyword's errors are relative to the keyword.
    assert g.call("PUT", f"/v1/numbers/{VMN}", key=key, json={"default": {}}).status == 201
    body = problem(g.call("PUT", f"/v1/numbers/{VMN}/keywords/JOIN", key=key,
                          json={"reply": "{oops}", "forward_sms": ["12"]}), 422, "invalid")
    assert [e["loc"] for e in body["errors"]] == ["reply", "forward_sms[0]"]
    body = problem(g.call("PUT", f"/v1/numbers/{VMN}", key=key, json=[1, 2]), 422, "invalid")
    # Nothing refused was stored.
    r = g.call("GET", f"/v1/numbers/{VMN}", key=key)
    assert r.json()["keywords"] == []


def test_a_restart_keeps_what_was_stored(api_gateway: Callable[..., ApiGateway]) -> None:
    g = api_gateway()
    key = g.key("ops", scope="read,manage")
    r = g.call("PUT", f"/v1/numbers/{VMN}", key=key,
               json={"default": {}, "keywords": [{"keyword": "HOURS", "reply": "9-5"}]})
    assert r.status == 201, r.text
    assert g.gw.terminate() == 0
    g.gw.start()
    g.wait_ready()
    g.sim.wait_bound(timeout=20)
    r = g.call("GET", f"/v1/numbers/{VMN}", key=key)
    assert r.status == 200, r.text
    assert r.json()["keywords"] == [{"keyword": "HOURS", "reply": "9-5"}]
    assert route_of(g.gw, g.sim, "hours?") == ("keyword", "HOURS")


def test_openapi_documents_the_numbers(api_gateway: Callable[..., ApiGateway]) -> None:
    g = api_gateway(bound=False)
    doc = request(g.base, "GET", "/openapi.json").json()
    assert {"/v1/numbers", "/v1/numbers/{vmn}",
            "/v1/numbers/{vmn}/keywords/{keyword}"} <= set(doc["paths"])
    ops = doc["paths"]["/v1/numbers/{vmn}"]
    assert {"get", "put", "delete"} <= set(ops)
    # The bodies are described by the configuration's models.
    body = ops["put"]["requestBody"]["content"]["application/json"]["schema"]
    assert {"default", "keywords", "optout", "sender_id"} <= set(body["properties"])
    assert body["required"] == ["default"] and body["additionalProperties"] is False
    keyword = body["properties"]["keywords"]["items"]
    assert {"keyword", "reply", "aliases", "poll"} <= set(keyword["properties"])
    put_keyword = doc["paths"]["/v1/numbers/{vmn}/keywords/{keyword}"]["put"]
    schema = put_keyword["requestBody"]["content"]["application/json"]["schema"]
    assert "reply" in schema["properties"] and schema["required"] == []
