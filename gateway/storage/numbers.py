"""The rows of the numbers managed through the HTTP API (see gateway/dynnumbers.py).

A number is one row holding its `[[number]]` table as JSON. Every change bumps the one
row of `api_numbers_version` in its transaction, and only if that still holds the
version the change was validated against (compare-and-set): a change validated against
numbers that another writer changed meanwhile is refused and tried again, so two
instances can never store a pair of numbers that only each alone was valid with.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Connection

from gateway.storage.schema import api_numbers, api_numbers_version

Body = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The stored numbers (VMN -> its table as parsed JSON) as of `version`."""

    version: int
    numbers: Mapping[str, Body]


def version(conn: Connection) -> int:
    """The current version (0 before the first change)."""
    return int(conn.execute(
        select(api_numbers_version.c.version).where(api_numbers_version.c.id == 1)
    ).scalar_one())


def snapshot(conn: Connection) -> Snapshot:
    """Every stored number and the version they are at (one transaction)."""
    at = version(conn)
    rows = conn.execute(select(api_numbers.c.vmn, api_numbers.c.body)
                        .order_by(api_numbers.c.vmn))
    return Snapshot(at, {vmn: json.loads(body) for vmn, body in rows})


def _bump(conn: Connection, expect: int) -> bool:
    done = conn.execute(
        update(api_numbers_version)
        .where(api_numbers_version.c.id == 1, api_numbers_version.c.version == expect)
        .values(version=expect + 1)
    )
    return done.rowcount == 1


def put(conn: Connection, vmn: str, body: Mapping[str, Any], *, expect: int,
        now: float) -> bool:
    """Store `body` as the number `vmn` (created or replaced) if the version is still
    `expect`; False (nothing written) when another change came first. ASCII JSON: a
    lone surrogate from a JSON body cannot be encoded as UTF-8 for the database."""
    if not _bump(conn, expect):
        return False
    conn.execute(delete(api_numbers).where(api_numbers.c.vmn == vmn))
    conn.execute(insert(api_numbers).values(
        vmn=vmn, body=json.dumps(body, sort_keys=True), updated_at=now))
    return True


def remove(conn: Connection, vmn: str, *, expect: int) -> bool:
    """Delete the number `vmn` if the version is still `expect` (see `put`)."""
    if not _bump(conn, expect):
        return False
    conn.execute(delete(api_numbers).where(api_numbers.c.vmn == vmn))
    return True
