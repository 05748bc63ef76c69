"""reply: an MT back to the sender (a template), unless a poll refused the vote; an
expired keyword (its own route) gets its `expiry_reply` alone. The reply of an opt_out
keyword is exempt from the opt-out check (it confirms it)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.actions.kind import Effects, Kind
from gateway.config import render_template
from gateway.model import ActionKind
from gateway.routing.router import Route

if TYPE_CHECKING:
    from gateway.config import ActionConfig


def _reply(fx: Effects, action: ActionConfig) -> None:
    if fx.valid and action.reply:
        fx.mt(fx.mo.sender, render_template(action.reply, fx.values),
              exempt=bool(action.opt_out))


def _expired(fx: Effects, action: ActionConfig | None) -> None:
    if action is not None and action.expiry_reply:
        fx.mt(fx.mo.sender, render_template(action.expiry_reply, fx.values))


KIND = Kind(kind=ActionKind.REPLY, fields=("reply",), enabled=lambda a: a.reply is not None,
            step=_reply, routes={Route.EXPIRED: _expired})
