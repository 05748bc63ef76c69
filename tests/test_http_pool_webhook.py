"""WebhookAction over gateway.http.pool: what the switch from aiohttp adds, each against a
real peer (raw asyncio servers, TLS with trustme certificates). tests/test_webhook.py
covers the webhook contract itself."""

from __future__ import annotations

import asyncio
import base64
import ssl
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trustme

from gateway.actions.base import Job, Outcome
from gateway.actions.webhook import WebhookAction
from gateway.config import CallbackProfile

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def job(target: str, n: int = 1) -> Job:
    return Job(
        id=n,
        kind="webhook",
        target=target,
        event_id=f"evt-{n}",
        payload={"type": "mo", "id": n, "text": "hi"},
        attempts=0,
    )


class RawServer:
    """Records every request head+body; answers per ``answer(index_on_connection)``."""

    def __init__(self) -> None:
        self.requests: list[bytes] = []
        self.connections = 0
        self.port = 0
        self.server: asyncio.Server | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        n = 0
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                self.requests.append(head + await reader.readexactly(length))
                n += 1
                if not await self.answer(n, writer):
                    return
        finally:
            writer.close()

    async def answer(self, n: int, writer: asyncio.StreamWriter) -> bool:
        writer.write(OK)
        await writer.drain()
        return True


@pytest.fixture
async def action() -> AsyncIterator[tuple[WebhookAction, dict[str, CallbackProfile]]]:
    profiles: dict[str, CallbackProfile] = {}
    act = WebhookAction(lambda: profiles, concurrency=4, default_timeout=5.0)
    try:
        yield act, profiles
    finally:
        await act.close()


async def serve(raw: RawServer, **kwargs: Any) -> RawServer:
    raw.server = await asyncio.start_server(raw.handle, "127.0.0.1", 0, **kwargs)
    raw.port = raw.server.sockets[0].getsockname()[1]
    return raw


async def test_wire_format_of_post_and_get(
    action: tuple[WebhookAction, dict[str, CallbackProfile]],
) -> None:
    act, profiles = action
    raw = await serve(RawServer())
    base = f"http://127.0.0.1:{raw.port}"
    profiles["p"] = CallbackProfile.model_validate(
        {"url": f"{base}/p", "headers": {"user-agent": "custom/1"}}
    )
    profiles["g"] = CallbackProfile.model_validate({"url": f"{base}/g?id={{id}}", "method": "GET"})
    assert (await act.run(job("profile:p"))).outcome is Outcome.OK
    assert (await act.run(job("profile:g", 7))).outcome is Outcome.OK
    post, get = raw.requests
    head, body = post.split(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /p HTTP/1.1"
    assert f"Host: 127.0.0.1:{raw.port}".encode() in lines
    assert b"Content-Length: %d" % len(body) in lines
    assert body == b'{"type":"mo","id":1,"text":"hi"}'
    agents = [x for x in lines if x.lower().startswith(b"user-agent:")]
    assert agents == [b"user-agent: custom/1"]  # the profile's replaces ours, once
    assert not any(x.lower().startswith(b"transfer-encoding") for x in lines)
    get_lines = get.split(b"\r\n")
    assert get_lines[0] == b"GET /g?id=7 HTTP/1.1"
    assert b"User-Agent: vmn-gateway" in get_lines
    assert not any(x.lower().startswith((b"content-length", b"content-type")) for x in get_lines)
    assert raw.connections == 1  # both over one kept-alive connection
    assert raw.server is not None
    raw.server.close()


async def test_idle_close_race_is_delivered_once_more(
    action: tuple[WebhookAction, dict[str, CallbackProfile]],
) -> None:
    class IdleCloser(RawServer):
        async def answer(self, n: int, writer: asyncio.StreamWriter) -> bool:
            if n == 1:
                return await super().answer(n, writer)
            return False  # its idle timer fired as the 2nd request came in: no answer

    act, _ = action
    raw = await serve(IdleCloser())
    url = f"http://127.0.0.1:{raw.port}/hook"
    assert (await act.run(job(url, 1))).outcome is Outcome.OK
    result = await act.run(job(url, 2))
    assert result.outcome is Outcome.OK, result
    assert [r.count(b"X-VMN-Event-Id: evt-2") for r in raw.requests] == [0, 1, 1]
    assert raw.server is not None
    raw.server.close()


async def test_tls_is_verified_against_the_system_store(
    action: tuple[WebhookAction, dict[str, CallbackProfile]],
) -> None:
    ca = trustme.CA()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(ctx)
    raw = await serve(RawServer(), ssl=ctx)
    act, _ = action
    result = await act.run(job(f"https://localhost:{raw.port}/hook"))
    assert result.outcome is Outcome.RETRY, result  # a certificate problem may be fixed
    assert result.detail.startswith("TLS error with localhost:")
    assert "CERTIFICATE_VERIFY_FAILED" in result.detail
    assert raw.requests == []
    assert raw.server is not None
    raw.server.close()


async def test_header_value_with_newline_fails_without_sending(
    action: tuple[WebhookAction, dict[str, CallbackProfile]],
) -> None:
    act, profiles = action
    raw = await serve(RawServer())
    profiles["bad"] = CallbackProfile.model_validate(
        {"url": f"http://127.0.0.1:{raw.port}/x", "headers": {"X-A": "v\r\nX-Evil: 1"}}
    )
    result = await act.run(job("profile:bad"))
    assert result.outcome is Outcome.FAIL and "invalid header" in result.detail
    assert "Evil" not in result.detail  # values may be credentials: not echoed
    assert raw.requests == []
    assert raw.server is not None
    raw.server.close()


async def test_event_id_with_newline_fails_without_sending(
    action: tuple[WebhookAction, dict[str, CallbackProfile]],
) -> None:
    act, _ = action
    raw = await serve(RawServer())
    bad = Job(
        id=1,
        kind="webhook",
        target=f"http://127.0.0.1:{raw.port}/x",
        event_id="e\r\nX-Evil: 1",
        payload={"a": 1},
        attempts=0,
    )
    assert (await act.run(bad)).outcome is Outcome.FAIL
    assert raw.requests == []
    assert raw.server is not None
    raw.server.close()


async def test_credentials_in_the_url_are_sent_as_basic_auth(
    action: tuple[WebhookAction, dict[str, CallbackProfile]],
) -> None:
    act, profiles = action
    raw = await serve(RawServer())
    profiles["g"] = CallbackProfile.model_validate(
        {"url": f"http://u%C3%A9:p%40ss@127.0.0.1:{raw.port}/g?id={{id}}", "method": "GET"}
    )
    assert (await act.run(job(f"http://user:p%40ss@127.0.0.1:{raw.port}/hook"))).outcome is (
        Outcome.OK
    )
    assert (await act.run(job("profile:g", 3))).outcome is Outcome.OK
    post, get = (r.split(b"\r\n") for r in raw.requests)
    assert b"Authorization: Basic " + base64.b64encode(b"user:p@ss") in post
    assert b"Authorization: Basic " + base64.b64encode("u\u00e9:p@ss".encode("latin-1")) in get
    assert f"Host: 127.0.0.1:{raw.port}".encode() in post  # no credentials in Host
    assert post[0] == b"POST /hook HTTP/1.1" and get[0] == b"GET /g?id=3 HTTP/1.1"
    assert raw.server is not None
    raw.server.close()
