"""Serve the API with uvicorn's `Server.serve()` as a task of the daemon's event loop.

The socket is bound here, before the task starts, so that an address in use is a
clean start-up error (uvicorn would `sys.exit` from inside the loop). uvicorn's own
signal handling is off: the daemon owns SIGTERM/SIGINT/SIGHUP and stops the server
through `stop()`."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable, Generator

import structlog
import uvicorn
from fastapi import FastAPI

from gateway.api.gate import HeldReads, gated_protocol
from gateway.config import split_host_port

log = structlog.get_logger("gateway.api")


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield  # the daemon's signal handlers stay in place


class ApiServer:
    def __init__(self, app: FastAPI, listen: str, *, graceful: int = 5,
                 busy: Callable[[], bool] | None = None, hold_max: float = 1.0) -> None:
        self.host, self.port = split_host_port(listen)
        if busy is None:  # the intake's burst signal, as the app's gate sees it
            ctx = getattr(app.state, "ctx", None)
            busy = getattr(ctx, "intake_busy", None) or (lambda: False)
        self.held_reads = HeldReads(busy, max_wait=hold_max)
        # httptools (C) parses HTTP/1.1, not h11 (pure Python): less loop time per
        # request; and nothing is parsed while the intake is under a burst (HeldReads).
        config = uvicorn.Config(app, http=gated_protocol(self.held_reads), log_config=None,
                                access_log=False,
                                lifespan="off",
                                timeout_graceful_shutdown=graceful, server_header=False,
                                proxy_headers=False)
        self._server = _Server(config)
        self._sockets: list[socket.socket] = []
        self._task: asyncio.Task[None] | None = None

    def bind(self) -> None:
        """Bind the listening sockets (OSError if the address is taken)."""
        infos = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
        for family, kind, proto, _name, addr in infos:
            sock = socket.socket(family, kind, proto)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind(addr)
                sock.listen(1024)
                sock.setblocking(False)
            except OSError:
                sock.close()
                for s in self._sockets:
                    s.close()
                self._sockets = []
                raise
            self._sockets.append(sock)
        if self.port == 0 and self._sockets:
            self.port = self._sockets[0].getsockname()[1]

    def start(self, tg: asyncio.TaskGroup) -> None:
        """Bind (unless `bind()` was called), then serve as a task of `tg` until `stop()`."""
        if not self._sockets:
            self.bind()
        log.info("api.listening", host=self.host, port=self.port)
        self._task = tg.create_task(self._server.serve(sockets=self._sockets), name="api")

    async def stop(self, timeout: float) -> None:
        """Stop taking connections; requests in flight get up to `timeout` seconds."""
        self._server.should_exit = True
        task = self._task
        if task is None or task.done():
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout)
        except TimeoutError:
            self._server.force_exit = True
            task.cancel()
            log.warning("api.stop_timeout", cut_off=len(self._server.server_state.tasks))
