"""The `mqtt` action: an event job becomes one publish on the shared `MqttLink`.

The link (connection, reconnects, status and will, commands in) is `gateway.mqtt`;
this is only the action the outbox runs::

    async with MqttLink(cfg, gateway_name="gw1", on_command=queue_mt) as link:
        action = MqttAction(link, qos=cfg.qos)
        ...                               # the outbox calls action.run(job)

`MqttAction` never retries by itself: not connected, no PUBACK in time or a broken
connection is `Outcome.RETRY` and the outbox schedules the next attempt (the outbox is
what makes events durable across a broker outage). A QoS 1 event may therefore reach
subscribers more than once (a PUBACK lost with the connection); subscribers deduplicate
on the event's ``id``.
"""

from __future__ import annotations

import time
from typing import ClassVar

from gateway.actions.base import Job, Outcome, Result
from gateway.mqtt import MqttError, MqttLink, MqttLinkError, ack_name

__all__ = ["MqttAction", "MqttLink"]  # MqttLink: for the composition root's wiring


class MqttAction:
    """The `mqtt` action: publish the job's payload as JSON on ``job.target`` (a full
    topic, prefix included) through the shared `MqttLink`."""

    kind: ClassVar[str] = "mqtt"

    def __init__(
        self,
        link: MqttLink,
        *,
        qos: int = 1,
        publish_timeout: float = 10.0,
        concurrency: int = 128,
    ) -> None:
        if qos not in (0, 1, 2):
            raise ValueError(f"expected qos 0, 1 or 2 (got {qos})")
        self.link = link
        self.qos = qos
        self.publish_timeout = publish_timeout
        self.concurrency = concurrency

    async def run(self, job: Job) -> Result:
        started = time.perf_counter()

        def result(outcome: Outcome, detail: str) -> Result:
            latency = (time.perf_counter() - started) * 1000
            return Result(outcome=outcome, detail=detail, latency_ms=round(latency, 3))

        target = job.target
        if not target or any(c in target for c in "+#\0"):
            return result(Outcome.FAIL, f"invalid topic {target!r}")
        try:
            payload = job.body()
        except (TypeError, ValueError) as exc:
            return result(Outcome.FAIL, f"payload is not JSON-serialisable: {exc}")
        try:
            await self.link.publish(target, payload, self.qos, timeout=self.publish_timeout)
        except MqttLinkError as exc:
            return result(Outcome.RETRY, str(exc))
        except MqttError as exc:
            return result(Outcome.RETRY, f"publish failed: {exc}")
        except ValueError as exc:  # the codec: bad topic/QoS, payload too large
            return result(Outcome.FAIL, f"publish refused: {exc}")
        except Exception as exc:  # never raise into the outbox
            return result(Outcome.RETRY, f"publish failed: {type(exc).__name__}: {exc}")
        return result(Outcome.OK, ack_name(self.qos))

    async def close(self) -> None:
        """Nothing to do: the link belongs to whoever created it."""
