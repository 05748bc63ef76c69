"""The FastAPI application: problem+json for every error, one router per module, the
body cap, and the web console's static files at `/` (after the API routes)."""

from __future__ import annotations

from importlib import resources
from typing import Any

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import Scope

from gateway.api import binds, messages, numbers, optins, polls, problems, queues, stats
from gateway.api.auth import Authenticator
from gateway.api.context import ApiContext
from gateway.api.gate import ApiGate

DESCRIPTION = """The vmn-gateway HTTP API (SPEC §8). JSON in and out; every error is
`application/problem+json` (RFC 9457). Authenticate with `Authorization: Bearer <key>`
(keys from `vmn-gateway apikey create`)."""


def build_app(ctx: ApiContext, *, max_body: int | None = None,
              gate_wait: float = 1.0) -> FastAPI:
    cfg = ctx.config()
    limit = max_body if max_body is not None else (cfg.api.max_body if cfg.api else 65536)
    app = FastAPI(title="vmn-gateway", version=_version(), description=DESCRIPTION,
                  openapi_url="/openapi.json", docs_url="/docs", redoc_url=None,
                  responses=problems.COMMON_RESPONSES,
                  # No OpenTelemetry spans, metrics or logs per request: the gateway has
                  # its own logs and metrics, and they cost the MO path's loop time.
                  telemetry={"tracing": False, "metrics": False, "logs": False,
                             "operation_spans": False})
    app.state.ctx = ctx
    app.state.auth = Authenticator(ctx)
    problems.install(app)
    # Ours, not FastAPI's max_body_size: that one answers a Content-Length over the
    # limit in text/plain, and every error here is problem+json.
    app.add_middleware(problems.BodyLimit, limit=limit)
    # Outermost: a request waiting for the MO intake holds nothing else.
    app.add_middleware(ApiGate, busy=ctx.intake_busy, max_wait=gate_wait)
    app.include_router(messages.router)
    app.include_router(numbers.router)
    app.include_router(optins.router)
    app.include_router(polls.router)
    app.include_router(binds.router)
    app.include_router(stats.router)
    app.include_router(queues.router)
    _with_examples(app, ctx)
    static = resources.files("gateway") / "console" / "static"
    if static.is_dir() and (static / "index.html").is_file():
        app.mount("/", ConsoleFiles(directory=str(static), html=True), name="console")
    return app


class ConsoleFiles(StaticFiles):
    """The console's files, at /. An API path (under /v1/) that no route took is never a
    file: it is answered 404 (405 for a method other than GET and HEAD, as StaticFiles
    answers) without StaticFiles' file-system lookups, each a hop to a worker thread that
    cost the MO loop about 4% at 200 unknown-path requests a second."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        if path == "v1" or path.startswith("v1/"):
            if scope["method"] not in ("GET", "HEAD"):
                raise HTTPException(status_code=405, headers={"Allow": "GET, HEAD"})
            raise HTTPException(status_code=404)
        return await super().get_response(path, scope)


def _with_examples(app: FastAPI, ctx: ApiContext) -> None:
    """The OpenAPI document with a send example from this gateway's own numbers, so that
    a client generated from it (or schemathesis) starts from a request that works."""
    base = app.openapi

    def openapi() -> dict[str, Any]:
        schema = base()
        numbers = ctx.config().numbers
        send = schema.get("components", {}).get("schemas", {}).get("SendRequest")
        if send is not None and numbers:
            send["examples"] = [{"from": numbers[0].sender_id, "to": "+15550001234",
                                 "text": "Your order has shipped"}]
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("vmn-gateway")
    except PackageNotFoundError:
        return "0+unknown"
