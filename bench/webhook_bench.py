#!/usr/bin/env python3
"""Webhook benchmark: `WebhookAction.run` throughput and latency against a local server.

The HTTP server runs in a separate process (this script with ``--serve``: aiohttp.web,
answers ``200 ok`` to every POST after reading the body) so that client and server do
not share one event loop. For each concurrency C (``--concurrency``, default 16 64 128)
and each mode, K runs (``--runs``, default 3); one run:

1. a fresh client (a new `WebhookAction(concurrency=C)`, i.e. a new connection pool);
2. ``--warmup`` unmeasured requests;
3. ``--count`` jobs (default 20,000) run by C worker tasks (as the outbox does: at most
   C ``run()`` in flight) -> requests/s = count / wall time; p50/p99/max of
   ``Result.latency_ms``; every result must be OK.

Modes: ``profile`` = POST through a callback profile with a secret (HMAC-signed, a
custom header; the realistic path), ``plain`` = POST to a plain trigger URL (unsigned),
``raw`` = bare ``aiohttp.ClientSession.post`` + body read with the same pool settings
(the floor the action's own overhead is measured against).

Runs go round-robin over the (concurrency, mode) cells, so that load drifting on a
shared machine hits every cell alike. Each run also records the CPU used per wall
second by the client (this process) and the server process (1.00 = one core busy): a
server near 1.00 means the figure is the server's ceiling, not the client's.

It prints a table of the medians over the runs and writes all runs as JSON to
``--json-out``.

    .venv/bin/python bench/webhook_bench.py
    .venv/bin/python bench/webhook_bench.py --count 20000 --runs 3 --modes profile raw \\
        --concurrency 16 64 128 --json-out /tmp/webhook.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO_DIR = Path(__file__).resolve().parent.parent
if str(REPO_DIR) not in sys.path:
    sys.path.insert(0, str(REPO_DIR))

import aiohttp  # noqa: E402
from aiohttp import web  # noqa: E402
from benchlib import cpu_seconds, percentile  # noqa: E402

PAYLOAD: dict[str, Any] = {
    "type": "mo",
    "id": 123456,
    "vmn": "5551000100",
    "from": "+15550001111",
    "text": "JOIN the list please, caf\u00e9 \U0001f600",
    "keyword": "JOIN",
    "route": "keyword",
    "received_at": "2025-01-02T03:04:05Z",
    "smsc": "sim",
    "segments": 1,
    "data_coding": 8,
}


# --------------------------------------------------------------------------- server


def serve(host: str, port: int) -> None:
    """The server process: print the bound port on stdout, then serve until SIGTERM."""

    async def handler(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(text="ok")

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/{tail:.*}", handler)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, host, port, backlog=1024)
        await site.start()
        print(runner.addresses[0][1], flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await runner.cleanup()

    asyncio.run(main())


class ServerProcess:
    def __init__(self, host: str) -> None:
        self.host = host
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0

    def __enter__(self) -> ServerProcess:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", "--host", self.host, "--port", "0"],
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO_DIR,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.strip().isdigit():
            self.proc.kill()
            raise SystemExit(f"server process did not start (got {line!r})")
        self.port = int(line)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# --------------------------------------------------------------------------- client


class RawClient:
    """Bare aiohttp with the action's pool settings: the floor for comparison."""

    def __init__(self, url: str, concurrency: int) -> None:
        self.url = url
        self.concurrency = concurrency
        self.session: aiohttp.ClientSession | None = None

    async def run_one(self, n: int) -> tuple[bool, float]:
        if self.session is None:
            self.session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=self.concurrency, limit_per_host=self.concurrency, ttl_dns_cache=300
                )
            )
        body = json.dumps(PAYLOAD, separators=(",", ":"), ensure_ascii=False).encode()
        start = time.perf_counter()
        async with self.session.post(
            self.url, data=body, headers={"Content-Type": "application/json"}
        ) as resp:
            await resp.read()
            ok = resp.status == 200
        return ok, (time.perf_counter() - start) * 1000.0

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()


async def one_run(
    mode: str, base: str, concurrency: int, count: int, warmup: int, server_pid: int
) -> dict[str, Any]:
    from gateway.actions.base import Job, Outcome
    from gateway.actions.webhook import WebhookAction
    from gateway.config import CallbackProfile

    profiles = {
        "bench": CallbackProfile.model_validate(
            {
                "url": f"{base}/profile",
                "secret": "bench-secret",
                "headers": {"Authorization": "Bearer bench"},
            }
        )
    }
    target = "profile:bench" if mode == "profile" else f"{base}/plain"
    action = WebhookAction(lambda: profiles, concurrency=concurrency)
    raw = RawClient(f"{base}/raw", concurrency)

    async def run_one(n: int) -> tuple[bool, float]:
        if mode == "raw":
            return await raw.run_one(n)
        job = Job(
            id=n, kind="webhook", target=target, event_id=f"e{n}", payload=PAYLOAD, attempts=0
        )
        result = await action.run(job)
        return result.outcome is Outcome.OK, result.latency_ms

    latencies: list[float] = []
    failures = 0

    async def drive(total: int, record: bool) -> None:
        nonlocal failures
        next_n = 0

        async def worker() -> None:
            nonlocal next_n, failures
            while next_n < total:
                n = next_n
                next_n += 1
                ok, latency = await run_one(n)
                if record:
                    latencies.append(latency)
                    failures += not ok

        await asyncio.gather(*(worker() for _ in range(concurrency)))

    try:
        await drive(warmup, record=False)
        server_cpu0, client_cpu0 = (cpu_seconds(server_pid) or 0.0), time.process_time()
        start = time.perf_counter()
        await drive(count, record=True)
        wall = time.perf_counter() - start
        server_cpu = ((cpu_seconds(server_pid) or 0.0) - server_cpu0) / wall
        client_cpu = (time.process_time() - client_cpu0) / wall
    finally:
        await action.close()
        await raw.close()
    latencies.sort()
    return {
        "mode": mode,
        "concurrency": concurrency,
        "count": count,
        "failures": failures,
        "wall_s": wall,
        "rps": count / wall,
        "p50_ms": percentile(latencies, 50, math.nan),
        "p99_ms": percentile(latencies, 99, math.nan),
        "max_ms": latencies[-1] if latencies else float("nan"),
        "client_cpu": client_cpu,  # CPU seconds per wall second (1.0 = one core busy)
        "server_cpu": server_cpu,
    }


def run_in_fresh_loop(*args: Any) -> dict[str, Any]:
    return asyncio.run(one_run(*args))


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="(with --serve)")
    ap.add_argument("--count", type=int, default=20_000)
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[16, 64, 128])
    ap.add_argument(
        "--modes",
        nargs="+",
        default=["profile", "plain", "raw"],
        choices=["profile", "plain", "raw"],
    )
    ap.add_argument("--json-out", type=Path)
    args = ap.parse_args(argv)

    if args.serve:
        serve(args.host, args.port)
        return 0

    runs: list[dict[str, Any]] = []
    summary: list[dict[str, Any]] = []
    with ServerProcess(args.host) as server:
        base = f"http://{args.host}:{server.port}"
        assert server.proc is not None
        cells = [(c, m) for c in args.concurrency for m in args.modes]
        by_cell: dict[tuple[int, str], list[dict[str, Any]]] = {cell: [] for cell in cells}
        # Round-robin over the cells, so that drifting load on a shared machine hits
        # every cell alike instead of skewing whichever ran during a busy spell.
        for i in range(args.runs):
            for concurrency, mode in cells:
                r = run_in_fresh_loop(
                    mode, base, concurrency, args.count, args.warmup, server.proc.pid
                )
                r["run"] = i
                by_cell[(concurrency, mode)].append(r)
                runs.append(r)
                print(
                    f"  run {i + 1}/{args.runs} {mode:<8} c={concurrency:<4} "
                    f"{r['rps']:8.0f} req/s  p50 {r['p50_ms']:.2f} ms  "
                    f"p99 {r['p99_ms']:.2f} ms  cpu client {r['client_cpu']:.2f} "
                    f"server {r['server_cpu']:.2f}  failures {r['failures']}",
                    file=sys.stderr,
                    flush=True,
                )
        for (concurrency, mode), these in by_cell.items():
            summary.append(
                {
                    "mode": mode,
                    "concurrency": concurrency,
                    "rps": statistics.median(r["rps"] for r in these),
                    "p50_ms": statistics.median(r["p50_ms"] for r in these),
                    "p99_ms": statistics.median(r["p99_ms"] for r in these),
                    "client_cpu": statistics.median(r["client_cpu"] for r in these),
                    "server_cpu": statistics.median(r["server_cpu"] for r in these),
                    "failures": sum(r["failures"] for r in these),
                }
            )

    print(f"\nwebhook bench: {args.count} requests/run, median of {args.runs} runs")
    print(
        f"{'mode':<8} {'conc':>5} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'cli cpu':>7} {'srv cpu':>7} {'fail':>5}"
    )
    for s in summary:
        print(
            f"{s['mode']:<8} {s['concurrency']:>5} {s['rps']:>9.0f} {s['p50_ms']:>8.2f} "
            f"{s['p99_ms']:>8.2f} {s['client_cpu']:>7.2f} {s['server_cpu']:>7.2f} "
            f"{s['failures']:>5}"
        )
    if args.json_out:
        args.json_out.write_text(
            json.dumps(
                {
                    "params": {
                        k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                    },
                    "machine": {
                        "python": sys.version.split()[0],
                        "aiohttp": aiohttp.__version__,
                        "platform": platform.platform(),
                        "cpus": os.cpu_count(),
                    },
                    "summary": summary,
                    "runs": runs,
                },
                indent=2,
            )
        )
        print(f"wrote {args.json_out}")
    return 1 if any(s["failures"] for s in summary) else 0


if __name__ == "__main__":
    sys.exit(main())
