"""`/v1/binds`: each `[[smsc]]` bind's state (with the last bind error, since when, and
its counters since the daemon started), and the operator's stop and start
(gateway/binds.py: stop answers what was received, unbinds cleanly and keeps the bind
down until start)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from gateway.api.auth import ApiKey, require
from gateway.api.context import ApiContext, context
from gateway.api.problems import Problem, documented
from gateway.binds import BindControl, BindView, NoSuchBind
from gateway.model import iso

router = APIRouter(prefix="/v1/binds", tags=["binds"])
Ctx = Annotated[ApiContext, Depends(context)]


class Counters(BaseModel):
    mo: int = Field(description="deliver_sm / data_sm received, receipts apart")
    mt: int = Field(description="submit_sm accepted by the SMSC")
    receipts: int = Field(description="delivery receipts received")
    errors: int = Field(description="submit_sm refused or unanswered, binds refused or "
                                    "failed, connections lost")


class Bind(BaseModel):
    name: str
    host: str
    port: int
    state: Literal["bound", "down", "stopped"] = Field(
        description="stopped: by POST .../stop (until .../start), or shutting down")
    since: str | None = Field(description="in this state since (ISO-8601 UTC)")
    last_error: str | None = Field(description="why the bind last went down or failed")
    last_error_at: str | None
    reconnects: int
    outstanding: int = Field(description="submit_sm in the window")
    counters: Counters
    counters_since: str = Field(description="the counters count from (daemon start)")


class BindList(BaseModel):
    items: list[Bind]
    next_cursor: str | None = None


_NO_DAEMON = documented({503: "not served by the running daemon"})
_NO_BIND = documented({404: "no such bind", 503: "not served by the running daemon"})


def _bind(v: BindView) -> Bind:
    c = v.counters
    return Bind(name=v.name, host=v.host, port=v.port,
                state=v.state,
                since=iso(v.since), last_error=v.last_error, last_error_at=iso(v.last_error_at),
                reconnects=v.reconnects, outstanding=v.outstanding,
                counters=Counters(mo=c.mo, mt=c.mt, receipts=c.receipts, errors=c.errors),
                counters_since=iso(v.counters_since) or "")


def _control(ctx: ApiContext) -> BindControl:
    if ctx.binds is None:
        raise Problem(503, "bind control needs the running daemon")
    return ctx.binds


def _manager(key: ApiKey) -> None:
    if key.vmns:
        raise Problem(403, f"the key {key.name!r} is limited to some VMNs; binds carry "
                           "every VMN's traffic")


@router.get("", response_model=BindList, summary="Every bind's state and counters",
            responses=_NO_DAEMON)
async def list_binds(ctx: Ctx,
                     _key: Annotated[ApiKey, Depends(require("read"))]) -> BindList:
    return BindList(items=[_bind(v) for v in _control(ctx).views()])


@router.post("/{name}/stop", response_model=Bind, summary="Unbind and stay down",
             responses=_NO_BIND)
async def stop(name: str, ctx: Ctx,
               key: Annotated[ApiKey, Depends(require("manage"))]) -> Bind:
    _manager(key)
    control = _control(ctx)
    try:
        await control.stop(name)
        return _bind(control.view(name))
    except NoSuchBind:
        raise Problem(404, f"no bind named {name!r}") from None


@router.post("/{name}/start", response_model=Bind, summary="Bind again after a stop",
             responses=_NO_BIND)
async def start(name: str, ctx: Ctx,
                key: Annotated[ApiKey, Depends(require("manage"))]) -> Bind:
    _manager(key)
    control = _control(ctx)
    try:
        control.start(name)
        return _bind(control.view(name))
    except NoSuchBind:
        raise Problem(404, f"no bind named {name!r}") from None
