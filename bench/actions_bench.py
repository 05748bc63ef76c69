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
import contextlib
import json
import math
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchlib import CLK_TCK, cpu_seconds, machine, percentile
from loadgen import LoadServer, PushError, _Run  # bench/ is on sys.path as a script
from mo_bench import (
    BASELINE_CMD,
    GATEWAY_CMD,
    TargetError,
    _command,
    _stop,
    _wait_bound,
    process_tree,
    tree_hwm_kib,
)

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
TARGETS = ("baseline", "gateway-plain", "gateway-webhook", "gateway-mqtt", "gateway-actions")
# Which receivers a gateway target has: (webhook, mqtt).
SIDES = {
    "gateway-webhook": (True, False),
    "gateway-mqtt": (False, True),
    "gateway-actions": (True, True),
}
VMN = "5551000100"
TEXT_SEQ = re.compile(r"HELLO (\d+) ")
PIPE_LIMIT = 64 * 1024 * 1024  # a dump is one JSON line of ~1-2 MB

# Placeholders replaced textually: {tmpdir} {host} {port} (the load generator),
# {hook_port} (webhook receiver), {prefix} (the run's MQTT topic prefix).
_GATEWAY_HEAD = """\
[gateway]
name = "bench"
database = "sqlite+aiosqlite:///{tmpdir}/bench.db"
retry_base = 0.2
mt_poll_interval = 0.5
action_workers = {action_workers}

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


def _seq_of(event: Any) -> int | None:
    """The loadgen sequence number carried in an mo event's text, None if none."""
    if not isinstance(event, dict):
        return None
    m = TEXT_SEQ.match(str(event.get("text") or ""))
    return int(m.group(1)) if m else None


# ======================================================================================
# Receiver processes (``--role webhook`` / ``--role mqtt``)
# ======================================================================================
class _Records:
    """What a receiver got: (receive time, seq, event id); thread-safe enough under the
    GIL (appends from one thread, copies from the control thread)."""

    def __init__(self) -> None:
        self.items: list[tuple[float, int, str]] = []
        self.seqs: set[int] = set()
        self.bad = 0
        self.last = 0.0

    def add(self, t: float, body: bytes | bytearray) -> None:
        try:
            event = json.loads(body)
        except ValueError:
            self.bad += 1
            return
        seq = _seq_of(event)
        if seq is None:
            self.bad += 1
            return
        self.items.append((t, seq, str(event.get("id"))))
        self.seqs.add(seq)
        self.last = t

    def stats(self) -> dict[str, Any]:
        return {"n": len(self.items), "unique": len(self.seqs), "bad": self.bad, "last": self.last}


def _control(records: _Records, on_quit: Callable[[], None]) -> None:
    """Answer the orchestrator's commands, one JSON line each, until quit or EOF."""
    out = sys.stdout
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "stats":
            reply: dict[str, Any] = records.stats()
        elif cmd == "dump":
            reply = {**records.stats(), "records": list(records.items)}
        elif cmd == "quit":
            break
        else:
            reply = {"error": f"unknown command {cmd!r}"}
        out.write(json.dumps(reply, separators=(",", ":")) + "\n")
        out.flush()
    on_quit()


def _ready(**info: Any) -> None:
    sys.stdout.write(json.dumps({"ready": True, **info}) + "\n")
    sys.stdout.flush()


async def _webhook_receiver(port: int) -> int:
    from aiohttp import web

    records = _Records()

    async def hook(request: web.Request) -> web.Response:
        t = time.time()
        records.add(t, await request.read())
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, backlog=1024)
    await site.start()
    server = site._server
    assert server is not None
    sockets = getattr(server, "sockets", None) or []
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    threading.Thread(
        target=_control,
        args=(records, lambda: loop.call_soon_threadsafe(stop.set)),
        daemon=True,
    ).start()
    _ready(port=int(sockets[0].getsockname()[1]), pid=os.getpid())
    await stop.wait()
    await runner.cleanup()
    return 0


def _mqtt_subscriber(host: str, port: int, topic_filter: str, client_id: str) -> int:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    records = _Records()
    subscribed = threading.Event()

    def on_connect(client: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        if not rc.is_failure:
            client.subscribe(topic_filter, qos=1)

    def on_subscribe(_c: mqtt.Client, _u: Any, _mid: int, codes: Any, _p: Any) -> None:
        if codes and not codes[0].is_failure:
            subscribed.set()

    def on_message(_c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        records.add(time.time(), msg.payload)

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.connect(host, port, keepalive=60)
    client.loop_start()
    if not subscribed.wait(10.0):
        print("mqtt subscriber: no SUBACK within 10 s", file=sys.stderr)
        client.loop_stop()
        return 1
    _ready(pid=os.getpid())
    _control(records, lambda: None)
    client.disconnect()
    client.loop_stop()
    return 0


def role_main(args: argparse.Namespace) -> int:
    if args.role == "webhook":
        return asyncio.run(_webhook_receiver(args.hook_port))
    if args.role == "mqtt":
        return _mqtt_subscriber(args.mqtt_host, args.mqtt_port, args.topic, args.client_id)
    print(f"unknown role {args.role!r}", file=sys.stderr)
    return 2


# ======================================================================================
# Orchestrator side
# ======================================================================================
class TimedLoadServer(LoadServer):
    """A LoadServer that keeps each push's per-PDU send times as wall-clock seconds."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        self.last_first_seq = 0
        self.last_sent_wall: list[float] = []
        self.last_ack_wall = 0.0

    def _report(self, run: _Run, error: str | None) -> dict[str, Any]:  # type: ignore[override]
        report = LoadServer._report(run, error)
        offset = time.time_ns() - time.perf_counter_ns()  # perf_counter -> wall clock
        self.last_first_seq = run.first_seq
        self.last_sent_wall = [(t + offset) / 1e9 if t else 0.0 for t in run.sent_ns]
        last_ack = max(run.ack_ns, default=0)
        self.last_ack_wall = (last_ack + offset) / 1e9 if last_ack else 0.0
        return report


@dataclass
class Phase:
    """What one push sent: its seq range and per-PDU wall-clock send times."""

    name: str
    first_seq: int
    sent_wall: list[float]
    last_ack_wall: float
    report: dict[str, Any]


async def push(
    srv: TimedLoadServer,
    name: str,
    count: int,
    window: int,
    rate: float | None,
    stall_timeout: float,
) -> Phase:
    report = await srv.push(count, window, rate, 0, stall_timeout)
    phase = Phase(name, srv.last_first_seq, srv.last_sent_wall, srv.last_ack_wall, report)
    if not report["complete"]:
        raise TargetError(f"{name} phase incomplete: {report['error']}")
    return phase


class Helper:
    """A receiver process driven over stdin/stdout, one JSON line per command."""

    def __init__(self, name: str, proc: asyncio.subprocess.Process) -> None:
        self.name = name
        self.proc = proc
        self._lock = asyncio.Lock()

    @classmethod
    async def start(
        cls, name: str, argv: list[str], log: Path, timeout: float = 15.0
    ) -> tuple[Helper, dict[str, Any]]:
        with log.open("ab") as err:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                cwd=REPO_DIR,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=err,
                limit=PIPE_LIMIT,
            )
        helper = cls(name, proc)
        try:
            info = await asyncio.wait_for(helper._read(), timeout)
        except (TimeoutError, TargetError) as exc:
            await helper.stop()
            raise TargetError(f"{name} did not start ({exc!r}); log {log}") from None
        return helper, info

    async def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = await self.proc.stdout.readline()
        if not line:
            raise TargetError(f"{self.name} exited (code {self.proc.returncode})")
        reply: dict[str, Any] = json.loads(line)
        return reply

    async def request(self, cmd: str, timeout: float = 30.0) -> dict[str, Any]:
        async with self._lock:
            assert self.proc.stdin is not None
            self.proc.stdin.write(cmd.encode() + b"\n")
            await self.proc.stdin.drain()
            return await asyncio.wait_for(self._read(), timeout)

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def stop(self) -> None:
        if self.proc.returncode is not None:
            return
        with contextlib.suppress(Exception):
            assert self.proc.stdin is not None
            self.proc.stdin.write(b"quit\n")
            await self.proc.stdin.drain()
            self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 5.0)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()


# --- CPU accounting from /proc -------------------------------------------------------


_BROKER: subprocess.Popen[bytes] | None = None  # the bench's own broker, if started


def start_broker(tmpdir: Path) -> int:
    """A Mosquitto of the bench's own on a free port, with no limit on the messages it
    queues for a subscriber: the packaged default (max_queued_messages 1000) drops
    QoS 1 messages for a subscriber that falls 1,000 behind, which a Python subscriber
    does under a 30k burst. Returns its port."""
    global _BROKER
    import socket as _socket

    with _socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    conf = tmpdir / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                    "max_queued_messages 0\nmax_inflight_messages 0\n", encoding="utf-8")
    _BROKER = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), _socket.create_connection(("127.0.0.1", port), 0.5):
            return port
        time.sleep(0.05)
    raise RuntimeError("the bench's mosquitto did not start")


def stop_broker() -> None:
    if _BROKER is not None:
        _BROKER.terminate()
        _BROKER.wait(10)


def find_mosquitto() -> int | None:
    """The broker's pid (read-only use: its CPU time), if it runs on this machine."""
    if _BROKER is not None:
        return _BROKER.pid
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError), open(f"/proc/{entry}/comm") as f:
                if f.read().strip() == "mosquitto":
                    return int(entry)
    return None


def _machine_busy_s() -> float:
    """Non-idle CPU seconds of the whole machine (all cores), from /proc/stat."""
    with open("/proc/stat", encoding="ascii") as f:
        ticks = [int(x) for x in f.readline().split()[1:]]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    return (sum(ticks[:8]) - idle) / CLK_TCK  # guest time is already in user


def _threads_cpu_s(pid: int) -> dict[str, float]:
    """CPU seconds per thread of pid, keyed "<tid>:<name>"."""
    out: dict[str, float] = {}
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError, IndexError, ValueError):
                with open(f"/proc/{pid}/task/{tid}/stat", encoding="ascii", errors="replace") as f:
                    stat = f.read()
                name = stat[stat.index("(") + 1 : stat.rindex(")")]
                fields = stat.rpartition(")")[2].split()
                out[f"{tid}:{name}"] = (int(fields[11]) + int(fields[12])) / CLK_TCK
    return out


class CpuMeter:
    """Snapshots of the CPU seconds of named process groups (plus the whole machine and
    each thread of the target process) at named instants."""

    def __init__(
        self, groups: dict[str, Callable[[], Iterable[int]]], thread_pid: int | None = None
    ) -> None:
        self.groups = groups
        self.thread_pid = thread_pid
        self.marks: dict[str, tuple[float, dict[str, float], dict[str, float]]] = {}

    def mark(self, name: str) -> None:
        values: dict[str, float] = {}
        for group, pids in self.groups.items():
            values[group] = sum(v for p in pids() if (v := cpu_seconds(p)) is not None)
        values["machine"] = _machine_busy_s()
        threads = _threads_cpu_s(self.thread_pid) if self.thread_pid else {}
        self.marks[name] = (time.monotonic(), values, threads)

    def cores(self, start: str, end: str) -> dict[str, Any] | None:
        """CPU seconds per wall second of each group between two marks ("machine": all
        processes, out of os.cpu_count(); "target_threads": the busiest threads)."""
        if start not in self.marks or end not in self.marks:
            return None
        t0, a, ta = self.marks[start]
        t1, b, tb = self.marks[end]
        wall = t1 - t0
        if wall <= 0:
            return None
        out: dict[str, Any] = {g: round((b[g] - a[g]) / wall, 3) for g in b}
        out["other"] = round(out["machine"] - sum(out[g] for g in self.groups), 3)
        threads = {t: round((v - ta.get(t, 0.0)) / wall, 3) for t, v in tb.items()}
        out["target_threads"] = dict(sorted(threads.items(), key=lambda kv: -kv[1])[:4])
        out["wall_s"] = round(wall, 3)
        return out


# --- delivery analysis -----------------------------------------------------------------
def deliveries(records: list[list[Any]], phase: Phase) -> dict[str, Any]:
    """Match a receiver's records to one push: counts, drain rate and latencies (first
    delivery of each MO)."""
    first_seq, count = phase.first_seq, len(phase.sent_wall)
    first: dict[int, float] = {}
    in_range = 0
    ids: set[str] = set()
    for t, seq, event_id in records:
        i = seq - first_seq
        if 0 <= i < count:
            in_range += 1
            ids.add(event_id)
            if seq not in first or t < first[seq]:
                first[seq] = t
    received = len(first)
    sent = [s for s in phase.sent_wall if s]
    t0 = min(sent) if sent else 0.0
    lat = sorted((t - phase.sent_wall[seq - first_seq]) * 1e3 for seq, t in first.items())
    last = max(first.values(), default=0.0)
    span = last - t0 if received else 0.0
    return {
        "expected": count,
        "received": received,
        "duplicates": in_range - received,
        "unique_ids": len(ids),
        "complete": received == count,
        "delivered_by_last_ack": sum(1 for t in first.values() if t <= phase.last_ack_wall),
        "first_sent_wall": round(t0, 6),
        "last_delivery_wall": round(last, 6),
        "drain_s": round(span, 3),
        "drain_per_s": round(received / span, 1) if span > 0 else 0.0,
        "p50_ms": round(percentile(lat, 50, math.nan), 3),
        "p99_ms": round(percentile(lat, 99, math.nan), 3),
        "max_ms": round(lat[-1], 3) if lat else math.nan,
    }


async def wait_delivered(
    helpers: list[Helper], expected: int, timeout: float, stall: float
) -> dict[str, dict[str, Any]]:
    """Poll the receivers until each has `expected` distinct MOs (cumulative over the
    run), `timeout` passes, or nothing new arrives for `stall` seconds."""
    deadline = time.monotonic() + timeout
    state: dict[str, dict[str, Any]] = {h.name: {"unique": 0} for h in helpers}
    progress = time.monotonic()
    while True:
        pending = [h for h in helpers if state[h.name]["unique"] < expected]
        if not pending:
            break
        for h in pending:
            st = await h.request("stats")
            if st["unique"] != state[h.name]["unique"]:
                progress = time.monotonic()
            state[h.name] = st
        now = time.monotonic()
        if all(state[h.name]["unique"] >= expected for h in helpers):
            break
        if now >= deadline or now - progress >= stall:
            break
        await asyncio.sleep(0.05)
    for h in helpers:
        state[h.name]["waited_for"] = expected
        state[h.name]["complete"] = state[h.name]["unique"] >= expected
    return state


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


def _config(template: str, values: dict[str, str]) -> str:
    values = {"action_workers": ACTION_WORKERS, **values}
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
                cmd = _command(args.baseline_cmd, **values)
            else:
                template = _actions_config(want_hook, want_mqtt) if actions else PLAIN_CONFIG
                Path(values["config"]).write_text(_config(template, values), encoding="utf-8")
                cmd = _command(args.alt_cmds[alt] if alt else args.gateway_cmd, **values)
            result.cmd = shlex.join(cmd)
            with log.open("ab") as out:
                try:
                    proc = await asyncio.create_subprocess_exec(
                        *cmd,
                        cwd=REPO_DIR,
                        stdin=asyncio.subprocess.DEVNULL,
                        stdout=out,
                        stderr=out,
                        start_new_session=True,
                    )
                except OSError as exc:
                    raise TargetError(f"cannot start {shlex.join(cmd)}: {exc}") from exc
            result.bind_s = round(await _wait_bound(srv, proc, args.bind_timeout, log), 3)
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
            result.exit_code = await _stop(proc, args.stop_timeout)
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
        doc = {
            "params": params,
            "machine": machine(),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "summary": summary,
            "ratios": ratios,
            "runs": {t: [r.as_dict() for r in rs] for t, rs in all_runs.items()},
        }
        Path(args.json_out).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        print(f"\nresults written to {args.json_out}")
    if failed:
        print("actions_bench: some runs FAILED (see above)", file=sys.stderr)
    return 1 if failed else 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--targets", default=",".join(TARGETS), help="comma list of: %(default)s")
    p.add_argument("--action-workers", type=int, choices=[0, 1], default=0,
                   help="[gateway] action_workers for the gateway targets")
    p.add_argument("--runs", "-k", type=int, default=3, help="runs per target (median)")
    p.add_argument("--count", type=int, default=30_000, help="burst MOs (unlimited rate)")
    p.add_argument("--window", type=int, default=1000, help="max outstanding deliver_sm")
    p.add_argument("--warmup", type=int, default=1000, help="unmeasured MOs first")
    p.add_argument("--lat-count", type=int, default=5000, help="paced-phase MOs")
    p.add_argument("--lat-rate", type=float, default=1000.0, help="paced-phase MO/s")
    p.add_argument(
        "--settle",
        type=float,
        default=0.5,
        help="pause between the drained burst and the paced phase, s",
    )
    p.add_argument("--host", default="127.0.0.1", help="where the load generator listens")
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
    p.add_argument("--bind-timeout", type=float, default=30.0, help="seconds")
    p.add_argument(
        "--stall-timeout",
        type=float,
        default=30.0,
        help="give up a push / a drain after this long without progress",
    )
    p.add_argument(
        "--drain-timeout",
        type=float,
        default=180.0,
        help="max seconds to wait for the receivers after a push",
    )
    p.add_argument("--stop-timeout", type=float, default=10.0, help="SIGTERM grace before SIGKILL")
    p.add_argument("--json-out", default=None, help="write full results as JSON here")
    p.add_argument(
        "--keep-tmp",
        action="store_true",
        help="keep every run's temp dir (failed runs always keep theirs)",
    )
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
    global ACTION_WORKERS
    args = parse_args(argv)
    ACTION_WORKERS = str(args.action_workers)
    if args.role:
        return role_main(args)
    try:
        return asyncio.run(amain(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
