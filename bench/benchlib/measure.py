"""Measurements: percentiles, CPU time of a process, of each of its threads and of the
whole machine (CpuMeter), peak RSS of a process tree, and the machine description
stored with every results file. /proc only (no psutil)."""

from __future__ import annotations

import contextlib
import math
import os
import platform
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

N = TypeVar("N", int, float)
CLK_TCK = os.sysconf("SC_CLK_TCK")


def percentile(sorted_values: Sequence[N], q: float, empty: N) -> N:
    """Nearest-rank percentile of an ascending sequence (q in 0..100); `empty` if none."""
    if not sorted_values:
        return empty
    rank = max(1, math.ceil(q / 100.0 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of one process (all its threads), seconds; None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            fields = f.read().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14, 15 of stat(5)


def machine(**extra: Any) -> dict[str, Any]:
    """Python, platform, CPU count and model, plus `extra` (e.g. library versions)."""
    cpu = ""
    with (
        contextlib.suppress(OSError),
        open("/proc/cpuinfo", encoding="ascii", errors="replace") as f,
    ):
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "cpu_model": cpu,
        **extra,
    }


def _children(pid: int) -> list[int]:
    """Direct children of pid, from /proc/*/stat (no psutil)."""
    kids: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        if len(fields) > 1 and fields[1] == str(pid):
            kids.append(int(entry))
    return kids


def process_tree(pid: int) -> list[int]:
    tree = [pid]
    i = 0
    while i < len(tree):
        tree.extend(_children(tree[i]))
        i += 1
    return tree


def vm_hwm_kib(pid: int) -> int | None:
    """Peak RSS (VmHWM, KiB) of one process, None if it is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def tree_hwm_kib(pid: int) -> int | None:
    """Sum of the VmHWM of pid and its descendants (== pid's own for one process)."""
    values = [v for p in process_tree(pid) if (v := vm_hwm_kib(p)) is not None]
    return sum(values) if values else None


def machine_busy_s() -> float:
    """Non-idle CPU seconds of the whole machine (all cores), from /proc/stat."""
    with open("/proc/stat", encoding="ascii") as f:
        ticks = [int(x) for x in f.readline().split()[1:]]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    return (sum(ticks[:8]) - idle) / CLK_TCK  # guest time is already in user


def threads_cpu_s(pid: int) -> dict[str, float]:
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
        values["machine"] = machine_busy_s()
        threads = threads_cpu_s(self.thread_pid) if self.thread_pid else {}
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
