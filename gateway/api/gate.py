"""The MO path first: API requests wait while the intake is busy, and run one at a time.

During a full-speed MO burst the API's work (HTTP parsing aside: its database reads and
writes, their serialisation) competes with the intake for the one event loop and the
GIL; at 200 requests/s it took most of the loop (docs/PERFORMANCE.md). `ApiGate` is a
pure ASGI middleware around `/v1/` requests: one request at a time holds the gate, and
the holder first waits until the intake is idle (`busy()` false, the intake's own burst
signal: a batch committing, or a burst seen in the last BUSY_HOLD), at most `max_wait`
seconds, then runs anyway. So during a burst the API still answers (about one request
per `max_wait`: never starved) and its latency grows with the burst; afterwards the
queued requests run back to back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from starlette.types import ASGIApp, Receive, Scope, Send

# How often the gate's holder looks at the intake again while it is busy (a burst's
# end is seen within this; one check costs microseconds).
POLL = 0.005


def never_busy() -> bool:
    return False


class ApiGate:
    def __init__(self, app: ASGIApp, *, busy: Callable[[], bool], max_wait: float = 1.0,
                 prefix: str = "/v1/") -> None:
        self.app = app
        self.busy = busy
        self.max_wait = max_wait
        self.prefix = prefix
        self._lock = asyncio.Lock()  # FIFO: requests run in arrival order

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        async with self._lock:
            await self._idle()
            await self.app(scope, receive, send)

    async def _idle(self) -> None:
        """Return when the intake is idle, or after `max_wait`."""
        if not self.busy():
            return
        deadline = time.monotonic() + self.max_wait
        while self.busy():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            await asyncio.sleep(min(POLL, left))
