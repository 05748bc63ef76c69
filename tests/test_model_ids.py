"""Ids (gateway.model.new_id): 24 hex digits that sort by creation time, and a Job is
built as plainly as fan-out needs."""

from __future__ import annotations

import time

from hypothesis import given
from hypothesis import strategies as st

from gateway.model import Job, LazyJson, _id_digits, new_id


@given(st.integers(0, 2**48 - 1), st.integers(0, 0xFFFF), st.integers(0, 2**32 - 1))
def test_id_digits_are_the_three_fields_formatted_apart(ms: int, counter: int,
                                                        rand: int) -> None:
    assert _id_digits(ms, counter, rand) == f"{ms:012x}{counter:04x}{rand:08x}"


def test_new_ids_are_24_hex_digits_sorted_by_creation_and_unique() -> None:
    before = time.time_ns() // 1_000_000
    ids = [new_id() for _ in range(5000)]
    after = time.time_ns() // 1_000_000
    assert all(len(i) == 24 and int(i, 16) >= 0 for i in ids)
    assert len(set(ids)) == len(ids)
    # the clock and counter part (the first 16 digits) never goes back
    heads = [i[:16] for i in ids]
    assert heads == sorted(heads)
    assert before <= int(ids[0][:12], 16) <= int(ids[-1][:12], 16) <= after


def test_a_job_keeps_what_it_was_built_with() -> None:
    raw = b'{"type":"mo"}'
    job = Job(id=7, kind="mqtt", target="vmn/mo/1", event_id="e", payload=LazyJson(raw),
              attempts=2, raw=raw)
    assert (job.id, job.kind, job.attempts, job.attempt, job.body()) == (7, "mqtt", 2, 3, raw)
