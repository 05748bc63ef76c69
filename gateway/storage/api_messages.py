"""The HTTP API's MT writes: queue one MT through `mts.insert_mt` (the one queueing
function of every MT), after the same opt-out check the sender makes; an MT to an
opted-out recipient is recorded `blocked` at once (with its `mt_status` event)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import Connection

from gateway.commands import Command
from gateway.model import MtStatus
from gateway.storage import mts
from gateway.storage.jobs import Emitter


@dataclass(frozen=True, slots=True)
class Queued:
    id: str
    status: str  # queued | blocked

    @property
    def blocked(self) -> bool:
        return self.status == MtStatus.BLOCKED.value


def queue(conn: Connection, emitter: Emitter, cmd: Command, *, now: float,
          notify: str | None = None) -> Queued:
    blocked = mts.opted_out(conn, cmd.sender, cmd.to)
    status = MtStatus.BLOCKED if blocked else MtStatus.QUEUED
    msg_id = mts.insert_mt(conn, emitter, sender=cmd.sender, recipient=cmd.to, text=cmd.text,
                           now=now, client_ref=cmd.client_id, notify=notify,
                           status=status, error=mts.BLOCKED_ERROR if blocked else None)
    return Queued(msg_id, status.value)
