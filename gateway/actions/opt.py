"""opt_in / opt_out: a keyword configuration that opts its sender in or out, and the
STOP/START/HELP words (routes of their own, answered from `[optout]`, exempt from the
opt-out check). The state and its history are recorded by storage/optins.py; a change
is announced here by the `opt` event (MQTT, `[optout] callback_profile`), for an MO
and for the API's manual change (`set_opt`) alike."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Connection

from gateway.actions.kind import Effects, Kind
from gateway.config import OptoutScope, render_template
from gateway.events import opt_event
from gateway.model import ActionKind
from gateway.routing.router import Route
from gateway.storage import optins
from gateway.storage.jobs import EventJobs, insert_jobs

if TYPE_CHECKING:
    from gateway.config import ActionConfig

STOP_ALL = "STOPALL"  # always opts out of every sender ID, whatever the scope


def record_opt(conn: Connection, emitter: EventJobs, *, msisdn: str, state: str, vmn: str,
               sender_id: str | None = None, every: bool = False, keyword: str | None,
               received_on: str | None, message_id: str | None, source: optins.Source,
               now: float, profile: str | None) -> optins.OptChange:
    """`storage/optins.record_opt`, and the `opt` event of a change (MQTT, and `profile`
    when given) as its `jobs`, for the caller to insert."""
    change = optins.record_opt(
        conn, msisdn=msisdn, state=state, vmn=vmn, sender_id=sender_id, every=every,
        keyword=keyword, received_on=received_on, message_id=message_id, source=source,
        now=now)
    if change.changed:
        change.jobs = emitter.event(
            opt_event(msisdn=msisdn, vmn=change.scope, state=state, keyword=keyword, at=now,
                      received_on=received_on, source=source),
            "opt", change.scope, message_id=message_id, now=now,
            webhook=f"profile:{profile}" if profile else None)
    return change


def set_opt(conn: Connection, emitter: EventJobs, /, **kwargs: Any) -> optins.OptChange:
    """`record_opt` and the insert of its event jobs, in the caller's transaction (the
    API's manual change; the fan-out batches the jobs of many MOs itself)."""
    change = record_opt(conn, emitter, **kwargs)
    insert_jobs(conn, change.jobs)
    return change


def record(fx: Effects, state: str, scope: OptoutScope) -> None:
    """Record `state` for the MO's sender (see `record_opt`, shared with the API's manual
    change): for this VMN and its sender ID, or for every sender ID."""
    number, mo = fx.number, fx.mo
    cfg = fx.ctx.cfg
    change = record_opt(
        fx.conn, fx.ctx.emitter, msisdn=mo.sender, state=state, vmn=number.vmn,
        sender_id=number.sender_id, every=scope is OptoutScope.ALL,
        keyword=fx.decision.keyword, received_on=number.vmn, message_id=mo.id,
        source="keyword", now=fx.now, profile=cfg.optout_for(number).callback_profile)
    if change.changed:
        fx.jobs += change.jobs
        fx.opt_changes.append((mo.sender, change.scope, state))


def _opt_out(fx: Effects, _action: ActionConfig) -> None:
    record(fx, "out", fx.ctx.cfg.optout_for(fx.number).scope)


def _opt_in(fx: Effects, _action: ActionConfig) -> None:
    record(fx, "in", fx.ctx.cfg.optout_for(fx.number).scope)


def _stop(fx: Effects, _action: ActionConfig | None) -> None:
    optout = fx.ctx.cfg.optout_for(fx.number)
    record(fx, "out", OptoutScope.ALL if fx.decision.keyword == STOP_ALL else optout.scope)
    fx.mt(fx.mo.sender, render_template(optout.stop_reply, fx.values), exempt=True)


def _start(fx: Effects, _action: ActionConfig | None) -> None:
    optout = fx.ctx.cfg.optout_for(fx.number)
    record(fx, "in", optout.scope)
    fx.mt(fx.mo.sender, render_template(optout.start_reply, fx.values), exempt=True)


def _help(fx: Effects, _action: ActionConfig | None) -> None:
    optout = fx.ctx.cfg.optout_for(fx.number)
    fx.mt(fx.mo.sender, render_template(optout.help_reply, fx.values), exempt=True)


KINDS = (
    Kind(kind=ActionKind.OPT_OUT, fields=("opt_out",), enabled=lambda a: a.opt_out,
         step=_opt_out, routes={Route.OPTOUT: _stop, Route.HELP: _help}),
    Kind(kind=ActionKind.OPT_IN, fields=("opt_in",), enabled=lambda a: a.opt_in,
         step=_opt_in, routes={Route.OPTIN: _start}),
)
