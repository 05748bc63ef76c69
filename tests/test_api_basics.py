"""The HTTP API's frame (SPEC §8): OpenAPI, problem+json for every error, API keys with
scopes, VMNs and rates; against the real daemon, the simulator and the CLI."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from conftest import wait_for

if TYPE_CHECKING:
    from apihelp import ApiGateway

VMN = "5551000100"
OTHER = "5551000200"
NUMBERS = f"""
[[number]]
vmn = "{VMN}"
[number.default]

[[number]]
vmn = "{OTHER}"
[number.default]
"""
PROBLEM = "application/problem+json"
pytest_plugins = ["apihelp"]  # the api_gateway fixture


def problem(r: object, status: int, suffix: str) -> dict[str, object]:
    assert r.status == status, (r.status, r.text)  # type: ignore[attr-defined]
    assert r.content_type == PROBLEM, r.headers  # type: ignore[attr-defined]
    body = r.json()  # type: ignore[attr-defined]
    assert body["status"] == status
    assert body["type"].endswith("/" + suffix), body
    assert body["title"]
    return body  # type: ignore[no-any-return]


def test_openapi_and_problems(api_gateway: Callable[..., ApiGateway]) -> None:
    g = api_gateway(numbers=NUMBERS, bound=False, api_extra="max_body = 2048")
    r = g.call("GET", "/openapi.json")
    assert r.status == 200
    doc = r.json()
    assert doc["openapi"].startswith("3.1")
    assert "/v1/messages" in doc["paths"]
    assert "ProblemBody" in doc["components"]["schemas"]
    key = g.key("frame")
    problem(g.call("GET", "/v1/nothing-here", key=key), 404, "not-found")
    r = g.call("DELETE", "/v1/messages", key=key)
    problem(r, 405, "method-not-allowed")
    assert "POST" in r.headers.get("allow", "")
    big = {"from": VMN, "to": "15550001111", "text": "x" * 3000}
    body = problem(g.call("POST", "/v1/messages", key=key, json=big), 413, "body-too-large")
    assert "2048" in str(body["detail"])
    # Chunked, without Content-Length: cut off as the bytes pass the cap.
    chunks = (b"x" * 1000 for _ in range(5))
    r = g.call("POST", "/v1/messages", key=key, body=chunks,  # type: ignore[arg-type]
               headers={"Content-Type": "application/json",
                        "Transfer-Encoding": "chunked"})
    problem(r, 413, "body-too-large")
    body = problem(g.call("POST", "/v1/messages", key=key, body=b"{not json",
                          headers={"Content-Type": "application/json"}), 422, "invalid")
    assert "not JSON" in str(body["errors"])
    body = problem(g.call("POST", "/v1/messages", key=key,
                          json={"from": VMN, "to": "15550001111", "text": 5, "colour": 1}),
                   422, "invalid")
    errors = {e["loc"]: e["msg"] for e in body["errors"]}  # type: ignore[attr-defined]
    assert errors["text"] == "expected a string (got 5)"
    assert errors["colour"].startswith("unknown key")
    body = problem(g.call("POST", "/v1/messages", key=key,
                          json={"from": VMN, "to": "not a number", "text": "hi"}),
                   422, "invalid")
    assert body["errors"][0]["loc"] == "to"  # type: ignore[index]
    body = problem(g.call("POST", "/v1/messages", key=key,
                          json={"from": "5559999999", "to": "15550001111", "text": "hi"}),
                   422, "invalid")
    assert body["errors"][0]["loc"] == "from"  # type: ignore[index]
    assert "not a configured VMN" in body["errors"][0]["msg"]  # type: ignore[index]


def test_keys_scopes_vmns_rate_revocation(api_gateway: Callable[..., ApiGateway]) -> None:
    g = api_gateway(numbers=NUMBERS)
    msg = {"from": VMN, "to": "15550001111", "text": "hello"}
    r = g.call("POST", "/v1/messages", json=msg)
    problem(r, 401, "unauthorized")
    assert r.headers.get("www-authenticate", "").startswith("Bearer")
    problem(g.call("POST", "/v1/messages", key="vmn_000000000000_" + "A" * 43, json=msg),
            401, "unauthorized")
    problem(g.call("POST", "/v1/messages", key="nonsense", json=msg), 401, "unauthorized")
    reader = g.key("reader", scope="read")
    problem(g.call("POST", "/v1/messages", key=reader, json=msg), 403, "forbidden")
    other_only = g.key("other-only", scope="send", vmns=(OTHER,))
    body = problem(g.call("POST", "/v1/messages", key=other_only, json=msg), 403, "forbidden")
    assert VMN in str(body["detail"])
    r = g.call("POST", "/v1/messages", key=other_only, json={**msg, "from": OTHER})
    assert r.status == 202, r.text

    slow = g.key("slow", scope="send", rate=1)
    codes = [g.call("POST", "/v1/messages", key=slow, json=msg) for _ in range(3)]
    assert codes[0].status == 202, codes[0].text
    limited = [c for c in codes[1:] if c.status == 429]
    assert limited, [c.status for c in codes]
    problem(limited[0], 429, "rate-limited")
    assert int(limited[0].headers["retry-after"]) >= 1

    # `apikey list` shows names and scopes, never a key or its hash.
    from apihelp import cli
    listing = cli(g.gw, "apikey", "list", "-c", str(g.gw.config_path)).stdout
    assert "other-only" in listing and OTHER in listing
    assert "vmn_" not in listing

    # Revocation: refused within 2 s of `apikey revoke`.
    full = g.key("full", scope="send,read")
    assert g.call("POST", "/v1/messages", key=full, json=msg).status == 202
    g.revoke("full")
    revoked = time.monotonic()
    wait_for(lambda: g.call("POST", "/v1/messages", key=full, json=msg).status == 401,
             timeout=5, what="the revoked key refused")
    assert time.monotonic() - revoked < 2.0


def test_send_and_opted_out(api_gateway: Callable[..., ApiGateway]) -> None:
    g = api_gateway(numbers=NUMBERS)
    key = g.key("sender", scope="send,read")
    r = g.call("POST", "/v1/messages", key=key,
               json={"from": VMN, "to": "+1 (555) 000-2222", "text": "x" * 200,
                     "reference": "order-7"})
    assert r.status == 202, r.text
    sent = r.json()
    assert sent["status"] == "queued" and sent["parts"] == 2
    subs = g.sim.wait_submits(2)
    assert {s["destination_addr"] for s in subs} == {"15550002222"}

    g.sim.mo(source="15550003333", destination=VMN, text="STOP")
    wait_for(lambda: any(r["route"] == "optout" for r in g.gw.mos()), what="STOP routed")
    r = g.call("POST", "/v1/messages", key=key,
               json={"from": VMN, "to": "15550003333", "text": "promo"})
    body = problem(r, 422, "opted-out")
    blocked = [m for m in g.gw.logs() if m["direction"] == "mt" and m["to"] == "15550003333"
               and m["text"] == "promo"]
    assert [m["status"] for m in blocked] == ["blocked"]
    assert blocked[0]["id"] in str(body["detail"])
