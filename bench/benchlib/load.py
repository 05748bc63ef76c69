"""The load generator's side of a run: a LoadServer that keeps each push's per-PDU
wall-clock send times, one push as a Phase, and matching what the receivers got
against a phase (drain rate, delivery latencies)."""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from typing import Any

from loadgen import LoadServer, _Run

from benchlib.measure import percentile
from benchlib.procs import TargetError
from benchlib.receivers import Helper


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
