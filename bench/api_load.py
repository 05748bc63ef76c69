#!/usr/bin/env python3
"""HTTP load for bench/api_bench.py: requests to the gateway's API at a fixed rate, in a
process of its own (so that it does not share the load generator's event loop).

    python bench/api_load.py --base http://127.0.0.1:8088 --key vmn_... --rate 200 \\
        --from 5551000100 --stats /tmp/stats.json

`--mix read` (the API's own cost): every 8 requests, 6 x GET /v1/messages/{id} (a
message of the log) and 2 x GET /v1/messages?limit=20. `--mix send`: the same with
2 of the 8 a POST /v1/messages instead (an MT each, to a test number: its queueing,
submit_sm and receipt writes come on top). Runs until SIGTERM, then writes {sent,
by_status, errors, seconds, rate, p50_ms, p99_ms} to --stats."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import time
from collections import Counter
from pathlib import Path

import aiohttp


async def main(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    headers = {"Authorization": f"Bearer {args.key}"}
    statuses: Counter[str] = Counter()
    latencies: list[float] = []
    errors = 0
    known: list[str] = []
    inflight: set[asyncio.Task[None]] = set()

    async with aiohttp.ClientSession(headers=headers) as http:
        async def one(i: int) -> None:
            nonlocal errors
            kind = i % 8
            t0 = time.perf_counter()
            try:
                if args.mix == "404":
                    r = await http.get(f"{args.base}/v1/nothing")
                elif kind < 2 or not known:
                    r = await http.get(f"{args.base}/v1/messages?limit=20")
                elif kind < 6 or args.mix == "read":
                    r = await http.get(f"{args.base}/v1/messages/{known[i % len(known)]}")
                else:
                    r = await http.post(f"{args.base}/v1/messages", json={
                        "from": args.sender, "to": f"1555{i % 10_000_000:07d}",
                        "text": f"bench {i}"})
                body = await r.read()
                statuses[str(r.status)] += 1
                if r.status == 202 and len(known) < 1000:
                    known.append(json.loads(body)["id"])
                elif r.status == 200 and kind < 2 and len(known) < 1000:
                    known.extend(m["id"] for m in json.loads(body)["items"])
                latencies.append((time.perf_counter() - t0) * 1000)
            except (aiohttp.ClientError, OSError, ValueError):
                errors += 1

        start = time.monotonic()
        i = 0
        while not stop.is_set():
            due = start + i / args.rate
            delay = due - time.monotonic()
            if delay > 0:
                try:
                    await asyncio.wait_for(stop.wait(), delay)
                    break
                except TimeoutError:
                    pass
            task = asyncio.create_task(one(i))
            inflight.add(task)
            task.add_done_callback(inflight.discard)
            i += 1
        seconds = time.monotonic() - start
        if inflight:
            await asyncio.wait(inflight, timeout=5)
    latencies.sort()

    def pct(q: float) -> float | None:
        return round(latencies[int(q * (len(latencies) - 1))], 2) if latencies else None

    Path(args.stats).write_text(json.dumps({
        "sent": i, "by_status": dict(statuses), "errors": errors,
        "seconds": round(seconds, 2), "rate": round(sum(statuses.values()) / seconds, 1),
        "p50_ms": pct(0.5), "p99_ms": pct(0.99)}))


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--base", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--rate", type=float, default=200.0)
    p.add_argument("--from", dest="sender", default="5551000100")
    p.add_argument("--stats", required=True)
    p.add_argument("--mix", choices=["read", "send", "404"], default="read")
    asyncio.run(main(p.parse_args()))
