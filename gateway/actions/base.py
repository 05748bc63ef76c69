"""The one contract between the outbox and the actions.

The outbox (gateway/outbox.py) claims due jobs from the database, calls
`Action.run(job)` for each (at most `concurrency` at once per kind), records every
attempt with its outcome, and schedules retries with exponential backoff and jitter up
to the job's `max_attempts`, then dead-letters it. An action never touches the
database and never sleeps to retry: it reports what happened and the outbox decides.
"""

from __future__ import annotations

from typing import ClassVar, Protocol

# The records of a job and its outcome are domain records (gateway/model.py): storage
# claims and finishes them without importing the actions.
from gateway.model import Job, LazyJson, Outcome, Result

__all__ = ["Action", "Job", "LazyJson", "Outcome", "Result"]


class Action(Protocol):
    kind: ClassVar[str]
    concurrency: int

    async def run(self, job: Job) -> Result: ...

    async def close(self) -> None: ...
