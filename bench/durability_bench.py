#!/usr/bin/env python3
"""The durability sweep of docs/PERFORMANCE.md: `[gateway] durability` (power-loss,
crash) x SMSC window (10, 50, 200) x backend (SQLite, PostgreSQL), acks mode (one number,
no actions), with Kannel's bearerbox at each window in the same run (bench/vs_kannel.py
does the runs: round-robin, medians of --runs). Extra PostgreSQL variants, also in the
same run: ``--pg-commits`` (pg_intake_commits values, default 1 and 4) and
``--pg-commit-delay`` (commit_delay values on the run's database, default none and 100
us).

It prints the vs_kannel table, then the same as a Markdown table (``--markdown FILE``
writes it to a file too), and the JSON of every run with ``--json-out``.

    .venv/bin/python bench/durability_bench.py --runs 3 --json-out /tmp/durability.json
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import vs_kannel
from benchlib.cli import bench_parser
from kannel import KannelError, ensure_kannel


def markdown(doc: dict[str, Any]) -> str:
    summary: dict[str, Any] = doc["summary"]
    ratio: dict[str, Any] = doc["ratio_over_kannel"]
    lines = [
        "| window | backend | durability | variant | acks/s | burst p99 ms | paced p99 ms "
        "| Kannel acks/s | ÷ Kannel |",
        "| ---: | --- | --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for key in doc["cells"]:
        mode, window, target = key.split("/", 2)
        if target == "kannel":
            continue
        parts = target.split("/")  # gateway/backend[/durability][/cN][/cdN]
        backend = parts[1]
        durability = next((p for p in parts[2:] if p in ("power-loss", "crash")), "default")
        variant = " ".join(p for p in parts[2:] if p not in ("power-loss", "crash")) or "-"
        med = summary[key]["median"]
        kannel = summary.get(f"{mode}/{window}/kannel", {}).get("median") or {}
        r = (ratio.get(key) or {}).get("acks_per_s")

        def num(v: float | None, fmt: str) -> str:
            return "-" if v is None else format(v, fmt)

        lines.append(
            f"| {window[1:]} | {backend} | {durability} | {variant} "
            f"| {num(med.get('acks_per_s'), ',.0f')} | {num(med.get('burst_p99_ms'), '.1f')} "
            f"| {num(med.get('paced_p99_ms'), '.1f')} "
            f"| {num(kannel.get('acks_per_s'), ',.0f')} | {num(r, '.2f')} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = bench_parser(__doc__)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--windows", nargs="+", type=int, default=[10, 50, 200])
    ap.add_argument("--backends", nargs="+", default=["sqlite", "postgres"])
    ap.add_argument("--durability", nargs="+", default=["power-loss", "crash"])
    ap.add_argument("--pg-commits", nargs="+", type=int, default=[1, 4])
    ap.add_argument("--pg-commit-delay", nargs="*", type=int, default=None)
    ap.add_argument("--count", type=int, default=10_000)
    ap.add_argument("--json-out", default=None)
    ap.add_argument("--markdown", default=None, help="write the Markdown table here too")
    args, rest = ap.parse_known_args(argv)
    json_out = args.json_out or str(
        Path(tempfile.gettempdir()) / f"durability_bench_{os.getpid()}.json"
    )
    vk_argv = [
        "--modes", "acks",
        "--runs", str(args.runs),
        "--count", str(args.count),
        "--windows", *map(str, args.windows),
        "--backends", *args.backends,
        "--durability", *args.durability,
        "--pg-commits", *map(str, args.pg_commits),
        "--json-out", json_out,
        *rest,
    ]  # fmt: skip
    if args.pg_commit_delay:
        vk_argv += ["--pg-commit-delay", *map(str, args.pg_commit_delay)]
    vk = vs_kannel.parse_args(vk_argv)
    if not vk.no_kannel:
        try:
            vk.kannel = ensure_kannel(install=not vk.no_install)
        except KannelError as exc:
            print(f"durability_bench: {exc}", file=sys.stderr)
            return 2
    rc = asyncio.run(vs_kannel.amain(vk))
    doc = json.loads(Path(json_out).read_text(encoding="utf-8"))
    table = markdown(doc)
    print()
    print(table)
    if args.markdown:
        Path(args.markdown).write_text(table, encoding="utf-8")
    return rc


if __name__ == "__main__":
    sys.exit(main())
