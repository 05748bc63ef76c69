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

    .venv/bin/python bench/sink.py [--port 0]
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
    bound = runner.addresses[0][1]
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    threading.Thread(
        target=control, args=(records, lambda: loop.call_soon_threadsafe(stop.set)), daemon=True
    ).start()
    ready(port=bound, pid=os.getpid())
    await stop.wait()
    await runner.cleanup()
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args(argv)
    return asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    sys.exit(main())
