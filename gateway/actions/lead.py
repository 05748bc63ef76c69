"""lead: the MO's sender is captured per (VMN, msisdn, keyword): counted, with the
first and last time seen and the latest text (storage/leads.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.actions.kind import Effects, Kind
from gateway.model import ActionKind
from gateway.storage.leads import record_lead

if TYPE_CHECKING:
    from gateway.config import ActionConfig


def _lead(fx: Effects, _action: ActionConfig) -> None:
    mo = fx.mo
    record_lead(fx.conn, vmn=fx.number.vmn, msisdn=mo.sender,
                keyword=fx.decision.keyword or "", text=mo.text, message_id=mo.id,
                now=fx.now)


KIND = Kind(kind=ActionKind.LEAD, fields=("lead",), enabled=lambda a: a.lead, step=_lead)
