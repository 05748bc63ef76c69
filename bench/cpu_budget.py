#!/usr/bin/env python3
"""Per-MO CPU budget of the gateway from a py-spy profile: which thread, and what in it,
costs how many microseconds per MO.

Record while a bench pushes MOs through the daemon (e.g. `bench/actions_bench.py
--targets gateway-actions --json-out result.json`, attaching py-spy to the daemon's pid
once it is bound), then bucket:

    py-spy record --pid PID -d 20 -r 250 --threads -f raw -o prof.txt
    .venv/bin/python bench/cpu_budget.py prof.txt --bench result.json

Each thread's CPU per MO is from /proc (utime + stime of the thread over the burst and
its drain, in the actions_bench JSON: `cpu.burst_and_drain.target_threads`, per burst
MO). py-spy's samples split it: a thread's samples whose innermost frame is a wait
(IDLE: a thread pool's queue, the event loop's poll) are dropped, each other stack goes
to the first bucket (in the order of BUCKETS) with a frame that matches ("other": none
does), and the thread's CPU is shared out in proportion. On uvloop the loop's own C
code shows as its Python caller (`Runner.run`), indistinguishable from its poll: it is
dropped with the idle samples, so its cost is spread over the buckets.
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter, defaultdict
from pathlib import Path

# (bucket, regex over one frame "function (file:line)"): first match wins
BUCKETS: list[tuple[str, str]] = [
    ("webhook: HTTP client", r"aiohttp|gateway/http/|webhook\.py|httptools"),
    ("MQTT publish", r"paho|aiomqtt|actions/mqtt\.py|gateway/mqtt\.py|gateway/mqttproto\.py"),
    ("worker channel", r"gateway/worker\.py"),
    ("fan-out (expand, jobs, events)", r"gateway/fanout\.py|gateway/events\.py"),
    ("job outcomes (finish)", r"^finish \(gateway/storage/jobs"),
    ("job claims", r"^claim \(gateway/storage/jobs"),
    ("intake rows + COMMIT", r"_write_intake|write_intake"),
    ("outbox (dispatch, results)", r"gateway/outbox\.py"),
    ("intake (on_mo, acks)", r"gateway/pipeline\.py|gateway/msisdn\.py|gateway/mo\.py"),
    ("SMPP decode + session", r"gateway/smpp/"),
    ("mo.received log lines", r"write_mo_lines|log_received"),
    ("COMMIT, other SQLAlchemy / driver", r"sqlalchemy|sqlite3|asyncpg"),
    ("event loop", r"asyncio/|uvloop"),
]


IDLE = re.compile(r"concurrent/futures/thread\.py|aiosqlite/core\.py|^Runner\.run |"
                  r"^run_until_complete|selectors\.py|threading\.py|queue\.py")


def bucket_of(frames: list[str]) -> str:
    for name, rx in _COMPILED:
        if any(rx.search(f) for f in frames):
            return name
    return "other"


_COMPILED = [(n, re.compile(r)) for n, r in BUCKETS]


def parse(path: Path) -> tuple[dict[str, Counter[str]], dict[str, str]]:
    """(thread id -> bucket -> samples, thread id -> name)."""
    out: dict[str, Counter[str]] = defaultdict(Counter)
    names: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        frames = stack.split(";")
        m = re.match(r"thread \((\d+)\): (.*)", frames[0])
        if m is None:
            continue
        tid, name = m.groups()
        names[tid] = re.sub(r"_\d+$", "", name)  # sqlite-writer_0 -> sqlite-writer
        if IDLE.search(frames[-1]):
            continue
        out[tid][bucket_of(frames[1:])] += int(n)
    return out, names


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("profile", type=Path, help="py-spy raw file (--threads)")
    p.add_argument("--bench", type=Path, required=True,
                   help="the actions_bench JSON of the profiled run")
    p.add_argument("--target", default="gateway-actions")
    p.add_argument("--min-share", type=float, default=0.02,
                   help="fold buckets under this share of a thread into other")
    args = p.parse_args()
    samples, names = parse(args.profile)
    run = json.loads(args.bench.read_text())["runs"][args.target][0]
    cpu = run["cpu"]["burst_and_drain"]
    mos = run["phases"]["burst"]["count"]
    per_thread = {k.split(":")[0]: v * cpu["wall_s"] / mos * 1e6
                  for k, v in cpu["target_threads"].items()}
    total = cpu["target"] * cpu["wall_s"] / mos * 1e6
    print("| thread | bucket | us/MO | share |\n|---|---|---:|---:|")
    for tid, us in sorted(per_thread.items(), key=lambda kv: -kv[1]):
        name = names.get(tid, tid)
        c = samples.get(tid, Counter())
        n = sum(c.values())
        print(f"| **{name}** | **all (/proc)** | **{us:.0f}** | |")
        if not n or us < 5:
            continue
        other = 0
        for b, k in c.most_common():
            if k / n < args.min_share or b == "other":
                other += k
                continue
            print(f"| | {b} | {us * k / n:.1f} | {k / n:.0%} |")
        if other:
            print(f"| | other | {us * other / n:.1f} | {other / n:.0%} |")
    print(f"| **process** (all threads, /proc) | | **{total:.0f}** | |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
