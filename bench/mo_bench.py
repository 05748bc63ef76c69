#!/usr/bin/env python3
"""MO benchmark orchestrator: the gateway against a do-nothing ESME baseline.

For each target (``baseline`` = bench/null_esme.py, ``gateway`` = the command given by
``--gateway-cmd``) it does K runs (``--runs``, default 3). One run:

1. starts a fresh LoadServer (bench/loadgen.py, this process) on an ephemeral port;
2. for the gateway, writes a TOML config into a fresh temp dir (see
   GATEWAY_CONFIG_TEMPLATE below), runs the optional ``--gateway-setup-cmd``;
3. starts the target as a subprocess and waits (``--bind-timeout``) for it to bind;
4. latency phase: ``--warmup`` unmeasured deliver_sm, then ``--lat-count`` deliver_sm
   paced at ``--lat-rate`` per second -> p50/p99/max ack latency;
5. throughput phase: ``--count`` deliver_sm, unlimited rate, ``--window`` outstanding
   -> acked MO/s (acked OK / (last ack - first send));
6. samples peak RSS (VmHWM from /proc/<pid>/status, summed over the target's process
   tree), unbinds, stops the target (SIGTERM, then SIGKILL after ``--stop-timeout``).

The latency phase runs first so that a gateway still busy with the 50,000-message
burst (e.g. flushing or forwarding) cannot skew it; it also warms the target up.

It prints a table of the medians over the runs and the gateway/baseline ratios, and
writes everything (every run's full loadgen reports) as JSON to ``--json-out``.

    .venv/bin/python bench/mo_bench.py --targets baseline
    .venv/bin/python bench/mo_bench.py --gateway-cmd ".venv/bin/vmn-gateway run -c {config}" \\
        --json-out bench/results.json
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import shutil
import statistics
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# bench/ is on sys.path when run as a script
from benchlib.cli import add_host, add_load, add_output, add_runs, add_timeouts, bench_parser
from benchlib.measure import tree_hwm_kib
from benchlib.procs import TargetError, command, run_setup, spawn, stop, wait_bound
from benchlib.results import write_results
from loadgen import LoadServer, PushError

BENCH_DIR = Path(__file__).resolve().parent

# ======================================================================================
# GATEWAY CONFIG TEMPLATE -- adapt here (or pass --gateway-config-template FILE).
# Placeholders, replaced textually (TOML braces elsewhere are left alone):
#   {tmpdir}  the run's fresh temp dir      {port}  the load generator's SMPP port
#   {host}    the load generator's host
# ======================================================================================
GATEWAY_CONFIG_TEMPLATE = """\
[gateway]
name = "bench"
database = "sqlite+aiosqlite:///{tmpdir}/bench.db"

[[smsc]]
name = "bench"
host = "{host}"
port = {port}
system_id = "bench"
password = "bench"
enquire_link_interval = 30

[[number]]
vmn = "5551000100"
[number.default]
"""

# Command templates. Placeholders (str.format): {python} this interpreter, {host},
# {port}, {config} the written config file, {tmpdir}. Run without a shell, cwd = repo.
BASELINE_CMD = "{python} bench/null_esme.py --host {host} --port {port}"
GATEWAY_CMD = ".venv/bin/vmn-gateway run -c {config}"

TARGETS = ("baseline", "gateway")


@dataclass
class RunResult:
    target: str
    run: int
    ok: bool = False
    error: str | None = None
    bind_s: float | None = None
    latency: dict[str, Any] | None = None
    throughput: dict[str, Any] | None = None
    rss_kib: int | None = None
    exit_code: int | None = None
    log: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "run": self.run,
            "ok": self.ok,
            "error": self.error,
            "bind_s": self.bind_s,
            "latency": self.latency,
            "throughput": self.throughput,
            "rss_kib": self.rss_kib,
            "exit_code": self.exit_code,
            "log": self.log,
            **self.extra,
        }


# --- one run -----------------------------------------------------------------------
async def run_once(target: str, index: int, args: argparse.Namespace) -> RunResult:
    result = RunResult(target, index)
    tmpdir = Path(tempfile.mkdtemp(prefix=f"mo_bench_{target}_{index}_"))
    log = tmpdir / f"{target}.log"
    result.log = str(log)
    proc: asyncio.subprocess.Process | None = None
    try:
        async with LoadServer(args.host, 0) as srv:
            values = {
                "python": sys.executable,
                "host": args.host,
                "port": str(srv.port),
                "tmpdir": str(tmpdir),
                "config": str(tmpdir / "bench.toml"),
            }
            if target == "gateway":
                template = (
                    Path(args.gateway_config_template).read_text(encoding="utf-8")
                    if args.gateway_config_template
                    else GATEWAY_CONFIG_TEMPLATE
                )
                config = template
                for key in ("tmpdir", "port", "host"):
                    config = config.replace("{" + key + "}", values[key])
                Path(values["config"]).write_text(config, encoding="utf-8")
                if args.gateway_setup_cmd:
                    await run_setup(
                        command(args.gateway_setup_cmd, **values), log, args.bind_timeout
                    )
                cmd = command(args.gateway_cmd, **values)
            else:
                cmd = command(args.baseline_cmd, **values)
            result.extra["cmd"] = shlex.join(cmd)
            proc = await spawn(cmd, log)
            result.bind_s = round(await wait_bound(srv, proc, args.bind_timeout, log), 3)

            lat = await srv.push(
                args.lat_count, args.window, args.lat_rate, args.warmup, args.stall_timeout
            )
            result.latency = lat
            if not lat["complete"]:
                raise TargetError(f"latency phase incomplete: {lat['error']}")
            thr = await srv.push(args.count, args.window, None, 0, args.stall_timeout)
            result.throughput = thr
            if not thr["complete"]:
                raise TargetError(f"throughput phase incomplete: {thr['error']}")
            if proc.returncode is not None:
                raise TargetError(f"target exited with code {proc.returncode} during the run")
            result.rss_kib = tree_hwm_kib(proc.pid)
            await srv.unbind(timeout=2.0)
            errors = lat["acked_error"] + thr["acked_error"]
            result.ok = True
            if errors:
                result.extra["warning"] = f"{errors} error responses"
    except (TargetError, PushError) as exc:
        result.error = str(exc)
    except OSError as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        if proc is not None:
            if result.rss_kib is None and proc.returncode is None:
                result.rss_kib = tree_hwm_kib(proc.pid)
            result.exit_code = await stop(proc, args.stop_timeout)
        if result.ok and not args.keep_tmp:
            shutil.rmtree(tmpdir, ignore_errors=True)
            result.log = None
    return result


# --- summary -----------------------------------------------------------------------
METRICS: dict[str, str] = {
    # key: label
    "acked_per_s": "acked MO/s",
    "lat_p50_ms": "p50 ms",
    "lat_p99_ms": "p99 ms",
    "lat_max_ms": "max ms",
    "burst_p50_ms": "burst p50 ms",
    "rss_mib": "peak RSS MiB",
}


def _metrics(r: RunResult) -> dict[str, float]:
    assert r.latency is not None and r.throughput is not None and r.rss_kib is not None
    return {
        "acked_per_s": r.throughput["rate"],
        "lat_p50_ms": r.latency["p50_ms"],
        "lat_p99_ms": r.latency["p99_ms"],
        "lat_max_ms": r.latency["max_ms"],
        "burst_p50_ms": r.throughput["p50_ms"],
        "rss_mib": round(r.rss_kib / 1024, 1),
    }


def summarise(runs: list[RunResult]) -> dict[str, Any]:
    good = [_metrics(r) for r in runs if r.ok]
    median: dict[str, float] | None = None
    if good:
        median = {k: round(statistics.median(m[k] for m in good), 3) for k in METRICS}
    return {"runs_ok": len(good), "runs": len(runs), "median": median, "per_run": good}


def _fmt(key: str, value: float | None) -> str:
    if value is None:
        return "-"
    if key == "acked_per_s":
        return f"{value:,.0f}"
    return f"{value:.3f}" if key.endswith("_ms") else f"{value:.1f}"


def print_table(
    summary: dict[str, dict[str, Any]], ratio: dict[str, float] | None, args: argparse.Namespace
) -> None:
    print()
    print(
        f"MO bench: throughput = {args.count:,} deliver_sm unlimited, window {args.window}; "
        f"latency = {args.lat_count:,} paced at {args.lat_rate:,.0f}/s; "
        f"median of {args.runs} run(s)"
    )
    header = ["target", "runs ok", *METRICS.values()]
    rows: list[list[str]] = []
    for target, s in summary.items():
        med = s["median"] or {}
        rows.append(
            [target, f"{s['runs_ok']}/{s['runs']}", *(_fmt(k, med.get(k)) for k in METRICS)]
        )
    if ratio is not None:
        rows.append(["gateway/baseline", "", *(f"{ratio[k]:.3f}x" for k in METRICS)])
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print(
        "  ".join(
            h.rjust(w) if i else h.ljust(w)
            for i, (h, w) in enumerate(zip(header, widths, strict=True))
        )
    )
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print(
            "  ".join(
                c.rjust(w) if i else c.ljust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    print(
        "(p50/p99/max: ack latency at the paced rate; burst p50: ack latency during the "
        "unlimited run; peak RSS: VmHWM of the ESME process tree)"
    )


async def amain(args: argparse.Namespace) -> int:
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    for t in targets:
        if t not in TARGETS:
            print(
                f"mo_bench: unknown target {t!r} (choose from {', '.join(TARGETS)})",
                file=sys.stderr,
            )
            return 2
    all_runs: dict[str, list[RunResult]] = {}
    failed = False
    for target in targets:
        runs: list[RunResult] = []
        for i in range(1, args.runs + 1):
            r = await run_once(target, i, args)
            runs.append(r)
            if r.ok:
                m = _metrics(r)
                print(
                    f"[{target} {i}/{args.runs}] {m['acked_per_s']:,.0f} MO/s, "
                    f"p50 {m['lat_p50_ms']:.3f} ms, p99 {m['lat_p99_ms']:.3f} ms, "
                    f"RSS {m['rss_mib']:.1f} MiB"
                    + (f"  WARNING: {r.extra['warning']}" if "warning" in r.extra else ""),
                    flush=True,
                )
            else:
                failed = True
                print(f"[{target} {i}/{args.runs}] FAILED: {r.error}", flush=True)
                if args.fail_fast:
                    break
        all_runs[target] = runs
    summary = {t: summarise(rs) for t, rs in all_runs.items()}
    ratio: dict[str, float] | None = None
    base = summary.get("baseline", {}).get("median")
    gw = summary.get("gateway", {}).get("median")
    if base and gw:
        ratio = {k: round(gw[k] / base[k], 4) if base[k] else float("nan") for k in METRICS}
    print_table(summary, ratio, args)
    if args.json_out:
        write_results(
            args.json_out,
            {
                k: getattr(args, k)
                for k in (
                    "targets",
                    "runs",
                    "count",
                    "window",
                    "warmup",
                    "lat_count",
                    "lat_rate",
                    "gateway_cmd",
                    "gateway_setup_cmd",
                    "baseline_cmd",
                )
            },
            summary=summary,
            ratio_gateway_over_baseline=ratio,
            runs={t: [r.as_dict() for r in rs] for t, rs in all_runs.items()},
        )
        print(f"results written to {args.json_out}")
    if failed:
        print("mo_bench: some runs FAILED (see above)", file=sys.stderr)
    return 1 if failed else 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = bench_parser(__doc__)
    p.add_argument(
        "--targets",
        default="baseline,gateway",
        help="comma list of: baseline, gateway (default: both)",
    )
    add_runs(p)
    add_load(
        p,
        count=50_000,
        count_help="throughput deliver_sm",
        warmup_help="unmeasured deliver_sm before the latency phase",
        lat_count_help="latency-phase deliver_sm",
        lat_rate_help="latency-phase MO/s",
    )
    add_host(p)
    p.add_argument(
        "--gateway-cmd", default=GATEWAY_CMD, help="gateway command template (default: %(default)r)"
    )
    p.add_argument(
        "--gateway-setup-cmd",
        default=None,
        help="optional command run before the gateway (e.g. a DB migration)",
    )
    p.add_argument(
        "--gateway-config-template",
        default=None,
        help="TOML template file to use instead of GATEWAY_CONFIG_TEMPLATE",
    )
    p.add_argument(
        "--baseline-cmd",
        default=BASELINE_CMD,
        help="baseline command template (default: %(default)r)",
    )
    add_timeouts(p, stall_help="abort a phase after this long without a response")
    add_output(p)
    p.add_argument(
        "--fail-fast", action="store_true", help="stop a target's runs at its first failure"
    )
    args = p.parse_args(argv)
    if args.runs < 1 or args.count < 1 or args.window < 1 or args.lat_count < 1:
        p.error("--runs, --count, --window and --lat-count must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return asyncio.run(amain(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
