"""Every error of the HTTP API as `application/problem+json` (RFC 9457): `type`, `title`,
`status`, `detail`, and for invalid input `errors: [{"loc", "msg"}]` with the key paths
and wording of `vmn-gateway check` (gateway/config/errors.py)."""

from __future__ import annotations

import http
import math
from collections.abc import Mapping, Sequence
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.config import describe_error, format_loc

log = structlog.get_logger("gateway.api")

TYPE_BASE = "https://vmn-gateway.dev/problems/"
MEDIA_TYPE = "application/problem+json"

# The `type` suffix of the plain HTTP errors.
_SUFFIX = {400: "bad-request", 401: "unauthorized", 403: "forbidden", 404: "not-found",
           405: "method-not-allowed", 406: "not-acceptable", 409: "conflict",
           413: "body-too-large", 415: "unsupported-media-type", 422: "invalid",
           429: "rate-limited", 500: "internal"}


class ErrorItem(BaseModel):
    loc: str = Field(description="the key path, as `vmn-gateway check` names it")
    msg: str


class ProblemBody(BaseModel):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: str | None = None
    errors: list[ErrorItem] | None = None


class Problem(Exception):
    """Raise from a handler to answer with a problem (`suffix` names its `type`)."""

    def __init__(self, status: int, detail: str | None = None, *, suffix: str | None = None,
                 title: str | None = None, errors: Sequence[Mapping[str, str]] | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail or title or str(status))
        self.status = status
        self.detail = detail
        self.suffix = suffix or _SUFFIX.get(status, str(status))
        self.title = title or _phrase(status)
        self.errors = [dict(e) for e in errors] if errors is not None else None
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": TYPE_BASE + self.suffix, "title": self.title,
                               "status": self.status}
        if self.detail is not None:
            out["detail"] = self.detail
        if self.errors is not None:
            out["errors"] = self.errors
        return out

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers,
                            media_type=MEDIA_TYPE)


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def invalid(errors: Sequence[Mapping[str, str]], detail: str | None = None) -> Problem:
    """422 with `errors`; the detail is the first error, as `check` prints it."""
    first = errors[0] if errors else None
    text = detail or (f"{first['loc']}: {first['msg']}" if first else "invalid request")
    return Problem(422, text, suffix="invalid", title="Invalid request", errors=errors)


def validation_errors(exc: RequestValidationError) -> list[dict[str, str]]:
    """FastAPI's errors as {loc, msg}: a body error by its path in the body
    (`keywords[0].reply`), a parameter as `query.limit`, `header.idempotency-key`."""
    out = []
    for err in exc.errors():
        loc = list(err.get("loc", ()))
        if loc and loc[0] == "body":
            loc = loc[1:]
        if err.get("type") == "json_invalid":
            out.append({"loc": "", "msg": f"not JSON: {err.get('ctx', {}).get('error', '')}"
                                          .rstrip(": ")})
            continue
        out.append({"loc": format_loc(loc), "msg": describe_error(err)})
    return out


async def _on_problem(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Problem)
    return exc.response()


async def _on_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    detail: str | None = exc.detail if isinstance(exc.detail, str) else None
    if detail == _phrase(exc.status_code):
        detail = None
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = _allowed(request)
    return Problem(exc.status_code, detail, headers=headers).response()


def _allowed(request: Request) -> str:
    """Every method the OpenAPI document gives this path: Starlette's own `Allow` names
    only the first route's (GET and POST of one path are two routes)."""
    methods: set[str] = set()
    for template, operations in request.app.openapi().get("paths", {}).items():
        if compile_path(template)[0].match(request.url.path):
            methods |= {m.upper() for m in operations if m in _METHODS}
    return ", ".join(sorted(methods))


_METHODS = frozenset({"get", "put", "post", "delete", "patch", "head", "options"})


async def _on_invalid(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return invalid(validation_errors(exc)).response()


async def _on_error(request: Request, exc: Exception) -> JSONResponse:
    log.error("api.error", method=request.method, path=request.url.path,
              error=f"{type(exc).__name__}: {exc}")
    return Problem(500, "the gateway could not answer this request; see its log").response()


def install(app: FastAPI) -> None:
    """The problem+json handlers, for every error the app can answer with."""
    app.add_exception_handler(Problem, _on_problem)
    app.add_exception_handler(HTTPException, _on_http)
    app.add_exception_handler(RequestValidationError, _on_invalid)
    app.add_exception_handler(Exception, _on_error)


# Documented on every operation, so that clients (and schemathesis) know their shape.
PROBLEM_CONTENT = {MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/ProblemBody"}}}
COMMON_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"description": _phrase(status), "model": ProblemBody, "content": PROBLEM_CONTENT}
    for status in (400, 401, 403, 413, 422, 429, 500)
}


class BodyLimit:
    """ASGI middleware: a request body above `limit` bytes is refused with 413, from its
    Content-Length before it is read, else as soon as the bytes received pass it."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    length = -1
                if length > self.limit or length < 0:
                    await self._refuse(scope, send, length)
                    return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise HTTPException(413, self._detail(seen))
            return message

        await self.app(scope, counted, send)

    def _detail(self, length: int) -> str:
        return f"the request body is over {self.limit} bytes ([api] max_body)"

    async def _refuse(self, scope: Scope, send: Send, length: int) -> None:
        if length < 0:
            problem = Problem(400, "Content-Length is not a number")
        else:
            problem = Problem(413, self._detail(length))
        await problem.response()(scope, _no_body, send)


async def _no_body() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


def retry_after(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))



def documented(descriptions: Mapping[int, str]) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route's own problem statuses (`{404: "no such bind"}`): in the
    OpenAPI document, with the problem body."""
    return {status: {"description": d, "model": ProblemBody, "content": PROBLEM_CONTENT}
            for status, d in descriptions.items()}
