"""MT rows: queue, claim, submitted, failed, blocked, receipts; every status change is
recorded in `status_history` and announced as an `mt_status` event (MQTT, and the
webhook of the configuration that sent it). Blocking functions over a Connection, run
inside `Store.transaction`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import and_, select, text, update
from sqlalchemy.engine import Connection

from gateway.events import mt_status_event
from gateway.mo import Receipt
from gateway.model import MtStatus, new_id
from gateway.storage.db import placeholders
from gateway.storage.jobs import Emitter, insert_jobs, last_webhook
from gateway.storage.schema import (
    messages,
    mt_segments,
    receipts,
    status_history,
)

QUEUED_MTS = text("direction = 'mt' AND status IN ('queued', 'sending')")
FINAL_MT = (MtStatus.DELIVERED.value, MtStatus.FAILED.value, MtStatus.BLOCKED.value)


@dataclass(frozen=True, slots=True)
class QueuedMt:
    id: str
    sender: str
    recipient: str
    text: str
    smsc: str | None
    attempts: int
    exempt: bool


def announce(conn: Connection, emitter: Emitter, msg_id: str, status: str, now: float,
             error: str | None = None, detail: str | None = None) -> None:
    """History row + mt_status event jobs for one MT's new status."""
    conn.execute(status_history.insert().values(
        message_id=msg_id, status=status, at=now, detail=detail if detail else error))
    if emitter.mqtt_prefix is None:
        row = conn.execute(select(messages.c.notify).where(messages.c.id == msg_id)).first()
        if row is None or not row[0]:
            return
    m = conn.execute(select(messages.c.recipient, messages.c.sender, messages.c.in_reply_to,
                            messages.c.client_ref, messages.c.notify)
                     .where(messages.c.id == msg_id)).one()
    ids = [s for (s,) in conn.execute(select(mt_segments.c.smsc_message_id)
                                       .where(mt_segments.c.message_id == msg_id)
                                       .order_by(mt_segments.c.seq))]
    event = mt_status_event(id=msg_id, to=m.recipient, sender=m.sender, status=status,
                            smsc_message_id=ids[0] if len(ids) == 1 else (ids or None),
                            error=error, in_reply_to=m.in_reply_to, client_ref=m.client_ref,
                            at=now)
    after = None
    if m.notify:
        after = last_webhook(conn, [msg_id, *([m.in_reply_to] if m.in_reply_to else [])],
                             m.notify)
    insert_jobs(conn, emitter.event(event, "mt", "status", message_id=msg_id, now=now,
                                    webhook=m.notify, after=after))


def insert_mt(conn: Connection, emitter: Emitter, *, sender: str, recipient: str, text: str,
              now: float, smsc: str | None = None, in_reply_to: str | None = None,
              client_ref: str | None = None, notify: str | None = None,
              exempt: bool = False, error: str | None = None,
              status: MtStatus = MtStatus.QUEUED) -> str:
    msg_id = new_id()
    conn.execute(messages.insert().values(
        id=msg_id, direction="mt", smsc=smsc, vmn=sender, msisdn=recipient, sender=sender,
        recipient=recipient, text=text, data_coding=0, segments=0, status=status.value,
        error=error, in_reply_to=in_reply_to, client_ref=client_ref, created_at=now,
        updated_at=now, attempts=0, next_attempt_at=now, fanout=0, notify=notify,
        exempt=1 if exempt else 0,
    ))
    announce(conn, emitter, msg_id, status.value, now, error=error)
    return msg_id


BLOCKED_ERROR = "recipient opted out"


@dataclass(frozen=True, slots=True)
class Claimed:
    send: list[QueuedMt]  # leased to the caller: submit them
    blocked: list[QueuedMt]  # to opted-out numbers: recorded `blocked` already


def claim(conn: Connection, emitter: Emitter, limit: int, lease: float,
          now: float) -> Claimed:
    """Lease up to `limit` due MTs. The opt-out check of the whole batch is one query in
    the same transaction (no round trip per MT): an MT to a number opted out of its
    sender is `blocked` here, unless it is exempt (STOP confirmation, HELP reply)."""
    # The literal terms match the partial index's WHERE, so SQLite can use it.
    due = and_(QUEUED_MTS, messages.c.next_attempt_at <= now)
    q = (select(messages.c.id, messages.c.sender, messages.c.recipient, messages.c.text,
                messages.c.smsc, messages.c.attempts, messages.c.exempt)
         .where(due).order_by(messages.c.next_attempt_at).limit(limit))
    if conn.dialect.name == "postgresql":
        q = q.with_for_update(skip_locked=True)
    rows = [QueuedMt(r[0], r[1], r[2], r[3], r[4], r[5], bool(r[6])) for r in conn.execute(q)]
    if not rows:
        return Claimed([], [])
    checked = [(r.sender, r.recipient) for r in rows if not r.exempt]
    out = opted_out_many(conn, checked) if checked else set()
    blocked = [r for r in rows if not r.exempt and (r.sender, r.recipient) in out]
    send = [r for r in rows if r.exempt or (r.sender, r.recipient) not in out]
    if send:
        conn.execute(update(messages).where(messages.c.id.in_([r.id for r in send]))
                     .values(status=MtStatus.SENDING.value, next_attempt_at=now + lease,
                             attempts=messages.c.attempts + 1))
    for r in blocked:
        final(conn, emitter, r.id, MtStatus.BLOCKED, error=BLOCKED_ERROR, now=now)
    return Claimed(send, blocked)


def opted_out_many(conn: Connection,
                   pairs: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
    """The (sender, recipient) pairs whose recipient opted out of that sender: its row
    for the sender when there is one, else its row for every sender ("*"). An opt
    keyword of scope "all" clears the per-sender rows (fanout.py), so a per-sender row
    is always the later word: STOPALL then START on one VMN lets that VMN through.
    One query by primary key (msisdn, vmn) for the whole batch."""
    recipients = sorted({r for _, r in pairs})
    vmns = sorted({s for s, _ in pairs} | {"*"})
    marks = placeholders(conn, len(recipients) + len(vmns)).split(", ")
    # Driver-level SQL: SQLAlchemy re-renders an expanding IN on every call, which cost
    # ~150 us for a claim of a single MT (bench/opt_bench.py).
    sql = (f"SELECT msisdn, vmn, state FROM opt_state "
           f"WHERE msisdn IN ({', '.join(marks[:len(recipients)])}) "
           f"AND vmn IN ({', '.join(marks[len(recipients):])})")
    states: dict[tuple[str, str], str] = {
        (m, v): st for m, v, st in conn.exec_driver_sql(sql, (*recipients, *vmns))}
    return {(s, r) for s, r in pairs
            if states.get((r, s), states.get((r, "*"))) == "out"}


def opted_out(conn: Connection, sender: str, recipient: str) -> bool:
    """Whether `recipient` opted out of `sender` (see `opted_out_many`)."""
    return bool(opted_out_many(conn, [(sender, recipient)]))


def submitted(conn: Connection, emitter: Emitter, msg_id: str, *, smsc: str,
              data_coding: int, segment_ids: Sequence[str], now: float) -> None:
    total = len(segment_ids)
    conn.execute(update(messages).where(messages.c.id == msg_id).values(
        status=MtStatus.SUBMITTED.value, smsc=smsc, data_coding=data_coding, segments=total,
        updated_at=now, error=None))
    conn.execute(mt_segments.delete().where(mt_segments.c.message_id == msg_id))
    conn.execute(mt_segments.insert(), [
        {"message_id": msg_id, "seq": i + 1, "total": total, "smsc": smsc,
         "smsc_message_id": sid, "status": MtStatus.SUBMITTED.value, "updated_at": now}
        for i, sid in enumerate(segment_ids)
    ])
    announce(conn, emitter, msg_id, MtStatus.SUBMITTED.value, now,
             detail=",".join(segment_ids))
    # A receipt may have overtaken us: apply the ones waiting for these ids.
    late = conn.execute(
        select(receipts.c.smsc_message_id, receipts.c.state, receipts.c.error)
        .where(receipts.c.smsc_message_id.in_(list(segment_ids)), receipts.c.matched == 0)
        .order_by(receipts.c.id))
    pending = [Receipt(i, s, e) for i, s, e in late]
    if pending:
        apply_receipts(conn, emitter, pending, now)


def retry(conn: Connection, msg_id: str, *, error: str, delay: float, now: float) -> None:
    conn.execute(update(messages).where(messages.c.id == msg_id).values(
        status=MtStatus.QUEUED.value, error=error, next_attempt_at=now + delay,
        updated_at=now))


def final(conn: Connection, emitter: Emitter, msg_id: str, status: MtStatus, *, error: str,
          now: float) -> None:
    """failed or blocked."""
    conn.execute(update(messages).where(messages.c.id == msg_id).values(
        status=status.value, error=error, updated_at=now))
    announce(conn, emitter, msg_id, status.value, now, error=error)


def apply_receipts(conn: Connection, emitter: Emitter, items: Sequence[Receipt],
                   now: float) -> None:
    """Move MT segments (and their messages) to the receipts' states."""
    touched: set[str] = set()
    for r in items:
        status = r.mt_status
        res = conn.execute(
            update(mt_segments)
            .where(mt_segments.c.smsc_message_id == r.smsc_message_id,
                   mt_segments.c.status.not_in(FINAL_MT))
            .values(status=status, error=None if status != "failed" else r.state,
                    updated_at=now)
            .returning(mt_segments.c.message_id)
        )
        ids = [row[0] for row in res]
        if ids:
            touched.update(ids)
            conn.execute(update(receipts).where(
                receipts.c.smsc_message_id == r.smsc_message_id).values(matched=1))
    for msg_id in touched:
        states = [s for (s,) in conn.execute(
            select(mt_segments.c.status).where(mt_segments.c.message_id == msg_id))]
        if any(s == MtStatus.FAILED.value for s in states):
            new, error = MtStatus.FAILED.value, "delivery failed"
        elif states and all(s == MtStatus.DELIVERED.value for s in states):
            new, error = MtStatus.DELIVERED.value, None
        else:
            continue
        res = conn.execute(
            update(messages).where(messages.c.id == msg_id, messages.c.status != new)
            .values(status=new, updated_at=now, error=error).returning(messages.c.id))
        if res.first() is not None:
            announce(conn, emitter, msg_id, new, now, error=error)
