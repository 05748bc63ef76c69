"""forward_sms: the MO as an MT to each listed number, from the number's sender ID."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.actions.kind import Effects, Kind
from gateway.config import render_template
from gateway.model import ActionKind

if TYPE_CHECKING:
    from gateway.config import ActionConfig

TEMPLATE = "From {from} to {vmn}: {text}"


def _forward(fx: Effects, action: ActionConfig) -> None:
    body = render_template(TEMPLATE, fx.values)
    for to in action.forward_sms:
        fx.mt(to.lstrip("+"), body)


KIND = Kind(kind=ActionKind.FORWARD_SMS, fields=("forward_sms",),
            enabled=lambda a: bool(a.forward_sms),
            label=lambda a: f"forward_sms({len(a.forward_sms)})", step=_forward)
