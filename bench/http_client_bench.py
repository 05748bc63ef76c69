#!/usr/bin/env python3
"""HTTP client micro-benchmark: main-thread CPU µs per webhook-like request.

Clients (``--clients``), each POSTing the same 278-byte JSON with keep-alive:

* ``aiohttp``  - ``aiohttp.ClientSession.post`` + ``read()`` (the sender before issue 12);
* ``pool``     - `gateway.http.pool.HttpPool.request` with a prebuilt request head;
* ``action``   - `WebhookAction.run` on a signed callback profile (the whole delivery as
  the outbox runs it: head, HMAC, send, classify), whatever sender it uses;
* ``pycurl``   - libcurl's multi interface driven by the loop (``multi_socket``:
  `add_reader`/`add_writer` + a timer), one easy handle per worker;
* ``pyreqwest`` - pyreqwest's async `Client` (Rust reqwest/hyper on a tokio thread);
* ``action-old`` - the same with ``gateway/actions/webhook.py`` as of ``--old-ref``
  (default ``main``: the aiohttp sender), loaded from git: before/after in one run.

The server is a separate process (this file with ``--serve``): ``--server raw`` (the
default) is a bare asyncio protocol on uvloop answering ``200 ok``, cheap and never the
ceiling; ``--server aiohttp`` is an aiohttp.web app (a realistic receiver: slower, so
fewer responses arrive per loop wake-up and the client's per-request cost is higher). One
run = a fresh client, ``--warmup`` requests, then ``--count`` requests from ``C``
worker tasks (``--concurrency``); the figure is the client's main-thread CPU time
(`time.thread_time`) over the measured requests, in µs per request, and the whole
process's (`time.process_time`: pyreqwest works on a thread of its own). Runs go round-robin
over (loop, client) cells, ``--runs`` each (default 3); the table shows medians.
Loops: ``asyncio`` and ``uvloop`` (``--loops``).

pycurl and pyreqwest are candidates we measured and did not adopt; they are not
dependencies. To include them (the ``--clients`` default lists them; absent = skipped):

    .venv/bin/pip install --target /tmp/cand pycurl==7.49.0 pyreqwest==0.15.1
    PYTHONPATH=$PWD:/tmp/cand .venv/bin/python bench/http_client_bench.py

    PYTHONPATH=$PWD .venv/bin/python bench/http_client_bench.py
    PYTHONPATH=$PWD .venv/bin/python bench/http_client_bench.py --count 20000 --runs 3 \\
        --json-out bench/results-http-client.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

REPO_DIR = Path(__file__).resolve().parent.parent
if str(REPO_DIR) not in sys.path:
    sys.path.insert(0, str(REPO_DIR))

PAYLOAD: dict[str, Any] = {
    "type": "mo",
    "id": 123456,
    "vmn": "5551000100",
    "from": "+15550001111",
    "text": "JOIN the list please, caf\u00e9 \U0001f600 and some more words to make it 278"
    " bytes long, really!!",
    "keyword": "JOIN",
    "route": "keyword",
    "received_at": "2025-01-02T03:04:05Z",
    "smsc": "sim",
    "segments": 1,
    "data_coding": 8,
}
BODY = json.dumps(PAYLOAD, separators=(",", ":"), ensure_ascii=False).encode()
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"


# --------------------------------------------------------------------------- server


def serve(kind: str) -> None:
    import httptools

    if kind == "aiohttp":
        from aiohttp import web

        async def handler(request: web.Request) -> web.Response:
            await request.read()
            return web.Response(text="ok")

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)

        async def main_aiohttp() -> None:
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
            await site.start()
            print(runner.addresses[0][1], flush=True)
            stop = asyncio.Event()
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
            await stop.wait()

        asyncio.run(main_aiohttp())
        return

    class Server(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport: Any = transport
            self.parser = httptools.HttpRequestParser(self)

        def data_received(self, data: bytes) -> None:
            self.parser.feed_data(data)

        def on_message_complete(self) -> None:
            self.transport.write(RESPONSE)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Server, "127.0.0.1", 0, backlog=1024)
        print(server.sockets[0].getsockname()[1], flush=True)
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()

    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())


# --------------------------------------------------------------------------- clients


async def make_client(
    name: str, base: str, concurrency: int
) -> tuple[Callable[[int], Awaitable[bool]], Callable[[], Awaitable[None]]]:
    if name == "aiohttp":
        import aiohttp

        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency),
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            trust_env=False,
        )
        url = f"{base}/hook"
        headers = {"Content-Type": "application/json", "X-VMN-Event-Id": "e1"}

        async def one(n: int) -> bool:
            async with session.post(url, data=BODY, headers=headers) as resp:
                await resp.read()
                return resp.status == 200

        return one, session.close
    if name == "pool":
        from yarl import URL

        from gateway.http.pool import HttpPool, build_head, split_url

        pool = HttpPool(limit_per_host=concurrency)
        origin, target, host = split_url(URL(f"{base}/hook"))
        head = build_head("POST", target, host, {"Content-Type": "application/json"})

        async def one(n: int) -> bool:
            data = b"%bX-VMN-Event-Id: e%d\r\nContent-Length: %d\r\n\r\n%b" % (
                head,
                n,
                len(BODY),
                BODY,
            )
            response = await pool.request(origin, data, 10.0)
            return response.status == 200

        return one, pool.close
    if name == "pycurl":
        return make_pycurl(base, concurrency)
    if name == "pyreqwest":
        from pyreqwest.client import ClientBuilder

        client = ClientBuilder().max_connections(concurrency).build()
        url = f"{base}/hook"
        headers = {"Content-Type": "application/json", "X-VMN-Event-Id": "e1"}

        async def one(n: int) -> bool:
            response = await client.post(url).headers(headers).body_bytes(BODY).build().send()
            await response.bytes()
            return response.status == 200

        return one, client.close
    if name in ("action", "action-old"):
        from gateway.actions.base import Job, Outcome
        from gateway.config import CallbackProfile

        if name == "action":
            from gateway.actions.webhook import WebhookAction
        else:
            WebhookAction = old_webhook_action()

        profiles = {
            "bench": CallbackProfile.model_validate(
                {
                    "url": f"{base}/profile",
                    "secret": "bench-secret",
                    "headers": {"Authorization": "Bearer bench"},
                }
            )
        }
        action = WebhookAction(lambda: profiles, concurrency=concurrency)

        async def one(n: int) -> bool:
            job = Job(
                id=n,
                kind="webhook",
                target="profile:bench",
                event_id=f"e{n}",
                payload=PAYLOAD,
                attempts=0,
                raw=BODY,
            )
            return (await action.run(job)).outcome is Outcome.OK

        return one, action.close
    raise ValueError(name)


def make_pycurl(
    base: str, concurrency: int
) -> tuple[Callable[[int], Awaitable[bool]], Callable[[], Awaitable[None]]]:
    """libcurl's multi_socket API on the running loop (the way an asyncio app uses it)."""
    import pycurl

    loop = asyncio.get_running_loop()
    multi = pycurl.CurlMulti()
    multi.setopt(pycurl.M_MAX_HOST_CONNECTIONS, concurrency)
    pending: dict[Any, asyncio.Future[int]] = {}
    timer: list[asyncio.TimerHandle | None] = [None]
    free: list[Any] = []
    url = f"{base}/hook"
    headers = ["Content-Type: application/json", "X-VMN-Event-Id: e1", "Expect:"]

    def check_done() -> None:
        while True:
            queued, ok, failed = multi.info_read()
            for easy in ok:
                multi.remove_handle(easy)
                pending.pop(easy).set_result(easy.getinfo(pycurl.RESPONSE_CODE))
            for easy, _errno, msg in failed:
                multi.remove_handle(easy)
                pending.pop(easy).set_exception(OSError(msg))
            if not queued:
                return

    def on_event(fd: int, what: int) -> None:
        multi.socket_action(fd, what)
        check_done()

    def on_socket(what: int, fd: int, _multi: Any, _data: Any) -> None:
        loop.remove_reader(fd)
        loop.remove_writer(fd)
        if what in (pycurl.POLL_IN, pycurl.POLL_INOUT):
            loop.add_reader(fd, on_event, fd, pycurl.CSELECT_IN)
        if what in (pycurl.POLL_OUT, pycurl.POLL_INOUT):
            loop.add_writer(fd, on_event, fd, pycurl.CSELECT_OUT)

    def on_timeout() -> None:
        timer[0] = None
        multi.socket_action(pycurl.SOCKET_TIMEOUT, 0)
        check_done()

    def on_timer(ms: int) -> None:
        if timer[0] is not None:
            timer[0].cancel()
            timer[0] = None
        if ms >= 0:
            timer[0] = loop.call_later(ms / 1000.0, on_timeout)

    multi.setopt(pycurl.M_SOCKETFUNCTION, on_socket)
    multi.setopt(pycurl.M_TIMERFUNCTION, on_timer)
    sink = bytearray()

    async def one(n: int) -> bool:
        easy = free.pop() if free else pycurl.Curl()
        easy.setopt(pycurl.URL, url)
        easy.setopt(pycurl.POSTFIELDS, BODY)
        easy.setopt(pycurl.HTTPHEADER, headers)
        easy.setopt(pycurl.WRITEFUNCTION, sink.extend)
        easy.setopt(pycurl.TIMEOUT_MS, 10_000)
        future: asyncio.Future[int] = loop.create_future()
        pending[easy] = future
        multi.add_handle(easy)
        try:
            status = await future
        finally:
            free.append(easy)
            sink.clear()
        return status == 200

    async def close() -> None:
        for easy in free:
            easy.close()
        multi.close()

    return one, close


_OLD_REF = "main"


def old_webhook_action() -> Any:
    """`WebhookAction` from ``gateway/actions/webhook.py`` at ``_OLD_REF`` (git)."""
    import importlib.util

    name = "_old_webhook"
    if name not in sys.modules:
        source = subprocess.run(
            ["git", "-C", str(REPO_DIR), "show", f"{_OLD_REF}:gateway/actions/webhook.py"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        spec = importlib.util.spec_from_loader(name, loader=None)
        assert spec is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        exec(compile(source, f"{_OLD_REF}:gateway/actions/webhook.py", "exec"), module.__dict__)
    return sys.modules[name].WebhookAction


async def one_run(
    client: str, base: str, concurrency: int, count: int, warmup: int
) -> tuple[float, float]:
    one, close = await make_client(client, base, concurrency)
    failures = 0

    async def drive(total: int) -> None:
        nonlocal failures
        next_n = 0

        async def worker() -> None:
            nonlocal next_n, failures
            while next_n < total:
                next_n += 1
                if not await one(next_n):
                    failures += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))

    try:
        await drive(warmup)
        cpu0, proc0 = time.thread_time(), time.process_time()
        await drive(count)
        cpu, proc = time.thread_time() - cpu0, time.process_time() - proc0
    finally:
        await close()
    if failures:
        raise RuntimeError(f"{client}: {failures} failed requests")
    return cpu / count * 1e6, proc / count * 1e6


def available(client: str) -> bool:
    import importlib.util

    module = {"pycurl": "pycurl", "pyreqwest": "pyreqwest"}.get(client)
    return module is None or importlib.util.find_spec(module) is not None


def run_in_loop(loop_name: str, coro: Awaitable[tuple[float, float]]) -> tuple[float, float]:
    if loop_name == "uvloop":
        import uvloop

        return uvloop.run(coro)  # type: ignore[arg-type]
    return asyncio.run(coro)  # type: ignore[arg-type]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--server", choices=["raw", "aiohttp"], default="raw")
    ap.add_argument("--old-ref", default="main", help="git ref of the action-old client")
    ap.add_argument(
        "--clients",
        nargs="+",
        default=["aiohttp", "pycurl", "pyreqwest", "pool", "action-old", "action"],
    )
    ap.add_argument("--loops", nargs="+", default=["asyncio", "uvloop"])
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--count", type=int, default=20000)
    ap.add_argument("--warmup", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json-out", type=Path)
    args = ap.parse_args()
    if args.serve:
        serve(args.server)
        return
    global _OLD_REF
    _OLD_REF = args.old_ref
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", "--server", args.server],
        stdout=subprocess.PIPE,
        text=True,
        env=os.environ,
    )
    try:
        assert proc.stdout is not None
        base = f"http://127.0.0.1:{int(proc.stdout.readline())}"
        runs: dict[str, list[float]] = {}
        process: dict[str, list[float]] = {}
        clients = [c for c in args.clients if available(c)]
        if skipped := sorted(set(args.clients) - set(clients)):
            print(f"not installed, skipped: {', '.join(skipped)}")
        for _ in range(args.runs):
            for loop_name in args.loops:
                for client in clients:
                    us, proc_us = run_in_loop(
                        loop_name,
                        one_run(client, base, args.concurrency, args.count, args.warmup),
                    )
                    runs.setdefault(f"{loop_name}/{client}", []).append(us)
                    process.setdefault(f"{loop_name}/{client}", []).append(proc_us)
                    print(
                        f"  {loop_name:8} {client:10} {us:7.1f} us/request main thread,"
                        f" {proc_us:7.1f} process",
                        flush=True,
                    )
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
    print(
        f"\nmedian CPU us/request (main thread), server {args.server},"
        f" c={args.concurrency}, n={args.count}:"
    )
    print(f"  {'loop/client':22} {'main':>7} {'process':>8}")
    for cell, values in runs.items():
        print(
            f"  {cell:22} {statistics.median(values):7.1f} {statistics.median(process[cell]):8.1f}"
            f"   runs {[round(v, 1) for v in values]}"
        )
    if args.json_out:
        import aiohttp

        args.json_out.write_text(
            json.dumps(
                {
                    "python": platform.python_version(),
                    "aiohttp": aiohttp.__version__,
                    "server": args.server,
                    "old_ref": args.old_ref,
                    "concurrency": args.concurrency,
                    "count": args.count,
                    "runs": runs,
                    "process_runs": process,
                    "median_us": {k: statistics.median(v) for k, v in runs.items()},
                    "median_process_us": {k: statistics.median(v) for k, v in process.items()},
                },
                indent=2,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
