"""Leads: one row per (VMN, msisdn, keyword), counted as they come (fan-out), paged for
the API, first captured first."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from gateway.storage.db import upsert
from gateway.storage.schema import leads


def record_lead(conn: Connection, *, vmn: str, msisdn: str, keyword: str, text: str,
                message_id: str, now: float) -> None:
    """One row per (VMN, msisdn, keyword): counted, with the latest text and time."""
    c = leads.c
    ins = upsert(conn, leads).values(
        vmn=vmn, msisdn=msisdn, keyword=keyword, text=text, message_id=message_id, at=now,
        count=1, last_at=now)
    conn.execute(ins.on_conflict_do_update(
        index_elements=[c.vmn, c.msisdn, c.keyword],
        set_={"count": c.count + 1, "last_at": ins.excluded.last_at,
              "text": ins.excluded.text, "message_id": ins.excluded.message_id}))


def list_leads(conn: Connection, *, vmns: Sequence[str] = (), msisdn: str | None = None,
               keyword: str | None = None, since: float | None = None,
               after: int | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """At most `limit` leads with an id above `after` (keyset paging), oldest first;
    `since` keeps the leads seen (last) at or after it."""
    c = leads.c
    q = select(c.id, c.at, c.last_at, c.count, c.vmn, c.msisdn, c.keyword, c.text,
               c.message_id)
    if vmns:
        q = q.where(c.vmn.in_(list(vmns)))
    if msisdn:
        q = q.where(c.msisdn == msisdn)
    if keyword is not None:
        q = q.where(c.keyword == keyword)
    if since is not None:
        q = q.where(c.last_at >= since)
    if after is not None:
        q = q.where(c.id > after)
    return [dict(r._mapping) for r in conn.execute(q.order_by(c.id).limit(limit))]
