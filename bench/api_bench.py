#!/usr/bin/env python3
"""Does the HTTP API slow the MO path? The durable ack rate (acked MO/s of a burst,
bench/loadgen.py) of one gateway configuration, with `[api]` listening, measured while
the API serves `--api-rate` requests/s (bench/api_load.py, its own process) and while
it serves none. Runs alternate between the two (`--runs` pairs); the figure is the
ratio of the medians, api / quiet (target >= 0.95).

    .venv/bin/python bench/api_bench.py --json-out bench/results-api.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

# bench/ is on sys.path when run as a script
from benchlib import cpu_seconds
from benchlib.cli import add_output, add_runs, bench_parser
from benchlib.procs import REPO_DIR, free_port, stop, wait_bound
from benchlib.results import write_results
from loadgen import LoadServer
from mo_bench import GATEWAY_CONFIG_TEMPLATE

BENCH_DIR = Path(__file__).resolve().parent
VMN = "5551000100"


def gateway_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO_DIR)}


pg_dbs: list[str] = []


async def pg_admin(url: str, sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _first_request(port: int, key: str) -> None:
    import urllib.request

    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/messages?limit=1",
                                 headers={"Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(req, timeout=30) as r:
        r.read()


async def run_once(mode: str, index: int, args: argparse.Namespace) -> dict[str, Any]:
    tmpdir = Path(tempfile.mkdtemp(prefix=f"api_bench_{mode}_{index}_"))
    log = tmpdir / "gateway.log"
    out: dict[str, Any] = {"mode": mode, "run": index}
    proc = None
    load = None
    try:
        async with LoadServer(args.host, 0) as srv:
            api_port = free_port()
            config = GATEWAY_CONFIG_TEMPLATE
            for key, value in (("tmpdir", str(tmpdir)), ("port", str(srv.port)),
                               ("host", args.host)):
                config = config.replace("{" + key + "}", value)
            config += f'\n[api]\nlisten = "127.0.0.1:{api_port}"\n'
            if args.postgres:
                name = f"api_bench_{os.getpid()}_{mode}_{index}"
                await pg_admin(args.postgres, f"CREATE DATABASE {name}")
                pg_dbs.append(name)
                url = args.postgres.rsplit("/", 1)[0] + "/" + name
                config = config.replace(f"sqlite+aiosqlite:///{tmpdir}/bench.db", url)
            cfg = tmpdir / "bench.toml"
            cfg.write_text(config)
            key = subprocess.run(
                [sys.executable, "-m", "gateway", "apikey", "create", "-c", str(cfg), "bench",
                 "--scope", "send,read"], cwd=REPO_DIR, env=gateway_env(), check=True,
                capture_output=True, text=True).stdout.strip()
            with log.open("ab") as f:
                proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "gateway", "run", "-c", str(cfg), cwd=REPO_DIR,
                    env=gateway_env(), stdin=subprocess.DEVNULL, stdout=f, stderr=f,
                    start_new_session=True)
            await wait_bound(srv, proc, 30.0, log)
            warm = await srv.push(args.warmup, args.window, None, 0, 30.0)
            if not warm["complete"]:
                raise RuntimeError(f"warm-up incomplete: {warm['error']}")
            # One request in both modes, so that one-off work of a first request (FastAPI
            # building its handlers' validators, the key's scrypt) is not in either burst:
            # the figure is the API's steady cost.
            await asyncio.to_thread(_first_request, api_port, key)
            if mode == "api":
                stats = tmpdir / "load.json"
                load = subprocess.Popen(
                    [sys.executable, str(BENCH_DIR / "api_load.py"),
                     "--base", f"http://127.0.0.1:{api_port}", "--key", key,
                     "--rate", str(args.api_rate), "--from", VMN, "--stats", str(stats),
                     "--mix", args.mix],
                    cwd=REPO_DIR)
                await asyncio.sleep(args.load_lead)  # the load is steady when the burst starts
            cpu0 = cpu_seconds(proc.pid)
            load_cpu0 = cpu_seconds(load.pid) if load is not None else None
            thr = await srv.push(args.count, args.window, None, 0, 30.0)
            cpu1 = cpu_seconds(proc.pid)
            load_cpu1 = cpu_seconds(load.pid) if load is not None else None
            # CPU per MO does not depend on what else shares the cores: the API's own
            # cost in the gateway, apart from the load client's (measured separately)
            if cpu0 is not None and cpu1 is not None:
                out["gateway_cpu_ms_per_mo"] = round((cpu1 - cpu0) * 1000 / args.count, 4)
            if load_cpu0 is not None and load_cpu1 is not None:
                out["client_cores"] = round((load_cpu1 - load_cpu0) / thr["duration"], 3)
            if not thr["complete"]:
                raise RuntimeError(f"burst incomplete: {thr['error']}")
            out["acked_per_s"] = thr["rate"]
            out["burst_s"] = thr["duration"]
            out["ack_p50_ms"] = thr["p50_ms"]
            out["acked_error"] = thr["acked_error"]
            if load is not None:
                load.send_signal(signal.SIGTERM)
                load.wait(30)
                out["api"] = json.loads((tmpdir / "load.json").read_text())
                load = None
            await srv.unbind(timeout=2.0)
        out["ok"] = True
    except Exception as exc:  # one failed run is reported, the others still run
        out["ok"] = False
        out["error"] = f"{type(exc).__name__}: {exc}"
        out["log"] = str(log)
    finally:
        if load is not None:
            load.kill()
        if proc is not None:
            await stop(proc, 10.0)
        if out.get("ok") and not args.keep_tmp:
            shutil.rmtree(tmpdir, ignore_errors=True)
        else:
            out["tmpdir"] = str(tmpdir)
    return out


async def amain(args: argparse.Namespace) -> int:
    runs: list[dict[str, Any]] = []
    for i in range(1, args.runs + 1):
        # Alternate which goes first: drift on a shared machine hits both alike.
        for mode in (("quiet", "api") if i % 2 else ("api", "quiet")):
            r = await run_once(mode, i, args)
            runs.append(r)
            api = r.get("api") or {}
            print(f"[{mode} {i}/{args.runs}] "
                  + (f"{r['acked_per_s']:,.0f} MO/s, gateway CPU "
                     f"{r.get('gateway_cpu_ms_per_mo')} ms/MO, client cores {r.get('client_cores')}"
                     if r["ok"] else f"FAILED: {r['error']}")
                  + (f", API {api.get('rate')} req/s {api.get('by_status')} "
                     f"p50 {api.get('p50_ms')} ms p99 {api.get('p99_ms')} ms" if api else ""),
                  flush=True)
    for name in pg_dbs:
        await pg_admin(args.postgres, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    med = {m: statistics.median([r["acked_per_s"] for r in runs if r["mode"] == m and r["ok"]]
                                or [float("nan")]) for m in ("quiet", "api")}
    ratio = med["api"] / med["quiet"] if med["quiet"] else float("nan")
    cpu = {m: statistics.median([r["gateway_cpu_ms_per_mo"] for r in runs if r["mode"] == m
                                 and r["ok"] and "gateway_cpu_ms_per_mo" in r]
                                or [float("nan")]) for m in ("quiet", "api")}
    print(f"median gateway CPU ms/MO over the burst: quiet {cpu['quiet']}, api {cpu['api']}")
    print(f"median acked MO/s: quiet {med['quiet']:,.0f}, with the API at "
          f"{args.api_rate:g} req/s {med['api']:,.0f}; ratio {ratio:.3f} (target >= 0.95)")
    if args.json_out:
        write_results(args.json_out, vars(args), median_acked_per_s=med,
                      median_gateway_cpu_ms_per_mo=cpu,
                      ratio_api_over_quiet=round(ratio, 4), runs=runs)
    return 0 if all(r["ok"] for r in runs) else 1


def main() -> int:
    p = bench_parser(__doc__)
    add_runs(p, help="pairs of runs (median)", short=False)
    p.add_argument("--count", type=int, default=30_000, help="deliver_sm in the burst")
    p.add_argument("--window", type=int, default=1000)
    p.add_argument("--warmup", type=int, default=2000)
    p.add_argument("--api-rate", type=float, default=200.0, help="HTTP requests/s")
    p.add_argument("--load-lead", type=float, default=2.0,
                   help="seconds of API load before the burst starts")
    p.add_argument("--mix", choices=["read", "send", "404"], default="read",
                   help="the requests (bench/api_load.py): reads only, or with sends")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--postgres", metavar="URL",
                   help="a PostgreSQL URL (e.g. postgresql+asyncpg://postgres@127.0.0.1/test):"
                        " each run gets a new database beside it instead of SQLite")
    add_output(p)
    return asyncio.run(amain(p.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
