"""The MOs waiting for their fan-out (`messages.fanout = 1`, gateway/fanout.py): the scan
for flagged MOs and the claim that clears the flag."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy.engine import Connection

from gateway.model import MessageRow

# The scan reads the intake's row but the raw PDU and the dedup key (fan-out reads
# neither: None in the rows it builds). Its SELECT lists MessageRow's fields in order (NULL
# for those two), so each row fetched is the tuple a MessageRow is; on SQLite it runs on
# the DBAPI cursor. Through a Core select, SQLAlchemy's per-row fetch and
# `MessageRow(**row._mapping)` were 28% of the fan-out's CPU in a 30k burst with webhook +
# MQTT (py-spy: 14 us per MO on the single writer, of its 106).
_UNREAD = ("raw_pdu", "dedup_key")
_SCAN_COLS = ", ".join("NULL" if f in _UNREAD else f'"{f}"' for f in MessageRow._fields)
# `fanout = 1` literal: matches the partial index (created_at) the ORDER BY walks.
_SCAN = f"SELECT {_SCAN_COLS} FROM messages WHERE fanout = 1 ORDER BY created_at LIMIT "
_SCAN_SQLITE = _SCAN + "?"
_SCAN_PG = _SCAN + "$1 FOR UPDATE SKIP LOCKED"  # skipping MOs another instance locked
_new_row = tuple.__new__


def flagged(conn: Connection, limit: int) -> list[MessageRow]:
    """Up to `limit` flagged MOs, oldest first (PostgreSQL: skipping those another
    instance has locked), as the intake's rows (without the raw PDU and dedup key)."""
    rows: Sequence[Any]
    if conn.dialect.paramstyle == "qmark":  # SQLite
        cur = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cur.execute(_SCAN_SQLITE, (limit,))
            rows = cur.fetchall()
        finally:
            cur.close()
    else:
        rows = conn.exec_driver_sql(_SCAN_PG, (limit,)).all()
    return [_new_row(MessageRow, r) for r in rows]


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
