"""`GET /v1/queues` (issue 14): each queue's depth and oldest age, end to end.

A real daemon with the API, MOs from the SMSC simulator, a webhook action whose
receiver is down (nothing listens on its port): the webhook queue grows and its oldest
age increases; the receiver comes up and the queue drains to 0. Runs on SQLite and on
PostgreSQL (VMN_TEST_DB=postgres)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from conftest import wait_for
from peers import HttpRecorder, free_port
from simctl import Simulator

if TYPE_CHECKING:  # a plugin (below): imported by pytest, so that its asserts are rewritten
    from apihelp import ApiGateway

pytest_plugins = ["apihelp"]  # the api_gateway fixture

VMN = "5551000140"
CUSTOMER = "15551400001"


def queues(g: ApiGateway, key: str) -> dict[str, Any]:
    r = g.call("GET", "/v1/queues", key=key)
    assert r.status == 200, r.text
    doc: dict[str, Any] = r.json()
    return doc


def test_webhook_queue_grows_ages_and_drains(
        api_gateway: Callable[..., ApiGateway], sim: Simulator) -> None:
    hook_port = free_port()  # nothing listens yet: the receiver is down
    numbers = f"""
[[number]]
vmn = "{VMN}"
[number.default]
webhook = "http://127.0.0.1:{hook_port}/hook"
"""
    # Retries every ~0.5 s, and enough of them that no job is dead-lettered meanwhile.
    g = api_gateway(numbers=numbers,
                    extra_gateway="retry_base = 0.5\nretry_max = 0.5\nmax_attempts = 1000")
    key = g.key("queues-reader", scope="read")

    empty = queues(g, key)
    assert empty["actions"]["webhook"] == {"depth": 0, "oldest_age": None,
                                           "oldest_at": None}
    assert set(empty["actions"]) >= {"webhook", "mqtt", "email"}
    assert empty["mt"]["queued"]["depth"] == 0 and empty["mo_fanout"]["depth"] == 0
    assert empty["dead"] == 0 and empty["failed"] == 0

    for i in range(2):
        assert sim.mo(source=CUSTOMER, destination=VMN, text=f"first {i}")["statuses"] == [0]
    first = wait_for(lambda: (lambda q: q if q["actions"]["webhook"]["depth"] == 2 else None)(
        queues(g, key)), what="2 webhook jobs pending")
    age1 = first["actions"]["webhook"]["oldest_age"]
    assert age1 is not None and age1 >= 0
    assert first["actions"]["mqtt"]["depth"] == 0

    time.sleep(1.5)
    for i in range(3):
        assert sim.mo(source=CUSTOMER, destination=VMN, text=f"more {i}")["statuses"] == [0]
    grown = wait_for(lambda: (lambda q: q if q["actions"]["webhook"]["depth"] == 5 else None)(
        queues(g, key)), what="5 webhook jobs pending")
    hook = grown["actions"]["webhook"]
    # The oldest is still the first MO's job: its age went on increasing.
    assert hook["oldest_age"] >= age1 + 1.0, (first, grown)
    assert hook["oldest_at"] == first["actions"]["webhook"]["oldest_at"]
    assert grown["dead"] == 0 and grown["failed"] == 0

    receiver = HttpRecorder()
    receiver.port = hook_port
    with receiver:
        drained = wait_for(
            lambda: (lambda q: q if q["actions"]["webhook"]["depth"] == 0 else None)(
                queues(g, key)), timeout=30, what="the webhook queue to drain")
        assert drained["actions"]["webhook"]["oldest_age"] is None
        assert drained["dead"] == 0 and drained["failed"] == 0
        assert len({r.body for r in receiver.requests}) >= 5


def test_queues_need_a_read_key_and_are_documented(
        api_gateway: Callable[..., ApiGateway]) -> None:
    g = api_gateway()
    doc = g.call("GET", "/openapi.json").json()
    get = doc["paths"]["/v1/queues"]["get"]
    assert get["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Queues"}
    assert {"mt", "mo_fanout", "actions", "dead", "failed"} <= set(
        doc["components"]["schemas"]["Queues"]["properties"])
    assert g.call("GET", "/v1/queues").status == 401
    sender = g.key("queues-sender", scope="send")
    r = g.call("GET", "/v1/queues", key=sender)
    assert r.status == 403 and r.content_type == "application/problem+json", r.text
