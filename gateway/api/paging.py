"""Cursor pagination and times in query strings, for the list endpoints.

A cursor is the key of the last row of a page (keyset paging: stable while rows are
added), as opaque base64url JSON tagged with the list it belongs to; a cursor of
another list, or one that was edited, is a 422 problem."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from gateway.api.problems import invalid
from gateway.model import parse_instant

MAX_LIMIT = 1000
LATEST = 253402300799.0  # 9999-12-31T23:59:59Z


def encode(kind: str, key: Any) -> str:
    raw = json.dumps([kind, key], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(kind: str, cursor: str | None) -> Any:
    """The key in `cursor` (None for the first page)."""
    if cursor is None or cursor == "":
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        tag, key = json.loads(raw)
    except (binascii.Error, ValueError, TypeError, RecursionError):
        tag, key = None, None
    if tag != kind:
        raise bad_cursor()
    return key


def bad_cursor() -> Exception:
    return invalid([{"loc": "query.cursor",
                     "msg": "not a cursor of this list (give the next_cursor of the "
                            "previous page, unchanged)"}])


def instant(name: str, value: str | None, now: float) -> float | None:
    """A query time: ISO-8601 or an age like 15m, 2h, 7d; 422 naming `name` otherwise."""
    if value is None or value == "":
        return None
    try:
        at = parse_instant(value, now)
    except (ValueError, OverflowError) as exc:
        raise invalid([{"loc": f"query.{name}", "msg": str(exc)}]) from None
    if not 0 <= at <= LATEST:
        raise invalid([{"loc": f"query.{name}",
                        "msg": f"out of range: between 1970 and 9999 (got {value!r})"}])
    return at


def text(name: str, value: str | None, where: str = "query") -> str | None:
    """A free-text parameter: NUL is refused (422) before it reaches a database
    (PostgreSQL cannot hold it in a string)."""
    if value is not None and "\x00" in value:
        raise invalid([{"loc": f"{where}.{name}", "msg": "must not contain NUL (\\u0000)"}])
    return value
