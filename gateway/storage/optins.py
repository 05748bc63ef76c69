"""The opt-in database: one change of a customer's opt state (from an opt keyword in an
MO, or from `PUT /v1/optins`), and the paged list the API reads.

`record_opt` is the single place where opt state changes: the fan-out calls it for
STOP/START and opt keywords, the API for a manual change (both through actions/opt.py,
which adds the `opt` event of a change), so both are kept in `opt_history` the same
way and announced by the same event."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import and_, delete, or_, select
from sqlalchemy.engine import Connection

from gateway.model import JobRow
from gateway.storage.db import upsert
from gateway.storage.schema import opt_history, opt_state

Source = Literal["keyword", "api"]
EVERY = "*"


@dataclass(slots=True)
class OptChange:
    """What `record_opt` did: whether the state changed; the `opt` event's jobs (MQTT,
    `[optout] callback_profile`) are the action layer's to add (actions/opt.py)."""

    changed: bool
    scope: str  # the VMN, or "*"
    jobs: list[JobRow] = field(default_factory=list)


def record_opt(conn: Connection, *, msisdn: str, state: str, vmn: str,
               sender_id: str | None = None, every: bool = False, keyword: str | None,
               received_on: str | None, message_id: str | None, source: Source,
               now: float) -> OptChange:
    """Record `state` for `msisdn`: for `vmn` (and its `sender_id`, since MTs are checked
    by their sender), or for every sender ID (`every`, shown as "*"), which also clears
    the per-sender rows so that a later per-sender START or STOP is the more specific
    answer (storage/mts.py `opted_out`). Every call is kept in `opt_history`."""
    o = opt_state.c
    keys = [EVERY] if every else sorted({vmn, sender_id or vmn})
    q = select(o.vmn, o.state).where(o.msisdn == msisdn)
    before: dict[str, str] = {
        v: st for v, st in conn.execute(q if every else q.where(o.vmn.in_(keys)))}
    changed = any(s != state for s in before.values()) or any(k not in before for k in keys)
    if every:
        conn.execute(delete(opt_state).where(o.msisdn == msisdn, o.vmn != EVERY))
    ins = upsert(conn, opt_state)
    conn.execute(
        ins.on_conflict_do_update(index_elements=[o.msisdn, o.vmn], set_={
            "state": ins.excluded.state, "keyword": ins.excluded.keyword,
            "updated_at": ins.excluded.updated_at}),
        [{"msisdn": msisdn, "vmn": k, "state": state, "keyword": keyword, "updated_at": now}
         for k in keys])
    shown = EVERY if every else vmn
    conn.execute(opt_history.insert().values(
        msisdn=msisdn, vmn=shown, received_on=received_on, state=state, keyword=keyword,
        message_id=message_id, changed=1 if changed else 0, at=now, source=source))
    return OptChange(changed=changed, scope=shown)


OptKey = tuple[float, str, str]  # (updated_at, msisdn, vmn): the list's order


def list_optins(conn: Connection, *, vmns: Sequence[str] = (), msisdn: str | None = None,
                state: str | None = None, after: OptKey | None = None,
                limit: int = 100) -> list[dict[str, Any]]:
    """Current opt states, oldest change first, at most `limit`, after the key `after`
    (keyset paging: stable while rows change). `vmns`: rows of those VMNs or sender
    IDs, and the rows for every sender ("*"), which apply to them too."""
    o = opt_state.c
    q = select(o.msisdn, o.vmn, o.state, o.keyword, o.updated_at)
    if vmns:
        q = q.where(o.vmn.in_([*vmns, EVERY]))
    if msisdn:
        q = q.where(o.msisdn == msisdn)
    if state:
        q = q.where(o.state == state)
    if after is not None:
        at, who, v = after
        q = q.where(or_(o.updated_at > at,
                        and_(o.updated_at == at,
                             or_(o.msisdn > who, and_(o.msisdn == who, o.vmn > v)))))
    q = q.order_by(o.updated_at, o.msisdn, o.vmn).limit(limit)
    return [dict(r._mapping) for r in conn.execute(q)]


def key_of(row: dict[str, Any]) -> OptKey:
    return (float(row["updated_at"]), str(row["msisdn"]), str(row["vmn"]))


def history_of(conn: Connection, msisdn: str) -> list[dict[str, Any]]:
    """Every recorded opt change of one number, oldest first (with its source)."""
    h = opt_history.c
    q = (select(h.at, h.msisdn, h.vmn, h.received_on, h.state, h.keyword, h.changed,
                h.message_id, h.source)
         .where(h.msisdn == msisdn).order_by(h.at, h.id))
    return [dict(r._mapping) for r in conn.execute(q)]
