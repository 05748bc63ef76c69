"""The MOs waiting for their fan-out (`messages.fanout = 1`, gateway/fanout.py): the scan
for flagged MOs and the claim that clears the flag."""

from __future__ import annotations

import json
from collections.abc import Sequence

from sqlalchemy import select, text
from sqlalchemy.engine import Connection

from gateway.model import MessageRow
from gateway.storage.schema import messages

_PENDING = text("fanout = 1")  # literal: matches the partial index


# The scan reads the intake's row but the raw PDU and the dedup key (fan-out reads
# neither: None in the rows it builds).
_UNREAD = ("raw_pdu", "dedup_key")
_SCAN_COLS = tuple(messages.c[f] for f in MessageRow._fields if f not in _UNREAD)


def flagged(conn: Connection, limit: int) -> list[MessageRow]:
    """Up to `limit` flagged MOs, oldest first (PostgreSQL: skipping those another
    instance has locked), as the intake's rows (without the raw PDU and dedup key)."""
    q = select(*_SCAN_COLS).where(_PENDING).order_by(messages.c.created_at).limit(limit)
    if conn.dialect.name == "postgresql":
        q = q.with_for_update(skip_locked=True)
    return [MessageRow(**r._mapping, raw_pdu=None, dedup_key=None) for r in conn.execute(q)]


def claim(conn: Connection, ids: Sequence[str]) -> set[str]:
    """Clear the fan-out flag of the MOs `ids`: the ids whose flag this cleared (the
    others were expanded already). One statement whatever the count, at the driver
    level: SQLAlchemy re-compiled an expanding `IN (...)` on every batch."""
    arg: str | list[str]
    if conn.dialect.paramstyle == "qmark":  # SQLite: the ids as one JSON array
        sql, arg = _CLAIM_SQLITE, json.dumps(list(ids))
    else:  # PostgreSQL (asyncpg): an array parameter
        sql, arg = _CLAIM_PG, list(ids)
    return {r[0] for r in conn.exec_driver_sql(sql, (arg,))}


_CLAIM_SQLITE = ("UPDATE messages SET fanout = 0 WHERE id IN (SELECT value FROM json_each(?)) "
                 "AND fanout = 1 RETURNING id")
_CLAIM_PG = "UPDATE messages SET fanout = 0 WHERE id = ANY($1) AND fanout = 1 RETURNING id"
