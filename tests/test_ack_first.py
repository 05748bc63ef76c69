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



def _window(n: int) -> pipeline.Batch:
    """A batch of `n` PDUs' acks (what `_start` reads of it: their count)."""
    batch = pipeline.Batch()
    batch.acks.extend((None, 5, seq, None, 0.0, None) for seq in range(n))  # type: ignore[misc]
    return batch


async def test_a_large_batch_that_waited_behind_another_write_is_no_burst(
        tmp_path: Path) -> None:
    """At a steady 4,500 MO/s a drain's step on the single writer made the next batch
    30-45 PDUs: counted as a burst, every step made the drains wait again (fan-out fell
    to one step a second). A batch that large with nothing in between still is one."""
    intake = _intake(tmp_path)
    intake.store.other_writes += 1  # a drain's step committed since the last batch
    intake._start(_window(pipeline.BUSY_BATCH + 10), alone=True)
    await asyncio.wait_for(intake.quiet(0), 0.01)  # not under a burst: no wait
    intake._start(_window(pipeline.BUSY_BATCH + 10), alone=True)  # nothing in between
    waiter = asyncio.ensure_future(intake.quiet(0))
    await asyncio.sleep(pipeline.BUSY_HOLD / 5)
    assert not waiter.done()
    await asyncio.wait_for(waiter, 10)


async def test_the_ack_rate_over_the_span_marks_a_burst_but_a_steady_flow_does_not(
        tmp_path: Path) -> None:
    intake = _intake(tmp_path)
    # A steady flow below BUSY_RATE in small batches (a late loop only spreads it more).
    per = 10
    pause = per / (pipeline.BUSY_RATE / 2)
    start = time.monotonic()
    while time.monotonic() - start < pipeline.BUSY_SPAN * 3:
        intake._note_rate(per)
        await asyncio.sleep(pause)
    await asyncio.wait_for(intake.quiet(0), 0.01)
    # BUSY_RATE over the span in batches each below BUSY_BATCH: a burst.
    for _ in range(int(pipeline.BUSY_RATE * pipeline.BUSY_SPAN) // per + 1):
        intake._note_rate(per)
    assert intake._busy_until > time.monotonic()
