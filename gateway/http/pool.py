"""A keep-alive HTTP/1.1 client pool on `asyncio.Protocol` (the webhook sender).

Why not aiohttp: a webhook delivery through `aiohttp.ClientSession` costs ~110 µs of
main-thread CPU; this pool costs a third of that (see docs/PERFORMANCE.md and
bench/http_client_bench.py). It does only what the webhook action needs:

* one request at a time per connection (no pipelining), HTTP/1.1, bodies sent with
  ``Content-Length``; the request head (request line, ``Host``, headers) is built by
  the caller with `build_head` — usually once per target;
* connections kept alive per origin (scheme, host, port), at most ``limit_per_host``
  open (or opening) at once; a request beyond that waits for a free one; a connection
  idle for longer than ``idle_timeout`` is closed instead of reused (and, for origins
  no longer sent to, by a sweep that requests run every ``idle_timeout``);
* TLS for ``https``: certificate verification and SNI (the ``ssl.SSLContext`` given,
  else `ssl.create_default_context()`);
* one deadline per request (``timeout`` seconds) covering the wait for a connection,
  connecting (DNS, TCP, TLS), sending and reading the whole response; past it,
  `HttpTimeout` (which says in which phase) and the connection is dropped;
* the response (`response.Response`) with the body capped at ``body_limit`` bytes
  (past it the response is returned ``truncated`` and the connection is dropped);
  chunked and close-delimited bodies; interim ``1xx`` skipped;
* a server that closes an idle keep-alive connection: the request is retried ONCE on
  a new connection, and only when it went out on a reused connection and no byte of
  a response came back (the receiver cannot have answered it); any other broken
  exchange is `Disconnected` or `ProtocolError`;
* redirects are never followed: a ``3xx`` is returned like any other response.

All errors are `HttpError` subclasses (`ConnectError`, `HttpTimeout`, `Disconnected`,
`ProtocolError`) and `InvalidURL` (a `ValueError`). A pool belongs to the event loop
it was first used on.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, cast

from yarl import URL

from gateway.http.errors import (
    ConnectError,
    Disconnected,
    HttpError,
    HttpTimeout,
    InvalidURL,
    ProtocolError,
)
from gateway.http.response import Response, ResponseParser

__all__ = [
    "ConnectError",
    "Disconnected",
    "HttpError",
    "HttpPool",
    "HttpTimeout",
    "InvalidURL",
    "Origin",
    "ProtocolError",
    "Response",
    "build_head",
    "split_url",
]

_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
_FORBIDDEN_IN_HEADERS: Final = frozenset("\r\n\0")


@dataclass(frozen=True, slots=True)
class Origin:
    scheme: str  # "http" or "https"
    host: str  # no brackets for IPv6; IDNA-encoded names
    port: int


def split_url(url: URL) -> tuple[Origin, str, str]:
    """(origin, request target, Host header value) of an absolute http(s) URL."""
    scheme = url.scheme
    if scheme not in _DEFAULT_PORTS:
        raise InvalidURL(f"not an http(s) URL: {str(url)!r}")
    host = url.raw_host
    port = url.port
    if not host or port is None:
        raise InvalidURL(f"no host in URL: {str(url)!r}")
    target = url.raw_path_qs or "/"
    if not target.startswith("/"):
        target = "/" + target
    return Origin(scheme, host, port), target, url.host_port_subcomponent or host


def build_head(method: str, target: str, host: str, headers: dict[str, str]) -> bytes:
    """The request line and headers, without the blank line ending the head (the
    caller appends per-request headers, ``Content-Length`` and ``\\r\\n``)."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}"]
    for name, value in headers.items():
        if _FORBIDDEN_IN_HEADERS.intersection(name + value) or ":" in name or not name:
            raise ValueError(f"invalid header {name!r}")
        lines.append(f"{name}: {value}")
    if _FORBIDDEN_IN_HEADERS.intersection(target) or " " in target:
        raise ValueError(f"invalid request target {target!r}")
    return ("\r\n".join(lines) + "\r\n").encode()


class _Conn(asyncio.Protocol):
    """One connection: at most one request in flight (``waiter``)."""

    __slots__ = ("closed", "idle_since", "lost", "origin", "parser", "transport", "waiter")

    def __init__(self, origin: Origin, lost: Callable[[_Conn], None], body_limit: int) -> None:
        self.origin = origin
        self.lost = lost
        self.parser = ResponseParser(body_limit)
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[Response] | None = None
        self.closed = False
        self.idle_since = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses

    def data_received(self, data: bytes) -> None:
        waiter = self.waiter
        if waiter is None or waiter.done():  # unsolicited bytes: not reusable
            self.abort()
            return
        try:
            done = self.parser.feed(data)
        except ProtocolError as exc:
            waiter.set_exception(exc)
            self.abort()
            return
        if done:
            waiter.set_result(self.parser.response())

    def eof_received(self) -> bool:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            if self.parser.feed_eof():
                waiter.set_result(self.parser.response())
            else:
                waiter.set_exception(Disconnected(self.parser.started))
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(Disconnected(self.parser.started, exc))
        self._gone()

    def on_deadline(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(HttpTimeout("response"))
        self.abort()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()  # connection_lost follows on the next loop turn
        self._gone()

    def _gone(self) -> None:
        if not self.closed:
            self.closed = True
            self.lost(self)


class _Host:
    """The connections to one origin."""

    __slots__ = ("idle", "open", "waiters")

    def __init__(self) -> None:
        self.idle: list[_Conn] = []  # LIFO: the warmest first, the rest may time out
        self.open = 0  # connections open or being opened (the limit counts them)
        self.waiters: deque[asyncio.Future[_Conn | None]] = deque()


class HttpPool:
    """Keep-alive HTTP/1.1 connections per origin (see the module docstring)."""

    def __init__(
        self,
        *,
        limit_per_host: int = 64,
        body_limit: int = 64 * 1024,
        idle_timeout: float = 15.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if limit_per_host < 1:
            raise ValueError("limit_per_host must be >= 1")
        self.limit_per_host = limit_per_host
        self.body_limit = body_limit
        self.idle_timeout = idle_timeout
        self._ssl = ssl_context
        self._hosts: dict[Origin, _Host] = {}
        self._conns: set[_Conn] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._next_sweep = 0.0
        self.closed = False

    # ------------------------------------------------------------------ API

    async def request(self, origin: Origin, data: bytes, timeout: float) -> Response:
        """Send ``data`` (a complete request: head, blank line, body) and return the
        response. Retries once on a new connection when a reused one turns out to have
        been closed by the server before it answered."""
        if self.closed:
            raise RuntimeError("the pool is closed")
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        now = loop.time()
        if now >= self._next_sweep:
            self._sweep(now)
        deadline = now + timeout
        conn, reused = await self._acquire(loop, origin, deadline, fresh=False)
        try:
            response = await self._exchange(loop, conn, data, deadline)
        except Disconnected as exc:
            if not reused or exc.started:
                raise
            # The server had closed this idle connection: nothing of ours was answered.
            conn, _ = await self._acquire(loop, origin, deadline, fresh=True)
            response = await self._exchange(loop, conn, data, deadline)
        self._release(loop, conn, response.keep_alive)
        return response

    async def close(self) -> None:
        """Close every connection; requests in flight end with `Disconnected` (or
        `HttpError` while waiting for a connection); new ones are a `RuntimeError`."""
        self.closed = True
        for conn in list(self._conns):
            conn.abort()
        for host in self._hosts.values():
            while host.waiters:
                waiter = host.waiters.popleft()
                if not waiter.done():
                    waiter.set_exception(HttpError("the pool was closed"))
        self._hosts.clear()
        await asyncio.sleep(0)  # let the transports run connection_lost

    def open_connections(self, origin: Origin) -> int:
        host = self._hosts.get(origin)
        return 0 if host is None else host.open

    # ------------------------------------------------------------------ internals

    def _sweep(self, now: float) -> None:
        """Close connections idle for longer than idle_timeout and forget origins with
        nothing open (every idle_timeout at most, from `request`): hosts that are not
        sent to again do not keep sockets."""
        self._next_sweep = now + self.idle_timeout
        for origin, host in list(self._hosts.items()):
            keep = []
            for conn in host.idle:
                if conn.closed:
                    continue
                if now - conn.idle_since > self.idle_timeout:
                    conn.abort()
                else:
                    keep.append(conn)
            host.idle = keep
            if host.open <= 0 and not host.waiters:
                del self._hosts[origin]

    async def _exchange(
        self, loop: asyncio.AbstractEventLoop, conn: _Conn, data: bytes, deadline: float
    ) -> Response:
        waiter: asyncio.Future[Response] = loop.create_future()
        conn.parser.reset()
        conn.waiter = waiter
        timer = loop.call_at(deadline, conn.on_deadline)
        try:
            transport = conn.transport
            if transport is None or conn.closed:
                raise Disconnected(False)
            transport.write(data)
            return await waiter
        except BaseException:
            conn.abort()
            raise
        finally:
            timer.cancel()
            conn.waiter = None

    async def _acquire(
        self, loop: asyncio.AbstractEventLoop, origin: Origin, deadline: float, *, fresh: bool
    ) -> tuple[_Conn, bool]:
        """A connection to ``origin`` and whether it was used before."""
        host = self._hosts.get(origin)
        if host is None:
            host = self._hosts[origin] = _Host()
        if not fresh:
            idle = host.idle
            now = loop.time()
            while idle:
                conn = idle.pop()
                if conn.closed or conn.transport is None or conn.transport.is_closing():
                    continue  # closed by the peer while idle (_lost frees the slot)
                if now - conn.idle_since > self.idle_timeout:
                    conn.abort()
                    continue
                return conn, True
        while host.open >= self.limit_per_host:
            got = await self._wait(loop, host, deadline)
            if self.closed:
                if got is not None:
                    got.abort()
                raise HttpError("the pool was closed")
            if got is not None:
                if not got.closed:
                    return got, True
                continue
        host.open += 1
        try:
            return await self._connect(loop, origin, deadline), False
        except BaseException:
            host.open -= 1
            self._wake(host)
            raise

    async def _wait(
        self, loop: asyncio.AbstractEventLoop, host: _Host, deadline: float
    ) -> _Conn | None:
        """Wait for a connection handed over (or None: a slot is free, connect)."""
        waiter: asyncio.Future[_Conn | None] = loop.create_future()
        host.waiters.append(waiter)

        def expire() -> None:
            if not waiter.done():
                waiter.set_exception(HttpTimeout("connection"))

        timer = loop.call_at(deadline, expire)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                conn = waiter.result()  # handed to us just as we were cancelled
                if conn is not None:
                    self._release(loop, conn, True)
                else:
                    self._wake(host)
            raise
        finally:
            timer.cancel()
            if not waiter.done():
                waiter.cancel()

    async def _connect(
        self, loop: asyncio.AbstractEventLoop, origin: Origin, deadline: float
    ) -> _Conn:
        conn = _Conn(origin, self._lost, self.body_limit)
        ctx: ssl.SSLContext | None = None
        if origin.scheme == "https":
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            ctx = self._ssl
        try:
            async with asyncio.timeout_at(deadline):
                await loop.create_connection(
                    lambda: conn,
                    origin.host,
                    origin.port,
                    ssl=ctx,
                    server_hostname=origin.host if ctx is not None else None,
                )
        except TimeoutError as exc:
            conn.abort()
            raise HttpTimeout("connect") from exc
        except OSError as exc:  # refused, unreachable, DNS (gaierror), TLS (SSLError)
            raise ConnectError(origin.host, origin.port, exc) from exc
        self._conns.add(conn)  # from now on its slot is freed by _lost
        if self.closed:
            conn.abort()
            raise HttpError("the pool was closed")
        return conn

    def _release(self, loop: asyncio.AbstractEventLoop, conn: _Conn, reusable: bool) -> None:
        if not reusable or conn.closed or self.closed:
            conn.abort()
            return
        host = self._hosts.get(conn.origin)
        if host is None:
            conn.abort()
            return
        while host.waiters:
            waiter = host.waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        conn.idle_since = loop.time()
        host.idle.append(conn)

    def _lost(self, conn: _Conn) -> None:
        """A connection is closed (by us or the peer): free its slot."""
        if conn not in self._conns:
            return  # never fully connected: _acquire freed the slot
        self._conns.remove(conn)
        host = self._hosts.get(conn.origin)
        if host is None:
            return
        host.open -= 1
        self._wake(host)

    @staticmethod
    def _wake(host: _Host) -> None:
        while host.waiters:
            waiter = host.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
