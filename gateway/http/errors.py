"""The errors of the HTTP client (`gateway.http.pool`): a request that got no complete
response is an `HttpError`; a URL it cannot send to is an `InvalidURL`."""

from __future__ import annotations

__all__ = [
    "ConnectError",
    "Disconnected",
    "HttpError",
    "HttpTimeout",
    "InvalidURL",
    "ProtocolError",
]


class HttpError(Exception):
    """A request that got no (complete) response."""


class ConnectError(HttpError):
    """No connection: DNS, TCP or TLS (certificate) failed."""

    def __init__(self, host: str, port: int, os_error: OSError) -> None:
        super().__init__(f"cannot connect to {host}:{port}: {os_error}")
        self.host, self.port, self.os_error = host, port, os_error


class HttpTimeout(HttpError, TimeoutError):
    """The request's deadline passed while waiting for ``phase``: "connection" (a free
    pooled connection), "connect" (DNS, TCP, TLS) or "response" (sending, then reading)."""

    def __init__(self, phase: str) -> None:
        super().__init__(f"timeout while waiting for the {phase}")
        self.phase = phase


class Disconnected(HttpError):
    """The server closed (or reset) the connection before the response was complete;
    ``started``: some byte of a response had arrived."""

    def __init__(self, started: bool, cause: BaseException | None = None) -> None:
        what = "during the response" if started else "before responding"
        super().__init__(f"server disconnected {what}" + (f": {cause}" if cause else ""))
        self.started = started


class ProtocolError(HttpError):
    """The server's bytes are not a valid HTTP/1.1 response."""


class InvalidURL(ValueError):
    """Not an absolute http(s) URL with a host."""
