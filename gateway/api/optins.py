"""`/v1/optins`: the opt-in database, and the manual change.

A manual change (`PUT /v1/optins/{vmn}/{msisdn}`) goes through the same function as a
STOP or START keyword (actions/opt.py `record_opt`): the same state rows (the VMN
and its sender ID, or `*` for every sender, which clears the per-sender rows), a row
in the history with source `api`, and, when it changed something, the same `opt` event
on MQTT and to `[optout] callback_profile`. An MT to a number opted out this way is
`blocked` like any other."""

from __future__ import annotations

import math
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from gateway.actions import opt
from gateway.api.auth import ApiKey, forbid_unless, require
from gateway.api.context import ApiContext, context
from gateway.api.paging import MAX_LIMIT, bad_cursor, decode, encode, text
from gateway.api.problems import Problem, documented, invalid
from gateway.config import Config
from gateway.model import iso
from gateway.msisdn import InvalidNumber, canonical
from gateway.storage import optins

router = APIRouter(prefix="/v1/optins", tags=["optins"])
Ctx = Annotated[ApiContext, Depends(context)]
State = Literal["in", "out"]
_CURSOR = "optins"


class OptIn(BaseModel):
    msisdn: str = Field(description="E.164 digits without +")
    vmn: str = Field(description='the VMN or sender ID, or "*" for every sender')
    state: State
    keyword: str | None = Field(description="the keyword that set it (null: the API)")
    updated_at: str = Field(description="ISO-8601 UTC")


class OptInList(BaseModel):
    items: list[OptIn]
    next_cursor: str | None


class OptChangeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    state: State = Field(description="out: no MT from this sender reaches the number; "
                                     "in: opted in again")


class OptChangeResult(BaseModel):
    msisdn: str
    vmn: str = Field(description='the VMN, or "*" for every sender')
    state: State
    changed: bool = Field(description="false when the state already was this (no event)")
    at: str


def _number(cfg: Config, raw: str, loc: str) -> str:
    try:
        return canonical(raw, cfg.gateway.country_code)
    except InvalidNumber as exc:
        raise invalid([{"loc": loc, "msg": str(exc)}]) from None


def _key(raw: object) -> optins.OptKey | None:
    if raw is None:
        return None
    if isinstance(raw, list) and len(raw) == 3 and isinstance(raw[0], int | float) \
            and not isinstance(raw[0], bool) and isinstance(raw[1], str) \
            and isinstance(raw[2], str) and math.isfinite(raw[0]):
        return (float(raw[0]), raw[1], raw[2])
    raise bad_cursor()


@router.get("", response_model=OptInList, summary="The opt-in database")
async def list_optins(
    ctx: Ctx, key: Annotated[ApiKey, Depends(require("read"))],
    vmn: Annotated[str | None, Query(description="rows of this VMN (and those for every "
                                                 "sender, `*`)")] = None,
    msisdn: Annotated[str | None, Query(description="any spelling")] = None,
    state: State | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
    cursor: str | None = None,
) -> OptInList:
    cfg = ctx.config()
    vmn = text("vmn", vmn)
    if vmn:
        forbid_unless(key, vmn)
    vmns = [vmn] if vmn else list(key.vmns)
    who = _number(cfg, msisdn, "query.msisdn") if msisdn else None
    after = _key(decode(_CURSOR, cursor))
    rows = await ctx.store.read(optins.list_optins, vmns=vmns, msisdn=who, state=state,
                                after=after, limit=limit + 1)
    more, rows = len(rows) > limit, rows[:limit]
    items = [OptIn(msisdn=r["msisdn"], vmn=r["vmn"], state=r["state"], keyword=r["keyword"],
                   updated_at=iso(r["updated_at"]) or "") for r in rows]
    nxt = encode(_CURSOR, list(optins.key_of(rows[-1]))) if more else None
    return OptInList(items=items, next_cursor=nxt)


@router.put("/{vmn}/{msisdn}", response_model=OptChangeResult,
            summary="Opt a number out or in, by hand",
            responses=documented({404: "no such number is configured"}))
async def change(vmn: str, msisdn: str, body: OptChangeRequest, ctx: Ctx,
                 key: Annotated[ApiKey, Depends(require("manage"))]) -> OptChangeResult:
    cfg = ctx.config()
    every = vmn == optins.EVERY
    if every:
        if key.vmns:
            raise Problem(403, f"the key {key.name!r} may not change the opt state for "
                               "every sender (it is limited to some VMNs)")
        number = None
        profile = cfg.optout.callback_profile
    else:
        number = cfg.number(vmn)
        if number is None:
            raise Problem(404, f"no number {vmn} is configured (give a configured VMN, "
                               "or * for every sender)")
        forbid_unless(key, vmn)
        profile = cfg.optout_for(number).callback_profile
    who = _number(cfg, msisdn, "path.msisdn")
    now = ctx.clock()
    change = await ctx.store.transaction(
        opt.set_opt, ctx.store.emitter, msisdn=who, state=body.state, vmn=vmn,
        sender_id=number.sender_id if number is not None else None, every=every,
        keyword=None, received_on=None, message_id=None, source="api", now=now,
        profile=profile)
    if change.jobs:
        ctx.store.on_jobs()
    return OptChangeResult(msisdn=who, vmn=change.scope, state=body.state,
                           changed=change.changed, at=iso(now) or "")
