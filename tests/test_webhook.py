"""WebhookAction against a real HTTP server (aiohttp.web on 127.0.0.1 in this process)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from itertools import count
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp import web

from gateway.actions.base import Job, Outcome
from gateway.actions.webhook import WebhookAction
from gateway.config import CallbackProfile

SECRET = "s3cret-\u00e9-key"
_ids = count(1)


@dataclass
class Seen:
    method: str
    path: str
    raw_path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    peer: tuple[str, int]


@dataclass
class Server:
    port: int
    seen: list[Seen] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def peers(self) -> set[tuple[str, int]]:
        return {s.peer for s in self.seen}


SERVER = web.AppKey("server", Server)


async def _handler(request: web.Request) -> web.StreamResponse:
    server = request.app[SERVER]
    body = await request.read()
    transport = request.transport
    assert transport is not None
    server.seen.append(
        Seen(
            method=request.method,
            path=request.path,
            raw_path=request.raw_path,
            query=dict(request.query),
            headers=dict(request.headers),
            body=body,
            peer=transport.get_extra_info("peername")[:2],
        )
    )
    parts = request.path.strip("/").split("/")
    if parts[0] == "status":
        code = int(parts[1])
        if 300 <= code < 400:
            return web.Response(status=code, headers={"Location": f"{server.base}/moved"})
        text = None if code == 204 else (parts[2] if len(parts) > 2 else "body")
        return web.Response(status=code, text=text)
    if parts[0] == "sleep":
        await asyncio.sleep(float(parts[1]))
    if parts[0] == "big":
        return web.Response(body=b"x" * (1024 * 1024))
    return web.Response(text="ok")


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    srv = Server(port=0)
    app = web.Application()
    app[SERVER] = srv
    app.router.add_route("*", "/{tail:.*}", _handler)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    srv.port = runner.addresses[0][1]
    try:
        yield srv
    finally:
        await runner.cleanup()


def profile(**fields: Any) -> CallbackProfile:
    return CallbackProfile.model_validate(fields)


@pytest.fixture
def profiles() -> dict[str, CallbackProfile]:
    return {}


@pytest.fixture
async def action(profiles: dict[str, CallbackProfile]) -> AsyncIterator[WebhookAction]:
    act = WebhookAction(lambda: profiles, concurrency=64, default_timeout=5.0)
    try:
        yield act
    finally:
        await act.close()


def job(target: str, payload: Mapping[str, Any] | None = None) -> Job:
    n = next(_ids)
    return Job(
        id=n,
        kind="webhook",
        target=target,
        event_id=f"evt-{n}",
        payload=payload if payload is not None else {"type": "mo", "id": n},
        attempts=0,
    )


def sign(data: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), data, hashlib.sha256).hexdigest()


MO_EVENT: dict[str, Any] = {
    "type": "mo",
    "id": 42,
    "vmn": "5551000100",
    "from": "+15550001111",
    "text": 'Caf\u00e9 \u00fcber \U0001f600 "quoted" & <tags>',
    "keyword": None,
    "route": "default",
    "received_at": "2025-01-02T03:04:05Z",
    "smsc": "sim",
    "segments": 1,
    "data_coding": 8,
}


# --------------------------------------------------------------------------- POST


async def test_post_body_headers_signature(
    server: Server, action: WebhookAction, profiles: dict[str, CallbackProfile]
) -> None:
    profiles["crm"] = profile(
        url=f"{server.base}/hook",
        secret=SECRET,
        headers={"Authorization": "Bearer t0k", "X-Tenant": "acme"},
    )
    j = job("profile:crm", MO_EVENT)
    result = await action.run(j)
    assert result.outcome is Outcome.OK, result
    assert result.status == 200
    assert result.detail == "HTTP 200"
    assert result.latency_ms > 0
    [seen] = server.seen
    assert seen.method == "POST" and seen.path == "/hook"
    expected = json.dumps(MO_EVENT, separators=(",", ":"), ensure_ascii=False).encode()
    assert seen.body == expected
    assert json.loads(seen.body) == MO_EVENT
    assert seen.headers["Content-Type"] == "application/json"
    assert seen.headers["X-VMN-Event-Id"] == j.event_id
    assert seen.headers["Authorization"] == "Bearer t0k"
    assert seen.headers["X-Tenant"] == "acme"
    assert seen.headers["User-Agent"] == "vmn-gateway"
    assert hmac.compare_digest(seen.headers["X-VMN-Signature"], sign(seen.body))
    assert not hmac.compare_digest(seen.headers["X-VMN-Signature"], sign(seen.body, "wrong"))


async def test_custom_headers_cannot_override_ours(
    server: Server, action: WebhookAction, profiles: dict[str, CallbackProfile]
) -> None:
    profiles["p"] = profile(
        url=f"{server.base}/hook",
        secret=SECRET,
        headers={
            "content-type": "text/plain",
            "X-VMN-Event-Id": "forged",
            "x-vmn-signature": "sha256=forged",
            "User-Agent": "custom-agent",
            "X-VMN-Tenant": "allowed",
        },
    )
    j = job("profile:p")
    assert (await action.run(j)).outcome is Outcome.OK
    [seen] = server.seen
    assert seen.headers["Content-Type"] == "application/json"
    assert seen.headers["X-VMN-Event-Id"] == j.event_id
    assert hmac.compare_digest(seen.headers["X-VMN-Signature"], sign(seen.body))
    assert seen.headers["User-Agent"] == "custom-agent"  # ours is only a default
    assert seen.headers["X-VMN-Tenant"] == "allowed"


async def test_plain_url_is_unsigned_post(server: Server, action: WebhookAction) -> None:
    j = job(f"{server.base}/trigger?k=1", {"type": "mo", "text": "hi"})
    result = await action.run(j)
    assert result.outcome is Outcome.OK
    [seen] = server.seen
    assert seen.method == "POST" and seen.raw_path == "/trigger?k=1"
    assert seen.body == b'{"type":"mo","text":"hi"}'
    assert seen.headers["X-VMN-Event-Id"] == j.event_id
    assert "X-VMN-Signature" not in seen.headers


# --------------------------------------------------------------------------- GET


async def test_get_placeholders_url_encoded_and_signed(
    server: Server, action: WebhookAction, profiles: dict[str, CallbackProfile]
) -> None:
    profiles["g"] = profile(
        url=f"{server.base}/in/{{vmn}}?from={{from}}&text={{text}}&kw={{keyword}}&x={{nope}}&n={{n}}",
        method="GET",
        secret=SECRET,
        headers={"X-Api-Key": "k"},
    )
    payload: dict[str, Any] = {
        "vmn": "555 100/0",
        "from": "+1555&x=y",
        "text": "h\u00e9llo w\u00f6rld \U0001f600 a/b?c#d%e=f+g",
        "keyword": None,
        "n": 7,
    }
    j = job("profile:g", payload)
    result = await action.run(j)
    assert result.outcome is Outcome.OK, result
    [seen] = server.seen
    assert seen.method == "GET" and seen.body == b""
    assert "Content-Type" not in seen.headers
    assert seen.headers["X-VMN-Event-Id"] == j.event_id
    assert seen.headers["X-Api-Key"] == "k"

    def q(v: str) -> str:
        return quote(v, safe="")

    expected_target = (
        f"/in/{q(payload['vmn'])}?from={q(payload['from'])}&text={q(payload['text'])}&kw=&x=&n=7"
    )
    assert seen.raw_path == expected_target
    assert "%F0%9F%98%80" in seen.raw_path and "%26" in seen.raw_path
    assert seen.query == {
        "from": payload["from"],
        "text": payload["text"],
        "kw": "",
        "x": "",
        "n": "7",
    }
    # the signature covers the full URL as sent
    signed_url = f"{server.base}{expected_target}".encode()
    assert hmac.compare_digest(seen.headers["X-VMN-Signature"], sign(signed_url))


async def test_get_unsigned_without_secret(
    server: Server, action: WebhookAction, profiles: dict[str, CallbackProfile]
) -> None:
    profiles["g"] = profile(url=f"{server.base}/g?from={{from}}", method="GET")
    assert (await action.run(job("profile:g", {"from": "a b"}))).outcome is Outcome.OK
    [seen] = server.seen
    assert seen.raw_path == "/g?from=a%20b"
    assert "X-VMN-Signature" not in seen.headers


async def test_get_template_edge_cases(
    server: Server, action: WebhookAction, profiles: dict[str, CallbackProfile]
) -> None:
    # literal text that looks like the internal tokens, a path needing normalization,
    # a repeated placeholder, a fragment (never sent)
    profiles["g"] = profile(
        url=f"{server.base}/vmnph0z/a b/{{id}}?v={{id}}&w=vmnph1z#frag{{id}}",
        method="GET",
        secret=SECRET,
    )
    assert (await action.run(job("profile:g", {"id": "x y"}))).outcome is Outcome.OK
    [seen] = server.seen
    assert seen.raw_path == "/vmnph0z/a%20b/x%20y?v=x%20y&w=vmnph1z"
    signed_url = f"{server.base}{seen.raw_path}".encode()
    assert hmac.compare_digest(seen.headers["X-VMN-Signature"], sign(signed_url))


# --------------------------------------------------------------------------- outcomes


@pytest.mark.parametrize(
    ("code", "outcome"),
    [
        (200, Outcome.OK),
        (201, Outcome.OK),
        (204, Outcome.OK),
        (500, Outcome.RETRY),
        (503, Outcome.RETRY),
        (408, Outcome.RETRY),
        (429, Outcome.RETRY),
        (404, Outcome.FAIL),
        (400, Outcome.FAIL),
        (401, Outcome.FAIL),
    ],
)
async def test_status_classification(
    server: Server, action: WebhookAction, code: int, outcome: Outcome
) -> None:
    result = await action.run(job(f"{server.base}/status/{code}"))
    assert result.outcome is outcome, result
    assert result.status == code
    assert result.detail.startswith(f"HTTP {code}")
    assert result.latency_ms > 0


async def test_4xx_detail_has_body_snippet(server: Server, action: WebhookAction) -> None:
    result = await action.run(job(f"{server.base}/status/400/missing-field-from"))
    assert result.outcome is Outcome.FAIL
    assert result.detail == "HTTP 400: missing-field-from"


async def test_retry_on_4xx(
    server: Server, action: WebhookAction, profiles: dict[str, CallbackProfile]
) -> None:
    profiles["r"] = profile(url=f"{server.base}/status/404", retry_on_4xx=True)
    profiles["n"] = profile(url=f"{server.base}/status/404")
    result = await action.run(job("profile:r"))
    assert result.outcome is Outcome.RETRY and result.status == 404
    assert (await action.run(job("profile:n"))).outcome is Outcome.FAIL


async def test_redirect_not_followed(server: Server, action: WebhookAction) -> None:
    result = await action.run(job(f"{server.base}/status/302"))
    assert result.outcome is Outcome.FAIL
    assert result.status == 302
    assert "redirect" in result.detail and "/moved" in result.detail
    assert [s.path for s in server.seen] == ["/status/302"]  # /moved never requested


async def test_timeout_is_retry(
    server: Server, action: WebhookAction, profiles: dict[str, CallbackProfile]
) -> None:
    profiles["slow"] = profile(url=f"{server.base}/sleep/3", timeout=0.2)
    result = await action.run(job("profile:slow"))
    assert result.outcome is Outcome.RETRY
    assert "timeout" in result.detail and "0.2" in result.detail
    assert result.status is None
    assert 150 < result.latency_ms < 2000


async def test_connection_refused_is_retry(action: WebhookAction) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = await action.run(job(f"http://127.0.0.1:{port}/hook"))
    assert result.outcome is Outcome.RETRY
    assert result.status is None
    assert "refused" in result.detail


async def test_server_hangs_up_is_retry(action: WebhookAction) -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.close()

    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        await writer.drain()
        writer.close()

    for handler in (hang_up, garbage):
        srv = await asyncio.start_server(handler, "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        try:
            result = await action.run(job(f"http://127.0.0.1:{port}/"))
        finally:
            srv.close()
            await srv.wait_closed()
        assert result.outcome is Outcome.RETRY, (handler.__name__, result)
        assert result.status is None


async def test_unknown_profile_is_fail(action: WebhookAction) -> None:
    result = await action.run(job("profile:nope"))
    assert result.outcome is Outcome.FAIL
    assert "unknown callback profile" in result.detail and "nope" in result.detail


async def test_bad_input_never_raises(server: Server, action: WebhookAction) -> None:
    result = await action.run(job(f"{server.base}/hook", {"x": object()}))
    assert result.outcome is Outcome.FAIL and "TypeError" in result.detail
    result = await action.run(job("ftp://127.0.0.1/x"))
    assert result.outcome is Outcome.FAIL
    result = await action.run(job("not a url"))
    assert result.outcome is Outcome.FAIL
    assert server.seen == []


async def test_large_response_body(server: Server, action: WebhookAction) -> None:
    for _ in range(2):
        assert (await action.run(job(f"{server.base}/big"))).outcome is Outcome.OK


# --------------------------------------------------------------------------- reload, pool


async def test_profiles_are_read_on_every_run(
    server: Server, action: WebhookAction, profiles: dict[str, CallbackProfile]
) -> None:
    profiles["p"] = profile(url=f"{server.base}/one")
    assert (await action.run(job("profile:p"))).outcome is Outcome.OK
    profiles["p"] = profile(url=f"{server.base}/two", secret=SECRET)  # a reload
    assert (await action.run(job("profile:p"))).outcome is Outcome.OK
    assert [s.path for s in server.seen] == ["/one", "/two"]
    assert "X-VMN-Signature" not in server.seen[0].headers
    assert "X-VMN-Signature" in server.seen[1].headers


async def test_keep_alive_reuses_one_connection(server: Server, action: WebhookAction) -> None:
    for i in range(50):
        result = await action.run(job(f"{server.base}/hook", {"i": i}))
        assert result.outcome is Outcome.OK
    assert len(server.seen) == 50
    assert len(server.peers()) == 1


async def test_concurrent_runs(server: Server, action: WebhookAction) -> None:
    results = await asyncio.gather(
        *(action.run(job(f"{server.base}/hook", {"i": i})) for i in range(200))
    )
    assert all(r.outcome is Outcome.OK for r in results), {r.detail for r in results}
    assert sorted(json.loads(s.body)["i"] for s in server.seen) == list(range(200))
    assert len(server.peers()) <= action.concurrency  # the pool is bounded


async def test_close_then_run_again(server: Server, action: WebhookAction) -> None:
    assert (await action.run(job(f"{server.base}/a"))).outcome is Outcome.OK
    await action.close()
    await action.close()  # idempotent
    assert (await action.run(job(f"{server.base}/b"))).outcome is Outcome.OK
    assert len(server.peers()) == 2


def test_kind_and_concurrency() -> None:
    act = WebhookAction(dict, concurrency=16)
    assert act.kind == "webhook" and WebhookAction.kind == "webhook"
    assert act.concurrency == 16
    assert WebhookAction(dict).concurrency == 64
    with pytest.raises(ValueError):
        WebhookAction(dict, concurrency=0)
