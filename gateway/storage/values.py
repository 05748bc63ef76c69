"""What a value must look like to be stored alike on SQLite and PostgreSQL.

PostgreSQL's text types cannot hold U+0000 and refuse a string longer than its
VARCHAR(n); SQLite stores both. Neither driver can encode an unpaired surrogate. A
value that breaks one of these rules is stored in a safe form, the same on both
backends, so that one row never makes a whole transaction (and the other rows in it)
fail:

- U+0000 and unpaired surrogates become U+FFFD (the Unicode replacement character);
- a string longer than its column is cut to the column's length.

The exact octets are never lost where they come from the wire: the intake keeps the
raw PDU (`messages.raw_pdu`, `mo_parts.body`/`raw_pdu`, `receipts.raw_pdu`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from sqlalchemy import Column, String, Table

STAND_IN = "\ufffd"

# (position in the row tuple, the column's length or None) for every text column
Limits = tuple[tuple[int, int | None], ...]


def storable_text(value: str) -> str:
    """`value` with U+0000 and unpaired surrogates replaced by U+FFFD."""
    if "\0" in value:
        value = value.replace("\0", STAND_IN)
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            value = value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return value


def fit(value: str | None, length: int | None) -> str | None:
    """`storable_text(value)`, cut to `length` characters (None: no limit)."""
    if value is None:
        return None
    value = storable_text(value)
    if length is not None and len(value) > length:
        value = value[:length]
    return value


def length(column: Column[Any]) -> int | None:
    """The length of a VARCHAR column (None: unbounded, or not a text column)."""
    kind = column.type
    return kind.length if isinstance(kind, String) else None


def limits(table: Table, columns: Sequence[str]) -> Limits:
    """The text columns among `columns` (positions in a row tuple) with their lengths."""
    return tuple((i, length(table.c[name])) for i, name in enumerate(columns)
                 if isinstance(table.c[name].type, String))


def _bad(value: str, length: int | None) -> bool:
    if "\0" in value or (length is not None and len(value) > length):
        return True
    if value.isascii():
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


R = TypeVar("R", bound=tuple[Any, ...])


def storable_row(row: R, lim: Limits) -> R | None:
    """None when every text value of `row` can be stored as it is, else the row with
    those values in their safe form."""
    for i, length in lim:
        v = row[i]
        # `_bad` called only for a non-ASCII value: the MO path runs this over ~10
        # columns a MO, and an ASCII value needs only its two cheap checks.
        if isinstance(v, str) and ((length is not None and len(v) > length) or "\0" in v
                                   or (not v.isascii() and _bad(v, length))):
            break
    else:
        return None
    out = list(row)
    for i, length in lim:
        v = out[i]
        if isinstance(v, str):
            out[i] = fit(v, length)
    make = getattr(row, "_make", None)  # a NamedTuple stays one
    return make(out) if make is not None else tuple(out)  # type: ignore[return-value]
