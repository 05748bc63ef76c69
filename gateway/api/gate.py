"""The MO path first: API requests wait while the intake is busy, and run one at a time.

Two layers. `HeldReads` stops the HTTP work before it starts: while the intake is busy,
bytes that arrive on an API connection are kept as they are (unparsed) and the
connection stops reading, so neither uvicorn's parsing nor the ASGI stack runs during a
burst; the oldest held connection is let go every `max_wait`, all of them when the
burst ends. Then `ApiGate`:

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
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

# How often a waiting request, or the held connections, look at the intake again while
# it is busy. Each look wakes the loop: at 5 ms that was 200 wake-ups a second in the
# middle of the burst the wait is there to protect; 25 ms sees a burst's end soon enough.
POLL = 0.025


def never_busy() -> bool:
    return False


class HeldReads:
    """The API connections holding what they read while the intake is busy, oldest
    first. One task lets them go: all at once when the intake is idle, else the oldest
    once it has waited `max_wait` (so the API still answers during a long burst)."""

    def __init__(self, busy: Callable[[], bool], *, max_wait: float = 1.0) -> None:
        self.busy = busy
        self.max_wait = max_wait
        self._held: dict[GatedHttpProtocol, float] = {}  # insertion order: oldest first
        self._task: asyncio.Task[None] | None = None
        self.holds = 0  # connections held so far (for tests and logs)

    def hold(self, proto: GatedHttpProtocol) -> None:
        self._held[proto] = time.monotonic()
        self.holds += 1
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._release(),
                                                                name="api-held-reads")

    def forget(self, proto: GatedHttpProtocol) -> None:
        self._held.pop(proto, None)

    async def _release(self) -> None:
        while self._held:
            await asyncio.sleep(POLL)
            if not self.busy():
                held, self._held = list(self._held), {}
                for proto in held:
                    proto.release()
                return
            oldest, since = next(iter(self._held.items()))
            if time.monotonic() - since >= self.max_wait:
                del self._held[oldest]
                oldest.release()


class GatedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, holding what it reads while the intake is busy
    (see HeldReads). `held_reads` is set on a subclass made per server."""

    held_reads: HeldReads | None = None
    _pending: list[bytes] | None = None

    def data_received(self, data: bytes) -> None:
        if self._pending is not None:
            self._pending.append(data)
            return
        reads = self.held_reads
        if reads is not None and reads.busy():
            self._pending = [data]
            self._unset_keepalive_if_required()  # an idle-close must not drop it
            self.flow.pause_reading()
            reads.hold(self)
            return
        super().data_received(data)

    def release(self) -> None:
        pending, self._pending = self._pending, None
        if pending is None or self.transport.is_closing():
            return
        self.flow.resume_reading()
        super().data_received(b"".join(pending))

    def shutdown(self) -> None:
        # the server stops: what was held is answered (graceful shutdown waits for it)
        if self.held_reads is not None:
            self.held_reads.forget(self)
        self.release()
        super().shutdown()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.held_reads is not None:
            self.held_reads.forget(self)
        self._pending = None
        super().connection_lost(exc)


def gated_protocol(reads: HeldReads) -> type[GatedHttpProtocol]:
    return type("GatedHttp", (GatedHttpProtocol,), {"held_reads": reads})


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
