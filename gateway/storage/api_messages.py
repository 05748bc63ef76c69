"""The HTTP API's MT writes: queue one MT through `mts.insert_mt` (the one queueing
function of every MT), after the same opt-out check the sender makes (the rule of
gateway/mt_policy.py); an MT to an opted-out recipient is recorded `blocked` at once
(with its `mt_status` event). With an `Idempotency-Key` the first answer is stored in
the same transaction, so that a retry gets it again and queues nothing."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.engine import Connection

from gateway.commands import Command
from gateway.model import MtStatus
from gateway.mt_policy import BLOCKED_ERROR, Verdict, verdict
from gateway.storage import mts
from gateway.storage.jobs import EventJobs
from gateway.storage.schema import api_idempotency


@dataclass(frozen=True, slots=True)
class Queued:
    id: str
    status: str  # queued | blocked

    @property
    def blocked(self) -> bool:
        return self.status == MtStatus.BLOCKED.value


@dataclass(frozen=True, slots=True, kw_only=True)
class Idempotency:
    key_name: str  # the API key: each key has its own Idempotency-Keys
    idem_key: str
    request_hash: str
    ttl: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Answer:
    status: int
    body: dict[str, Any]
    replayed: bool = False  # the stored answer to an earlier request
    mismatch: bool = False  # the key was used before for another request: nothing done


def queue(conn: Connection, emitter: EventJobs, cmd: Command, *, now: float,
          notify: str | None = None, coding: str | None = None,
          validity: int | None = None) -> Queued:
    blocked = verdict(held=True, exempt=False,  # an API MT is never exempt
                      opted_out=mts.opted_out(conn, cmd.sender, cmd.to)) is Verdict.BLOCKED
    status = MtStatus.BLOCKED if blocked else MtStatus.QUEUED
    msg_id = mts.insert_mt(conn, emitter, sender=cmd.sender, recipient=cmd.to, text=cmd.text,
                           now=now, client_ref=cmd.client_id, notify=notify,
                           status=status, error=BLOCKED_ERROR if blocked else None,
                           coding=coding, validity=validity)
    return Queued(msg_id, status.value)


def send(conn: Connection, emitter: EventJobs, cmd: Command, *, now: float,
         answer: Callable[[Queued], tuple[int, dict[str, Any]]],
         idem: Idempotency | None = None, notify: str | None = None,
         coding: str | None = None, validity: int | None = None) -> Answer:
    """Queue `cmd` and return `answer(queued)`; with `idem`, the stored answer of the
    first request with that key instead (and nothing queued). Two requests racing with
    one key on PostgreSQL: the second's insert fails on the primary key, its whole
    transaction (its MT included) rolls back, and its caller runs it again."""
    t = api_idempotency.c
    if idem is not None:
        conn.execute(delete(api_idempotency).where(t.created_at < now - idem.ttl))
        row = conn.execute(select(t.request_hash, t.status, t.body).where(
            t.key_name == idem.key_name, t.idem_key == idem.idem_key)).first()
        if row is not None:
            if row.request_hash != idem.request_hash:
                return Answer(status=0, body={}, mismatch=True)
            return Answer(status=row.status, body=json.loads(row.body), replayed=True)
    queued = queue(conn, emitter, cmd, now=now, notify=notify, coding=coding,
                   validity=validity)
    status, body = answer(queued)
    if idem is not None:
        conn.execute(api_idempotency.insert().values(
            key_name=idem.key_name, idem_key=idem.idem_key, request_hash=idem.request_hash,
            status=status, body=json.dumps(body), created_at=now))
    return Answer(status=status, body=body)
