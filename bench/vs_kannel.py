#!/usr/bin/env python3
"""vmn-gateway against Kannel, same generator, same run.

The SMSC side is bench/loadgen.py (this process). Each *cell* is a target in a mode at an
SMSC window:

* targets: ``kannel`` (bearerbox, + smsbox in webhook mode; bench/kannel.py) and
  ``gateway`` (``vmn-gateway run``), the latter once per ``--backends`` x
  ``--durability`` variant (``gateway/sqlite``, ``gateway/postgres/crash``, ...);
* modes: ``acks`` (Kannel: bearerbox acking deliver_sm; gateway: one number, no actions)
  and ``webhook`` (Kannel: smsbox ``sms-service`` with ``post-url`` to the sink; gateway:
  ``webhook =`` on the number's default configuration, the same sink, bench/sink.py);
* windows: ``--windows`` (max deliver_sm outstanding at the SMSC).

Runs go round-robin (run 1 of every cell, then run 2 ...) so that load drifting on the
shared machine hits every cell alike. One run of a cell: fresh temp dir, generator, sink
and target; ``--warmup`` MOs (webhook mode: until the sink has them all); *burst*:
``--count`` MOs unlimited -> acks/s and burst p99 ack latency; webhook mode: wait until
the sink has every burst MO -> MO->sink rate (MOs / (last delivery - first send));
*paced*: ``--lat-count`` MOs at ``--lat-rate``/s -> p99 ack latency at that rate (0 to
skip). Peak RSS: ``RSS MiB`` sums the VmHWM of the target's process tree (the gateway and its
action workers; bearerbox + smsbox), ``main RSS`` is the gateway daemon (bearerbox) alone.
Medians over ``--runs`` (>= 3 for a figure you quote), and per mode and window the
ratio of each gateway variant to Kannel.

    bench/vs_kannel.sh                                   # acks + webhook, window 50
    .venv/bin/python bench/vs_kannel.py --modes acks --windows 10 50 200 \\
        --backends sqlite postgres --durability power-loss crash --json-out /tmp/x.json
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import shutil
import statistics
import sys
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# bench/ is on sys.path when run as a script
from benchlib.cli import add_host, add_load, add_output, add_runs, add_timeouts, bench_parser
from benchlib.load import Phase, TimedLoadServer, deliveries, push, wait_delivered
from benchlib.measure import tree_hwm_kib, vm_hwm_kib
from benchlib.procs import TargetError, spawn, stop, wait_bound
from benchlib.receivers import Helper
from benchlib.results import write_results
from kannel import KannelError, KannelRun, ensure_kannel
from loadgen import PushError

BENCH_DIR = Path(__file__).resolve().parent
VMN = "5551000100"
# "webhook+mqtt": the gateway also publishes every MO to MQTT (the broker of
# --mqtt-host/--mqtt-port); Kannel has no MQTT, so its reference is its webhook cell.
MODES = ("acks", "webhook", "webhook+mqtt")
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"

GATEWAY_CONFIG = """\
[gateway]
name = "bench"
database = "{database}"
{gateway_extra}
[[smsc]]
name = "bench"
host = "{host}"
port = {port}
system_id = "bench"
password = "bench"
enquire_link_interval = 30

[[number]]
vmn = "{vmn}"
[number.default]
{number_extra}"""


@dataclass(frozen=True)
class Target:
    """``kannel``, or the gateway on a backend with an optional durability setting."""

    kind: str  # "kannel" | "gateway"
    backend: str = "sqlite"
    durability: str | None = None
    pg_commits: int | None = None  # [gateway] pg_intake_commits (None: the default)
    pg_commit_delay: int | None = None  # commit_delay (us) set on the run's database

    @property
    def name(self) -> str:
        if self.kind == "kannel":
            return "kannel"
        parts = ["gateway", self.backend]
        if self.durability:
            parts.append(self.durability)
        if self.pg_commits is not None:
            parts.append(f"c{self.pg_commits}")
        if self.pg_commit_delay is not None:
            parts.append(f"cd{self.pg_commit_delay}")
        return "/".join(parts)


@dataclass(frozen=True)
class Cell:
    mode: str
    window: int
    target: Target

    @property
    def key(self) -> str:
        return f"{self.mode}/w{self.window}/{self.target.name}"


@dataclass
class RunResult:
    cell: str
    run: int
    ok: bool = False
    error: str | None = None
    log: str | None = None
    phases: dict[str, dict[str, Any]] = field(default_factory=dict)
    sink: dict[str, Any] = field(default_factory=dict)
    rss_kib: int | None = None
    main_rss_kib: int | None = None  # the target's main process alone (the daemon)
    warnings: list[str] = field(default_factory=list)

    def metrics(self) -> dict[str, float | None]:
        burst = self.phases.get("burst", {})
        paced = self.phases.get("paced", {})
        sink = self.sink.get("burst", {})
        sink_paced = self.sink.get("paced", {})
        return {
            "hook_paced_p50_ms": sink_paced.get("p50_ms") if sink_paced.get("complete") else None,
            "hook_paced_p99_ms": sink_paced.get("p99_ms") if sink_paced.get("complete") else None,
            "acks_per_s": burst.get("rate"),
            "burst_p99_ms": burst.get("p99_ms"),
            "paced_p99_ms": paced.get("p99_ms"),
            "sink_per_s": sink.get("drain_per_s") if sink.get("complete") else None,
            "rss_mib": round(self.rss_kib / 1024, 1) if self.rss_kib else None,
            "main_rss_mib": round(self.main_rss_kib / 1024, 1) if self.main_rss_kib else None,
        }


# --- PostgreSQL: a fresh database per gateway run ----------------------------------------
async def _pg(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def create_pg_db(commit_delay: int | None = None) -> tuple[str, str]:
    """A fresh database; with `commit_delay` (microseconds) its sessions wait that long
    before a WAL flush when `commit_siblings` (2) other transactions are active, so that
    one flush covers more commits (superuser only, hence set here, not by the gateway)."""
    name = f"vs_kannel_{uuid.uuid4().hex[:12]}"
    await _pg(f'CREATE DATABASE "{name}"')
    if commit_delay is not None:
        await _pg(f'ALTER DATABASE "{name}" SET commit_delay = {int(commit_delay)}')
        await _pg(f'ALTER DATABASE "{name}" SET commit_siblings = 2')
    base = PG_ADMIN.replace("postgresql:", "postgresql+asyncpg:").rsplit("/", 1)[0]
    return name, f"{base}/{name}"


async def drop_pg_db(name: str) -> None:
    try:
        await _pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    except Exception as exc:  # best effort clean-up, reported
        print(f"vs_kannel: could not drop database {name}: {exc}", file=sys.stderr)


# --- one run -----------------------------------------------------------------------------
def gateway_config(
    target: Target, database: str, host: str, port: int, hook_url: str | None,
    mqtt: tuple[str, int] | None = None, action_workers: int = 0,
) -> str:
    extra = f'durability = "{target.durability}"\n' if target.durability else ""
    if action_workers:
        extra += f"action_workers = {action_workers}\n"
    if target.pg_commits is not None:
        extra += f"pg_intake_commits = {target.pg_commits}\n"
    return GATEWAY_CONFIG.format(
        database=database,
        gateway_extra=extra,
        host=host,
        port=port,
        vmn=VMN,
        number_extra=f'webhook = "{hook_url}"\n' if hook_url else "",
    ) + ("" if mqtt is None else (
        f'\n[mqtt]\nurl = "mqtt://{mqtt[0]}:{mqtt[1]}"\n'
        f'topic_prefix = "vs-kannel-{uuid.uuid4().hex[:10]}"\n'
        f'client_id = "vs-kannel-{uuid.uuid4().hex[:10]}"\n'))


async def run_once(cell: Cell, index: int, args: argparse.Namespace) -> RunResult:
    result = RunResult(cell.key, index)
    tmpdir = Path(tempfile.mkdtemp(prefix=f"vs_kannel_{cell.key.replace('/', '_')}_{index}_"))
    log = tmpdir / "target.log"
    result.log = str(log)
    proc: asyncio.subprocess.Process | None = None
    kannel: KannelRun | None = None
    sink: Helper | None = None
    pg_db: str | None = None
    try:
        async with TimedLoadServer(args.host, 0) as srv:
            hook_url: str | None = None
            if cell.mode != "acks":
                sink, info = await Helper.start(
                    "sink", [sys.executable, str(BENCH_DIR / "sink.py"), "--server",
                             args.sink_server], tmpdir / "sink.log"
                )
                hook_url = f"http://127.0.0.1:{info['port']}/hook"
            if cell.target.kind == "kannel":
                kannel = KannelRun(
                    args.kannel,
                    tmpdir,
                    srv.port,
                    sink_url=hook_url,
                    smsc_host=args.host,
                    http_method=args.kannel_http,
                    stop_timeout=args.stop_timeout,
                )
                await kannel.start()
                proc = kannel.bearerbox
                log = kannel.log
            else:
                if cell.target.backend == "postgres":
                    pg_db, database = await create_pg_db(cell.target.pg_commit_delay)
                else:
                    database = f"sqlite+aiosqlite:///{tmpdir}/bench.db"
                config = tmpdir / "bench.toml"
                config.write_text(
                    gateway_config(
                        cell.target, database, args.host, srv.port, hook_url,
                        (args.mqtt_host, args.mqtt_port) if cell.mode == "webhook+mqtt"
                        else None, args.action_workers),
                    encoding="utf-8",
                )
                cmd = [*shlex.split(args.gateway_cmd), "run", "-c", str(config)]
                proc = await spawn(cmd, log)
            assert proc is not None
            await wait_bound(srv, proc, args.bind_timeout, log)
            received = 0

            async def drain(label: str, phase: Phase | None) -> None:
                if sink is None:
                    return
                state = await wait_delivered(
                    [sink], received, args.drain_timeout, args.stall_timeout
                )
                if not state["sink"]["complete"]:
                    result.warnings.append(
                        f"{label}: sink got {state['sink']['unique']}/{received} MOs"
                    )
                if phase is not None:
                    dump = await sink.request("dump", timeout=60.0)
                    result.sink[label] = deliveries(dump["records"], phase)

            if args.warmup:
                warm = await push(srv, "warmup", args.warmup, cell.window, None, args.stall_timeout)
                result.phases["warmup"] = warm.report
                received += args.warmup
                await drain("warmup", None)
            burst = await push(srv, "burst", args.count, cell.window, None, args.stall_timeout)
            result.phases["burst"] = burst.report
            received += args.count
            await drain("burst", burst)
            if args.lat_count:
                paced = await push(
                    srv, "paced", args.lat_count, cell.window, args.lat_rate, args.stall_timeout
                )
                result.phases["paced"] = paced.report
                received += args.lat_count
                await drain("paced", paced)
            if proc.returncode is not None:
                raise TargetError(f"target exited with code {proc.returncode} during the run")
            result.rss_kib = (
                sum(tree_hwm_kib(p.pid) or 0 for p in kannel.processes)
                if kannel
                else tree_hwm_kib(proc.pid)
            )
            result.main_rss_kib = (
                vm_hwm_kib(kannel.processes[0].pid) if kannel else vm_hwm_kib(proc.pid))
            await srv.unbind(timeout=2.0)
            errors = sum(p["acked_error"] for p in result.phases.values())
            if errors:
                result.warnings.append(f"{errors} error responses")
            result.ok = True
    except (TargetError, PushError, KannelError) as exc:
        result.error = str(exc)
    except OSError as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        if kannel is not None:
            await kannel.stop()
        elif proc is not None:
            await stop(proc, args.stop_timeout)
        if sink is not None:
            await sink.stop()
        if pg_db is not None:
            await drop_pg_db(pg_db)
        if result.ok and not args.keep_tmp:
            shutil.rmtree(tmpdir, ignore_errors=True)
            result.log = None
    return result


# --- summary -----------------------------------------------------------------------------
COLUMNS = (
    ("acks/s", "acks_per_s", "rate"),
    ("burst p99 ms", "burst_p99_ms", "ms"),
    ("paced p99 ms", "paced_p99_ms", "ms"),
    ("MO->sink/s", "sink_per_s", "rate"),
    ("hook p50 paced", "hook_paced_p50_ms", "ms"),
    ("hook p99 paced", "hook_paced_p99_ms", "ms"),
    ("RSS MiB", "rss_mib", "mib"),
    ("main RSS", "main_rss_mib", "mib"),
)


def summarise(runs: list[RunResult]) -> dict[str, Any]:
    good = [r.metrics() for r in runs if r.ok]
    median: dict[str, float | None] = {}
    for key in (c[1] for c in COLUMNS):
        vals = [v for m in good if (v := m.get(key)) is not None]
        median[key] = round(statistics.median(vals), 3) if vals else None
    return {"runs_ok": len(good), "runs": len(runs), "median": median, "per_run": good}


def ratios(cells: list[Cell], summary: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per gateway cell: acks/s and MO->sink/s over Kannel's in the same mode and window."""
    out: dict[str, dict[str, Any]] = {}
    for cell in cells:
        if cell.target.kind != "gateway":
            continue
        mode = "webhook" if cell.mode == "webhook+mqtt" else cell.mode
        ref = summary.get(Cell(mode, cell.window, Target("kannel")).key)
        if ref is None:
            continue
        mine, theirs = summary[cell.key]["median"], ref["median"]
        out[cell.key] = {
            k: round(mine[k] / theirs[k], 3) if mine.get(k) and theirs.get(k) else None
            for k in ("acks_per_s", "sink_per_s")
        }
    return out


def _fmt(v: float | None, kind: str) -> str:
    if v is None:
        return "-"
    if kind == "rate":
        return f"{v:,.0f}"
    if kind == "ms":
        return f"{v:.2f}"
    return f"{v:.1f}"


def print_table(
    cells: list[Cell], summary: dict[str, dict[str, Any]], rat: dict[str, dict[str, Any]]
) -> None:
    header = [
        "mode",
        "window",
        "target",
        "ok",
        *(c[0] for c in COLUMNS),
        "acks/Kannel",
        "sink/Kannel",
    ]
    rows = []
    for cell in cells:
        s = summary[cell.key]
        r = rat.get(cell.key, {})
        rows.append(
            [
                cell.mode,
                str(cell.window),
                cell.target.name,
                f"{s['runs_ok']}/{s['runs']}",
                *(_fmt(s["median"].get(k), kind) for _, k, kind in COLUMNS),
                f"{r['acks_per_s']:.2f}x" if r.get("acks_per_s") else "",
                f"{r['sink_per_s']:.2f}x" if r.get("sink_per_s") else "",
            ]
        )
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    for line in (header, ["-" * w for w in widths], *rows):
        print(
            "  ".join(
                c.rjust(w) if i > 2 else c.ljust(w)
                for i, (c, w) in enumerate(zip(line, widths, strict=True))
            )
        )


def build_cells(args: argparse.Namespace) -> list[Cell]:
    variants = []
    for backend in args.backends:
        for d in args.durability or [None]:
            if backend != "postgres":
                variants.append(Target("gateway", backend, d))
                continue
            for c in args.pg_commits or [None]:
                for cd in args.pg_commit_delay or [None]:
                    variants.append(Target("gateway", backend, d, c, cd))
    cells = []
    for mode in args.modes:
        for window in args.windows:
            if not args.no_kannel and mode != "webhook+mqtt":
                cells.append(Cell(mode, window, Target("kannel")))
            cells.extend(Cell(mode, window, v) for v in variants)
    return cells


async def amain(args: argparse.Namespace) -> int:
    cells = build_cells(args)
    runs: dict[str, list[RunResult]] = {c.key: [] for c in cells}
    failed = False
    for i in range(1, args.runs + 1):
        for cell in cells:
            r = await run_once(cell, i, args)
            runs[cell.key].append(r)
            tag = f"[{cell.key} {i}/{args.runs}]"
            if not r.ok:
                failed = True
                print(f"{tag} FAILED: {r.error} (log {r.log})", flush=True)
                continue
            m = r.metrics()
            line = (
                f"{tag} {_fmt(m['acks_per_s'], 'rate')} acks/s, burst p99 "
                f"{_fmt(m['burst_p99_ms'], 'ms')} ms, paced p99 "
                f"{_fmt(m['paced_p99_ms'], 'ms')} ms"
            )
            if cell.mode != "acks":
                line += f", MO->sink {_fmt(m['sink_per_s'], 'rate')}/s"
            if r.warnings:
                line += "  WARNING: " + "; ".join(r.warnings)
            print(line, flush=True)
    summary = {key: summarise(rs) for key, rs in runs.items()}
    rat = ratios(cells, summary)
    print(
        f"\nvs Kannel: burst {args.count:,} MOs unlimited; paced {args.lat_count:,} at "
        f"{args.lat_rate:,.0f}/s; warm-up {args.warmup:,}; median of {args.runs} run(s)"
    )
    print_table(cells, summary, rat)
    if args.json_out:
        params = {
            k: (str(v) if k == "kannel" else v) for k, v in vars(args).items() if k != "json_out"
        }
        write_results(
            args.json_out,
            params,
            cells=[c.key for c in cells],
            summary=summary,
            ratio_over_kannel=rat,
            runs={k: [r.__dict__ for r in rs] for k, rs in runs.items()},
        )
        print(f"results written to {args.json_out}")
    if failed:
        print("vs_kannel: some runs FAILED (see above)", file=sys.stderr)
    return 1 if failed else 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = bench_parser(__doc__)
    p.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    p.add_argument("--windows", nargs="+", type=int, default=[50])
    p.add_argument("--backends", nargs="+", choices=("sqlite", "postgres"), default=["sqlite"])
    p.add_argument(
        "--durability",
        nargs="*",
        default=None,
        help="[gateway] durability values, one gateway variant each (default: "
        "the key unset, i.e. the gateway's default)",
    )
    p.add_argument(
        "--pg-commits",
        nargs="*",
        type=int,
        default=None,
        help="PostgreSQL cells: [gateway] pg_intake_commits values, a variant each",
    )
    p.add_argument(
        "--pg-commit-delay",
        nargs="*",
        type=int,
        default=None,
        help="PostgreSQL cells: commit_delay values (us, with commit_siblings 2) "
        "set on the run's database, a variant each",
    )
    p.add_argument("--no-kannel", action="store_true", help="gateway cells only")
    p.add_argument(
        "--kannel-http",
        choices=("post", "get"),
        default="post",
        help="Kannel sms-service post-url or get-url (webhook mode)",
    )
    p.add_argument(
        "--no-install",
        action="store_true",
        help="fail instead of apt-get installing Kannel when it is missing",
    )
    add_runs(p, help="runs per cell (median)")
    add_load(
        p,
        count=10_000,
        window=None,
        warmup=500,
        lat_count=2000,
        lat_count_help="paced MOs (0: no paced phase)",
        lat_rate_help="paced MO/s",
    )
    add_host(p)
    p.add_argument("--mqtt-host", default="127.0.0.1", help="broker (webhook+mqtt mode)")
    p.add_argument("--mqtt-port", type=int, default=1883)
    p.add_argument("--sink-server", choices=("lean", "aiohttp"), default="lean",
                   help="the HTTP sink's server (bench/sink.py --server): lean = "
                        "asyncio.Protocol + httptools on uvloop (~15 us/request), aiohttp "
                        "= aiohttp.web (~300 us/request, taken from the targets' CPU)")
    p.add_argument("--action-workers", type=int, default=0,
                   help="[gateway] action_workers of the gateway cells")
    p.add_argument(
        "--gateway-cmd",
        default=".venv/bin/vmn-gateway",
        help="the gateway executable (+ args before `run -c CONFIG`)",
    )
    add_timeouts(p, drain=True)
    add_output(p)
    args = p.parse_args(argv)
    if min(args.runs, args.count, *args.windows) < 1 or args.warmup < 0 or args.lat_count < 0:
        p.error("--runs, --count and --windows must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.no_kannel:
        try:
            args.kannel = ensure_kannel(install=not args.no_install)
        except KannelError as exc:
            print(f"vs_kannel: {exc}", file=sys.stderr)
            return 2
    try:
        return asyncio.run(amain(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
