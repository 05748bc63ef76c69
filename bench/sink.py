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

It speaks the receiver protocol of bench/actions_bench.py (``Helper``): one JSON line
``{"ready": true, "port": P, "pid": N}`` on start, then per stdin line ``stats`` /
``dump`` / ``quit``, one JSON line back each.

    .venv/bin/python bench/sink.py [--port 0]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import threading
import time
import urllib.parse
from typing import Any

from aiohttp import web

SEQ = re.compile(rb"HELLO (\d+) ")


class Records:
    """What the sink got: (receive time, seq, ""); appended from the event loop,
    copied from the control thread (safe enough under the GIL)."""

    def __init__(self) -> None:
        self.items: list[tuple[float, int, str]] = []
        self.seqs: set[int] = set()
        self.bad = 0
        self.last = 0.0

    def add(self, t: float, raw: bytes) -> None:
        m = SEQ.search(raw)
        if m is None:
            self.bad += 1
            return
        seq = int(m.group(1))
        self.items.append((t, seq, ""))
        self.seqs.add(seq)
        self.last = t

    def stats(self) -> dict[str, Any]:
        return {"n": len(self.items), "unique": len(self.seqs), "bad": self.bad, "last": self.last}


def control(records: Records, on_quit: Any) -> None:
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "stats":
            reply: dict[str, Any] = records.stats()
        elif cmd == "dump":
            reply = {**records.stats(), "records": list(records.items)}
        elif cmd == "quit":
            break
        else:
            reply = {"error": f"unknown command {cmd!r}"}
        sys.stdout.write(json.dumps(reply, separators=(",", ":")) + "\n")
        sys.stdout.flush()
    on_quit()


async def serve(host: str, port: int) -> int:
    records = Records()

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
    sys.stdout.write(json.dumps({"ready": True, "port": bound, "pid": os.getpid()}) + "\n")
    sys.stdout.flush()
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
