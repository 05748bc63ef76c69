"""poll: the text after the keyword (or an alias of an option) is a vote, one per number
per poll; an invalid vote is answered by the poll's `invalid_reply` alone (never the
keyword's reply) and counts nothing. A vote publishes the `poll` event with the tally."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.actions.kind import Effects, Kind
from gateway.config import render_template
from gateway.events import poll_event
from gateway.model import ActionKind
from gateway.routing.router import Route
from gateway.storage.polls import record_vote

if TYPE_CHECKING:
    from gateway.config import ActionConfig


def _vote(fx: Effects, action: ActionConfig) -> None:
    poll = action.poll
    assert poll is not None
    mo, d = fx.mo, fx.decision
    option = poll.option_for(d.args if d.route is Route.KEYWORD else mo.text)
    if option is None:
        if poll.invalid_reply:
            fx.mt(mo.sender, render_template(poll.invalid_reply, fx.values))
        # The keyword's reply ("your vote is in") would contradict invalid_reply.
        fx.valid = False
        return
    tally = record_vote(fx.conn, poll=poll.name, options=poll.options, msisdn=mo.sender,
                        option=option, vmn=fx.number.vmn, message_id=mo.id, now=fx.now)
    fx.jobs += fx.ctx.emitter.event(
        poll_event(poll=poll.name, option=option, msisdn=mo.sender, tally=tally,
                   at=fx.now),
        "poll", poll.name, message_id=mo.id, now=fx.now)


KIND = Kind(kind=ActionKind.POLL, fields=("poll",), enabled=lambda a: a.poll is not None,
            label=lambda a: f"poll({a.poll.name})" if a.poll is not None else "poll",
            step=_vote)
