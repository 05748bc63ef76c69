"""The framing between the daemon and its action workers (gateway/worker.py): jobs and
results round-trip exactly, in frames split anywhere by the socket, without pickle."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.model import Outcome
from gateway.worker import (
    Channel,
    JobMsg,
    ResultMsg,
    WorkerPool,
    decode_jobs,
    decode_results,
    encode_jobs,
    encode_results,
)

jobs = st.lists(st.tuples(st.integers(-2**63, 2**63 - 1), st.sampled_from(["webhook", "mqtt"]),
                          st.text(), st.text(max_size=40), st.integers(0, 2**32 - 1),
                          st.binary(max_size=300)), max_size=20)
# No lone surrogates in a detail: it is written as UTF-8 (a surrogate becomes "?").
details = st.text(st.characters(exclude_categories=["Cs"]))
results = st.lists(st.tuples(st.integers(-2**63, 2**63 - 1),
                             st.sampled_from(list(Outcome)), details,
                             st.none() | st.integers(-2**31, 2**31 - 1),
                             st.floats(allow_nan=False)), max_size=20)


@settings(max_examples=150, deadline=None)
@given(jobs)
def test_jobs_round_trip(items: list[JobMsg]) -> None:
    assert decode_jobs(encode_jobs(items)) == items


@settings(max_examples=150, deadline=None)
@given(results)
def test_results_round_trip(items: list[ResultMsg]) -> None:
    got = decode_results(encode_results(items))
    assert got == items
    # the outcome comes back as the enum member itself, ready for a Result
    assert all(type(r[1]) is Outcome for r in got)


@settings(max_examples=100, deadline=None)
@given(st.lists(jobs, min_size=1, max_size=4), st.integers(1, 64))
def test_frames_split_anywhere_by_the_socket(frames: list[list[JobMsg]], chunk: int) -> None:
    got: list[JobMsg] = []
    ch: Channel[JobMsg] = Channel(got.extend, lambda: None, encode_jobs, decode_jobs)
    wire = b"".join(struct.pack("!I", len(f)) + f for f in map(encode_jobs, frames))
    for i in range(0, len(wire), chunk):
        ch.data_received(wire[i:i + chunk])
    assert got == [j for f in frames for j in f]


async def test_the_pool_is_ready_when_every_worker_said_so() -> None:
    """`WorkerPool.wait_ready`: the binds wait on it (at most a bound), so it must not
    return True before the last worker's ready frame, and must return at the bound."""
    pool = WorkerPool("unused.toml", 2)
    assert not await pool.wait_ready(0.01)
    pool.workers[0]._on_results([])  # the ready frame: no result in it
    assert not await pool.wait_ready(0.01)
    pool.workers[1]._on_results([])
    assert await pool.wait_ready(0.01)
