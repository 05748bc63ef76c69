"""Domain records shared by the pipeline, storage and the CLI. No IO, no internal imports."""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, NamedTuple


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


class MtStatusChange(NamedTuple):
    """One MT's new status, as storage/mts.py recorded it and read it back for its
    `mt_status` event, which the action layer builds and turns into jobs
    (actions/emitter.py `Emitter.mt_status`)."""

    id: str
    to: str
    sender: str
    status: str
    smsc_message_ids: tuple[str | None, ...]  # its segments' ids, in order (None: none)
    error: str | None
    in_reply_to: str | None
    client_ref: str | None
    at: float
    receipt_stat: str | None  # the receipt that decided it, as received
    receipt_err: str | None
    notify: str | None  # the webhook target of the configuration that sent it
    after: int | None  # the webhook job about its conversation that must go first


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
    return _id_digits(ms, _counter, random.getrandbits(32))


def _id_digits(ms: int, counter: int, rand: int) -> str:
    """The 24 hex digits of an id: one format of the 96-bit number, the same digits as
    formatting the three fields apart (ms < 2**48: until the year 10889), at a third of
    the cost (fan-out makes an id per job, two a MO)."""
    return f"{(ms << 48) | (counter << 32) | rand:024x}"


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


# --- actions and their jobs (gateway/actions/registry.py) ------------------------------
class ActionKind(StrEnum):
    """What a number or keyword configuration asks for (its config key), and MQTT (every
    event, when `[mqtt]` is set): one module per kind under gateway/actions/. The order
    here is the order `check` lists them in."""

    WEBHOOK = "webhook"
    REPLY = "reply"
    FORWARD_SMS = "forward_sms"
    FORWARD_EMAIL = "forward_email"
    OPT_IN = "opt_in"
    OPT_OUT = "opt_out"
    POLL = "poll"
    LEAD = "lead"
    MQTT = "mqtt"


class JobKind(StrEnum):
    """The kinds of durable job the outbox runs (`jobs.kind`): these values are stored."""

    WEBHOOK = "webhook"
    EMAIL = "email"
    MQTT = "mqtt"


class Outcome(StrEnum):
    OK = "ok"  # done
    RETRY = "retry"  # transient: try again later (5xx, 408, 429, timeout, connection error)
    FAIL = "fail"  # final: do not retry (e.g. a 4xx without retry_on_4xx)


@dataclass(frozen=True, slots=True, kw_only=True)
class Result:
    outcome: Outcome
    detail: str = ""  # e.g. "HTTP 503", "timeout after 10.0s", "250 OK"
    status: int | None = None  # HTTP status / SMTP code when there was one
    latency_ms: float = 0.0


class LazyJson(Mapping[str, Any]):
    """A JSON object parsed on first use: most actions send the stored bytes as they are
    and never need the fields."""

    __slots__ = ("_data", "raw")

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self._data: dict[str, Any] | None = None

    def _obj(self) -> dict[str, Any]:
        if self._data is None:
            value = json.loads(self.raw)
            self._data = value if isinstance(value, dict) else {}
        return self._data

    def __getitem__(self, key: str) -> Any:
        return self._obj()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._obj())

    def __len__(self) -> int:
        return len(self._obj())


@dataclass(slots=True, kw_only=True)
class Job:
    """One run of a job, as an action gets it. Not frozen: fan-out builds two a MO on the
    writer thread and a frozen dataclass's __init__ costs 3.7x a plain one (1.85 vs
    0.50 us); nothing changes a Job after it is built."""

    id: int
    kind: str  # a JobKind value: "webhook", "email", "mqtt"
    target: str  # webhook: URL or "profile:NAME"; email: address; mqtt: topic
    event_id: str  # stable across retries, unique per job: X-VMN-Event-Id
    payload: Mapping[str, Any]  # the event (SPEC §4) or the action's data
    attempts: int  # attempts made before this one
    raw: bytes | None = None  # payload as stored (compact JSON): sent as-is when given
    # Attempts of earlier rounds (before a redrive reset `attempts`): the log numbers
    # attempts across redrives, the retry budget counts only this round's.
    earlier: int = 0

    @property
    def attempt(self) -> int:
        """The number of the attempt about to be made, counted across redrives."""
        return self.earlier + self.attempts + 1

    def body(self) -> bytes:
        """The payload as compact JSON: `raw` when given, else serialised (TypeError or
        ValueError when the payload is not JSON-serialisable)."""
        if self.raw is not None:
            return self.raw
        return json.dumps(self.payload, separators=(",", ":"), ensure_ascii=False).encode()
