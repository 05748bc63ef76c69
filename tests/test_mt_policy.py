"""The opt-out rule of an MT (gateway/mt_policy.py), pure: an exempt MT is never
blocked, an MT whose lease is gone is always lost, a held MT to a recipient opted out
of its sender is blocked unless exempt; and the pairs storage looks up (`to_check`, one
query per batch) are enough to decide every verdict."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway.model import QueuedMt
from gateway.mt_policy import BLOCKED_ERROR, Verdict, to_check, verdict, verdicts

# Few senders and recipients, so that pairs repeat across a batch and opt-outs hit.
senders = st.sampled_from(["5551000100", "5551000200", "ACME"])
recipients = st.sampled_from(["15550001111", "15550002222", "15550003333"])
mts = st.builds(lambda i, s, r, exempt: QueuedMt(f"m{i}", s, r, "hi", None, 0, exempt, "t"),
                st.integers(0, 10**6), senders, recipients, st.booleans())
batches = st.lists(st.tuples(mts, st.booleans()), max_size=12)  # (MT, its lease holds)
opted = st.frozensets(st.tuples(senders, recipients))


@given(held=st.booleans(), opted_out=st.booleans())
def test_an_exempt_mt_is_never_blocked(held: bool, opted_out: bool) -> None:
    assert verdict(held=held, exempt=True, opted_out=opted_out) is not Verdict.BLOCKED


@given(exempt=st.booleans(), opted_out=st.booleans())
def test_an_mt_not_held_is_always_lost(exempt: bool, opted_out: bool) -> None:
    assert verdict(held=False, exempt=exempt, opted_out=opted_out) is Verdict.LOST


def test_the_table() -> None:
    assert verdict(held=True, exempt=False, opted_out=True) is Verdict.BLOCKED
    assert verdict(held=True, exempt=False, opted_out=False) is Verdict.SEND
    assert verdict(held=True, exempt=True, opted_out=True) is Verdict.SEND
    assert verdict(held=True, exempt=True, opted_out=False) is Verdict.SEND
    assert BLOCKED_ERROR == "recipient opted out"  # stored in messages.error, and sent


@given(batches, opted)
def test_a_batch(batch: list[tuple[QueuedMt, bool]],
                 out: frozenset[tuple[str, str]]) -> None:
    items, held = [m for m, _ in batch], [h for _, h in batch]
    got = verdicts(items, held, out)
    assert len(got) == len(items)
    for m, h, v in zip(items, held, got, strict=True):
        if not h:
            assert v is Verdict.LOST
        elif m.exempt:
            assert v is Verdict.SEND
        elif (m.sender, m.recipient) in out:
            assert v is Verdict.BLOCKED
        else:
            assert v is Verdict.SEND


@given(batches, opted)
def test_the_pairs_looked_up_decide_every_verdict(batch: list[tuple[QueuedMt, bool]],
                                                  out: frozenset[tuple[str, str]]) -> None:
    """Storage looks up only `to_check` (none of an exempt or lost MT): what that lookup
    answers gives the same verdicts as knowing every opted-out pair."""
    items, held = [m for m, _ in batch], [h for _, h in batch]
    pairs = to_check(items, held)
    needed = {(m.sender, m.recipient) for m, h in zip(items, held, strict=True)
              if h and not m.exempt}
    assert set(pairs) == needed  # every pair that can block, and no other
    answered = out & set(pairs)
    assert verdicts(items, held, answered) == verdicts(items, held, out)
    if not any(h and not m.exempt for m, h in zip(items, held, strict=True)):
        assert pairs == []  # no query at all
