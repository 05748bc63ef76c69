"""opt_in / opt_out: a keyword configuration that opts its sender in or out, and the
STOP/START/HELP words (routes of their own, answered from `[optout]`, exempt from the
opt-out check). The state and its history are recorded by storage/optins.py."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.actions.kind import Effects, Kind
from gateway.config import OptoutScope, render_template
from gateway.model import ActionKind
from gateway.routing.router import Route
from gateway.storage import optins

if TYPE_CHECKING:
    from gateway.config import ActionConfig

STOP_ALL = "STOPALL"  # always opts out of every sender ID, whatever the scope


def record(fx: Effects, state: str, scope: OptoutScope) -> None:
    """Record `state` for the MO's sender (see `storage/optins.record_opt`, shared with
    the API's manual change): for this VMN and its sender ID, or for every sender ID."""
    number, mo = fx.number, fx.mo
    cfg = fx.ctx.cfg
    change = optins.record_opt(
        fx.conn, fx.ctx.emitter, msisdn=mo["sender"], state=state, vmn=number.vmn,
        sender_id=number.sender_id, every=scope is OptoutScope.ALL,
        keyword=fx.decision.keyword, received_on=number.vmn, message_id=mo["id"],
        source="keyword", now=fx.now, profile=cfg.optout_for(number).callback_profile)
    if change.changed:
        fx.jobs += change.jobs
        fx.opt_changes.append((mo["sender"], change.scope, state))


def _opt_out(fx: Effects, _action: ActionConfig) -> None:
    record(fx, "out", fx.ctx.cfg.optout_for(fx.number).scope)


def _opt_in(fx: Effects, _action: ActionConfig) -> None:
    record(fx, "in", fx.ctx.cfg.optout_for(fx.number).scope)


def _stop(fx: Effects, _action: ActionConfig | None) -> None:
    optout = fx.ctx.cfg.optout_for(fx.number)
    record(fx, "out", OptoutScope.ALL if fx.decision.keyword == STOP_ALL else optout.scope)
    fx.mt(fx.mo["sender"], render_template(optout.stop_reply, fx.values), exempt=True)


def _start(fx: Effects, _action: ActionConfig | None) -> None:
    optout = fx.ctx.cfg.optout_for(fx.number)
    record(fx, "in", optout.scope)
    fx.mt(fx.mo["sender"], render_template(optout.start_reply, fx.values), exempt=True)


def _help(fx: Effects, _action: ActionConfig | None) -> None:
    optout = fx.ctx.cfg.optout_for(fx.number)
    fx.mt(fx.mo["sender"], render_template(optout.help_reply, fx.values), exempt=True)


KINDS = (
    Kind(kind=ActionKind.OPT_OUT, fields=("opt_out",), enabled=lambda a: a.opt_out,
         step=_opt_out, routes={Route.OPTOUT: _stop, Route.HELP: _help}),
    Kind(kind=ActionKind.OPT_IN, fields=("opt_in",), enabled=lambda a: a.opt_in,
         step=_opt_in, routes={Route.OPTIN: _start}),
)
