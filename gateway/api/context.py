"""What the API handlers need from the daemon, in one object (built by daemon.py).
Other parts add fields here, with defaults, as they need them."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import Request

from gateway.api.gate import never_busy
from gateway.binds import BindControl
from gateway.config import Config
from gateway.dynnumbers import LiveNumbers
from gateway.storage.repo import Store


def _nothing() -> None:
    return None


@dataclass(slots=True, kw_only=True)
class ApiContext:
    # The configuration in force (read on every request: a reload applies at once).
    config: Callable[[], Config]
    store: Store
    clock: Callable[[], float] = time.time
    # After an MT was queued: wake the MT sender (daemon: MtSender.wake).
    wake_mt: Callable[[], None] = _nothing
    # Seconds a checked API key is trusted before its row is read again (revocation).
    key_ttl: float = 1.0
    # The daemon's binds: state, counters, the operator's stop/start (/v1/binds).
    binds: BindControl | None = None
    # The numbers and keywords managed through the API (/v1/numbers; gateway/dynnumbers.py).
    numbers: LiveNumbers | None = None
    # Whether the MO intake is busy (daemon: Intake.busy): API requests wait at the gate
    # while it is (gateway/api/gate.py).
    intake_busy: Callable[[], bool] = never_busy


async def context(request: Request) -> ApiContext:
    """FastAPI dependency: the ApiContext of the app serving `request` (async: a plain
    function would be run on a worker thread, a hop per request)."""
    ctx = request.app.state.ctx
    assert isinstance(ctx, ApiContext)
    return ctx
