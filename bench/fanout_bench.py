#!/usr/bin/env python3
"""What the fan-out of one batch costs (issue 11: the action registry must not slow it).

`gateway.fanout.expand` on a SQLite store (a file, WAL, as the daemon runs it, through
`Store.relaxed` on the writer thread) for batches of `--batch` MOs (default 128, the
daemon's BATCH) with a webhook and MQTT events configured: each MO becomes its `mo`
event as an MQTT job and a webhook job, claimed at once. `--mix` routes the MOs to
keywords with a reply, a lead and a poll as well. `--scan`: the batches are found in
the database (`expand(..., given=None)`, the scan a burst beyond the intake's hand-over
queue takes) instead of handed over.

Each variant is a child process with its own PYTHONPATH (`--variant NAME=PATH`, e.g.
`old=/work/main new=.`); the variants alternate for `--runs` rounds and the figures are
medians of the per-batch wall time and process CPU time (microseconds per MO; on a
busy machine the CPU time is the steadier figure: the process does nothing else
while the batch runs).

    .venv/bin/python bench/fanout_bench.py --variant old=/work/main --variant new=.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any

CONFIG = """
[gateway]
name = "bench"
[[smsc]]
name = "s"
host = "127.0.0.1"
port = 2775
system_id = "x"
password = "y"
[mqtt]
url = "mqtt://127.0.0.1:1883"
topic_prefix = "bench"
[[number]]
vmn = "5551000100"
[number.default]
webhook = "http://127.0.0.1:9/hook"
[[number.keyword]]
keyword = "JOIN"
reply = "Thanks {from}"
lead = true
webhook = "http://127.0.0.1:9/join"
[[number.keyword]]
keyword = "VOTE"
reply = "Your vote is in"
webhook = "http://127.0.0.1:9/vote"
poll = { name = "color", options = ["RED", "BLUE"] }
"""


async def child(batch: int, batches: int, mix: bool,
                scan: bool = False) -> list[tuple[float, float]]:
    from sqlalchemy import insert

    from gateway.config import parse_config
    from gateway.daemon import context_for
    from gateway.fanout import Routed, expand
    from gateway.model import MessageRow
    from gateway.storage.db import create_engine, migrate
    from gateway.storage.repo import Store
    from gateway.storage.schema import messages

    cfg = parse_config(tomllib.loads(CONFIG), file="bench.toml", env={})
    ctx = context_for(cfg)
    texts = ["hello"] if not mix else ["hello", "JOIN me", "VOTE red", "VOTE green"]
    with tempfile.TemporaryDirectory() as tmp:
        engine = create_engine(f"sqlite+aiosqlite:///{tmp}/bench.db")
        await migrate(engine)
        store = Store(engine)
        out: list[tuple[float, float]] = []
        try:
            for b in range(batches):
                now = time.time()
                rows: list[dict[str, Any]] = []
                for i in range(batch):
                    t = texts[i % len(texts)]
                    keyword = t.split()[0] if mix and t != "hello" else None
                    rows.append({
                        "id": f"b{b:05d}m{i:04d}", "direction": "mo", "smsc": "s",
                        "vmn": "5551000100", "msisdn": f"1555{i:07d}",
                        "sender": f"1555{i:07d}", "recipient": "5551000100", "text": t,
                        "data_coding": 0, "segments": 1, "keyword": keyword,
                        "route": "keyword" if keyword else "default", "status": "received",
                        "created_at": now, "updated_at": now, "attempts": 0, "fanout": 1})
                await store.transaction(lambda c, r=rows: c.execute(insert(messages), r))
                # What the intake hands over: its rows, not routed yet (decision None:
                # fan-out routes them, as for MOs found in the database).
                given: list[Routed] | None = None if scan else [
                    Routed(MessageRow(**{k: r[k] for k in MessageRow._fields if k in r},
                                      raw_pdu=None, dedup_key=None)) for r in rows]
                t0, c0 = time.perf_counter(), time.process_time()
                stats = await store.relaxed(expand, ctx, now, given)
                out.append((time.perf_counter() - t0, time.process_time() - c0))
                assert stats.mos == batch, stats
        finally:
            await store.close()
            await engine.dispose()
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variant", action="append", default=[], metavar="NAME=PATH")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--batches", type=int, default=60, help="batches per child run")
    p.add_argument("--warmup", type=int, default=10, help="batches not counted")
    p.add_argument("--runs", type=int, default=5, help="rounds (each variant once)")
    p.add_argument("--mix", action="store_true", help="keywords with reply, lead, poll")
    p.add_argument("--scan", action="store_true", help="MOs found by the scan, not handed over")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        times = asyncio.run(child(args.batch, args.batches + args.warmup, args.mix,
                                 args.scan))
        print(json.dumps(times[args.warmup:]))
        return 0
    variants = [v.split("=", 1) for v in args.variant] or [["here", "."]]
    per: dict[str, list[list[float]]] = {name: [] for name, _ in variants}
    for r in range(args.runs):
        order = variants if r % 2 == 0 else variants[::-1]
        for name, path in order:
            env = {**os.environ, "PYTHONPATH": str(Path(path).resolve())}
            cmd = [sys.executable, __file__, "--child", "--batch", str(args.batch),
                   "--batches", str(args.batches), "--warmup", str(args.warmup)]
            if args.mix:
                cmd.append("--mix")
            if args.scan:
                cmd.append("--scan")
            res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
            per[name] += json.loads(res.stdout)
    for name, times in per.items():
        for i, what in ((0, "wall"), (1, "cpu")):
            us = sorted(t[i] / args.batch * 1e6 for t in times)
            print(f"{name:>8} {what:>4}: median {statistics.median(us):7.1f} us/MO  "
                  f"p10 {us[len(us) // 10]:7.1f}  p90 {us[len(us) * 9 // 10]:7.1f}  "
                  f"({len(us)} batches of {args.batch})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
