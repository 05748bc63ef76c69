#!/usr/bin/env python3
"""Router benchmark: configuration parsing, Router compile time, per-MO route() time.

Scenarios (every one has 10,000 long-code VMNs, so the destination table is the same
size and only the keywords change):

- ``100``:      100 keywords, on the first 100 VMNs (1 each; the other 9,900 have none)
- ``10k``:      10,000 keywords, 1 per VMN
- ``100k``:     100,000 keywords, 10 per VMN
- ``10k-1vmn``: 10,000 keywords on one VMN (a busy short-code-like number), none elsewhere

Keywords are random letter words of 3-12 characters; 10% have two words, 5% are
``match = "exact"``, 20% have one alias, 5% expired. Configurations go through
`parse_config` (full validation, as at start-up) and that time is reported apart from
the Router compile.

The MO mix (``--mos`` messages, fixed seed), sent to VMNs that have keywords, with the
destination written as ``vmn``, ``1vmn`` or ``+1vmn``: 50% a keyword or alias (random
case, sometimes punctuation, 0-6 words of arguments), 20% free text (default route),
10% a keyword glued to more letters (default), 10% opt words (STOP/start/ help ...),
5% a 1,000-character text starting with a keyword, 5% an unknown destination.
Each run routes the whole mix once; the figure is the median over ``--runs`` runs of
(run time / MOs), the loop included, both wall clock and CPU time (process_time: the
machine is shared, and waiting for a CPU is not the router's cost). Per-route medians
come from routing each route's MOs apart. Router compile: median of several builds;
its memory is what tracemalloc sees allocated by one build.

    .venv/bin/python bench/router_bench.py [--scenarios 100,10k,100k,10k-1vmn]
        [--runs 7] [--mos 20000] [--json-out FILE]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import statistics
import string
import sys
import time
import tracemalloc
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from gateway.config import Config, parse_config
from gateway.routing import Route, Router

NOW = datetime(2025, 6, 1, tzinfo=UTC)
VMN_COUNT = 10_000
SCENARIOS: dict[str, tuple[int, Callable[[int], int]]] = {
    # name -> (keyword count, keywords of VMN number i)
    "100": (100, lambda i: 1 if i < 100 else 0),
    "10k": (10_000, lambda i: 1),
    "100k": (100_000, lambda i: 10),
    "10k-1vmn": (10_000, lambda i: 10_000 if i == 0 else 0),
}
OPT_WORDS = ["STOP", "stop", " Stop ", "STOPALL", "unsubscribe", "START", "yes", "HELP", "info"]
FREE_TEXT = [
    "what time do you open",
    "Is the store open on Sunday?",
    "ok thanks",
    "can you call me back at 5",
    "Where is my order #12345",
    "👍",
    "Привет, как дела?",
]


def vmn_of(i: int) -> str:
    return f"{5_550_000_000 + i * 7}"


def random_word(rng: random.Random, lo: int = 3, hi: int = 12) -> str:
    return "".join(rng.choices(string.ascii_uppercase, k=rng.randint(lo, hi)))


def build_data(name: str, rng: random.Random) -> tuple[dict[str, Any], int]:
    """The TOML-shaped configuration of one scenario, and its number of keywords."""
    total, per_vmn = SCENARIOS[name]
    numbers: list[dict[str, Any]] = []
    count = 0
    for i in range(VMN_COUNT):
        used: set[str] = set()
        keywords: list[dict[str, Any]] = []
        while len(keywords) < per_vmn(i):
            word = random_word(rng)
            if rng.random() < 0.10:
                word += " " + random_word(rng, 2, 8)
            alias = random_word(rng) if rng.random() < 0.20 else None
            names = {word.casefold()} | ({alias.casefold()} if alias else set())
            if len(word) > 30 or names & used or len(names) < (2 if alias else 1):
                continue
            used |= names
            entry: dict[str, Any] = {"keyword": word, "reply": "Thanks {from}: {args}"}
            if alias:
                entry["aliases"] = [alias]
            if rng.random() < 0.05:
                entry["match"] = "exact"
            if rng.random() < 0.05:
                entry["expires"] = "2020-01-01T00:00:00Z"
                entry["expiry_reply"] = "That offer has ended"
            keywords.append(entry)
        count += len(keywords)
        numbers.append({"vmn": vmn_of(i), "default": {"reply": "Thanks"}, "keyword": keywords})
    assert count == total, (count, total)
    return {"smsc": [{"name": "sim", "system_id": "bench"}], "number": numbers}, count


def build_mos(cfg: Config, count: int, rng: random.Random) -> list[tuple[str, str]]:
    with_keywords = [n for n in cfg.numbers if n.keywords] or list(cfg.numbers)
    mos: list[tuple[str, str]] = []
    for _ in range(count):
        number = rng.choice(with_keywords)
        dest = rng.choice([number.vmn, "1" + number.vmn, "+1" + number.vmn])
        roll = rng.random()
        names = [k.keyword for k in number.keywords] + [
            a for k in number.keywords for a in k.aliases
        ] or ["HELLO"]
        word = rng.choice(names)
        word = rng.choice([word, word.lower(), word.title()])
        args = " ".join(random_word(rng, 2, 8).lower() for _ in range(rng.randint(0, 6)))
        if roll < 0.50:
            text = word + rng.choice([" ", " ", ", ", "! ", "  "]) + args
        elif roll < 0.70:
            text = rng.choice(FREE_TEXT)
        elif roll < 0.80:
            text = word + "x " + args
        elif roll < 0.90:
            text = rng.choice(OPT_WORDS)
        elif roll < 0.95:
            text = (word + " " + "lorem ipsum dolor sit amet " * 40)[:1000]
        else:
            dest = "1999" + dest[-7:]
            text = word + " " + args
        mos.append((dest, text))
    return mos


def time_route(router: Router, mos: list[tuple[str, str]], runs: int) -> tuple[float, float, float]:
    """Time per route() call in µs over runs: (median wall clock, median CPU, min CPU).

    CPU time (process_time) leaves out the time the process waits for a CPU, which
    dominates wall clock on a busy shared machine; the minimum is the least disturbed run.
    """
    route = router.route
    now = NOW
    wall, cpu = [], []
    for _ in range(runs):
        t0, c0 = time.perf_counter(), time.process_time()
        for dest, text in mos:
            route(dest, text, now)
        c1, t1 = time.process_time(), time.perf_counter()
        wall.append((t1 - t0) / len(mos) * 1e6)
        cpu.append((c1 - c0) / len(mos) * 1e6)
    return statistics.median(wall), statistics.median(cpu), min(cpu)


def median_time(fn: Callable[[], object], runs: int) -> float:
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def run_scenario(name: str, runs: int, mo_count: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    t0 = time.perf_counter()
    data, keyword_count = build_data(name, rng)
    gen_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    cfg = parse_config(data, file="bench.toml", env={})
    parse_s = time.perf_counter() - t0
    alias_count = sum(len(k.aliases) for n in cfg.numbers for k in n.keywords)

    compile_s = median_time(lambda: Router(cfg), max(3, runs // 2))
    gc.collect()
    tracemalloc.start()
    router = Router(cfg)
    router_mib = tracemalloc.get_traced_memory()[0] / 2**20
    tracemalloc.stop()

    mos = build_mos(cfg, mo_count, rng)
    by_route: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for dest, text in mos:
        label = router.route(dest, text, NOW).route.value
        if len(text) >= 1000 and label != Route.UNROUTED:
            label += " (1000 chars)"
        by_route[label].append((dest, text))
    time_route(router, mos, 1)  # warm-up
    per_mo = time_route(router, mos, runs)
    per_route = {}
    for label, group in sorted(by_route.items()):
        wall, cpu, cpu_min = time_route(router, group, runs)
        per_route[label] = {
            "count": len(group),
            "wall_us": wall,
            "cpu_us": cpu,
            "cpu_min_us": cpu_min,
        }
    return {
        "scenario": name,
        "vmns": len(cfg.numbers),
        "keywords": keyword_count,
        "aliases": alias_count,
        "generate_s": gen_s,
        "parse_config_s": parse_s,
        "router_compile_s": compile_s,
        "router_mib": router_mib,
        "mos": len(mos),
        "route_wall_us": per_mo[0],
        "route_cpu_us": per_mo[1],
        "route_cpu_min_us": per_mo[2],
        "route_us_by_route": per_route,
        "load_average": os.getloadavg(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--mos", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json-out")
    args = parser.parse_args()

    results = []
    for name in args.scenarios.split(","):
        if name not in SCENARIOS:
            parser.error(f"unknown scenario {name!r} (known: {', '.join(SCENARIOS)})")
        print(f"scenario {name} ...", file=sys.stderr, flush=True)
        results.append(run_scenario(name, args.runs, args.mos, args.seed))

    header = (
        f"{'scenario':<10} {'VMNs':>6} {'keywords':>8} {'aliases':>7} {'parse_config':>12} "
        f"{'compile':>8} {'router MiB':>10} {'µs wall':>8} {'µs CPU':>7} {'(min)':>6}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r['scenario']:<10} {r['vmns']:>6} {r['keywords']:>8} {r['aliases']:>7} "
            f"{r['parse_config_s']:>11.2f}s {r['router_compile_s']:>7.3f}s "
            f"{r['router_mib']:>10.1f} {r['route_wall_us']:>8.2f} {r['route_cpu_us']:>7.2f} "
            f"{r['route_cpu_min_us']:>6.2f}"
        )
    labels = sorted({label for r in results for label in r["route_us_by_route"]})
    print("\nroute() CPU µs per MO by route: median / min of runs (share of the mix)")
    print(f"{'route':<22}" + "".join(f"{r['scenario']:>20}" for r in results))
    for label in labels:
        cells = []
        for r in results:
            cell = r["route_us_by_route"].get(label)
            share = cell["count"] / r["mos"] if cell else 0.0
            cells.append(
                f"{cell['cpu_us']:.2f} / {cell['cpu_min_us']:.2f} ({share:>3.0%})" if cell else ""
            )
        print(f"{label:<22}" + "".join(f"{c:>20}" for c in cells))
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\nload average at the end: {load} ({os.cpu_count()} CPUs)")

    if args.json_out:
        meta = {"python": sys.version.split()[0], "machine": platform.platform()}
        meta.update(runs=args.runs, mos=args.mos, seed=args.seed)
        with open(args.json_out, "w") as f:
            json.dump({"meta": meta, "results": results}, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    main()
