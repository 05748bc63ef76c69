"""Runtime control of the `[[smsc]]` binds (`GET /v1/binds`, `POST .../stop|start`):
what each bind is doing, and the operator's stop and start.

A stop answers what the SMSC already sent (the intake commits and acknowledges it),
then unbinds cleanly and keeps the bind down until a start: MTs go out through the
other binds meanwhile, or wait queued. The state lasts until the daemon restarts (a
restart binds every `[[smsc]]` again)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import structlog

from gateway.config import SmscConfig
from gateway.smpp.session import BindCounters, SessionSettings, SmppSession

log = structlog.get_logger("gateway.binds")

DRAIN_TIMEOUT = 2.0
UNBIND_TIMEOUT = 5.0


def session_settings(smsc: SmscConfig) -> SessionSettings:
    """The session's part of one `[[smsc]]` entry, as the plain settings it takes."""
    return SessionSettings(
        name=smsc.name, host=smsc.host, port=smsc.port, system_id=smsc.system_id,
        password=smsc.password_value(), system_type=smsc.system_type,
        enquire_link_interval=smsc.enquire_link_interval, window=smsc.window,
        throughput=smsc.throughput, reconnect_min=smsc.reconnect_min,
        reconnect_max=smsc.reconnect_max, bind_timeout=smsc.bind_timeout,
        response_timeout=smsc.response_timeout, throttle_backoff=smsc.throttle_backoff,
        default_alphabet=smsc.default_alphabet.value)


class NoSuchBind(KeyError):
    pass


@dataclass(frozen=True, slots=True)
class BindView:
    name: str
    host: str
    port: int
    state: str  # bound | down | stopped
    since: float | None  # bound since, or down (stopped) since
    last_error: str | None
    last_error_at: float | None
    reconnects: int
    outstanding: int
    counters: BindCounters
    counters_since: float


class BindControl:
    """The daemon's binds, as the API sees them."""

    def __init__(self, sessions: Sequence[SmppSession],
                 drain: Callable[[float], Awaitable[bool]] | None = None) -> None:
        self._sessions = {s.name: s for s in sessions}
        self._drain = drain

    def views(self) -> list[BindView]:
        return [self._view(s) for s in self._sessions.values()]

    def view(self, name: str) -> BindView:
        return self._view(self._session(name))

    def _session(self, name: str) -> SmppSession:
        try:
            return self._sessions[name]
        except KeyError:
            raise NoSuchBind(name) from None

    @staticmethod
    def _view(s: SmppSession) -> BindView:
        c = s.counters
        return BindView(
            name=s.name, host=s.cfg.host, port=s.cfg.port, state=s.state,
            since=s.bound_since if s.is_bound else s.down_since,
            last_error=s.last_error, last_error_at=s.last_error_at,
            reconnects=s.reconnects, outstanding=s.outstanding,
            counters=BindCounters(mo=c.mo, receipts=c.receipts, mt=c.mt, errors=c.errors),
            counters_since=s.counters_since)

    async def stop(self, name: str) -> bool:
        """Answer what was received, unbind, stay down. False: it was stopped already."""
        session = self._session(name)
        if session.held:
            return False
        if self._drain is not None and session.is_bound \
                and not await self._drain(DRAIN_TIMEOUT):
            # Whatever is still unanswered is redelivered by the SMSC after the unbind.
            log.warning("binds.drain_timeout", smsc=name)
        done = await session.hold(UNBIND_TIMEOUT)
        log.info("binds.stopped", smsc=name)
        return done

    def start(self, name: str) -> bool:
        """Bind again at once. False: it was not stopped."""
        done = self._session(name).release()
        if done:
            log.info("binds.started", smsc=name)
        return done
