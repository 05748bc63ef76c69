#!/usr/bin/env python3
"""HTTP sink for MO events, one process: counts what the gateway's webhook and Kannel's
smsbox (sms-service ``post-url``/``get-url``) deliver, on the same clock as the load
generator.

It answers ``200 ok`` (an empty-ish body, so that Kannel sends no reply SMS) to any GET or
POST on any path, and records ``(time.time(), seq, "")`` per request, where ``seq`` is
the number in the load generator's text ``"HELLO <seq> MO from the bench"``, found in
the raw body (the gateway's JSON event, Kannel's plain-text POST body) or in the
decoded query string (Kannel's ``get-url`` with ``text=%a``). A request without one
counts as ``bad``.

It speaks the receiver protocol of bench/benchlib/receivers.py (``Helper``): one JSON line
``{"ready": true, "port": P, "pid": N}`` on start, then per stdin line ``stats`` /
``dump`` / ``quit``, one JSON line back each.

    .venv/bin/python bench/sink.py [--port 0] [--server lean|aiohttp]

Two servers, the same records: ``lean`` (the default) is an ``asyncio.Protocol`` with
httptools' request parser on uvloop, ~15 us of CPU per request; ``aiohttp`` is
aiohttp.web on the standard loop, ~300 us per request as measured in the benches
(``webhook_rx`` CPU in bench/actions_bench.py). On two cores the sink's CPU is taken from
the target it measures (Kannel's smsbox or the gateway): with aiohttp the sink used
0.5-0.7 of a core at 2k requests/s, capping both targets' MO->sink rate near the same
figure. The lean sink keeps HTTP/1.1 keep-alive, answers HTTP/1.0 and
``Connection: close`` by closing, and reads Content-Length and chunked bodies.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
import threading
import time
import urllib.parse

from aiohttp import web

# bench/ is on sys.path when run as a script
from benchlib.receivers import Records, control, ready

SEQ = re.compile(rb"HELLO (\d+) ")


def seq_in(raw: bytes | bytearray) -> tuple[int, str] | None:
    """The seq in a request's raw body + decoded query (no event id: "")."""
    m = SEQ.search(raw)
    return None if m is None else (int(m.group(1)), "")


_OK = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok")
_OK_CLOSE = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n"
             b"Connection: close\r\n\r\nok")


class _Lean(asyncio.Protocol):
    """One client connection: httptools parses, each complete request is recorded and
    answered in order (pipelined requests included)."""

    def __init__(self, records: Records) -> None:
        import httptools

        self.records = records
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.body = bytearray()
        self.url = b""
        self.t = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        import httptools

        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            assert self.transport is not None
            self.transport.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n"
                                 b"Connection: close\r\n\r\n")
            self.transport.close()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.t = time.time()
        self.body = bytearray()
        self.url = b""

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        _, _, query = self.url.partition(b"?")
        if query:
            query = urllib.parse.unquote_plus(query.decode("latin-1")).encode(
                "utf-8", "replace")
        self.records.add(self.t, bytes(self.body) + b"\n" + query)
        assert self.transport is not None
        if self.parser.should_keep_alive():
            self.transport.write(_OK)
        else:
            self.transport.write(_OK_CLOSE)
            self.transport.close()


async def serve_lean(host: str, port: int) -> int:
    records = Records(seq_in)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Lean(records), host, port, backlog=1024)
    await _until_quit(records, server.sockets[0].getsockname()[1])
    server.close()
    return 0


async def _until_quit(records: Records, port: int) -> None:
    """Say ready (port, pid), answer the orchestrator on stdin until it says quit."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    threading.Thread(
        target=control, args=(records, lambda: loop.call_soon_threadsafe(stop.set)), daemon=True
    ).start()
    ready(port=port, pid=os.getpid())
    await stop.wait()


async def serve(host: str, port: int) -> int:
    records = Records(seq_in)

    async def any_request(request: web.Request) -> web.Response:
        t = time.time()
        body = await request.read()
        query = urllib.parse.unquote_plus(request.query_string).encode("utf-8", "replace")
        records.add(t, body + b"\n" + query)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", any_request)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024)
    await site.start()
    await _until_quit(records, runner.addresses[0][1])
    await runner.cleanup()
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--server", choices=("lean", "aiohttp"), default="lean")
    args = ap.parse_args(argv)
    if args.server == "aiohttp":
        return asyncio.run(serve(args.host, args.port))
    try:
        import uvloop
    except ImportError:
        return asyncio.run(serve_lean(args.host, args.port))
    return uvloop.run(serve_lean(args.host, args.port))


if __name__ == "__main__":
    sys.exit(main())
