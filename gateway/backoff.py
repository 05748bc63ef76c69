"""Capped exponential backoff with jitter: the one formula behind every retry delay.

``delay(attempt, base, cap)`` is ``base * 2**attempt`` capped at `cap`, of which the top
`jitter` fraction is random ("equal jitter" at 0.5: uniform in the upper half), never
below `floor`. Each caller keeps its own parameters (and so its own numbers):

==========================  ==============================================================
SMPP re-bind                 ``delay(attempt, lo, hi, jitter_from=1)`` (the first exact)
MQTT reconnect / command     ``delay(attempt, lo, hi, floor=lo)``
action job retry             ``delay(attempts - 1, base, cap)``
outbox wake-up               ``delay(attempts, base, cap, jitter=0)`` (the job's upper bound)
MT retry                     ``delay(attempts, 1.0, 300.0)``
action worker restart        ``delay(restarts, 1.0, 30.0, jitter=0)``
==========================  ==============================================================

Pure: give `rand` (a ``() -> [0, 1)`` source) to make it deterministic.
"""

from __future__ import annotations

import random
from collections.abc import Callable

__all__ = ["MAX_EXPONENT", "delay"]

# 2**30 steps is far past any cap; it also keeps `2.0 ** attempt` from overflowing.
MAX_EXPONENT = 30


def delay(
    attempt: int,
    base: float,
    cap: float,
    *,
    jitter: float = 0.5,
    floor: float = 0.0,
    jitter_from: int = 0,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait before retry `attempt` (0-based; a negative one counts as 0).

    ``d = min(cap, base * 2**attempt)``; the result is uniform in ``[d * (1 - jitter), d]``
    (`d` itself while ``attempt < jitter_from``), and never below `floor`.
    """
    attempt = max(attempt, 0)
    d = min(cap, base * 2.0 ** min(attempt, MAX_EXPONENT))
    if jitter and attempt >= jitter_from:
        j = d * jitter
        d = min(d, d - j + j * rand())  # min: never past `d` by a rounding
    return d if d >= floor else floor
