"""The opt-out rule of an MT, decided from facts storage gathers (pure: no IO).

An MT that is not exempt (a STOP confirmation, a HELP reply), to a recipient who opted
out of its sender, is blocked; before a submit_sm, an MT whose lease no longer holds is
lost to its sender. storage/mts.py reads the facts (the lease UPDATE ... RETURNING, one
opt lookup per batch: `opted_out_many`) and records the outcome in the same transaction
as the claim or the guard; it asks here which pairs to look up and what each MT gets."""

from __future__ import annotations

from collections.abc import Sequence, Set
from enum import Enum
from typing import Protocol

BLOCKED_ERROR = "recipient opted out"

Pair = tuple[str, str]  # (sender, recipient)


class Verdict(Enum):
    """What an MT about to be claimed or submitted gets."""

    SEND = "send"
    BLOCKED = "blocked"  # the recipient opted out: recorded `blocked`, with its event
    LOST = "lost"  # the lease is gone (claimed again, or already final): do nothing


class Mt(Protocol):
    """What the rule reads of an MT (`model.QueuedMt` is one)."""

    @property
    def sender(self) -> str: ...

    @property
    def recipient(self) -> str: ...

    @property
    def exempt(self) -> bool: ...


def verdict(*, held: bool, exempt: bool, opted_out: bool) -> Verdict:
    """One MT: LOST if its lease no longer holds it, BLOCKED if its recipient opted out of
    its sender and it is not exempt, else SEND."""
    if not held:
        return Verdict.LOST
    if opted_out and not exempt:
        return Verdict.BLOCKED
    return Verdict.SEND


def to_check(items: Sequence[Mt], held: Sequence[bool]) -> list[Pair]:
    """The (sender, recipient) pairs whose opt state can change a verdict: those of the
    held, non-exempt MTs (the others' verdict does not depend on it)."""
    return [(m.sender, m.recipient) for m, h in zip(items, held, strict=True)
            if h and not m.exempt]


def verdicts(items: Sequence[Mt], held: Sequence[bool], out: Set[Pair]) -> list[Verdict]:
    """One verdict per item; `held[i]`: whether item i's lease still holds; `out`: the
    pairs (of `to_check`) whose recipient opted out of that sender."""
    return [verdict(held=h, exempt=m.exempt, opted_out=(m.sender, m.recipient) in out)
            for m, h in zip(items, held, strict=True)]
