"""mqtt: every event (SPEC §4) as a job published on `[mqtt] topic_prefix`/..., when
`[mqtt]` is set (not a key of a number's configuration). Retried until the broker takes
it: an outage delays events, it never dead-letters them. Run by `MqttAction`
(actions/mqtt.py) over the daemon's (or an action worker's) MQTT link."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.actions.kind import Kind, Runtime
from gateway.model import ActionKind, JobKind

if TYPE_CHECKING:
    from gateway.actions.base import Action
    from gateway.actions.emitter import Emitter
    from gateway.config import Config

# The backoff is capped at [gateway] retry_max: the job waits for the broker, however
# long it is down.
MQTT_ATTEMPTS = 2**31 - 1


def _attempts(_emitter: Emitter, _target: str) -> int:
    return MQTT_ATTEMPTS


def _runner(cfg: Config, rt: Runtime) -> Action | None:
    if cfg.mqtt is None or rt.mqtt_link is None:
        return None
    from gateway.actions.mqtt import MqttAction  # aiomqtt: only with [mqtt]

    return MqttAction(rt.mqtt_link, qos=cfg.mqtt.qos)


KIND = Kind(kind=ActionKind.MQTT, job=JobKind.MQTT, max_attempts=_attempts,
            runner=_runner, ordered=True)
