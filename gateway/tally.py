"""Poll tallies as shown to people (CLI `polls`, `GET /v1/polls`): the configured polls
with every option, merged with what the database counted. Pure."""

from __future__ import annotations

from collections.abc import Iterable

from gateway.config import NumberConfig


def tallies(numbers: Iterable[NumberConfig], counted: dict[str, dict[str, int]],
            name: str | None) -> dict[str, dict[str, int]]:
    """Every configured poll (or `name`) with every option, 0 when nobody chose it, in
    the configured order (the `tally` of a `poll` event); polls no longer configured
    keep what they counted."""
    out: dict[str, dict[str, int]] = {}
    for number in numbers:
        for action in (number.default, *number.keywords):
            poll = action.poll
            if poll is not None and (name is None or poll.name == name):
                tally = out.setdefault(poll.name, {})
                for option in poll.options:
                    tally.setdefault(option, 0)
    for poll_name, tally in counted.items():
        merged = out.setdefault(poll_name, {})
        for option, n in tally.items():
            merged[option] = n
    return out


def poll_vmns(numbers: Iterable[NumberConfig]) -> dict[str, set[str]]:
    """The VMNs each configured poll is on."""
    out: dict[str, set[str]] = {}
    for number in numbers:
        for action in (number.default, *number.keywords):
            if action.poll is not None:
                out.setdefault(action.poll.name, set()).add(number.vmn)
    return out
