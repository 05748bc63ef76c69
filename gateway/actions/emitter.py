"""Which jobs an event becomes: an MQTT job per event when `[mqtt]` is set, a webhook job
when a configuration asked for one; how many attempts each gets is its kind's
(gateway/actions/registry.py). Storage writes the rows (storage/jobs.py)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.actions.registry import JOBS
from gateway.events import mt_status_of
from gateway.model import JobKind, JobRow, MtStatusChange
from gateway.storage.jobs import event_json, job_row

# Plain str, not the enum members: the drivers bind a str subclass through a slower path.
_MQTT, _WEBHOOK = JobKind.MQTT.value, JobKind.WEBHOOK.value
# The job kinds with attempts of their own (the others: [gateway] max_attempts).
_ATTEMPTS: dict[str, Callable[[Emitter, str], int]] = {
    kind: spec.max_attempts for kind, spec in JOBS.items() if spec.max_attempts is not None}


@dataclass(frozen=True, slots=True)
class Emitter:
    """Turns events into jobs according to the configuration (`emitter_for`)."""

    mqtt_prefix: str | None = None
    max_attempts: int = 8
    profile_attempts: Mapping[str, int] = field(default_factory=dict)
    callback_attempts: int = 8  # [api] callback_max_attempts: an MT's `callback_url`

    def attempts_for(self, kind: str, target: str) -> int:
        attempts = _ATTEMPTS.get(kind)
        return self.max_attempts if attempts is None else attempts(self, target)

    def job(self, kind: str, target: str, payload: Mapping[str, Any] | str, *,
            message_id: str | None, now: float, after: int | None = None) -> JobRow:
        """A row for `insert_jobs`."""
        body = payload if isinstance(payload, str) else event_json(payload)
        return job_row(kind, target, body, message_id, now, after,
                       self.attempts_for(kind, target))

    def event(self, payload: Mapping[str, Any], *topic_parts: str, message_id: str | None,
              now: float, webhook: str | None = None,
              after: int | None = None) -> list[JobRow]:
        """The jobs that deliver one event: MQTT (if configured) and a webhook target."""
        out: list[JobRow] = []
        if self.mqtt_prefix is None and not webhook:
            return out
        body = event_json(payload)  # once for both
        if self.mqtt_prefix is not None:
            out.append(self.job(_MQTT, "/".join((self.mqtt_prefix, *topic_parts)),
                                body, message_id=message_id, now=now))
        if webhook:
            out.append(self.job(_WEBHOOK, webhook, body, message_id=message_id,
                                now=now, after=after))
        return out

    def mt_status(self, change: MtStatusChange) -> list[JobRow]:
        """The jobs of one MT's recorded status change (storage/mts.py `announce`): its
        `mt_status` event, published on `P/mt/status` and sent to the webhook of the
        configuration that sent the MT (after that conversation's last webhook job)."""
        if self.mqtt_prefix is None and not change.notify:
            return []  # no job: no event to build
        return self.event(mt_status_of(change), "mt", "status", message_id=change.id,
                          now=change.at, webhook=change.notify, after=change.after)
