"""Domain records shared by the pipeline, storage and the CLI. No IO, no internal imports."""

from __future__ import annotations

import random
import re
import time
from datetime import UTC, datetime
from enum import StrEnum


class Direction(StrEnum):
    MO = "mo"
    MT = "mt"


class MoStatus(StrEnum):
    RECEIVED = "received"
    INCOMPLETE = "incomplete"


class MtStatus(StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    SUBMITTED = "submitted"
    DELIVERED = "delivered"
    FAILED = "failed"
    BLOCKED = "blocked"


_last_ms = 0
_counter = 0


def new_id() -> str:
    """A 24-hex-digit id that sorts by creation time: 48-bit ms clock, 16-bit counter
    within the millisecond, 32 random bits (unique across instances sharing a DB)."""
    global _last_ms, _counter
    ms = time.time_ns() // 1_000_000
    if ms == _last_ms:
        _counter = (_counter + 1) & 0xFFFF
    else:
        _last_ms, _counter = ms, 0
    return f"{ms:012x}{_counter:04x}{random.getrandbits(32):08x}"


def iso(ts: float | None) -> str | None:
    """UNIX seconds -> ISO-8601 UTC with milliseconds and a Z."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z"
    )


_AGE = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_instant(value: str, now: float | None = None) -> float:
    """ISO-8601 (naive = UTC) or a relative age like 15m, 2h, 7d -> UNIX seconds.
    ValueError names what was expected."""
    now = time.time() if now is None else now
    m = _AGE.match(value.strip())
    if m:
        return now - float(m.group(1)) * _AGE_UNITS[m.group(2)]
    try:
        dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"expected an ISO-8601 date-time or an age like 15m, 2h, 7d "
                         f"(got {value!r})") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()
