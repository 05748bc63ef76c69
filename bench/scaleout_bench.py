#!/usr/bin/env python3
"""Scale-out figure (issue 12): two gateway instances on one PostgreSQL database, one
bind each, against one instance with one bind; MO -> webhook rate of the pair / one.

Targets, round-robin (one, pair, one, pair, ...) so that load drifting on the shared
machine hits both alike; medians of ``--runs``:

* ``one``:  one ``vmn-gateway run`` process, one ``[[smsc]]`` bind to its own
            LoadServer (bench/loadgen.py), a burst of ``--count`` MOs at ``--window``;
* ``pair``: two processes (``[gateway] name`` ``scaleout-a`` / ``scaleout-b``, binds
            ``bench-a`` / ``bench-b``) on the same database, each bound to a LoadServer
            of its own; both LoadServers push ``--count``/2 MOs at the same time.

Every run gets a fresh PostgreSQL database (127.0.0.1:5432, trust; created and dropped
by bench/vs_kannel.py's helpers), default durability, and one number whose default
configuration has ``webhook =`` pointing at one receiver process (the aiohttp receiver
of bench/actions_bench.py, ``--role webhook``) shared by the instances. The second
LoadServer's sequence numbers (hence the MO texts ``HELLO <seq> ...`` and the senders)
start at ``SECOND_FIRST_SEQ``, so every MO of a run is told apart at the receiver.

One run: ``--warmup`` MOs per instance (until the receiver has them all); the burst ->
*acks/s* = MOs / (last ack - first send) and *delivered/s* = MOs / (last first-delivery
at the receiver - first send), both over every instance; then a check of the run's
database and the receiver's records (each MO stored once, one webhook job per MO, every
job done with one attempt, no MO delivered twice or lost). CPU from /proc (utime +
stime) per wall second, from the burst's first send until the receiver has every MO:
each instance (its process tree), PostgreSQL (every ``postgres`` process of the
machine, and the backends of the run's database alone), the receiver, this process
(the generator), the whole machine and "other" (the rest: other users of the machine).

    .venv/bin/python bench/scaleout_bench.py --runs 3 --count 20000 \\
        --json-out bench/results-scaleout.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import actions_bench  # bench/ is on sys.path as a script
from benchlib.load import Phase, TimedLoadServer, deliveries, push, wait_delivered
from benchlib.measure import (
    cpu_seconds,
    machine,
    machine_busy_s,
    process_tree,
    threads_cpu_s,
    tree_hwm_kib,
)
from benchlib.procs import TargetError, spawn, stop, wait_bound
from benchlib.receivers import Helper
from loadgen import PushError
from vs_kannel import PG_ADMIN, create_pg_db, drop_pg_db

TARGETS = ("one", "pair")
INSTANCES = ("a", "b")
VMN = "5551000100"
# The second LoadServer's first sequence number: its MO texts ("HELLO <seq> ...") and
# senders ("1555" + seq % 10**7) differ from the first one's for any run below 5M MOs.
SECOND_FIRST_SEQ = 5_000_001

CONFIG = """\
[gateway]
name = "scaleout-{instance}"
database = "{database}"

[[smsc]]
name = "bench-{instance}"
host = "{host}"
port = {port}
system_id = "bench"
password = "bench"
enquire_link_interval = 30

[[number]]
vmn = "{vmn}"
[number.default]
webhook = "{hook_url}"
"""


class SeqLoadServer(TimedLoadServer):
    """A TimedLoadServer whose sequence numbers start at `first_seq`."""

    def __init__(self, host: str, port: int, first_seq: int) -> None:
        super().__init__(host, port)
        self._next_seq = first_seq


# --- CPU accounting ----------------------------------------------------------------------
def postgres_pids() -> list[int]:
    """Every process of the machine named ``postgres`` (server, backends, walwriter...)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError), open(f"/proc/{entry}/comm") as f:
                if f.read().strip() == "postgres":
                    out.append(int(entry))
    return out


async def backend_pids(database: str) -> list[int]:
    """The PostgreSQL backends connected to `database` (asked from the admin database,
    so that the question adds no backend of its own)."""
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN)
    try:
        rows = await conn.fetch("SELECT pid FROM pg_stat_activity WHERE datname = $1", database)
    finally:
        await conn.close()
    return [int(r["pid"]) for r in rows]


class Meter:
    """CPU seconds per process at named instants, summed per group between two of them.
    Per pid, so that a process that starts between the marks counts from zero and one
    that ends between them counts what it had at the first mark (a lower bound)."""

    def __init__(self, groups: dict[str, Callable[[], Iterable[int]]],
                 thread_pids: dict[str, int]) -> None:
        self.groups = groups
        self.thread_pids = thread_pids  # group -> the pid whose threads are reported
        self.marks: dict[str, tuple[float, float, dict[str, dict[Any, float]]]] = {}

    def mark(self, name: str) -> None:
        per: dict[str, dict[Any, float]] = {}
        for group, pids in self.groups.items():
            per[group] = {p: v for p in set(pids()) if (v := cpu_seconds(p)) is not None}
        for group, pid in self.thread_pids.items():
            per[f"{group}_threads"] = dict(threads_cpu_s(pid))
        self.marks[name] = (time.monotonic(), machine_busy_s(), per)

    def cores(self, start: str, end: str) -> dict[str, float] | None:
        """CPU s / wall s of each group between two marks (1.0 = one core busy)."""
        if start not in self.marks or end not in self.marks:
            return None
        t0, m0, a = self.marks[start]
        t1, m1, b = self.marks[end]
        wall = t1 - t0
        if wall <= 0:
            return None
        out: dict[str, float] = {}
        for group in self.groups:
            before, after = a[group], b[group]
            used = sum(v - before.get(p, 0.0) for p, v in after.items())
            out[group] = round(used / wall, 3)
        out["machine"] = round((m1 - m0) / wall, 3)
        listed = sum(v for g, v in out.items() if g not in ("machine", "pg_run_db"))
        out["other"] = round(out["machine"] - listed, 3)
        for group in self.thread_pids:  # the busiest thread of each (1.00: it is the limit)
            before, after = a[f"{group}_threads"], b[f"{group}_threads"]
            used = max((v - before.get(t, 0.0) for t, v in after.items()), default=0.0)
            out[f"{group}_top_thread"] = round(used / wall, 3)
        out["wall_s"] = round(wall, 3)
        return out


# --- one run -----------------------------------------------------------------------------
@dataclass
class RunResult:
    target: str
    run: int
    ok: bool = False
    error: str | None = None
    tmpdir: str | None = None
    loadavg_start: list[float] = field(default_factory=list)
    loadavg_end: list[float] = field(default_factory=list)
    database: str | None = None
    bind_s: dict[str, float] = field(default_factory=dict)
    phases: dict[str, dict[str, Any]] = field(default_factory=dict)  # "<phase>/<instance>"
    burst: dict[str, Any] = field(default_factory=dict)  # over every instance
    webhook: dict[str, Any] = field(default_factory=dict)  # deliveries() per instance
    check: dict[str, Any] = field(default_factory=dict)
    cpu: dict[str, Any] = field(default_factory=dict)
    rss_kib: dict[str, int | None] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


async def start_gateway(
    args: argparse.Namespace, instance: str, tmpdir: Path, database: str, port: int,
    hook_url: str,
) -> tuple[asyncio.subprocess.Process, Path]:
    config = tmpdir / f"gateway-{instance}.toml"
    config.write_text(
        CONFIG.format(instance=instance, database=database, host=args.host, port=port,
                      vmn=VMN, hook_url=hook_url),
        encoding="utf-8",
    )
    log = tmpdir / f"gateway-{instance}.log"
    cmd = [*shlex.split(args.gateway_cmd), "run", "-c", str(config)]
    return await spawn(cmd, log), log


async def check_database(url: str, expected: int) -> dict[str, Any]:
    """What the run's database holds once every MO was delivered: MOs per bind, webhook
    jobs per status, and anything that would mean an MO or a job handled twice."""
    import asyncpg

    conn = await asyncpg.connect(url.replace("postgresql+asyncpg:", "postgresql:"))
    try:
        async def val(sql: str) -> int:
            return int(await conn.fetchval(sql) or 0)

        # The outcomes are recorded after the deliveries: wait for the last ones.
        deadline = time.monotonic() + 15.0
        while (await val("SELECT count(*) FROM jobs WHERE status = 'pending'")
               and time.monotonic() < deadline):
            await asyncio.sleep(0.2)
        by_smsc = {r[0]: r[1] for r in await conn.fetch(
            "SELECT smsc, count(*) FROM messages WHERE direction = 'mo' GROUP BY smsc")}
        jobs = {r[0]: r[1] for r in await conn.fetch(
            "SELECT status, count(*) FROM jobs WHERE kind = 'webhook' GROUP BY status")}
        out: dict[str, Any] = {
            "expected_mos": expected,
            "mos": sum(by_smsc.values()),
            "mos_by_smsc": by_smsc,
            "distinct_texts": await val(
                "SELECT count(DISTINCT text) FROM messages WHERE direction = 'mo'"),
            "webhook_jobs": jobs,
            "mos_without_job": await val(
                "SELECT count(*) FROM messages m WHERE direction = 'mo' AND NOT EXISTS "
                "(SELECT 1 FROM jobs j WHERE j.message_id = m.id AND j.kind = 'webhook')"),
            "mos_with_several_jobs": await val(
                "SELECT count(*) FROM (SELECT message_id FROM jobs WHERE kind = 'webhook' "
                "GROUP BY message_id HAVING count(*) > 1) s"),
            "mos_still_flagged": await val(
                "SELECT count(*) FROM messages WHERE direction = 'mo' AND fanout = 1"),
            "jobs_attempted_more_than_once": await val(
                "SELECT count(*) FROM jobs WHERE kind = 'webhook' AND attempts > 1"),
            "jobs_with_several_ok_attempts": await val(
                "SELECT count(*) FROM (SELECT job_id FROM job_attempts WHERE outcome = 'ok' "
                "GROUP BY job_id HAVING count(*) > 1) s"),
            "attempt_rows_not_ok": await val(
                "SELECT count(*) FROM job_attempts WHERE outcome <> 'ok'"),
        }
    finally:
        await conn.close()
    return out


def check_problems(check: dict[str, Any], receiver: dict[str, Any]) -> list[str]:
    """The correctness problems a run shows (empty: none)."""
    problems = []
    exp = check["expected_mos"]
    if check["mos"] != exp or check["distinct_texts"] != exp:
        problems.append(f"{check['mos']} MOs stored ({check['distinct_texts']} distinct), "
                        f"{exp} sent")
    if sum(check["webhook_jobs"].values()) != exp or check["webhook_jobs"].get("done") != exp:
        problems.append(f"webhook jobs {check['webhook_jobs']}, {exp} MOs")
    for key in ("mos_without_job", "mos_with_several_jobs", "mos_still_flagged",
                "jobs_attempted_more_than_once", "jobs_with_several_ok_attempts"):
        if check[key]:
            problems.append(f"{key} = {check[key]}")
    if receiver["duplicates"] or receiver["received"] != receiver["expected"]:
        problems.append(f"receiver: {receiver['received']}/{receiver['expected']} MOs, "
                        f"{receiver['duplicates']} duplicate deliveries")
    if receiver["events_total"] != receiver["unique_event_ids"]:
        problems.append(f"receiver: {receiver['events_total']} events, "
                        f"{receiver['unique_event_ids']} distinct event ids")
    return problems


async def run_once(target: str, index: int, args: argparse.Namespace) -> RunResult:
    result = RunResult(target, index, loadavg_start=list(os.getloadavg()))
    names = INSTANCES if target == "pair" else INSTANCES[:1]
    tmpdir = Path(tempfile.mkdtemp(prefix=f"scaleout_{target}_{index}_"))
    result.tmpdir = str(tmpdir)
    procs: dict[str, asyncio.subprocess.Process] = {}
    receiver: Helper | None = None
    pg_db: str | None = None
    servers: dict[str, SeqLoadServer] = {}
    try:
        pg_db, database = await create_pg_db()
        result.database = pg_db
        receiver, info = await Helper.start(
            "webhook", [sys.executable, actions_bench.__file__, "--role", "webhook"],
            tmpdir / "receiver.log")
        hook_url = f"http://127.0.0.1:{info['port']}/hook"
        for i, name in enumerate(names):
            servers[name] = SeqLoadServer(args.host, 0, 1 if i == 0 else SECOND_FIRST_SEQ)
            await servers[name].start()
        logs: dict[str, Path] = {}
        for name in names:  # started together: concurrent migrations on a fresh database
            procs[name], logs[name] = await start_gateway(
                args, name, tmpdir, database, servers[name].port, hook_url)
        waits = await asyncio.gather(*(
            wait_bound(servers[n], procs[n], args.bind_timeout, logs[n]) for n in names))
        result.bind_s = {n: round(w, 3) for n, w in zip(names, waits, strict=True)}

        expected = 0

        async def drain(label: str) -> None:
            state = await wait_delivered([receiver], expected, args.drain_timeout,
                                         args.stall_timeout)
            if not state["webhook"]["complete"]:
                raise TargetError(f"{label}: the receiver got {state['webhook']['unique']}/"
                                  f"{expected} MOs")

        per = args.count // len(names)
        if args.warmup:
            warm = await asyncio.gather(*(
                push(servers[n], "warmup", args.warmup, args.window, None, args.stall_timeout)
                for n in names))
            for n, ph in zip(names, warm, strict=True):
                result.phases[f"warmup/{n}"] = ph.report
            expected += args.warmup * len(names)
            await drain("warmup")

        db_pids: set[int] = set(await backend_pids(pg_db))
        rx_pid = receiver.pid
        groups: dict[str, Callable[[], Iterable[int]]] = {
            f"gateway_{n}": (lambda pid: lambda: process_tree(pid))(procs[n].pid)
            for n in names
        }
        groups |= {
            "postgres": postgres_pids,
            "pg_run_db": lambda: db_pids,  # a part of "postgres"
            "receiver": lambda: [rx_pid],
            "loadgen": lambda: [os.getpid()],
        }
        meter = Meter(groups, {f"gateway_{n}": procs[n].pid for n in names})
        meter.mark("start")
        bursts: list[Phase] = await asyncio.gather(*(
            push(servers[n], "burst", per, args.window, None, args.stall_timeout)
            for n in names))
        meter.mark("acked")
        for n, ph in zip(names, bursts, strict=True):
            result.phases[f"burst/{n}"] = ph.report
        expected += per * len(names)
        db_pids |= set(await backend_pids(pg_db))
        await drain("burst")
        db_pids |= set(await backend_pids(pg_db))
        meter.mark("drained")
        result.cpu = {"burst": meter.cores("start", "acked"),
                      "burst_and_drain": meter.cores("start", "drained")}
        dump = await receiver.request("dump", timeout=60.0)
        per_instance = {n: deliveries(dump["records"], ph)
                        for n, ph in zip(names, bursts, strict=True)}
        result.webhook = per_instance
        first_send = min(min(s for s in ph.sent_wall if s) for ph in bursts)
        last_ack = max(ph.last_ack_wall for ph in bursts)
        last_delivery = max(d["last_delivery_wall"] for d in per_instance.values())
        total = per * len(names)
        received = sum(d["received"] for d in per_instance.values())
        result.burst = {
            "mos": total,
            "acked": sum(ph.report["acked_ok"] for ph in bursts),
            "acks_per_s": round(total / (last_ack - first_send), 1),
            "delivered_per_s": round(received / (last_delivery - first_send), 1),
            "ack_span_s": round(last_ack - first_send, 3),
            "delivery_span_s": round(last_delivery - first_send, 3),
            "per_instance_acks_per_s": {n: ph.report["rate"]
                                        for n, ph in zip(names, bursts, strict=True)},
        }
        totals = {
            "expected": total + args.warmup * len(names),
            "received": len({(r[1]) for r in dump["records"]}),
            "duplicates": len(dump["records"]) - len({r[1] for r in dump["records"]}),
            "events_total": dump["n"],
            "unique_event_ids": len({r[2] for r in dump["records"]}),
        }
        result.check = await check_database(database, totals["expected"])
        result.check["receiver"] = totals
        problems = check_problems(result.check, totals)
        if problems:
            result.warnings.append("CORRECTNESS: " + "; ".join(problems))
        for n in names:
            if procs[n].returncode is not None:
                raise TargetError(f"gateway {n} exited with code {procs[n].returncode}")
            result.rss_kib[n] = tree_hwm_kib(procs[n].pid)
        for srv in servers.values():
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
        for proc in procs.values():
            await stop(proc, args.stop_timeout)
        for srv in servers.values():
            await srv.close()
        if receiver is not None:
            await receiver.stop()
        if pg_db is not None:
            await drop_pg_db(pg_db)
        result.loadavg_end = list(os.getloadavg())
        if result.ok and not result.warnings and not args.keep_tmp:
            shutil.rmtree(tmpdir, ignore_errors=True)
            result.tmpdir = None
    return result


# --- summary -----------------------------------------------------------------------------
def metrics(r: RunResult) -> dict[str, float | None]:
    m: dict[str, float | None] = {
        "acks_per_s": r.burst.get("acks_per_s"),
        "delivered_per_s": r.burst.get("delivered_per_s"),
        "loadavg_1m": r.loadavg_start[0] if r.loadavg_start else None,
    }
    cores = r.cpu.get("burst_and_drain") or {}
    for g in ("gateway_a", "gateway_b", "postgres", "pg_run_db", "receiver", "loadgen",
              "other", "machine"):
        m[f"cores_{g}"] = cores.get(g)
    tops = [v for g in ("gateway_a", "gateway_b") if (v := cores.get(f"{g}_top_thread"))]
    m["cores_top_thread"] = max(tops) if tops else None  # the busiest gateway thread
    wall, mos = cores.get("wall_s"), r.burst.get("mos")
    gw = [v for g in ("gateway_a", "gateway_b") if (v := cores.get(g)) is not None]
    m["gateway_cpu_us_per_mo"] = (round(sum(gw) * wall / mos * 1e6, 1)
                                  if gw and wall and mos else None)
    pg = cores.get("pg_run_db")
    m["pg_run_db_cpu_us_per_mo"] = round(pg * wall / mos * 1e6, 1) if pg and wall and mos else None
    rx = cores.get("receiver")
    m["receiver_cpu_us_per_mo"] = round(rx * wall / mos * 1e6, 1) if rx and wall and mos else None
    # Everything the figure needs (instances, every postgres process, the receiver, the
    # generator) per MO, and the rate two cores could give at that cost if nothing else
    # ran: the ceiling of any number of instances on this machine.
    ours = [cores.get(g) for g in ("postgres", "receiver", "loadgen")]
    if gw and wall and mos and None not in ours:
        bench_cores = sum(gw) + sum(v or 0.0 for v in ours)
        per_mo = bench_cores * wall / mos * 1e6
        m["bench_cores"] = round(bench_cores, 3)
        m["all_cpu_us_per_mo"] = round(per_mo, 1)
        m["machine_ceiling_per_s"] = round((os.cpu_count() or 1) * 1e6 / per_mo)
    else:
        m["bench_cores"] = m["all_cpu_us_per_mo"] = m["machine_ceiling_per_s"] = None
    rss = [v for v in r.rss_kib.values() if v]
    m["rss_mib_max"] = round(max(rss) / 1024, 1) if rss else None
    return m


def summarise(runs: list[RunResult]) -> dict[str, Any]:
    good = [metrics(r) for r in runs if r.ok]
    median: dict[str, float | None] = {}
    for key in good[0] if good else {}:
        vals = [v for m in good if (v := m.get(key)) is not None]
        median[key] = round(statistics.median(vals), 3) if vals else None
    return {"runs_ok": len(good), "runs": len(runs), "median": median, "per_run": good}


COLUMNS = (
    ("acks/s", "acks_per_s", "{:,.0f}"),
    ("MO->webhook/s", "delivered_per_s", "{:,.0f}"),
    ("gw A cores", "cores_gateway_a", "{:.2f}"),
    ("gw B cores", "cores_gateway_b", "{:.2f}"),
    ("top thread", "cores_top_thread", "{:.2f}"),
    ("postgres", "cores_postgres", "{:.2f}"),
    ("(run's db)", "cores_pg_run_db", "{:.2f}"),
    ("receiver", "cores_receiver", "{:.2f}"),
    ("loadgen", "cores_loadgen", "{:.2f}"),
    ("other", "cores_other", "{:.2f}"),
    ("machine", "cores_machine", "{:.2f}"),
    ("bench cores", "bench_cores", "{:.2f}"),
    ("gw us/MO", "gateway_cpu_us_per_mo", "{:.0f}"),
    ("pg us/MO", "pg_run_db_cpu_us_per_mo", "{:.0f}"),
    ("rx us/MO", "receiver_cpu_us_per_mo", "{:.0f}"),
    ("all us/MO", "all_cpu_us_per_mo", "{:.0f}"),
    ("ceiling/s", "machine_ceiling_per_s", "{:,.0f}"),
    ("load 1m", "loadavg_1m", "{:.1f}"),
)


def print_report(summary: dict[str, dict[str, Any]], ratio: dict[str, float | None],
                 args: argparse.Namespace) -> None:
    print(f"\nScale-out: burst {args.count:,} MOs (pair: {args.count // 2:,} per instance) "
          f"at window {args.window}, median of {args.runs}; CPU in cores (1.00 = one core) "
          f"from the burst's first send until the receiver had every MO")
    header = ["target", "ok", *(c[0] for c in COLUMNS)]
    rows = []
    for target, s in summary.items():
        med = s["median"]
        rows.append([target, f"{s['runs_ok']}/{s['runs']}",
                     *("-" if med.get(k) is None else f.format(med[k]) for _, k, f in COLUMNS)])
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    for line in (header, ["-" * w for w in widths], *rows):
        print("  ".join(c.rjust(w) if i else c.ljust(w)
                        for i, (c, w) in enumerate(zip(line, widths, strict=True))))
    for key, v in ratio.items():
        print(f"pair / one {key}: {'-' if v is None else f'{v:.3f}'}")
    print("(bench cores: the instances + every postgres process + the receiver + the "
          "generator; all us/MO: their CPU per burst MO; ceiling/s: the MO/s the machine's "
          f"{os.cpu_count()} cores would give at that cost with nothing else running)")


async def amain(args: argparse.Namespace) -> int:
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    if any(t not in TARGETS for t in targets):
        print(f"scaleout_bench: targets are {', '.join(TARGETS)}", file=sys.stderr)
        return 2
    runs: dict[str, list[RunResult]] = {t: [] for t in targets}
    failed = False
    for i in range(1, args.runs + 1):
        for target in targets:
            r = await run_once(target, i, args)
            runs[target].append(r)
            tag = f"[{target} {i}/{args.runs}]"
            if not r.ok:
                failed = True
                print(f"{tag} FAILED: {r.error} (files in {r.tmpdir})", flush=True)
                continue
            m = metrics(r)
            print(f"{tag} {m['acks_per_s']:,.0f} acks/s, {m['delivered_per_s']:,.0f} "
                  f"MO->webhook/s, load {r.loadavg_start[0]:.1f}"
                  + ("  WARNING: " + "; ".join(r.warnings) if r.warnings else ""), flush=True)
            if r.warnings:
                failed = True
    summary = {t: summarise(rs) for t, rs in runs.items()}

    def med(t: str, k: str) -> float | None:
        value: float | None = ((summary.get(t) or {}).get("median") or {}).get(k)
        return value

    ratio: dict[str, float | None] = {}
    for key in ("delivered_per_s", "acks_per_s"):
        a, b = med("pair", key), med("one", key)
        ratio[key] = round(a / b, 3) if a is not None and b else None
    print_report(summary, ratio, args)
    if args.json_out:
        params = {k: v for k, v in vars(args).items() if k != "json_out"}
        doc = {
            "params": params,
            "machine": machine(loadavg_at_start=list(os.getloadavg())),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "summary": summary,
            "ratio_pair_over_one": ratio,
            "runs": {t: [r.__dict__ for r in rs] for t, rs in runs.items()},
        }
        Path(args.json_out).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        print(f"results written to {args.json_out}")
    if failed:
        print("scaleout_bench: some runs FAILED or showed a problem (see above)",
              file=sys.stderr)
    return 1 if failed else 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--targets", default=",".join(TARGETS), help="comma list of: %(default)s")
    p.add_argument("--runs", "-k", type=int, default=3, help="runs per target (median)")
    p.add_argument("--count", type=int, default=20_000,
                   help="burst MOs in all (the pair: half each)")
    p.add_argument("--window", type=int, default=50, help="max outstanding deliver_sm per bind")
    p.add_argument("--warmup", type=int, default=500, help="unmeasured MOs per instance first")
    p.add_argument("--host", default="127.0.0.1", help="where the load generators listen")
    p.add_argument("--gateway-cmd", default=".venv/bin/vmn-gateway",
                   help="the gateway executable (+ args before `run -c CONFIG`)")
    p.add_argument("--bind-timeout", type=float, default=60.0)
    p.add_argument("--stall-timeout", type=float, default=30.0)
    p.add_argument("--drain-timeout", type=float, default=300.0)
    p.add_argument("--stop-timeout", type=float, default=10.0)
    p.add_argument("--json-out", default=None)
    p.add_argument("--keep-tmp", action="store_true")
    args = p.parse_args(argv)
    if min(args.runs, args.count, args.window) < 1 or args.warmup < 0 or args.count < 2:
        p.error("--runs, --count (>= 2) and --window must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return asyncio.run(amain(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
