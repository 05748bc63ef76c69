"""The one contract between the outbox and the actions.

The outbox (gateway/outbox.py) claims due jobs from the database, calls
`Action.run(job)` for each (at most `concurrency` at once per kind), records every
attempt with its outcome, and schedules retries with exponential backoff and jitter up
to the job's `max_attempts`, then dead-letters it. An action never touches the
database and never sleeps to retry: it reports what happened and the outbox decides.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar, Protocol


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


@dataclass(frozen=True, slots=True, kw_only=True)
class Job:
    id: int
    kind: str  # "webhook", "email", "mqtt"
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


class Action(Protocol):
    kind: ClassVar[str]
    concurrency: int

    async def run(self, job: Job) -> Result: ...

    async def close(self) -> None: ...
