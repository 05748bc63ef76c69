"""gateway.backoff: one capped exponential formula with jitter, and each caller's numbers."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.backoff import delay

seconds = st.floats(min_value=0.001, max_value=1000.0, allow_nan=False)
fractions = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
attempts = st.integers(min_value=-5, max_value=200)


@given(attempts, seconds, seconds, fractions, fractions, st.floats(0.0, 0.999999))
def test_within_bounds(attempt: int, base: float, cap: float, jitter: float, floor: float,
                       r: float) -> None:
    d = min(cap, base * 2.0 ** min(max(attempt, 0), 30))
    got = delay(attempt, base, cap, jitter=jitter, floor=floor, rand=lambda: r)
    eps = max(floor, d) * 1e-12  # rounding
    assert got >= floor
    assert max(floor, d * (1 - jitter)) - eps <= got <= max(floor, d)
    assert got <= max(cap, floor)


@given(seconds, seconds, fractions)
def test_the_cap_never_decreases_with_the_attempt(base: float, cap: float, jitter: float) -> None:
    tops = [delay(a, base, cap, jitter=jitter, rand=lambda: 1.0) for a in range(60)]
    bottoms = [delay(a, base, cap, jitter=jitter, rand=lambda: 0.0) for a in range(60)]
    assert tops == sorted(tops) and bottoms == sorted(bottoms)
    assert tops[-1] == pytest.approx(min(cap, base * 2.0 ** 30), rel=1e-12)


@given(attempts, seconds, seconds, fractions)
def test_jitter_spans_its_fraction(attempt: int, base: float, cap: float, jitter: float) -> None:
    top = delay(attempt, base, cap, jitter=jitter, rand=lambda: 1.0)
    bottom = delay(attempt, base, cap, jitter=jitter, rand=lambda: 0.0)
    assert abs(bottom - top * (1 - jitter)) <= top * 1e-12 + 1e-300
    assert delay(attempt, base, cap, jitter=0.0, rand=lambda: 0.3) == pytest.approx(top,
                                                                                  rel=1e-12)


def test_deterministic_given_a_random_source() -> None:
    a, b = random.Random(7), random.Random(7)
    assert [delay(n, 1.0, 60.0, rand=a.random) for n in range(20)] == [
        delay(n, 1.0, 60.0, rand=b.random) for n in range(20)]


# ------------------------------------------------------------- each caller's old formula


def test_mqtt_reconnect_equal_jitter_never_below_low() -> None:
    low = [delay(a, 1.0, 30.0, floor=1.0, rand=lambda: 0.0) for a in range(8)]
    high = [delay(a, 1.0, 30.0, floor=1.0, rand=lambda: 1.0) for a in range(8)]
    assert high == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    assert low == [1.0, 1.0, 2.0, 4.0, 8.0, 15.0, 15.0, 15.0]
    assert all(1.0 <= delay(a, 1.0, 30.0, floor=1.0) <= 30.0 for a in range(100))


@given(st.integers(0, 100), seconds, seconds, st.floats(0.0, 0.999999))
def test_smpp_rebind_as_before(attempt: int, lo: float, extra: float, r: float) -> None:
    hi = lo + extra
    cap = min(hi, lo * (2 ** min(attempt, 30)))
    before = min(hi, cap / 2 + (cap / 2) * r) if attempt else lo  # uniform(0, c) = c * r
    assert abs(delay(attempt, lo, hi, jitter_from=1, rand=lambda: r) - before) <= before * 1e-12


@given(st.integers(0, 100), seconds, seconds, st.floats(0.0, 0.999999))
def test_job_and_mt_retries_as_before(attempts: int, base: float, cap: float,
                                      r: float) -> None:
    jobs = min(cap, base * (2.0 ** max(0, attempts - 1))) * (0.5 + 0.5 * r)
    assert abs(delay(attempts - 1, base, cap, rand=lambda: r) - jobs) <= jobs * 1e-12
    mt = min(300.0, 2.0 ** min(attempts, 30)) * (0.5 + 0.5 * r)
    assert abs(delay(attempts, 1.0, 300.0, rand=lambda: r) - mt) <= mt * 1e-12


def test_outbox_wakeup_and_worker_restart_as_before() -> None:
    assert [delay(a, 0.5, 300.0, jitter=0.0) for a in range(4)] == [0.5, 1.0, 2.0, 4.0]
    worker, d = [], 1.0
    for _ in range(8):
        worker.append(d)
        d = min(30.0, d * 2)
    assert [delay(n, 1.0, 30.0, jitter=0.0) for n in range(8)] == worker
