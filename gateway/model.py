"""Domain records shared by the pipeline, storage and the CLI. No IO, no internal imports."""

from __future__ import annotations

import random
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import NamedTuple


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


# -- rows ---------------------------------------------------------------------------------
# The intake's rows are NamedTuples: named fields for the code, plain tuples for the
# driver (storage/repo.py passes them to executemany as they are, in field order, which
# is the column order of its INSERT statements).


class MessageRow(NamedTuple):
    """One `messages` row as the intake inserts it (an MO); also what fan-out and the
    `mo` event read (the fan-out's scan leaves `raw_pdu` and `dedup_key` None)."""

    id: str
    direction: str
    smsc: str
    vmn: str
    msisdn: str
    sender: str
    recipient: str
    text: str
    data_coding: int
    segments: int
    status: str
    created_at: float
    updated_at: float
    raw_pdu: bytes | None
    dedup_key: str | None
    keyword: str | None
    route: str
    fanout: int  # 1: fan-out has work to do for it (see gateway/fanout.py)


class PartRow(NamedTuple):
    """One `mo_parts` row: a segment of a long MO, before its group closes."""

    smsc: str
    concat_key: str
    seq: int
    total: int
    data_coding: int
    body: bytes
    raw_pdu: bytes
    received_at: float
    dedup_key: str | None


class ReceiptRow(NamedTuple):
    """One `receipts` row: a delivery receipt as received."""

    smsc: str
    smsc_message_id: str
    state: str
    error: str | None
    raw_pdu: bytes
    received_at: float


class JobRow(NamedTuple):
    """One `jobs` row as fan-out and the storage insert it (storage/jobs.py)."""

    id: int
    kind: str
    target: str
    event_id: str
    message_id: str | None
    after: int | None
    payload: str
    status: str
    attempts: int
    max_attempts: int
    next_attempt_at: float
    created_at: float
    updated_at: float


@dataclass(frozen=True, slots=True)
class QueuedMt:
    """An MT claimed for sending (storage/mts.py `claim`), as the MT sender reads it."""

    id: str
    sender: str
    recipient: str
    text: str
    smsc: str | None
    attempts: int
    exempt: bool
    token: str = ""  # the lease: every write of the sender that claimed it checks it
    coding: str | None = None  # "gsm" / "ucs2" as asked (HTTP API); None: automatic
    validity: int | None = None  # minutes the SMSC may keep trying; None: its default


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
