"""Domain records shared by the pipeline, storage and the CLI. No IO, no internal imports."""

from __future__ import annotations

import random
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
    # submit_sm written, no response, not sent again ([[smsc]] resend_unanswered =
    # false): the SMSC may or may not have it; a receipt may still settle it.
    UNKNOWN = "unknown"
    # never sent: a reply or forward to an alphanumeric sender ID (the error says so)
    SKIPPED = "skipped"


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
