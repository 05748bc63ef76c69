"""One HTTP/1.1 response, parsed from the bytes a connection receives (httptools).

`ResponseParser` wraps `httptools.HttpResponseParser` (llhttp) for one request at a
time: feed it what arrives, and it says when the response is complete. It adds what
llhttp leaves to the caller:

* interim ``1xx`` responses (``100 Continue``...) are skipped; ``101`` is an error
  (the client never asks for an upgrade);
* a close-delimited body (no ``Content-Length``, not chunked) ends at EOF
  (`feed_eof`); any other response cut short by EOF is incomplete;
* the body is capped: past ``body_limit`` bytes the response is complete but
  ``truncated`` (and the connection must not be reused);
* the head (status line and headers) is capped at `HEAD_LIMIT` bytes: a peer sending
  headers without end is a `ProtocolError`, not a memory leak;
* bytes after the end of the response (a second response nobody asked for, or
  garbage) make the connection not reusable.

Errors are `ProtocolError`. Nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import httptools

from gateway.http.errors import ProtocolError

__all__ = ["HEAD_LIMIT", "ProtocolError", "Response", "ResponseParser"]

HEAD_LIMIT: Final = 64 * 1024
_CONTENT_LENGTH: Final = b"content-length"
_TRANSFER_ENCODING: Final = b"transfer-encoding"


@dataclass(slots=True, kw_only=True)
class Response:
    status: int
    headers: dict[str, str]  # lower-case names (latin-1 decoded); a repeated name: the last
    body: bytes  # at most the parser's body_limit bytes
    truncated: bool  # the body was longer than body_limit (the rest was not read)
    keep_alive: bool  # the connection may carry another request


class ResponseParser:
    """Collects one response; `reset` before the next request on the same connection."""

    __slots__ = (
        "_body",
        "_body_len",
        "_framed",
        "_head_bytes",
        "_headers",
        "_parser",
        "_status",
        "body_limit",
        "complete",
        "keep_alive",
        "started",
        "truncated",
    )

    def __init__(self, body_limit: int) -> None:
        if body_limit < 0:
            raise ValueError("body_limit must be >= 0")
        self.body_limit = body_limit
        self._parser = httptools.HttpResponseParser(self)
        self._reset_message()
        self._head_bytes = 0
        self.started = False  # any byte received for the current request
        self.complete = False
        self.keep_alive = False

    # ------------------------------------------------------------------ API

    def reset(self) -> None:
        """Get ready for the next response on the same (kept-alive) connection."""
        self._reset_message()
        self._head_bytes = 0
        self.started = False
        self.complete = False
        self.keep_alive = False

    def feed(self, data: bytes) -> bool:
        """Parse received bytes; True once the response is complete (or truncated)."""
        if data:
            self.started = True
            if not self._status:  # still in the head (interim responses included)
                self._head_bytes += len(data)
        if self.complete:  # bytes nobody asked for: never reuse this connection
            self.keep_alive = False
            return True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            raise ProtocolError("unexpected protocol upgrade") from exc
        except httptools.HttpParserError as exc:
            if not self.complete:
                raise ProtocolError(f"invalid HTTP response: {exc}") from exc
            self.keep_alive = False  # garbage after a complete response
        if not self._status and self._head_bytes > HEAD_LIMIT:
            raise ProtocolError(f"response head larger than {HEAD_LIMIT} bytes")
        return self.complete

    def feed_eof(self) -> bool:
        """The peer closed: True when that ends a close-delimited body."""
        if self.complete:
            return True
        if self._status and not self._framed:
            self.complete = True
            self.keep_alive = False
            return True
        return False

    def response(self) -> Response:
        if not self.complete:
            raise RuntimeError("the response is not complete")
        return Response(
            status=self._status,
            headers=self._headers,
            body=b"".join(self._body),
            truncated=self.truncated,
            keep_alive=self.keep_alive and not self.truncated,
        )

    # ------------------------------------------------------------------ httptools callbacks

    def _reset_message(self) -> None:
        self._status = 0  # set when the headers are complete
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self._body_len = 0
        self._framed = False  # Content-Length or Transfer-Encoding: the end is not EOF
        self.truncated = False

    def on_message_begin(self) -> None:
        if self.complete:  # a second response in the same bytes
            self.keep_alive = False

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.complete:
            return
        lower = name.lower()
        if lower in (_CONTENT_LENGTH, _TRANSFER_ENCODING):
            self._framed = True
        self._headers[lower.decode("latin-1")] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        if not self.complete:
            self._status = self._parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        if self.complete:
            return
        room = self.body_limit - self._body_len
        if len(body) > room:
            if room > 0:
                self._body.append(body[:room])
            self._body_len = self.body_limit
            self.truncated = True
            self.complete = True  # enough: the caller drops the connection
            self.keep_alive = False
            return
        self._body.append(body)
        self._body_len += len(body)

    def on_message_complete(self) -> None:
        if self.complete:
            return
        if 100 <= self._status < 200:  # an interim response: the real one follows
            self._reset_message()
            return
        self.complete = True
        self.keep_alive = self._parser.should_keep_alive()
