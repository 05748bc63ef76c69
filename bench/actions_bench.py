#!/usr/bin/env python3
"""End-to-end actions benchmark: MO acks with and without webhook + MQTT actions, and how
fast (and how soon) the events reach a webhook receiver and an MQTT subscriber.

Targets, all measured in the same invocation, round-robin (run 1 of every target, then
run 2 of every target, ...) so that load drifting on a shared machine hits all alike:

* ``baseline``        bench/null_esme.py (binds, acks every deliver_sm, nothing else);
* ``gateway-plain``   ``vmn-gateway run`` with SQLite, one number whose default
                      configuration has no actions, no ``[mqtt]``;
* ``gateway-actions`` the same with ``[mqtt]`` (a topic prefix of its own per run) and
                      ``webhook = "http://127.0.0.1:<port>/hook"`` on the number's default
                      configuration, pointing at a local receiver.

One run of a target (fresh LoadServer, temp dir, config, receivers):

1. *warm-up*: ``--warmup`` MOs unlimited (for gateway-actions: until both receivers got
   their events);
2. *burst*: ``--count`` MOs unlimited, ``--window`` outstanding -> acked MO/s; for
   gateway-actions then the *drain*: wait until the webhook receiver and the MQTT
   subscriber have each received all ``--count`` mo events; drain rate = count / (time
   of the last first-delivery - time the first MO of the burst was sent);
3. *paced*: ``--lat-count`` MOs at ``--lat-rate``/s -> ack latency, and for
   gateway-actions the per-MO latency MO sent -> webhook received and MO sent -> MQTT
   received (p50/p99/max), after waiting for those events too;
4. VmHWM of the target's process tree; CPU used per wall second (1.00 = one core) by
   the target, the receivers, mosquitto and this process, per phase, from
   /proc/<pid>/stat utime+stime: a process near 1.00 is the one that saturated.

Matching an event to its MO: bench/loadgen.py pre-encodes every deliver_sm with the text
``"HELLO <seq> MO from the bench ..."`` (unique per LoadServer, <seq> = the PDU's
sequence number). `TimedLoadServer` keeps each push's per-PDU send times (loadgen's
``perf_counter_ns`` write times, turned into ``time.time()`` wall-clock seconds), and the
receivers record ``time.time()`` on receipt, so the latency crosses processes on one
clock. The receivers are separate processes (this file with ``--role``): an aiohttp.web
server answering 200 to ``POST /hook``, and a paho-mqtt subscriber (QoS 1, subscribed to
``<prefix>/mo/#`` before the gateway starts). Both are driven over their stdin/stdout
(one JSON line per command: ``stats``, ``dump``, ``quit``).

    .venv/bin/python bench/actions_bench.py --runs 3 --json-out /tmp/actions.json
    .venv/bin/python bench/actions_bench.py --targets gateway-actions --runs 1 --count 10000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import shutil
import statistics
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# bench/ is on sys.path when run as a script
from benchlib.broker import find_mosquitto, start_broker, stop_broker
from benchlib.cli import add_host, add_load, add_output, add_runs, add_timeouts, bench_parser
from benchlib.load import TimedLoadServer, deliveries, push, wait_delivered
from benchlib.measure import CpuMeter, process_tree, tree_hwm_kib
from benchlib.procs import TargetError, command, spawn, stop, wait_bound
from benchlib.receivers import Helper, mqtt_subscriber, webhook_receiver
from benchlib.results import write_results
from loadgen import PushError
from mo_bench import BASELINE_CMD, GATEWAY_CMD

BENCH_DIR = Path(__file__).resolve().parent
TARGETS = ("baseline", "gateway-plain", "gateway-webhook", "gateway-mqtt", "gateway-actions")
# Which receivers a gateway target has: (webhook, mqtt).
SIDES = {
    "gateway-webhook": (True, False),
    "gateway-mqtt": (False, True),
    "gateway-actions": (True, True),
}
VMN = "5551000100"

# Placeholders replaced textually: {tmpdir} {host} {port} (the load generator),
# {hook_port} (webhook receiver), {prefix} (the run's MQTT topic prefix).
_GATEWAY_HEAD = """\
[gateway]
name = "bench"
database = "sqlite+aiosqlite:///{tmpdir}/bench.db"
retry_base = 0.2
mt_poll_interval = 0.5
action_workers = {action_workers}
durability = "{durability}"

[[smsc]]
name = "bench"
host = "{host}"
port = {port}
system_id = "bench"
password = "bench"
enquire_link_interval = 30
"""
PLAIN_CONFIG = (
    _GATEWAY_HEAD
    + f"""
[[number]]
vmn = "{VMN}"
[number.default]
"""
)
_MQTT_SECTION = """
[mqtt]
url = "mqtt://{mqtt_host}:{mqtt_port}"
topic_prefix = "{prefix}"
client_id = "{prefix}"
"""


def _actions_config(webhook: bool, mqtt: bool) -> str:
    """The gateway config of a target with actions: a webhook on the number's default
    configuration and/or ``[mqtt]`` (a topic prefix of its own per run)."""
    text = _GATEWAY_HEAD + (_MQTT_SECTION if mqtt else "")
    text += f'\n[[number]]\nvmn = "{VMN}"\n[number.default]\n'
    if webhook:
        text += 'webhook = "http://127.0.0.1:{hook_port}/hook"\n'
    return text


def role_main(args: argparse.Namespace) -> int:
    if args.role == "webhook":
        return asyncio.run(webhook_receiver(args.hook_port))
    if args.role == "mqtt":
        return mqtt_subscriber(args.mqtt_host, args.mqtt_port, args.topic, args.client_id)
    print(f"unknown role {args.role!r}", file=sys.stderr)
    return 2


# ======================================================================================
# Orchestrator side
# ======================================================================================
# --- one run ---------------------------------------------------------------------------
@dataclass
class RunResult:
    target: str
    run: int
    ok: bool = False
    error: str | None = None
    cmd: str | None = None
    log: str | None = None
    bind_s: float | None = None
    exit_code: int | None = None
    rss_kib: int | None = None
    phases: dict[str, dict[str, Any]] = field(default_factory=dict)
    webhook: dict[str, dict[str, Any]] = field(default_factory=dict)
    mqtt: dict[str, dict[str, Any]] = field(default_factory=dict)
    waits: dict[str, Any] = field(default_factory=dict)
    cpu: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


ACTION_WORKERS = "0"  # set by --action-workers
DURABILITY = "power-loss"  # set by --durability


def _config(template: str, values: dict[str, str]) -> str:
    values = {"action_workers": ACTION_WORKERS, "durability": DURABILITY, **values}
    for key, value in values.items():
        template = template.replace("{" + key + "}", value)
    return template


def split_target(target: str) -> tuple[str, str | None]:
    """"gateway-actions@old" -> ("gateway-actions", "old"): a target run with the
    `--alt-cmd old=...` command instead of `--gateway-cmd` (before/after in one run)."""
    base, _, alt = target.partition("@")
    return base, alt or None


async def run_once(target: str, index: int, args: argparse.Namespace) -> RunResult:
    result = RunResult(target, index)
    target, alt = split_target(target)
    tmpdir = Path(tempfile.mkdtemp(prefix=f"actions_bench_{target}_{index}_"))
    log = tmpdir / f"{target}.log"
    result.log = str(log)
    proc: asyncio.subprocess.Process | None = None
    helpers: list[Helper] = []
    want_hook, want_mqtt = SIDES.get(target, (False, False))
    actions = want_hook or want_mqtt
    mosquitto = find_mosquitto() if want_mqtt else None
    try:
        srv = TimedLoadServer(args.host, 0)
        async with srv:
            values = {
                "python": sys.executable,
                "host": args.host,
                "port": str(srv.port),
                "tmpdir": str(tmpdir),
                "config": str(tmpdir / "bench.toml"),
            }
            if actions:
                prefix = f"actions-bench-{uuid.uuid4().hex[:12]}"
                info: dict[str, Any] = {"port": 0}
                if want_hook:
                    hook, info = await Helper.start(
                        "webhook",
                        [sys.executable, __file__, "--role", "webhook"],
                        tmpdir / "webhook.log",
                    )
                    helpers.append(hook)
                if want_mqtt:
                    sub, _ = await Helper.start(
                        "mqtt",
                        [
                            sys.executable,
                            __file__,
                            "--role",
                            "mqtt",
                            "--mqtt-host",
                            args.mqtt_host,
                            "--mqtt-port",
                            str(args.mqtt_port),
                            "--topic",
                            f"{prefix}/mo/#",
                            "--client-id",
                            f"{prefix}-sub",
                        ],
                        tmpdir / "mqtt.log",
                    )
                    helpers.append(sub)
                values |= {
                    "hook_port": str(info["port"]),
                    "prefix": prefix,
                    "mqtt_host": args.mqtt_host,
                    "mqtt_port": str(args.mqtt_port),
                }
                result.waits["prefix"] = prefix
            if target == "baseline":
                cmd = command(args.baseline_cmd, **values)
            else:
                template = _actions_config(want_hook, want_mqtt) if actions else PLAIN_CONFIG
                Path(values["config"]).write_text(_config(template, values), encoding="utf-8")
                cmd = command(args.alt_cmds[alt] if alt else args.gateway_cmd, **values)
            result.cmd = shlex.join(cmd)
            proc = await spawn(cmd, log)
            result.bind_s = round(await wait_bound(srv, proc, args.bind_timeout, log), 3)
            target_pid = proc.pid
            groups: dict[str, Callable[[], Iterable[int]]] = {
                "target": lambda: process_tree(target_pid),
                "loadgen": lambda: [os.getpid()],
            }
            for h in helpers:
                groups[f"{h.name}_rx"] = (lambda pid: lambda: [pid])(h.pid)
            if mosquitto is not None:
                groups["mosquitto"] = lambda: [mosquitto]
            cpu = CpuMeter(groups, thread_pid=target_pid)
            expected = 0

            async def drain(label: str) -> None:
                if helpers:
                    result.waits[label] = await wait_delivered(
                        helpers, expected, args.drain_timeout, args.stall_timeout
                    )
                    for name, st in result.waits[label].items():
                        if not st["complete"]:
                            result.warnings.append(
                                f"{label}: {name} got {st['unique']}/{expected} MOs"
                            )

            # 1. warm-up
            if args.warmup:
                warm = await push(srv, "warmup", args.warmup, args.window, None, args.stall_timeout)
                result.phases["warmup"] = warm.report
                expected += args.warmup
                await drain("warmup")
            # 2. burst (+ drain)
            cpu.mark("burst_start")
            burst = await push(srv, "burst", args.count, args.window, None, args.stall_timeout)
            cpu.mark("burst_acked")
            result.phases["burst"] = burst.report
            expected += args.count
            await drain("burst")
            cpu.mark("burst_drained")
            # 3. paced
            await asyncio.sleep(args.settle)
            cpu.mark("paced_start")
            paced = await push(
                srv, "paced", args.lat_count, args.window, args.lat_rate, args.stall_timeout
            )
            cpu.mark("paced_acked")
            result.phases["paced"] = paced.report
            expected += args.lat_count
            await drain("paced")
            cpu.mark("paced_drained")
            result.cpu = {
                "burst": cpu.cores("burst_start", "burst_acked"),
                "drain": cpu.cores("burst_acked", "burst_drained") if helpers else None,
                "burst_and_drain": cpu.cores("burst_start", "burst_drained"),
                "paced": cpu.cores("paced_start", "paced_drained"),
            }
            for h in helpers:
                dump = await h.request("dump", timeout=60.0)
                per = {
                    "burst": deliveries(dump["records"], burst),
                    "paced": deliveries(dump["records"], paced),
                    "bad_events": dump["bad"],
                    "events_total": dump["n"],
                }
                setattr(result, h.name, per)
            if proc.returncode is not None:
                raise TargetError(f"target exited with code {proc.returncode} during the run")
            result.rss_kib = tree_hwm_kib(proc.pid)
            await srv.unbind(timeout=2.0)
            errors = sum(p["acked_error"] for p in result.phases.values())
            if errors:
                result.warnings.append(f"{errors} error responses")
            result.ok = True
    except (TargetError, PushError) as exc:
        result.error = str(exc)
    except OSError as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        if proc is not None:
            if result.rss_kib is None and proc.returncode is None:
                result.rss_kib = tree_hwm_kib(proc.pid)
            result.exit_code = await stop(proc, args.stop_timeout)
        for h in helpers:
            await h.stop()
        if result.ok and not args.keep_tmp:
            shutil.rmtree(tmpdir, ignore_errors=True)
            result.log = None
    return result


# --- summary ---------------------------------------------------------------------------
def metrics(r: RunResult) -> dict[str, float | None]:
    def get(d: dict[str, Any], *path: str) -> float | None:
        cur: Any = d
        for p in path:
            if not isinstance(cur, dict) or p not in cur:
                return None
            cur = cur[p]
        return float(cur) if isinstance(cur, int | float) else None

    def complete(side: dict[str, Any], phase: str) -> bool:
        return bool(side.get(phase, {}).get("complete"))

    m: dict[str, float | None] = {
        "acked_per_s": get(r.phases, "burst", "rate"),
        "ack_p50_ms": get(r.phases, "paced", "p50_ms"),
        "ack_p99_ms": get(r.phases, "paced", "p99_ms"),
        "rss_mib": round(r.rss_kib / 1024, 1) if r.rss_kib else None,
    }
    # Target CPU per burst MO from the burst's first send until its events were all
    # delivered (just the burst for targets without actions): robust to CPU contention.
    cores = get(r.cpu, "burst_and_drain", "target")
    wall = get(r.cpu, "burst_and_drain", "wall_s")
    count = get(r.phases, "burst", "count")
    m["target_cpu_ms_per_mo"] = (
        round(cores * wall / count * 1e3, 4) if cores is not None and wall and count else None
    )
    groups = ["target", "loadgen", "other", "machine"]
    if r.webhook or r.mqtt:
        groups[1:1] = ["webhook_rx", "mqtt_rx", "mosquitto"]
    for phase in ("burst", "drain", "paced"):
        for g in groups:
            m[f"cores_{phase}_{g}"] = get(r.cpu, phase, g)
        threads = (r.cpu.get(phase) or {}).get("target_threads") or {}
        m[f"cores_{phase}_target_top_thread"] = max(threads.values(), default=None)
    if r.webhook or r.mqtt:
        for side_name, side in (("webhook", r.webhook), ("mqtt", r.mqtt)):
            m[f"{side_name}_drain_per_s"] = (
                get(side, "burst", "drain_per_s") if complete(side, "burst") else None
            )
            m[f"{side_name}_drain_s"] = get(side, "burst", "drain_s")
            for k in ("p50_ms", "p99_ms", "max_ms"):
                m[f"{side_name}_{k}"] = get(side, "paced", k) if complete(side, "paced") else None
    return m


def summarise(runs: list[RunResult]) -> dict[str, Any]:
    good = [metrics(r) for r in runs if r.ok]
    median: dict[str, float | None] = {}
    for key in good[0] if good else {}:
        vals = [v for m in good if (v := m.get(key)) is not None]
        median[key] = round(statistics.median(vals), 3) if vals else None
    return {"runs_ok": len(good), "runs": len(runs), "median": median or None, "per_run": good}


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 4) if a is not None and b else None


def _fmt(v: float | None, kind: str) -> str:
    if v is None:
        return "-"
    if kind == "rate":
        return f"{v:,.0f}"
    if kind in ("ms", "cores"):
        return f"{v:.2f}"
    if kind == "ms3":
        return f"{v:.3f}"
    return f"{v:.1f}"


def _table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if i else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    print(line(header))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print(line(row))


def print_report(
    summary: dict[str, dict[str, Any]], ratios: dict[str, float | None], args: argparse.Namespace
) -> None:
    print()
    print(
        f"Actions bench: burst = {args.count:,} MO unlimited, window {args.window}; "
        f"paced = {args.lat_count:,} MO at {args.lat_rate:,.0f}/s; warm-up {args.warmup:,}; "
        f"median of {args.runs} run(s)"
    )
    at = _at(args.lat_rate)
    cols: list[tuple[str, str, str]] = [
        ("acked MO/s", "acked_per_s", "rate"),
        (f"ack p99{at}", "ack_p99_ms", "ms"),
        ("hook drain/s", "webhook_drain_per_s", "rate"),
        ("mqtt drain/s", "mqtt_drain_per_s", "rate"),
        (f"hook p50{at}", "webhook_p50_ms", "ms"),
        (f"hook p99{at}", "webhook_p99_ms", "ms"),
        ("hook max", "webhook_max_ms", "ms"),
        (f"mqtt p50{at}", "mqtt_p50_ms", "ms"),
        (f"mqtt p99{at}", "mqtt_p99_ms", "ms"),
        ("mqtt max", "mqtt_max_ms", "ms"),
        ("CPU ms/MO", "target_cpu_ms_per_mo", "ms3"),
        ("RSS MiB", "rss_mib", "mib"),
    ]
    rows = []
    for target, s in summary.items():
        med = s["median"] or {}
        rows.append(
            [
                target,
                f"{s['runs_ok']}/{s['runs']}",
                *(_fmt(med.get(key), kind) for _, key, kind in cols),
            ]
        )
    _table(["target", "ok", *(c[0] for c in cols)], rows)
    print(
        f"(latencies in ms; {at} = the paced phase; drain = burst MOs / (last delivery - "
        "first MO sent); CPU ms/MO = target CPU time from the burst's first MO until its events "
        "were delivered, per burst MO; peak RSS = VmHWM of the target's process tree)"
    )
    print()

    def verdict(v: float | None, ok: Callable[[float], bool]) -> str:
        return "-" if v is None else ("PASS" if ok(v) else "FAIL")

    for name, ra in ratios.items():
        key, sep, alt = name.partition("_over_plain")
        if sep and ra is not None:
            print(
                f"gateway-{key}{alt} / gateway-plain{alt} acked MO/s: {ra:.3f} (target >= 0.80: "
                f"{verdict(ra, lambda v: v >= 0.80)})"
            )
    for key, label in (
        ("plain_over_baseline", "gateway-plain / baseline"),
        ("actions_over_baseline", "gateway-actions / baseline"),
    ):
        v = ratios.get(key)
        print(f"{label} acked MO/s: {'-' if v is None else f'{v:.4f}'}")
    for target in ("gateway-webhook", "gateway-mqtt", "gateway-actions"):
        act = (summary.get(target) or {}).get("median") or {}
        if not act:
            continue
        hook, mq = act.get("webhook_drain_per_s"), act.get("mqtt_drain_per_s")
        p99 = act.get("webhook_p99_ms")
        parts = []
        if hook is not None:
            parts.append(f"webhook drain {_fmt(hook, 'rate')}/s (target >= 3,000: "
                         f"{verdict(hook, lambda v: v >= 3000)}), p99 at "
                         f"{args.lat_rate:,.0f} MO/s {_fmt(p99, 'ms')} ms (target <= 10 ms: "
                         f"{verdict(p99, lambda v: v <= 10.0)})")
        if mq is not None:
            parts.append(f"MQTT drain {_fmt(mq, 'rate')}/s (target >= 3,000: "
                         f"{verdict(mq, lambda v: v >= 3000)}), p99 "
                         f"{_fmt(act.get('mqtt_p99_ms'), 'ms')} ms")
        print(f"{target}: " + "; ".join(parts))
    print()
    print(
        f"CPU, cores = CPU s / wall s (1.00 = one core busy; the machine has "
        f"{os.cpu_count()}); top thread = the target's busiest thread:"
    )
    procs = (
        "target",
        "top thread",
        "webhook_rx",
        "mqtt_rx",
        "mosquitto",
        "loadgen",
        "other",
        "machine",
    )
    rows = []
    for target, s in summary.items():
        med = s["median"] or {}
        for phase in ("burst", "drain", "paced"):
            cells = [
                _fmt(
                    med.get(f"cores_{phase}_{'target_top_thread' if g == 'top thread' else g}"),
                    "cores",
                )
                for g in procs
            ]
            if any(c != "-" for c in cells):
                rows.append([f"{target} {phase}", *cells])
    if rows:
        _table(["target / phase", *procs], rows)
    print(
        "(burst: the unlimited push until its last ack; drain: from there until both "
        "receivers had every event; paced: the 1k/s phase until its events were delivered; "
        "other: every process not listed)"
    )


def _at(rate: float) -> str:
    """Column suffix naming the paced rate: "@1k", "@200"."""
    return f"@{rate / 1000:g}k" if rate >= 1000 else f"@{rate:g}"


async def amain(args: argparse.Namespace) -> int:
    at = _at(args.lat_rate)
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    bad = [t for t in targets if split_target(t)[0] not in TARGETS
           or (split_target(t)[1] or "") not in {"", *args.alt_cmds}]
    if bad:
        print(
            f"actions_bench: unknown target(s) {bad} (choose from {', '.join(TARGETS)})",
            file=sys.stderr,
        )
        return 2
    all_runs: dict[str, list[RunResult]] = {t: [] for t in targets}
    failed = False
    if args.mqtt_port == 0 and any(SIDES.get(t, (False, False))[1] for t in targets):
        args.mqtt_port = start_broker(Path(tempfile.mkdtemp(prefix="actions_bench_broker_")))
    try:
        return await _amain_runs(args, targets, all_runs, failed, at)
    finally:
        stop_broker()


async def _amain_runs(args: argparse.Namespace, targets: list[str],
                      all_runs: dict[str, list[RunResult]], failed: bool, at: str) -> int:
    for i in range(1, args.runs + 1):
        for target in targets:
            r = await run_once(target, i, args)
            all_runs[target].append(r)
            tag = f"[{target} {i}/{args.runs}]"
            if not r.ok:
                failed = True
                print(f"{tag} FAILED: {r.error}", flush=True)
                continue
            m = metrics(r)
            line = (
                f"{tag} {_fmt(m['acked_per_s'], 'rate')} acked MO/s, ack p99{at} "
                f"{_fmt(m['ack_p99_ms'], 'ms')} ms, RSS {_fmt(m['rss_mib'], 'mib')} MiB"
            )
            for side_name in ("webhook", "mqtt"):
                side = getattr(r, side_name)
                if side:
                    b = side["burst"]
                    line += (
                        f"; {side_name} drain {b['received']}/{b['expected']} "
                        f"{b['drain_per_s']:,.0f}/s p99{at} "
                        f"{_fmt(m[f'{side_name}_p99_ms'], 'ms')} ms"
                    )
            if r.warnings:
                line += "  WARNING: " + "; ".join(r.warnings)
            print(line, flush=True)
    summary = {t: summarise(rs) for t, rs in all_runs.items()}

    def med(t: str, k: str) -> float | None:
        return ((summary.get(t) or {}).get("median") or {}).get(k)

    ratios = {
        "actions_over_plain": _ratio(
            med("gateway-actions", "acked_per_s"), med("gateway-plain", "acked_per_s")
        ),
        "webhook_over_plain": _ratio(
            med("gateway-webhook", "acked_per_s"), med("gateway-plain", "acked_per_s")
        ),
        "mqtt_over_plain": _ratio(
            med("gateway-mqtt", "acked_per_s"), med("gateway-plain", "acked_per_s")
        ),
        "plain_over_baseline": _ratio(
            med("gateway-plain", "acked_per_s"), med("baseline", "acked_per_s")
        ),
        "actions_over_baseline": _ratio(
            med("gateway-actions", "acked_per_s"), med("baseline", "acked_per_s")
        ),
    }
    for alt in args.alt_cmds:
        for key in ("actions", "webhook", "mqtt"):
            ratios[f"{key}_over_plain@{alt}"] = _ratio(
                med(f"gateway-{key}@{alt}", "acked_per_s"),
                med(f"gateway-plain@{alt}", "acked_per_s"))
    print_report(summary, ratios, args)
    if args.json_out:
        params = {k: v for k, v in vars(args).items() if k not in ("role", "json_out")}
        write_results(
            args.json_out,
            params,
            summary=summary,
            ratios=ratios,
            runs={t: [r.as_dict() for r in rs] for t, rs in all_runs.items()},
        )
        print(f"\nresults written to {args.json_out}")
    if failed:
        print("actions_bench: some runs FAILED (see above)", file=sys.stderr)
    return 1 if failed else 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = bench_parser(__doc__)
    p.add_argument("--targets", default=",".join(TARGETS), help="comma list of: %(default)s")
    p.add_argument("--action-workers", type=int, choices=range(0, 9), metavar="N", default=0,
                   help="[gateway] action_workers for the gateway targets")
    p.add_argument("--durability", choices=["power-loss", "crash"], default="power-loss",
                   help="[gateway] durability for the gateway targets")
    add_runs(p)
    add_load(p, count=30_000)
    p.add_argument(
        "--settle",
        type=float,
        default=0.5,
        help="pause between the drained burst and the paced phase, s",
    )
    add_host(p)
    p.add_argument("--mqtt-host", default="127.0.0.1")
    p.add_argument("--mqtt-port", type=int, default=0,
                   help="an existing broker's port; 0 (default): start one of the bench's own")
    p.add_argument(
        "--gateway-cmd", default=GATEWAY_CMD, help="gateway command template (default: %(default)r)"
    )
    p.add_argument(
        "--alt-cmd", action="append", default=[], metavar="NAME=TEMPLATE",
        help="another gateway command; a target `gateway-X@NAME` runs with it (e.g. the "
             "code before a change: before/after in the same run)",
    )
    p.add_argument(
        "--baseline-cmd",
        default=BASELINE_CMD,
        help="baseline command template (default: %(default)r)",
    )
    add_timeouts(p, drain=True)
    add_output(p)
    # helper-process roles (internal)
    p.add_argument("--role", choices=("webhook", "mqtt"), help=argparse.SUPPRESS)
    p.add_argument("--hook-port", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--topic", default="", help=argparse.SUPPRESS)
    p.add_argument("--client-id", default="", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.alt_cmds = dict(a.split("=", 1) for a in args.alt_cmd)
    if min(args.runs, args.count, args.window, args.lat_count) < 1 or args.warmup < 0:
        p.error("--runs, --count, --window and --lat-count must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    global ACTION_WORKERS, DURABILITY
    args = parse_args(argv)
    ACTION_WORKERS = str(args.action_workers)
    DURABILITY = args.durability
    if args.role:
        return role_main(args)
    try:
        return asyncio.run(amain(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
