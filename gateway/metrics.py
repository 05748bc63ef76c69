"""Plain counters for the hot paths, read by the admin listener at scrape time.

The MO intake must not pay for prometheus-client objects (a `Counter.labels()` call
costs more than parsing the PDU), so it keeps ints and small lists here and
`admin.py` turns them into metric families when Prometheus asks."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from operator import itemgetter
from typing import Any

# Seconds. deliver_sm -> deliver_sm_resp and one intake commit: both are normally
# a few milliseconds; the long tail shows a slow disk or a stalled loop.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)


class Histogram:
    """Cumulative bucket counts (`counts[i]` = observations <= `bounds[i]`)."""

    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: Sequence[float] = LATENCY_BUCKETS) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * len(self.bounds)
        self.count = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        counts = self.counts
        for i in range(bisect_left(self.bounds, value), len(counts)):
            counts[i] += 1
        self.count += 1
        self.sum += value

    def observe_since(self, rows: Sequence[Any], at_index: int, now: float) -> None:
        """Observe `now - row[at_index]` for every row, the rows being in arrival order
        (non-decreasing times): a few binary searches per batch, not one per row."""
        n = len(rows)
        if not n:
            return
        at = itemgetter(at_index)
        counts = self.counts
        for i, bound in enumerate(self.bounds):
            # latency <= bound  <=>  arrived at or after now - bound
            counts[i] += n - bisect_left(rows, now - bound, key=at)
        self.count += n
        self.sum += n * now - sum(map(at, rows))

    def buckets(self) -> list[tuple[str, float]]:
        """For prometheus-client's HistogramMetricFamily(buckets=...)."""
        out = [(repr(b), float(c)) for b, c in zip(self.bounds, self.counts, strict=True)]
        out.append(("+Inf", float(self.count)))
        return out
