"""Small helpers shared by the benchmark scripts (bench/ is on sys.path when they run
as scripts): percentiles, a process's CPU time, and the machine description stored
with every results file."""

from __future__ import annotations

import contextlib
import math
import os
import platform
from collections.abc import Sequence
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
