"""MT rows: queue, claim, submitted, failed, blocked, receipts; every status change is
recorded in `status_history` and read back for its `mt_status` event, which the action
layer builds and turns into jobs (`EventJobs.mt_status`: MQTT, and the webhook of the
configuration that sent it). Which MTs are blocked is gateway/mt_policy.py's rule; the
facts it needs are read here and its verdicts recorded in the same transaction.
Blocking functions over a Connection, run inside `Store.transaction`."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field

import structlog
from sqlalchemy import ColumnElement, and_, case, or_, select, text, update
from sqlalchemy.engine import Connection

from gateway.addressing import SHORT_CODE_MAX, TON_ALPHANUMERIC, automatic
from gateway.mo import Receipt
from gateway.model import MtStatus, MtStatusChange, QueuedMt, new_id
from gateway.mt_policy import BLOCKED_ERROR, Verdict, to_check, verdicts
from gateway.smpp.codec import SmppError, decode
from gateway.smpp.dialect import receipt_keys, receipt_spellings, resp_key
from gateway.storage.db import placeholders
from gateway.storage.jobs import EventJobs, insert_jobs, last_webhook
from gateway.storage.schema import (
    messages,
    mo_parts,
    mt_segments,
    receipts,
    status_history,
)

log = structlog.get_logger("gateway.mt")

QUEUED_MTS = text("direction = 'mt' AND status IN ('queued', 'sending')")
FINAL_MT = (MtStatus.DELIVERED.value, MtStatus.FAILED.value, MtStatus.BLOCKED.value,
            MtStatus.SKIPPED.value)
# Recorded on an MT whose submit_sm_resp carried no message id (issue 16 point 4).
RECEIPTLESS = ("receipt-less: the SMSC answered submit_sm with an empty message_id, "
               "so no delivery receipt can be matched to it")


def announce(conn: Connection, emitter: EventJobs, msg_id: str, status: str, now: float,
             error: str | None = None, detail: str | None = None) -> None:
    """History row + the jobs of one MT's new status: the change is read back here and
    handed to the action layer, which builds the `mt_status` event and decides its jobs
    (`EventJobs.mt_status`)."""
    conn.execute(status_history.insert().values(
        message_id=msg_id, status=status, at=now, detail=detail if detail else error))
    if emitter.mqtt_prefix is None:
        row = conn.execute(select(messages.c.notify).where(messages.c.id == msg_id)).first()
        if row is None or not row[0]:
            return
    m = conn.execute(select(messages.c.recipient, messages.c.sender, messages.c.in_reply_to,
                            messages.c.client_ref, messages.c.notify,
                            messages.c.receipt_stat, messages.c.receipt_err)
                     .where(messages.c.id == msg_id)).one()
    ids = tuple(s for (s,) in conn.execute(select(mt_segments.c.smsc_message_id)
                                            .where(mt_segments.c.message_id == msg_id)
                                            .order_by(mt_segments.c.seq)))
    after = None
    if m.notify:
        after = last_webhook(conn, [msg_id, *([m.in_reply_to] if m.in_reply_to else [])],
                             m.notify)
    insert_jobs(conn, emitter.mt_status(MtStatusChange(
        id=msg_id, to=m.recipient, sender=m.sender, status=status, smsc_message_ids=ids,
        error=error, in_reply_to=m.in_reply_to, client_ref=m.client_ref, at=now,
        receipt_stat=m.receipt_stat, receipt_err=m.receipt_err, notify=m.notify,
        after=after)))


def insert_mt(conn: Connection, emitter: EventJobs, *, sender: str, recipient: str, text: str,
              now: float, smsc: str | None = None, in_reply_to: str | None = None,
              client_ref: str | None = None, notify: str | None = None,
              exempt: bool = False, error: str | None = None,
              status: MtStatus = MtStatus.QUEUED, coding: str | None = None,
              validity: int | None = None) -> str:
    """Queue one MT (or record it `failed`/`blocked` at once): every MT, whatever sent
    it, enters here, and its first status is announced. A reply (auto-reply, opt
    or poll reply, an email reply forwarded back) to an alphanumeric sender ID (an MO
    from `ACMEBANK`, TON 5) is recorded `skipped` with the reason and never sent: no
    SMS can be addressed to it. (Other MTs take validated numbers only.)"""
    if status is MtStatus.QUEUED and in_reply_to is not None and (
            automatic(recipient)[0] == TON_ALPHANUMERIC
            or _sent_alphanumeric(conn, in_reply_to, recipient)):
        status, error = MtStatus.SKIPPED, SKIPPED_ALPHANUMERIC.format(recipient=recipient)
    msg_id = new_id()
    conn.execute(messages.insert().values(
        id=msg_id, direction="mt", smsc=smsc, vmn=sender, msisdn=recipient, sender=sender,
        recipient=recipient, text=text, data_coding=0, segments=0, status=status.value,
        error=error, in_reply_to=in_reply_to, client_ref=client_ref, created_at=now,
        updated_at=now, attempts=0, next_attempt_at=now, fanout=0, notify=notify,
        exempt=1 if exempt else 0, coding=coding, validity=validity,
    ))
    announce(conn, emitter, msg_id, status.value, now, error=error)
    if status is MtStatus.SKIPPED:
        log.warning("mt.skipped", id=msg_id, to=recipient, in_reply_to=in_reply_to,
                    reason=error)
    return msg_id


def _sent_alphanumeric(conn: Connection, mo_id: str, recipient: str) -> bool:
    """Whether the MO `mo_id` came from `recipient` as an alphanumeric sender (TON 5)
    written in digits only: kept as received, it reads like a short code. Looked up
    (the MO's raw PDU) only for such short digit strings, never for a phone number."""
    if not (recipient.isascii() and recipient.isdigit() and len(recipient) <= SHORT_CODE_MAX):
        return False
    mo = conn.execute(select(messages.c.raw_pdu, messages.c.sender)
                      .where(messages.c.id == mo_id)).first()
    if mo is None or mo.sender != recipient:  # a forward to someone else
        return False
    raw = mo.raw_pdu
    if raw is None:  # a long MO: its parts keep theirs
        raw = conn.execute(select(mo_parts.c.raw_pdu).where(
            mo_parts.c.message_id == mo_id).limit(1)).scalar()
    if raw is None:
        return False
    try:
        pdu = decode(bytes(raw))
    except SmppError:
        return False
    return getattr(pdu, "source_addr_ton", None) == TON_ALPHANUMERIC


SKIPPED_ALPHANUMERIC = ("not sent: {recipient!r} is an alphanumeric sender ID (TON 5), "
                        "which cannot receive an SMS")
SENDING = MtStatus.SENDING.value


@dataclass(frozen=True, slots=True)
class Claimed:
    send: list[QueuedMt]  # leased to the caller: submit them
    blocked: list[QueuedMt]  # to opted-out numbers: recorded `blocked` already
    # out of attempts (their senders kept dying or losing them): recorded `failed`
    failed: list[QueuedMt] = field(default_factory=list)


def claim(conn: Connection, emitter: EventJobs, limit: int, lease: float,
          now: float, max_attempts: int | None = None) -> Claimed:
    """Lease up to `limit` due MTs. The opt-out check of the whole batch is one query in
    the same transaction (no round trip per MT): an MT that gateway/mt_policy.py blocks
    (to a number opted out of its sender, not exempt) is recorded `blocked` here.

    Each claim gets a new lease token (`QueuedMt.token`): the writes below that take one
    only apply while the MT is still `sending` under that token. An MT claimed
    `max_attempts` times already (its senders kept dying or losing it) is `failed`."""
    # The literal terms match the partial index's WHERE, so SQLite can use it.
    due = and_(QUEUED_MTS, messages.c.next_attempt_at <= now)
    q = (select(messages.c.id, messages.c.sender, messages.c.recipient, messages.c.text,
                messages.c.smsc, messages.c.attempts, messages.c.exempt, messages.c.coding,
                messages.c.validity)
         .where(due).order_by(messages.c.next_attempt_at).limit(limit))
    if conn.dialect.name == "postgresql":
        q = q.with_for_update(skip_locked=True)
    token = secrets.token_hex(8)
    rows = [QueuedMt(r[0], r[1], r[2], r[3], r[4], r[5], bool(r[6]), token, r[7], r[8])
            for r in conn.execute(q)]
    if not rows:
        return Claimed([], [])
    spent = [r for r in rows if max_attempts is not None and r.attempts >= max_attempts]
    rows = [r for r in rows if max_attempts is None or r.attempts < max_attempts]
    held = [True] * len(rows)  # claimed just now, under this statement's locks
    decided = verdicts(rows, held, _opted_out(conn, to_check(rows, held)))
    blocked = [r for r, v in zip(rows, decided, strict=True) if v is Verdict.BLOCKED]
    send = [r for r, v in zip(rows, decided, strict=True) if v is Verdict.SEND]
    if send:
        conn.execute(update(messages).where(messages.c.id.in_([r.id for r in send]))
                     .values(status=SENDING, next_attempt_at=now + lease,
                             attempts=messages.c.attempts + 1, lease_token=token))
    for r in blocked:
        final(conn, emitter, r.id, MtStatus.BLOCKED, error=BLOCKED_ERROR, now=now)
    for r in spent:
        final(conn, emitter, r.id, MtStatus.FAILED, now=now,
              error=f"gave up after {r.attempts} attempts: no sender finished it")
    return Claimed(send, blocked, spent)


def guard(conn: Connection, emitter: EventJobs, items: Sequence[QueuedMt], lease: float,
          now: float) -> list[Verdict]:
    """Run immediately before every submit_sm (every part, every retry after a
    throttle), for all the MTs about to be submitted at that moment: each one's lease
    is still its sender's (and is renewed for `lease` seconds, so a throttle pause does
    not lose it), and its recipient has not opted out meanwhile. One verdict per item
    (gateway/mt_policy.py decides; a BLOCKED one is recorded here).

    Driver-level SQL: one UPDATE for the batch (matched on id and token, so two
    senders of one MT, old and new, are told apart) and one opt lookup."""
    n = len(items)
    p = placeholders(conn, 2 + 2 * n).split(", ")
    cond = " OR ".join(f"(id = {p[2 + 2 * i]} AND lease_token = {p[3 + 2 * i]})"
                       for i in range(n))
    args: list[object] = [now + lease, SENDING]
    for m in items:
        args += [m.id, m.token]
    renewed = {(i, t) for i, t in conn.exec_driver_sql(
        f"UPDATE messages SET next_attempt_at = {p[0]} "
        f"WHERE status = {p[1]} AND ({cond}) RETURNING id, lease_token", tuple(args))}
    held = [(m.id, m.token) in renewed for m in items]
    decided = verdicts(items, held, _opted_out(conn, to_check(items, held)))
    for m, v in zip(items, decided, strict=True):
        if v is Verdict.BLOCKED:
            final(conn, emitter, m.id, MtStatus.BLOCKED, error=BLOCKED_ERROR, now=now,
                  token=m.token)
    return decided


def check(conn: Connection, items: Sequence[QueuedMt]) -> list[Verdict]:
    """The read-only half of `guard`, for a reader connection (no write lock, no
    commit): the verdicts of gateway/mt_policy.py (a BLOCKED one not recorded: `guard`
    does that). While its lease has long enough to run, SEND is enough to write the
    submit_sm: nobody else can claim it meanwhile."""
    p = placeholders(conn, 1 + len(items)).split(", ")
    leased = {(i, t) for i, t in conn.exec_driver_sql(
        f"SELECT id, lease_token FROM messages WHERE status = {p[0]} "
        f"AND id IN ({', '.join(p[1:])})", (SENDING, *(m.id for m in items)))}
    held = [(m.id, m.token) in leased for m in items]
    return verdicts(items, held, _opted_out(conn, to_check(items, held)))


def _opted_out(conn: Connection, pairs: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
    """`opted_out_many`, with no query for no pairs."""
    return opted_out_many(conn, pairs) if pairs else set()


def _held(msg_id: str, token: str | None) -> ColumnElement[bool]:
    """The row of `msg_id`, only while the claim `token` holds it (None: any state)."""
    if token is None:
        return messages.c.id == msg_id
    return and_(messages.c.id == msg_id, messages.c.lease_token == token,
                messages.c.status == SENDING)


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


def submitted(conn: Connection, emitter: EventJobs, msg_id: str, *, smsc: str,
              data_coding: int, segment_ids: Sequence[str | None], now: float,
              token: str | None = None, unconfirmed: str | None = None,
              status: MtStatus = MtStatus.SUBMITTED, id_form: str = "auto") -> bool:
    """The SMSC took every part (`segment_ids`). `unconfirmed`: some submit_sm got no
    answer (None in `segment_ids`), recorded as submitted anyway (or `unknown`, with
    `[[smsc]] resend_unanswered = false`) so that it is never sent twice; the text says
    why (also an empty message id: receipt-less). `id_form`: the bind's
    `[[smsc]] message_id`, which keys each segment for receipts in the other base.
    False (nothing written) when the lease `token` was lost."""
    total = len(segment_ids)
    # A receipt may overtake us: the ids it may carry, locked first (see lock_receipt_ids)
    known = sorted({spelling for s in segment_ids if s
                    for spelling in receipt_spellings(s, id_form)})
    lock_receipt_ids(conn, known)
    res = conn.execute(update(messages).where(_held(msg_id, token)).values(
        status=status.value, smsc=smsc, data_coding=data_coding, segments=total,
        updated_at=now, error=unconfirmed))
    if res.rowcount != 1:
        return False
    conn.execute(mt_segments.delete().where(mt_segments.c.message_id == msg_id))
    conn.execute(mt_segments.insert(), [
        {"message_id": msg_id, "seq": i + 1, "total": total, "smsc": smsc,
         "smsc_message_id": sid or None, "status": status.value, "updated_at": now,
         "match_key": resp_key(sid, id_form) if sid else None}
        for i, sid in enumerate(segment_ids)
    ])
    announce(conn, emitter, msg_id, status.value, now, error=unconfirmed,
             detail=",".join(s or "?" for s in segment_ids))
    # A receipt may have overtaken us: apply the ones waiting for these ids.
    late = conn.execute(
        select(receipts.c.smsc_message_id, receipts.c.state, receipts.c.error)
        .where(receipts.c.smsc_message_id.in_(known), receipts.c.matched == 0)
        .order_by(receipts.c.id)) if known else ()
    pending = [Receipt(i, s, e) for i, s, e in late]
    if pending:
        apply_receipts(conn, emitter, pending, now)
    return True


def retry(conn: Connection, msg_id: str, *, error: str, delay: float, now: float,
          token: str | None = None) -> bool:
    res = conn.execute(update(messages).where(_held(msg_id, token)).values(
        status=MtStatus.QUEUED.value, error=error, next_attempt_at=now + delay,
        updated_at=now))
    return res.rowcount == 1


def release(conn: Connection, msg_id: str, *, token: str, delay: float, now: float) -> bool:
    """Give a claimed MT back untried (no submit_sm was written: shutting down, no bind):
    queued again, the claim's attempt not counted."""
    res = conn.execute(update(messages).where(_held(msg_id, token)).values(
        status=MtStatus.QUEUED.value, next_attempt_at=now + delay, lease_token=None,
        attempts=case((messages.c.attempts > 0, messages.c.attempts - 1), else_=0)))
    return res.rowcount == 1


def final(conn: Connection, emitter: EventJobs, msg_id: str, status: MtStatus, *, error: str,
          now: float, token: str | None = None) -> bool:
    """failed or blocked. False (nothing written) when the lease `token` was lost."""
    res = conn.execute(update(messages).where(_held(msg_id, token)).values(
        status=status.value, error=error, updated_at=now))
    if res.rowcount != 1:
        return False
    announce(conn, emitter, msg_id, status.value, now, error=error)
    return True


# Advisory lock class of the receipt matching (PostgreSQL; the second key is the hash
# of a receipt id spelling).
_RECEIPT_LOCK = 0x766D6E72  # "vmnr"


def lock_receipt_ids(conn: Connection, ids: Sequence[str]) -> None:
    """Serialize a receipt with its MT's `submitted` record on PostgreSQL: both take
    these transaction locks (keyed by the receipt id spellings) before they look for
    the other's rows. Without them, under READ COMMITTED, a receipt committed while its
    MT's submitted record was being written missed the segments, and the submitted
    record's look for early receipts missed the receipt: never matched, no `delivered`.
    In the order of the lock keys, so that two transactions cannot wait on each other.
    SQLite has one writer: nothing to do."""
    if not ids or conn.dialect.name != "postgresql":
        return
    conn.execute(text(
        "SELECT pg_advisory_xact_lock(:c, k) FROM (SELECT DISTINCT hashtext(x) AS k "
        "FROM unnest(CAST(:ids AS text[])) AS x ORDER BY 1) AS keys"),
        {"c": _RECEIPT_LOCK, "ids": list(ids)})


def apply_receipts(conn: Connection, emitter: EventJobs, items: Sequence[Receipt],
                   now: float) -> None:
    """Move MT segments (and their messages) to the receipts' states. The receipt's
    `stat`/`err` are kept on the segment, and on the message the one that decided it
    (the first failed segment's, else the last segment's). A receipt finds its segment
    by the id string, or by the number it writes in the other base (`match_key`)."""
    touched: set[str] = set()
    for r in items:
        status = r.mt_status
        res = conn.execute(
            update(mt_segments)
            .where(or_(mt_segments.c.smsc_message_id == r.smsc_message_id,
                       mt_segments.c.match_key.in_(receipt_keys(r.smsc_message_id))),
                   mt_segments.c.status.not_in(FINAL_MT))
            .values(status=status, error=None if status != "failed" else r.state,
                    receipt_stat=r.state, receipt_err=r.error, updated_at=now)
            .returning(mt_segments.c.message_id)
        )
        ids = [row[0] for row in res]
        if ids:
            touched.update(ids)
            conn.execute(update(receipts).where(
                receipts.c.smsc_message_id == r.smsc_message_id).values(matched=1))
    s = mt_segments.c
    for msg_id in touched:
        segs = conn.execute(select(s.status, s.receipt_stat, s.receipt_err)
                            .where(s.message_id == msg_id).order_by(s.seq)).all()
        failed = [g for g in segs if g.status == MtStatus.FAILED.value]
        if failed:
            new, error, decisive = MtStatus.FAILED.value, "delivery failed", failed[0]
        elif segs and all(g.status == MtStatus.DELIVERED.value for g in segs):
            new, error, decisive = MtStatus.DELIVERED.value, None, segs[-1]
        else:
            continue
        res = conn.execute(
            update(messages).where(messages.c.id == msg_id, messages.c.status != new)
            .values(status=new, updated_at=now, error=error,
                    receipt_stat=decisive.receipt_stat, receipt_err=decisive.receipt_err)
            .returning(messages.c.id))
        if res.first() is not None:
            announce(conn, emitter, msg_id, new, now, error=error)
