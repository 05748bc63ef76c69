"""gateway.http.pool against real servers: aiohttp.web for well-behaved peers, raw
asyncio servers for hostile ones, TLS with trustme certificates."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest
import trustme
from aiohttp import web
from yarl import URL

from gateway.http.pool import (
    ConnectError,
    Disconnected,
    HttpPool,
    HttpTimeout,
    InvalidURL,
    Origin,
    ProtocolError,
    Response,
    build_head,
    split_url,
)

BODY = b'{"type":"mo","text":"caf\xc3\xa9"}'


def request_bytes(url: str, body: bytes = BODY, *, method: str = "POST") -> tuple[Origin, bytes]:
    origin, target, host = split_url(URL(url))
    head = build_head(method, target, host, {"Content-Type": "application/json"})
    return origin, head + b"Content-Length: %d\r\n\r\n" % len(body) + body


async def send(pool: HttpPool, url: str, body: bytes = BODY, timeout: float = 5.0) -> Response:
    origin, data = request_bytes(url, body)
    return await pool.request(origin, data, timeout)


@pytest.fixture
async def pool() -> AsyncIterator[HttpPool]:
    p = HttpPool(limit_per_host=8)
    try:
        yield p
    finally:
        await p.close()


# --------------------------------------------------------------------------- aiohttp.web


@dataclass
class Seen:
    method: str
    raw_path: str
    headers: dict[str, str]
    body: bytes
    peer: tuple[str, int]


@dataclass
class WebServer:
    base: str
    seen: list[Seen] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    sni: list[str | None] = field(default_factory=list)

    def peers(self) -> set[tuple[str, int]]:
        return {s.peer for s in self.seen}


WEB = web.AppKey("web", WebServer)


async def _handler(request: web.Request) -> web.StreamResponse:
    srv = request.app[WEB]
    srv.in_flight += 1
    srv.max_in_flight = max(srv.max_in_flight, srv.in_flight)
    try:
        body = await request.read()
        transport = request.transport
        assert transport is not None
        srv.seen.append(
            Seen(
                request.method,
                request.raw_path,
                dict(request.headers),
                body,
                transport.get_extra_info("peername")[:2],
            )
        )
        parts = request.path.strip("/").split("/")
        if parts[0] == "redirect":
            raise web.HTTPFound("/elsewhere")
        if parts[0] == "sleep":
            await asyncio.sleep(float(parts[1]))
        if parts[0] == "chunked":
            resp = web.StreamResponse()
            resp.enable_chunked_encoding()
            await resp.prepare(request)
            for i in range(50):
                await resp.write(b"chunk%02d;" % i)
            await resp.write_eof()
            return resp
        if parts[0] == "big":
            return web.Response(body=b"x" * (1024 * 1024))
        return web.Response(text="ok")
    finally:
        srv.in_flight -= 1


WebFactory = Callable[..., Awaitable[WebServer]]


@pytest.fixture
async def web_server() -> AsyncIterator[WebFactory]:
    runners: list[web.AppRunner] = []

    async def start(
        host: str = "127.0.0.1", ssl_context: ssl.SSLContext | None = None
    ) -> WebServer:
        srv = WebServer(base="")
        app = web.Application()
        app[WEB] = srv
        app.router.add_route("*", "/{tail:.*}", _handler)
        runner = web.AppRunner(app, shutdown_timeout=0.1)
        await runner.setup()
        runners.append(runner)
        site = web.TCPSite(runner, host, 0, ssl_context=ssl_context)
        await site.start()
        port = runner.addresses[0][1]
        scheme = "https" if ssl_context else "http"
        name = f"[{host}]" if ":" in host else host
        srv.base = f"{scheme}://{name}:{port}"
        return srv

    try:
        yield start
    finally:
        for runner in runners:
            await runner.cleanup()


async def test_post_with_content_length_and_host_header(
    pool: HttpPool, web_server: WebFactory
) -> None:
    srv = await web_server()
    response = await send(pool, f"{srv.base}/hook?a=1")
    assert response.status == 200 and response.body == b"ok" and response.keep_alive
    [seen] = srv.seen
    assert seen.method == "POST" and seen.raw_path == "/hook?a=1" and seen.body == BODY
    assert seen.headers["Host"] == srv.base.removeprefix("http://")
    assert seen.headers["Content-Length"] == str(len(BODY))
    assert "Transfer-Encoding" not in seen.headers
    assert response.headers["content-type"].startswith("text/plain")


async def test_keep_alive_reuses_the_connection(pool: HttpPool, web_server: WebFactory) -> None:
    srv = await web_server()
    for i in range(20):
        assert (await send(pool, f"{srv.base}/n/{i}")).status == 200
    assert len(srv.seen) == 20 and len(srv.peers()) == 1


async def test_chunked_body(pool: HttpPool, web_server: WebFactory) -> None:
    srv = await web_server()
    response = await send(pool, f"{srv.base}/chunked")
    assert response.body == b"".join(b"chunk%02d;" % i for i in range(50))
    assert response.keep_alive
    assert (await send(pool, f"{srv.base}/again")).status == 200
    assert len(srv.peers()) == 1  # the chunked response ended cleanly: reused


async def test_redirect_is_returned_not_followed(pool: HttpPool, web_server: WebFactory) -> None:
    srv = await web_server()
    response = await send(pool, f"{srv.base}/redirect")
    assert response.status == 302 and response.headers["location"] == "/elsewhere"
    assert [s.raw_path for s in srv.seen] == ["/redirect"]


async def test_body_cap_truncates_and_drops_the_connection(web_server: WebFactory) -> None:
    srv = await web_server()
    pool = HttpPool(body_limit=1000)
    try:
        response = await send(pool, f"{srv.base}/big")
        assert response.status == 200 and response.truncated
        assert response.body == b"x" * 1000 and not response.keep_alive
        assert (await send(pool, f"{srv.base}/small")).body == b"ok"
        assert len(srv.peers()) == 2  # the truncated one was not reused
    finally:
        await pool.close()


async def test_per_host_connection_limit(web_server: WebFactory) -> None:
    srv = await web_server()
    pool = HttpPool(limit_per_host=3)
    try:
        responses = await asyncio.gather(*(send(pool, f"{srv.base}/sleep/0.05") for _ in range(20)))
        assert all(r.status == 200 for r in responses)
        assert srv.max_in_flight <= 3 and len(srv.peers()) <= 3
        assert pool.open_connections(split_url(URL(srv.base))[0]) <= 3
    finally:
        await pool.close()


async def test_idle_connections_expire(web_server: WebFactory) -> None:
    one, two = await web_server(), await web_server()
    pool = HttpPool(idle_timeout=0.2)
    try:
        assert (await send(pool, f"{one.base}/a")).status == 200
        origin = split_url(URL(one.base))[0]
        assert pool.open_connections(origin) == 1
        await asyncio.sleep(0.3)
        assert (await send(pool, f"{two.base}/b")).status == 200  # sweeps the other origin
        await asyncio.sleep(0.05)
        assert pool.open_connections(origin) == 0
        assert (await send(pool, f"{one.base}/c")).status == 200
        assert len(one.peers()) == 2  # a new connection, not the expired one
    finally:
        await pool.close()


async def test_waiting_for_a_connection_times_out(web_server: WebFactory) -> None:
    srv = await web_server()
    pool = HttpPool(limit_per_host=1)
    try:
        slow = asyncio.ensure_future(send(pool, f"{srv.base}/sleep/1", timeout=5))
        await asyncio.sleep(0.1)
        with pytest.raises(HttpTimeout) as info:
            await send(pool, f"{srv.base}/fast", timeout=0.2)
        assert info.value.phase == "connection"
        assert (await slow).status == 200
    finally:
        await pool.close()


async def test_ipv6_loopback(pool: HttpPool, web_server: WebFactory) -> None:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    srv = await web_server("::1")
    assert srv.base.startswith("http://[::1]:")
    response = await send(pool, f"{srv.base}/v6")
    assert response.status == 200
    [seen] = srv.seen
    assert seen.peer[0] == "::1"
    assert seen.headers["Host"] == srv.base.removeprefix("http://")


# --------------------------------------------------------------------------- TLS


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def server_tls(cert: trustme.LeafCert, sni: list[str | None]) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(ctx)

    def record(_sock: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
        sni.append(name)

    ctx.sni_callback = record  # type: ignore[assignment]
    return ctx


def client_tls(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


async def test_tls_with_sni_and_verification(ca: trustme.CA, web_server: WebFactory) -> None:
    sni: list[str | None] = []
    srv = await web_server("127.0.0.1", server_tls(ca.issue_cert("localhost"), sni))
    port = URL(srv.base).port
    pool = HttpPool(ssl_context=client_tls(ca))
    try:
        for _ in range(3):
            response = await send(pool, f"https://localhost:{port}/secure")
            assert response.status == 200 and response.body == b"ok"
        assert sni == ["localhost"]  # one handshake, with the name; then kept alive
        assert srv.seen[0].headers["Host"] == f"localhost:{port}"
    finally:
        await pool.close()


async def test_tls_certificate_of_an_unknown_ca_is_refused(
    ca: trustme.CA, web_server: WebFactory
) -> None:
    other = trustme.CA()
    srv = await web_server("127.0.0.1", server_tls(other.issue_cert("localhost"), []))
    pool = HttpPool(ssl_context=client_tls(ca))
    try:
        with pytest.raises(ConnectError) as info:
            await send(pool, f"https://localhost:{URL(srv.base).port}/x")
        assert isinstance(info.value.os_error, ssl.SSLCertVerificationError)
        assert srv.seen == []
    finally:
        await pool.close()


async def test_tls_certificate_for_another_name_is_refused(
    ca: trustme.CA, web_server: WebFactory
) -> None:
    srv = await web_server("127.0.0.1", server_tls(ca.issue_cert("other.example"), []))
    pool = HttpPool(ssl_context=client_tls(ca))
    try:
        with pytest.raises(ConnectError) as info:
            await send(pool, f"https://localhost:{URL(srv.base).port}/x")
        assert isinstance(info.value.os_error, ssl.SSLCertVerificationError)
        assert "localhost" in str(info.value.os_error)
    finally:
        await pool.close()


async def test_default_tls_context_does_not_trust_a_private_ca(
    ca: trustme.CA, web_server: WebFactory, pool: HttpPool
) -> None:
    srv = await web_server("127.0.0.1", server_tls(ca.issue_cert("localhost"), []))
    with pytest.raises(ConnectError):  # the system store, verification on
        await send(pool, f"https://localhost:{URL(srv.base).port}/x")


# --------------------------------------------------------------------------- hostile peers


@dataclass
class Raw:
    """A raw asyncio server; ``behave(n_on_conn, request, writer)`` answers a request."""

    port: int = 0
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)


async def read_request(reader: asyncio.StreamReader) -> bytes | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return head + await reader.readexactly(length)


Behave = Callable[[int, asyncio.StreamWriter], Awaitable[bool]]
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


@pytest.fixture
async def raw_server() -> AsyncIterator[Callable[[Behave], Awaitable[Raw]]]:
    servers: list[asyncio.Server] = []

    async def start(behave: Behave) -> Raw:
        raw = Raw()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            raw.connections += 1
            n = 0
            try:
                while (request := await read_request(reader)) is not None:
                    raw.requests.append(request)
                    n += 1
                    if not await behave(n, writer):
                        break
            except asyncio.CancelledError:
                pass  # the test is over
            finally:
                writer.close()

        srv = await asyncio.start_server(handle, "127.0.0.1", 0)
        servers.append(srv)
        raw.port = srv.sockets[0].getsockname()[1]
        return raw

    try:
        yield start
    finally:
        for srv in servers:
            srv.close()
            await srv.wait_closed()


RawFactory = Callable[[Behave], Awaitable[Raw]]


async def test_idle_connection_closed_by_server_is_detected(
    pool: HttpPool, raw_server: RawFactory
) -> None:
    async def answer_then_close(n: int, w: asyncio.StreamWriter) -> bool:
        w.write(OK)  # keep-alive by HTTP/1.1 default, but the server closes just after
        await w.drain()
        return False

    raw = await raw_server(answer_then_close)
    url = f"http://127.0.0.1:{raw.port}/"
    assert (await send(pool, url)).status == 200
    await asyncio.sleep(0.05)  # the FIN arrives while idle
    assert (await send(pool, url)).status == 200
    assert raw.connections == 2 and len(raw.requests) == 2  # no retry needed


async def test_reused_connection_closed_before_answering_is_retried_once(
    pool: HttpPool, raw_server: RawFactory
) -> None:
    async def second_request_hits_idle_close(n: int, w: asyncio.StreamWriter) -> bool:
        if n == 1:
            w.write(OK)
            await w.drain()
            return True
        return False  # closes without a byte: its idle timer won the race

    raw = await raw_server(second_request_hits_idle_close)
    url = f"http://127.0.0.1:{raw.port}/"
    assert (await send(pool, url)).status == 200
    response = await send(pool, url)
    assert response.status == 200
    assert raw.connections == 2 and len(raw.requests) == 3  # the lost one, sent again


async def test_no_retry_when_a_byte_of_the_response_arrived(
    pool: HttpPool, raw_server: RawFactory
) -> None:
    async def half_answer(n: int, w: asyncio.StreamWriter) -> bool:
        w.write(OK if n == 1 else b"HTTP/1.1 200 O")
        await w.drain()
        return n == 1

    raw = await raw_server(half_answer)
    url = f"http://127.0.0.1:{raw.port}/"
    assert (await send(pool, url)).status == 200
    with pytest.raises(Disconnected) as info:
        await send(pool, url)
    assert info.value.started
    assert len(raw.requests) == 2  # the receiver may have acted on it: not re-sent


async def test_no_retry_on_a_fresh_connection(pool: HttpPool, raw_server: RawFactory) -> None:
    async def hang_up(n: int, w: asyncio.StreamWriter) -> bool:
        return False

    raw = await raw_server(hang_up)
    with pytest.raises(Disconnected) as info:
        await send(pool, f"http://127.0.0.1:{raw.port}/")
    assert not info.value.started
    assert len(raw.requests) == 1


async def test_retry_happens_only_once(pool: HttpPool, raw_server: RawFactory) -> None:
    connections_answered: set[int] = set()

    async def only_first_ever(n: int, w: asyncio.StreamWriter) -> bool:
        if not connections_answered:
            connections_answered.add(1)
            w.write(OK)
            await w.drain()
            return True
        return False

    raw = await raw_server(only_first_ever)
    url = f"http://127.0.0.1:{raw.port}/"
    assert (await send(pool, url)).status == 200
    with pytest.raises(Disconnected):
        await send(pool, url)
    assert len(raw.requests) == 3  # the first, the lost one, its one retry


async def test_close_delimited_body(pool: HttpPool, raw_server: RawFactory) -> None:
    async def until_close(n: int, w: asyncio.StreamWriter) -> bool:
        w.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n")
        for i in range(5):
            w.write(b"part%d " % i)
            await w.drain()
            await asyncio.sleep(0.01)
        return False

    raw = await raw_server(until_close)
    url = f"http://127.0.0.1:{raw.port}/"
    response = await send(pool, url)
    assert response.body == b"part0 part1 part2 part3 part4 " and not response.keep_alive
    assert (await send(pool, url)).status == 200
    assert raw.connections == 2


async def test_http10_response_is_not_kept_alive(pool: HttpPool, raw_server: RawFactory) -> None:
    async def http10(n: int, w: asyncio.StreamWriter) -> bool:
        w.write(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await w.drain()
        return True  # the server keeps the socket, but 1.0 without keep-alive: not reused

    raw = await raw_server(http10)
    url = f"http://127.0.0.1:{raw.port}/"
    for _ in range(2):
        response = await send(pool, url)
        assert response.body == b"ok" and not response.keep_alive
    assert raw.connections == 2


async def test_interim_100_continue_is_skipped(pool: HttpPool, raw_server: RawFactory) -> None:
    async def with_continue(n: int, w: asyncio.StreamWriter) -> bool:
        w.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        await w.drain()
        w.write(b"HTTP/1.1 201 Created\r\nContent-Length: 4\r\n\r\ndone")
        await w.drain()
        return True

    raw = await raw_server(with_continue)
    response = await send(pool, f"http://127.0.0.1:{raw.port}/")
    assert response.status == 201 and response.body == b"done"


async def test_garbage_is_a_protocol_error(pool: HttpPool, raw_server: RawFactory) -> None:
    async def garbage(n: int, w: asyncio.StreamWriter) -> bool:
        w.write(b"NOT HTTP AT ALL\r\n\r\n")
        await w.drain()
        return True

    raw = await raw_server(garbage)
    with pytest.raises(ProtocolError):
        await send(pool, f"http://127.0.0.1:{raw.port}/")


async def test_endless_headers_are_a_protocol_error(pool: HttpPool, raw_server: RawFactory) -> None:
    async def endless(n: int, w: asyncio.StreamWriter) -> bool:
        w.write(b"HTTP/1.1 200 OK\r\n")
        for _ in range(100_000):  # ~10 MB of headers unless the client gives up
            w.write(b"X-Filler: " + b"a" * 90 + b"\r\n")
            await w.drain()
        return False

    raw = await raw_server(endless)
    with pytest.raises(ProtocolError, match="head larger"):
        await send(pool, f"http://127.0.0.1:{raw.port}/", timeout=10)


async def test_extra_bytes_after_a_response_drop_the_connection(
    pool: HttpPool, raw_server: RawFactory
) -> None:
    async def two_answers(n: int, w: asyncio.StreamWriter) -> bool:
        w.write(OK + OK)  # a second response nobody asked for
        await w.drain()
        return True

    raw = await raw_server(two_answers)
    url = f"http://127.0.0.1:{raw.port}/"
    for _ in range(2):
        assert (await send(pool, url)).status == 200
    assert raw.connections == 2  # never read the stray answer as the next response


async def test_read_timeout_frees_the_slot(raw_server: RawFactory) -> None:
    async def silent(n: int, w: asyncio.StreamWriter) -> bool:
        if len(raw.requests) == 1:
            await asyncio.sleep(10)
        w.write(OK)
        await w.drain()
        return True

    raw = await raw_server(silent)
    pool = HttpPool(limit_per_host=1)
    try:
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(HttpTimeout) as info:
            await send(pool, f"http://127.0.0.1:{raw.port}/", timeout=0.2)
        assert info.value.phase == "response"
        assert 0.15 < loop.time() - start < 2
        assert (await send(pool, f"http://127.0.0.1:{raw.port}/")).status == 200
        assert raw.connections == 2  # the timed-out connection was dropped
    finally:
        await pool.close()


async def test_connect_timeout_on_a_stalled_tls_handshake(
    ca: trustme.CA, raw_server: RawFactory
) -> None:
    # A TCP server that never speaks TLS: the handshake (part of connecting) stalls.
    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)
        writer.close()

    srv = await asyncio.start_server(mute, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    pool = HttpPool(ssl_context=client_tls(ca))
    try:
        with pytest.raises(HttpTimeout) as info:
            await send(pool, f"https://127.0.0.1:{port}/", timeout=0.2)
        assert info.value.phase == "connect"
        assert pool.open_connections(Origin("https", "127.0.0.1", port)) == 0
    finally:
        await pool.close()
        srv.close()


async def test_connection_refused(pool: HttpPool) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ConnectError) as info:
        await send(pool, f"http://127.0.0.1:{port}/")
    assert isinstance(info.value.os_error, ConnectionRefusedError)
    assert pool.open_connections(Origin("http", "127.0.0.1", port)) == 0


async def test_cancelled_request_frees_its_slot(raw_server: RawFactory) -> None:
    async def slow_first(n: int, w: asyncio.StreamWriter) -> bool:
        if n == 1 and len(raw.requests) == 1:
            await asyncio.sleep(10)
        w.write(OK)
        await w.drain()
        return True

    raw = await raw_server(slow_first)
    pool = HttpPool(limit_per_host=1)
    try:
        task = asyncio.ensure_future(send(pool, f"http://127.0.0.1:{raw.port}/"))
        waiting = asyncio.ensure_future(send(pool, f"http://127.0.0.1:{raw.port}/"))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert (await asyncio.wait_for(waiting, 2)).status == 200
    finally:
        await pool.close()


async def test_close_ends_requests_in_flight(raw_server: RawFactory) -> None:
    async def never(n: int, w: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(10)
        return False

    raw = await raw_server(never)
    pool = HttpPool()
    task = asyncio.ensure_future(send(pool, f"http://127.0.0.1:{raw.port}/"))
    await asyncio.sleep(0.1)
    await pool.close()
    with pytest.raises(Disconnected):
        await task
    with pytest.raises(RuntimeError):
        await send(pool, f"http://127.0.0.1:{raw.port}/")


# --------------------------------------------------------------------------- URLs, heads


def test_split_url() -> None:
    assert split_url(URL("http://example.com/a%20b?x=1#frag")) == (
        Origin("http", "example.com", 80),
        "/a%20b?x=1",
        "example.com",
    )
    assert split_url(URL("https://EXAMPLE.com:8443")) == (
        Origin("https", "example.com", 8443),
        "/",
        "example.com:8443",
    )
    assert split_url(URL("http://[::1]:8080/x"))[0::2] == (
        Origin("http", "::1", 8080),
        "[::1]:8080",
    )
    assert split_url(URL("https://b\u00fccher.example/"))[0].host == "xn--bcher-kva.example"
    for bad in ("ftp://h/x", "not a url", "http:///x", "/relative"):
        with pytest.raises(InvalidURL):
            split_url(URL(bad))


def test_build_head_refuses_injection() -> None:
    assert build_head("GET", "/x", "h:1", {"A": "b"}) == b"GET /x HTTP/1.1\r\nHost: h:1\r\nA: b\r\n"
    for headers in ({"A": "b\r\nEvil: 1"}, {"A\n": "b"}, {"A:B": "c"}, {"": "x"}):
        with pytest.raises(ValueError):
            build_head("GET", "/", "h", headers)
    with pytest.raises(ValueError):
        build_head("GET", "/a b", "h", {})


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError):
        HttpPool(limit_per_host=0)


# --------------------------------------------------------------------------- uvloop


def test_under_uvloop(ca: trustme.CA) -> None:
    uvloop = pytest.importorskip("uvloop")

    async def main() -> None:
        sni: list[str | None] = []
        server = await asyncio.start_server(
            _uv_handle, "127.0.0.1", 0, ssl=server_tls(ca.issue_cert("localhost"), sni)
        )
        port = server.sockets[0].getsockname()[1]
        pool = HttpPool(ssl_context=client_tls(ca), limit_per_host=2)
        try:
            responses = await asyncio.gather(
                *(send(pool, f"https://localhost:{port}/") for _ in range(10))
            )
            assert [r.body for r in responses] == [b"ok"] * 10
            assert sni == ["localhost", "localhost"]  # two connections, each kept alive
        finally:
            await pool.close()
            server.close()

    uvloop.run(main())


async def _uv_handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while await read_request(reader) is not None:
        await asyncio.sleep(0.01)
        writer.write(OK)
        await writer.drain()
    writer.close()
