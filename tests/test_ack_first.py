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

