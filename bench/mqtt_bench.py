#!/usr/bin/env python3
"""MQTT event benchmark: QoS 1 events through `MqttAction` against a real broker.

For each concurrency C (``--concurrency``, default 16,64,128,256) it does K runs
(``--runs``, default 3) of ``--count`` events (default 20,000). One run:

1. C workers take jobs from a shared list, the way the outbox does (at most C
   `MqttAction.run()` at once), all through ONE `MqttLink` (one connection, as in the
   daemon) on a topic of its own, ``{prefix}/mo/{run}``;
2. *PUBACKed events/s* = OK results / (last result - first call); p50/p99 of the
   action's own latency (call -> PUBACK); the publishing process's CPU seconds;
3. a separate subscriber process (this file with ``--subscriber``, QoS ``--sub-qos``)
   counts what the broker delivered; after the run an END marker is published on the
   run's topic and the subscriber reports *received* (it should equal ``--count``)
   and *delivered/s* = received / (last receipt - first call);
4. *CPU s* / *sub CPU* = CPU seconds of the publishing process / of the subscriber
   during the run, *load* = the 1-minute load average after it: on a shared machine
   the rates follow the CPU left over (publisher, subscriber and broker all need some).

``--raw`` adds a reference target: the same workers calling ``aiomqtt.Client.publish``
(QoS 1, same max in-flight) directly, to show what the link/action layer costs.
``--paho`` adds the target ``paho``: the same action through the link as it was on
paho-mqtt 2.2 (`gateway/mqtt.py` as it was at ``--paho-rev``, loaded from git history
by `load_paho_link`), the baseline of our own codec. Targets
alternate run by run. ``--direct-writes`` makes our link write each packet at once
instead of once per loop turn; ``--loop uvloop`` runs on uvloop (the daemon's default).
Prints the medians as a table (with *us/event*, the publishing process's CPU per
event); ``--json-out`` writes every run.

    .venv/bin/python bench/mqtt_bench.py
    .venv/bin/python bench/mqtt_bench.py --count 20000 --raw --json-out /tmp/mqtt.json
    .venv/bin/python bench/mqtt_bench.py --count 10000 --concurrency 128 --paho --runs 3
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
sys.path.insert(0, str(REPO_DIR))

import aiomqtt  # noqa: E402
from benchlib import machine, percentile  # noqa: E402
from paho.mqtt import __version__ as paho_version  # noqa: E402

from gateway import eventloop  # noqa: E402
from gateway.actions.base import Job, Outcome  # noqa: E402
from gateway.actions.mqtt import MqttAction  # noqa: E402
from gateway.config import MqttConfig  # noqa: E402
from gateway.mqtt import MqttLink, topic  # noqa: E402
from gateway.mqtt import _Client as OurClient  # noqa: E402

AnyLink = Any  # gateway.mqtt.MqttLink, or the paho one from `load_paho_link`
# The last commit whose gateway/mqtt.py drove paho-mqtt (before gateway/mqttproto.py).
PAHO_REV = "b2d0858"


def load_paho_link(rev: str) -> Any:
    """The `MqttLink` class of `gateway/mqtt.py` at commit `rev`, loaded from git history
    as a module of its own (`paho_mqtt_link`): the baseline, without a copy of it in the
    tree. Its imports (gateway.backoff, gateway.config, gateway.log) are today's."""
    src = subprocess.run(["git", "-C", str(REPO_DIR), "show", f"{rev}:gateway/mqtt.py"],
                         capture_output=True, text=True, check=True).stdout
    path = Path(tempfile.mkdtemp(prefix="paho-link-")) / "paho_mqtt_link.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("paho_mqtt_link", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.MqttLink

END = b"__END__"
SUMMARY_KEYS = (
    "acked_per_s", "delivered_per_s", "p50_ms", "p99_ms", "cpu_s", "cpu_us_per_event",
    "sub_cpu_s", "loadavg_1m",
)  # fmt: skip


def event(i: int) -> dict[str, Any]:
    """A realistic `mo` event (SPEC §4), about 300 bytes of JSON."""
    return {
        "type": "mo",
        "id": f"01J9ZQ{i:020d}",
        "vmn": "5551000100",
        "from": "15551234567",
        "text": f"JOIN newsletter please, message number {i}",
        "keyword": "JOIN",
        "route": "keyword",
        "received_at": "2025-06-01T12:00:00.000000Z",
        "smsc": "primary",
        "segments": 1,
        "data_coding": 0,
    }


# --------------------------------------------------------------------------- subscriber


async def subscriber(host: str, port: int, filter_: str, qos: int) -> None:
    """Count messages per topic; on END print one JSON line for that topic."""
    counts: dict[str, int] = {}
    first: dict[str, float] = {}
    last: dict[str, float] = {}
    async with aiomqtt.Client(
        host, port, identifier=f"bench-sub-{uuid.uuid4().hex[:8]}", max_inflight_messages=1000
    ) as client:
        await client.subscribe(filter_, qos=qos)
        print("READY", flush=True)
        async for message in client.messages:
            name = message.topic.value
            now = time.time()
            if message.payload == END:
                report = {
                    "topic": name,
                    "received": counts.pop(name, 0),
                    "first": first.pop(name, None),
                    "last": last.pop(name, None),
                    "cpu": time.process_time(),
                }
                print(json.dumps(report), flush=True)
                continue
            counts[name] = counts.get(name, 0) + 1
            first.setdefault(name, now)
            last[name] = now


class Subscriber:
    def __init__(self, host: str, port: int, filter_: str, qos: int) -> None:
        self.argv = [
            sys.executable, str(Path(__file__).resolve()), "--subscriber",
            "--host", host, "--port", str(port), "--filter", filter_, "--sub-qos", str(qos),
        ]  # fmt: skip
        self.proc: asyncio.subprocess.Process | None = None
        self.cpu = 0.0  # the subscriber's CPU seconds at its last report

    async def __aenter__(self) -> Subscriber:
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv, stdout=asyncio.subprocess.PIPE, cwd=REPO_DIR
        )
        line = await self._line(20)
        if line.strip() != "READY":
            raise RuntimeError(f"subscriber did not start: {line!r}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 5)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()

    async def _line(self, timeout: float) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        raw = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if not raw:
            raise RuntimeError("subscriber exited")
        return raw.decode()

    async def report(self, name: str, timeout: float) -> dict[str, Any]:
        while True:
            data: dict[str, Any] = json.loads(await self._line(timeout))
            if data["topic"] == name:
                data["cpu_delta"], self.cpu = data["cpu"] - self.cpu, data["cpu"]
                return data


# --------------------------------------------------------------------------- runs


@dataclass
class Run:
    target: str
    concurrency: int
    run: int
    count: int
    ok: int
    other: dict[str, int]
    elapsed_s: float
    acked_per_s: float
    p50_ms: float
    p99_ms: float
    cpu_s: float
    cpu_us_per_event: float
    sub_cpu_s: float
    received: int
    delivered_per_s: float
    loadavg_1m: float


async def drive(
    count: int, concurrency: int, call: Callable[[int], Awaitable[tuple[bool, str, float]]]
) -> tuple[float, float, list[float], dict[str, int], int]:
    """C workers over `count` calls -> (start, end, latencies, failures, ok)."""
    next_index = iter(range(count))
    latencies: list[float] = []
    failures: dict[str, int] = {}
    ok = 0

    async def worker() -> None:
        nonlocal ok
        for i in next_index:
            good, detail, latency_ms = await call(i)
            if good:
                ok += 1
                latencies.append(latency_ms)
            else:
                failures[detail] = failures.get(detail, 0) + 1

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return start, time.perf_counter(), latencies, failures, ok


async def one_run(
    target: str,
    concurrency: int,
    index: int,
    args: argparse.Namespace,
    link: AnyLink,
    raw: aiomqtt.Client | None,
    sub: Subscriber,
    prefix: str,
) -> Run:
    name = topic(prefix, "mo", f"{target}-{concurrency}-{index}")
    payloads = [event(i) for i in range(args.count)]

    if target in ("action", "paho"):
        action = MqttAction(link, qos=1, publish_timeout=args.publish_timeout)

        async def call(i: int) -> tuple[bool, str, float]:
            job = Job(id=i, kind="mqtt", target=name, event_id=str(i), payload=payloads[i],
                      attempts=0)  # fmt: skip
            r = await action.run(job)
            return r.outcome is Outcome.OK, f"{r.outcome.value}: {r.detail}", r.latency_ms

    else:
        assert raw is not None
        client = raw

        async def call(i: int) -> tuple[bool, str, float]:
            t0 = time.perf_counter()
            body = json.dumps(payloads[i], separators=(",", ":"), ensure_ascii=False).encode()
            try:
                await client.publish(name, body, qos=1, timeout=args.publish_timeout)
            except aiomqtt.MqttError as exc:
                return False, str(exc), 0.0
            return True, "", (time.perf_counter() - t0) * 1000

    await sub.report(await _mark(link, name + "-pre"), timeout=60)  # sync the CPU counter
    wall0 = time.time()
    cpu0 = time.process_time()
    start, end, latencies, failures, ok = await drive(args.count, concurrency, call)
    cpu = time.process_time() - cpu0
    await link.publish(name, END, 1)
    report = await sub.report(name, timeout=60)
    received = int(report["received"])
    last = report["last"]
    delivered = received / (last - wall0) if received and last else 0.0
    elapsed = end - start
    return Run(
        target=target,
        concurrency=concurrency,
        run=index,
        count=args.count,
        ok=ok,
        other=failures,
        elapsed_s=round(elapsed, 4),
        acked_per_s=round(ok / elapsed, 1),
        p50_ms=round(percentile(sorted(latencies), 50, math.nan), 2),
        p99_ms=round(percentile(sorted(latencies), 99, math.nan), 2),
        cpu_s=round(cpu, 3),
        cpu_us_per_event=round(cpu / args.count * 1e6, 1),
        sub_cpu_s=round(float(report["cpu_delta"]), 3),
        received=received,
        delivered_per_s=round(delivered, 1),
        loadavg_1m=os.getloadavg()[0],
    )


async def _mark(link: AnyLink, name: str) -> str:
    await link.publish(name, END, 1)
    return name


def _median(runs: list[Run], key: str) -> float:
    return float(statistics.median(getattr(r, key) for r in runs))


def print_table(groups: dict[tuple[str, int], list[Run]], count: int) -> None:
    header = (
        f"{'target':<7} {'conc':>5} {'PUBACKed/s':>11} {'delivered/s':>12} {'received':>9} "
        f"{'p50 ms':>7} {'p99 ms':>7} {'CPU s':>6} {'us/event':>8} {'sub CPU':>7} "
        f"{'load':>5} {'not OK':>6}"
    )
    print(f"\nmedian of {len(next(iter(groups.values())))} runs, {count} QoS-1 events per run")
    print(header)
    print("-" * len(header))
    for (target, conc), runs in groups.items():
        not_ok = sum(sum(r.other.values()) for r in runs)
        print(
            f"{target:<7} {conc:>5} {_median(runs, 'acked_per_s'):>11,.0f} "
            f"{_median(runs, 'delivered_per_s'):>12,.0f} {min(r.received for r in runs):>9} "
            f"{_median(runs, 'p50_ms'):>7.1f} {_median(runs, 'p99_ms'):>7.1f} "
            f"{_median(runs, 'cpu_s'):>6.2f} {_median(runs, 'cpu_us_per_event'):>8.1f} "
            f"{_median(runs, 'sub_cpu_s'):>7.2f} "
            f"{_median(runs, 'loadavg_1m'):>5.1f} {not_ok:>6}"
        )


async def amain(args: argparse.Namespace) -> int:
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    cfg = MqttConfig(url=f"mqtt://{args.host}:{args.port}", topic_prefix=prefix)
    targets = ["action", *(["paho"] if args.paho else []), *(["raw"] if args.raw else [])]
    groups: dict[tuple[str, int], list[Run]] = {}
    if args.direct_writes:  # each packet written at once, not once per loop turn
        OurClient._wrote = OurClient._flush  # type: ignore[method-assign]
    if args.paho:
        PahoLink = load_paho_link(args.paho_rev)
        paho_link: AnyLink = PahoLink(cfg, gateway_name=f"bench-paho-{prefix}",
                                      on_command=None)
    else:
        paho_link = contextlib.nullcontext()
    async with (
        Subscriber(args.host, args.port, f"{prefix}/mo/+", args.sub_qos) as sub,
        MqttLink(cfg, gateway_name=f"bench-{prefix}", on_command=None) as link,
        paho_link,
        aiomqtt.Client(
            args.host, args.port, identifier=f"{prefix}-raw", max_inflight_messages=1024
        ) as raw,
    ):
        raw.pending_calls_threshold = 1 << 30
        links = {"action": link, "raw": link, "paho": paho_link}
        for name in dict.fromkeys(t for t in targets if t != "raw"):
            await asyncio.wait_for(links[name].connected.wait(), 10)
            if args.warmup:
                warm = MqttAction(links[name])
                await asyncio.gather(*(
                    warm.run(Job(id=i, kind="mqtt", target=topic(prefix, "warmup"),
                                 event_id="w", payload=event(i), attempts=0))
                    for i in range(args.warmup)
                ))  # fmt: skip
        for concurrency in args.concurrency:
            for k in range(args.runs):
                for target in targets:  # alternating: the same conditions for each
                    r = await one_run(target, concurrency, k, args, links[target], raw,
                                      sub, prefix)
                    groups.setdefault((target, concurrency), []).append(r)
                    print(
                        f"{target} c={concurrency} run {k + 1}: {r.acked_per_s:,.0f} PUBACKed/s, "
                        f"received {r.received}/{r.count}, p99 {r.p99_ms} ms, cpu {r.cpu_s} s",
                        file=sys.stderr,
                        flush=True,
                    )
        # The links published a retained status: clear it.
        await raw.publish(link.status_topic, b"", qos=1, retain=True)
        if args.paho:
            await raw.publish(paho_link.status_topic, b"", qos=1, retain=True)
    print_table(groups, args.count)
    if args.json_out:
        out = {
            "machine": machine(aiomqtt=aiomqtt.__version__, paho=paho_version,
                               loop=args.loop, direct_writes=args.direct_writes),
            "args": {k: v for k, v in vars(args).items() if k != "subscriber"},
            "summary": [
                {
                    "target": t,
                    "concurrency": c,
                    **{key: _median(runs, key) for key in SUMMARY_KEYS},
                    "received_min": min(r.received for r in runs),
                }
                for (t, c), runs in groups.items()
            ],
            "runs": [asdict(r) for runs in groups.values() for r in runs],
        }
        Path(args.json_out).write_text(json.dumps(out, indent=2) + "\n")
        print(f"\nwritten: {args.json_out}")
    lost = any(r.received != r.count or r.ok != r.count for g in groups.values() for r in g)
    return 1 if lost else 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--host", default=os.environ.get("MQTT_HOST", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("MQTT_PORT", "1883")))
    p.add_argument("--count", type=int, default=20_000, help="events per run")
    p.add_argument(
        "--concurrency",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[16, 64, 128, 256],
        help="comma-separated concurrent run() counts (default 16,64,128,256)",
    )
    p.add_argument("--runs", "-k", type=int, default=3, help="runs per setting (median)")
    p.add_argument("--warmup", type=int, default=1000, help="unmeasured events first")
    p.add_argument("--publish-timeout", type=float, default=30.0, help="seconds")
    p.add_argument("--sub-qos", type=int, default=1, choices=(0, 1), help="subscriber QoS")
    p.add_argument("--raw", action="store_true", help="add raw aiomqtt.Client.publish rows")
    p.add_argument("--paho", action="store_true",
                   help="add the paho-mqtt link (gateway/mqtt.py at --paho-rev) as a target")
    p.add_argument("--paho-rev", default=PAHO_REV,
                   help="the commit whose gateway/mqtt.py is the paho baseline")
    p.add_argument("--direct-writes", action="store_true",
                   help="our link writes each packet at once (default: once per loop turn)")
    p.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio",
                   help="the event loop (default asyncio)")
    p.add_argument("--json-out", default=None, help="write every run as JSON here")
    p.add_argument("--subscriber", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--filter", default="#", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.subscriber:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(subscriber(args.host, args.port, args.filter, args.sub_qos))
        return 0
    eventloop.install(args.loop)
    return asyncio.run(amain(args))


if __name__ == "__main__":
    sys.exit(main())
