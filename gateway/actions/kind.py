"""The contract of an action kind (gateway/actions/registry.py holds the table): a
`Kind` declares its config keys, its fan-out step, the routes it answers alone, and,
for the kinds that run from the durable outbox, its `JobKind`, attempts and runner.
A step gets the MO's `Effects`: the MO, its decision, and where its effects go."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from gateway.model import ActionKind, JobKind, MessageRow
from gateway.routing.router import Route
from gateway.storage import mts

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from gateway.actions.base import Action
    from gateway.actions.emitter import Emitter
    from gateway.config import ActionConfig, Config, NumberConfig
    from gateway.model import JobRow
    from gateway.routing.router import Decision


class Settings(Protocol):
    """What a step reads of the fan-out's context (gateway/fanout.py `Context`)."""

    @property
    def cfg(self) -> Config: ...
    @property
    def emitter(self) -> Emitter: ...
    @property
    def email_domain(self) -> str | None: ...
    @property
    def token_ttl_days(self) -> int: ...


@dataclass(slots=True)
class Effects:
    """One MO's fan-out, as its steps see it: the MO, its routing decision, and where
    its effects go (MTs queued at once, job rows inserted by fan-out after every MO of
    the batch, rows written through storage in the fan-out's transaction)."""

    conn: Connection
    ctx: Settings
    mo: MessageRow
    decision: Decision
    number: NumberConfig
    values: Mapping[str, str]  # the reply templates' placeholders
    webhook: str | None  # the MO event's webhook: an MT's status events follow it there
    event: Mapping[str, Any]  # the MO's event
    now: float
    jobs: list[JobRow]
    opt_changes: list[tuple[str, str, str]]
    mts: int = 0
    valid: bool = True  # False once a poll refused the vote: no keyword reply

    def mt(self, to: str, body: str, *, exempt: bool = False) -> None:
        """Queue an MT from the number's sender ID, in reply to the MO (nothing when
        `body` is empty)."""
        if not body:
            return
        mo = self.mo
        mts.insert_mt(self.conn, self.ctx.emitter, sender=self.number.sender_id,
                      recipient=to, text=body, now=self.now, smsc=mo.smsc,
                      in_reply_to=mo.id, notify=self.webhook, exempt=exempt)
        self.mts += 1


Step = Callable[["Effects", "ActionConfig"], None]
RouteStep = Callable[["Effects", "ActionConfig | None"], None]


@dataclass(frozen=True, slots=True)
class Runtime:
    """What building a job runner needs: the running configuration (re-read on every
    job, so a reload applies) and the MQTT link when `[mqtt]` is set."""

    config: Callable[[], Config]
    mqtt_link: Any = None  # gateway.actions.mqtt.MqttLink


@dataclass(frozen=True, slots=True, kw_only=True)
class Kind:
    kind: ActionKind
    fields: tuple[str, ...] = ()  # the keys of a number/keyword configuration that enable it
    enabled: Callable[[ActionConfig], bool] = lambda _a: False
    label: Callable[[ActionConfig], str] | None = None  # `check`: e.g. poll(color)
    step: Step | None = None
    routes: Mapping[Route, RouteStep] = field(default_factory=dict)
    job: JobKind | None = None
    max_attempts: Callable[[Emitter, str], int] | None = None  # None: [gateway] max_attempts
    runner: Callable[[Config, Runtime], Action | None] | None = None  # None: not configured
    ordered: bool = False  # jobs to one target keep their order (one worker per target)
