"""Acks first: while the intake is under a burst, the drains (fan-out, job dispatch)
wait for it, up to QUIET_MAX_WAIT per step, until their backlog reaches DRAIN_BACKLOG.
With the mark at 10,000 a 40k burst was acked at the actions' rate (0.26-0.37 of the
no-action rate): the drains stopped yielding a quarter of the way in."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from gateway import pipeline
from gateway.pipeline import Intake
from gateway.storage.db import create_engine
from gateway.storage.repo import Store


def _intake(tmp_path: Path) -> Intake:
    return Intake(Store(create_engine(f"sqlite+aiosqlite:///{tmp_path / 'q.db'}")),
                  dedup_window=0, reassembly_timeout=60)


def _burst(intake: Intake, acks: int = pipeline.BUSY_BATCH) -> None:
    intake._note_rate(acks)  # what a committed batch of a window's acks does


@pytest.mark.parametrize("backlog", [0, 10_000, 40_000, pipeline.DRAIN_BACKLOG - 1])
async def test_a_drain_waits_for_a_burst_whatever_its_backlog_below_the_mark(
        tmp_path: Path, backlog: int) -> None:
    intake = _intake(tmp_path)
    _burst(intake)
    assert intake.busy()
    start = time.monotonic()
    waiter = asyncio.ensure_future(intake.quiet(backlog))
    # the burst goes on: a window acked every few ms, for longer than one hold
    while time.monotonic() - start < pipeline.BUSY_HOLD * 3:
        await asyncio.sleep(pipeline.BUSY_HOLD / 5)
        _burst(intake)
        if time.monotonic() - start < pipeline.QUIET_MAX_WAIT * 0.8:  # a slow loop aside
            assert not waiter.done(), f"a drain with {backlog} waiting went before the acks"
    await asyncio.wait_for(waiter, 10)  # and is never starved (QUIET_MAX_WAIT at most)


async def test_a_drain_at_the_mark_runs_at_once_and_an_idle_intake_never_holds_it(
        tmp_path: Path) -> None:
    intake = _intake(tmp_path)
    _burst(intake)
    await asyncio.wait_for(intake.quiet(pipeline.DRAIN_BACKLOG), 0.01)
    idle = _intake(tmp_path)
    await asyncio.wait_for(idle.quiet(0), 0.01)


def _acks(n: int) -> pipeline.Batch:
    batch = pipeline.Batch()
    batch.acks.extend((None, 5, i, None, 0.0, None) for i in range(n))  # type: ignore[misc]
    return batch


async def test_a_full_window_split_in_two_batches_is_a_burst_on_a_slow_machine(
        tmp_path: Path) -> None:
    """A window of 50 refilled as the acks go out alternates two batches of 25: neither
    reaches BUSY_BATCH, and at 2,000 acks/s (a slow disk) neither does the rate. On the
    old code the drains then never yielded: a 40k burst was acked at 0.5-0.7 of the
    no-action rate on such a machine (docs/PERFORMANCE.md)."""
    intake = _intake(tmp_path)
    half = pipeline.BUSY_BATCH * 25 // 32  # 25 of a window of 50
    committed = _acks(half)
    intake._committing.append(committed)
    intake._batch = _acks(half)  # the other half arrived while it committed
    intake._note_rate(half)  # below BUSY_BATCH, and far below BUSY_RATE
    assert time.monotonic() >= intake._busy_until, "the old signals see no burst here"
    intake._note_window(committed, took=0.025)
    waiter = asyncio.ensure_future(intake.quiet(0))
    await asyncio.sleep(pipeline.BUSY_HOLD * 0.8)
    assert not waiter.done(), "the drains went before the acks of a full window"
    await asyncio.wait_for(waiter, 1)  # the mark lapses: two commit times at most


def _commit_end(intake: Intake, answered: int, waiting: int, took: float) -> None:
    committed = _acks(answered)
    intake._committing = [committed]
    intake._batch = _acks(waiting)
    intake._note_rate(answered)
    intake._note_window(committed, took)


async def test_a_paced_load_is_not_a_burst(tmp_path: Path) -> None:
    """1,000 MOs/s with 5 ms commits: five answered, five waiting: the drains go at once
    (MO -> webhook latency at a paced rate must not wait for a burst that is not one)."""
    intake = _intake(tmp_path)
    _commit_end(intake, 5, 5, took=0.005)
    await asyncio.wait_for(intake.quiet(0), 0.01)


async def test_a_paced_load_on_a_slow_disk_is_a_burst_only_at_its_peaks(
        tmp_path: Path) -> None:
    """1,000 MOs/s with commits of 15-25 ms: 30-50 PDUs in flight, more than BUSY_BATCH,
    but not a full window: only a commit at the most seen in flight counts."""
    intake = _intake(tmp_path)
    _commit_end(intake, 25, 25, took=0.025)  # a peak: 50 in flight, the most yet
    assert intake._busy_until > time.monotonic()
    intake._busy_until = 0.0
    for answered, waiting in [(20, 18), (15, 20), (22, 19), (18, 16)]:
        _commit_end(intake, answered, waiting, took=0.02)
        await asyncio.wait_for(intake.quiet(0), 0.01)
