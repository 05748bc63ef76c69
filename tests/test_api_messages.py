"""POST/GET /v1/messages end to end: the real daemon, the SMSC simulator, a real HTTP
receiver for `callback_url`, SQLite or PostgreSQL (VMN_TEST_DB)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest
from conftest import wait_for
from peers import HttpRecorder

if TYPE_CHECKING:
    from apihelp import ApiGateway

VMN = "5551000100"
NUMBERS = f"""
[[number]]
vmn = "{VMN}"
[number.default]

[[number.keyword]]
keyword = "HELLO"
reply = "Hi {{from}}"
"""
SECRET = "cb-secret-4711"
pytest_plugins = ["apihelp"]


@pytest.fixture
def receiver() -> Iterator[HttpRecorder]:
    with HttpRecorder() as r:
        yield r


def statuses(receiver: HttpRecorder, msg_id: str) -> list[str]:
    return [r.json()["status"] for r in receiver.requests if r.json().get("id") == msg_id]


def test_send_receipt_status_and_signed_callback(
        api_gateway: Callable[..., ApiGateway], receiver: HttpRecorder) -> None:
    g = api_gateway(numbers=NUMBERS, api_extra=f'callback_secret = "{SECRET}"')
    key = g.key("app", scope="send,read")
    r = g.call("POST", "/v1/messages", key=key, json={
        "from": VMN, "to": "(555) 000-4444", "text": "Your order shipped",
        "reference": "order-42", "callback_url": receiver.url("/cb"), "validity": 90})
    assert r.status == 202, r.text
    sent = r.json()
    assert sent["status"] == "queued" and sent["parts"] == 1
    [sub] = g.sim.wait_submits(1)
    assert sub["destination_addr"] == "15550004444"  # normalised like every edge
    assert sub["validity_period"] == "000000013000000R"  # 90 minutes, SMPP relative
    assert sub["data_coding"] == 0
    wait_for(lambda: g.call("GET", f"/v1/messages/{sent['id']}", key=key).json()["status"]
             == "submitted", what="submitted")
    assert g.sim.receipt(message_id=sub["message_id"], stat="DELIVRD", err="000",
                         source="15550004444", destination=VMN)["status"] == 0
    wait_for(lambda: statuses(receiver, sent["id"]) == ["queued", "submitted", "delivered"],
             what="the callback's mt_status events, in order")
    for req in receiver.requests:
        assert req.path == "/cb" and req.method == "POST"
        want = hmac.new(SECRET.encode(), req.body, hashlib.sha256).hexdigest()
        assert req.headers["X-VMN-Signature"] == f"sha256={want}"
        assert req.headers["X-VMN-Event-Id"]
        assert req.json()["client_id"] == "order-42"

    def callbacks_done() -> dict[str, Any] | None:
        # The receiver has the request before the gateway records the job done.
        m = g.call("GET", f"/v1/messages/{sent['id']}", key=key).json()
        hooks = [a for a in m["actions"] if a["kind"] == "webhook"]
        return m if len(hooks) == 3 and all(a["status"] == "done" for a in hooks) else None

    msg = wait_for(callbacks_done, what="the callback jobs recorded done")
    assert msg["status"] == "delivered"
    assert msg["direction"] == "mt" and msg["from"] == VMN and msg["to"] == "15550004444"
    assert msg["reference"] == "order-42"
    assert msg["receipt"] == {"stat": "DELIVRD", "err": "000"}
    assert [h["status"] for h in msg["history"]] == ["queued", "submitted", "delivered"]
    assert all(h["at"].endswith("Z") for h in msg["history"])
    assert msg["smsc_message_ids"] == [sub["message_id"]]
    cbs = [a for a in msg["actions"] if a["kind"] == "webhook"]
    assert len(cbs) == 3 and all(a["status"] == "done" for a in cbs)
    assert all(a["attempts_log"][0]["status"] == 200 for a in cbs)


def test_idempotency_coding_and_the_log(
        api_gateway: Callable[..., ApiGateway]) -> None:
    g = api_gateway(numbers=NUMBERS)
    key = g.key("app", scope="send,read")
    body = {"from": VMN, "to": "15550005555", "text": "once", "coding": "ucs2"}
    first = g.call("POST", "/v1/messages", key=key, json=body,
                   headers={"Idempotency-Key": "k-1"})
    again = g.call("POST", "/v1/messages", key=key, json=body,
                   headers={"Idempotency-Key": "k-1"})
    assert first.status == again.status == 202
    assert again.json() == first.json()
    assert again.headers.get("idempotent-replayed") == "true"
    other = g.call("POST", "/v1/messages", key=key, json={**body, "text": "twice"},
                   headers={"Idempotency-Key": "k-1"})
    assert other.status == 422 and other.json()["type"].endswith("/idempotency-mismatch")
    # Another key's Idempotency-Key space is its own.
    key2 = g.key("app2", scope="send,read")
    second = g.call("POST", "/v1/messages", key=key2, json=body,
                    headers={"Idempotency-Key": "k-1"})
    assert second.status == 202 and second.json()["id"] != first.json()["id"]
    subs = g.sim.wait_submits(2)
    assert {s["data_coding"] for s in subs} == {8}  # coding ucs2, though the text is GSM
    mts = [m for m in g.gw.logs() if m["direction"] == "mt"]
    assert len(mts) == 2  # the retry queued nothing

    r = g.call("POST", "/v1/messages", key=key,
               json={"from": VMN, "to": "15550005555", "text": "привет", "coding": "gsm"})
    assert r.status == 422 and r.json()["errors"][0]["loc"] == "text"

    # An MO and its reply: the log shows both, newest first, with filters and a cursor.
    assert g.sim.mo(source="15550006666", destination=VMN, text="hello there")["statuses"] \
        == [0]
    wait_for(lambda: any(m["direction"] == "mt" and m["to"] == "15550006666"
                         for m in g.gw.logs()), what="the HELLO reply")
    page = g.call("GET", "/v1/messages?limit=2", key=key).json()
    assert len(page["items"]) == 2 and page["next_cursor"]
    rest = g.call("GET", f"/v1/messages?limit=10&cursor={page['next_cursor']}", key=key)
    items = page["items"] + rest.json()["items"]
    assert rest.json()["next_cursor"] is None
    assert len(items) == 4 and len({i["id"] for i in items}) == 4
    created = [i["created_at"] for i in items]
    assert created == sorted(created, reverse=True)
    mo = g.call("GET", "/v1/messages?direction=mo&msisdn=%2B1%20555%20000%206666",
                key=key).json()["items"]
    assert [(m["route"], m["keyword"]) for m in mo] == [("keyword", "HELLO")]
    one = g.call("GET", f"/v1/messages/{mo[0]['id']}", key=key).json()
    assert one["history"][0]["status"] == "received"
    by_route = g.call("GET", "/v1/messages?route=keyword", key=key).json()["items"]
    assert [m["id"] for m in by_route] == [mo[0]["id"]]
    ucs = g.call("GET", f"/v1/messages?direction=mt&since=1h&vmn={VMN}&status=submitted",
                 key=key).json()["items"]
    assert all(m["direction"] == "mt" and m["status"] == "submitted" for m in ucs)
    bad = g.call("GET", "/v1/messages?since=yesterday", key=key)
    assert bad.status == 422 and bad.json()["errors"][0]["loc"] == "query.since"
    bad = g.call("GET", "/v1/messages?limit=0", key=key)
    assert bad.status == 422 and bad.json()["errors"][0]["loc"] == "query.limit"
    assert g.call("GET", "/v1/messages/0123456789abcdef01234567", key=key).status == 404

    limited = g.key("limited", scope="read", vmns=("5559999999",))
    assert g.call("GET", f"/v1/messages/{mo[0]['id']}", key=limited).status == 403
    assert g.call("GET", "/v1/messages", key=limited).json()["items"] == []


