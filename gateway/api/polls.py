"""`/v1/polls` (tallies) and `/v1/leads` (paged): what keywords with `poll` and `lead`
collected. A key limited to some VMNs sees the polls and leads of those VMNs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from gateway.api.auth import ApiKey, forbid_unless, require
from gateway.api.context import ApiContext, context
from gateway.api.paging import MAX_LIMIT, bad_cursor, decode, encode, instant, text
from gateway.api.problems import Problem, documented, invalid
from gateway.model import iso
from gateway.msisdn import InvalidNumber, canonical
from gateway.storage import leads as leadq
from gateway.tally import poll_vmns, tallies

router = APIRouter(tags=["polls and leads"])
Ctx = Annotated[ApiContext, Depends(context)]
_CURSOR = "leads"


class Poll(BaseModel):
    poll: str
    tally: dict[str, int] = Field(description="option -> votes, every option (0 included), "
                                              "in the configured order")
    votes: int
    vmns: list[str] = Field(description="the numbers it is configured on (empty: no longer "
                                        "configured)")


class PollList(BaseModel):
    items: list[Poll]
    next_cursor: str | None = None


class Lead(BaseModel):
    vmn: str
    msisdn: str
    keyword: str = Field(description='"" for a number\'s default configuration')
    text: str = Field(description="the latest text")
    count: int
    first_seen: str
    last_seen: str
    message_id: str = Field(description="the latest MO")


class LeadList(BaseModel):
    items: list[Lead]
    next_cursor: str | None


async def _polls(ctx: ApiContext, key: ApiKey, name: str | None) -> list[Poll]:
    numbers = ctx.config().numbers
    where = poll_vmns(numbers)
    out = []
    for poll, tally in tallies(numbers, await ctx.store.polls(name), name).items():
        vmns = sorted(where.get(poll, ()))
        if key.vmns and not any(key.may_use(v) for v in vmns):
            continue
        out.append(Poll(poll=poll, tally=tally, votes=sum(tally.values()), vmns=vmns))
    return out


@router.get("/v1/polls", response_model=PollList, summary="Every poll's tally")
async def list_polls(ctx: Ctx, key: Annotated[ApiKey, Depends(require("read"))]) -> PollList:
    return PollList(items=await _polls(ctx, key, None))


@router.get("/v1/polls/{name}", response_model=Poll, summary="One poll's tally",
            responses=documented({404: "no such poll"}))
async def one_poll(name: str, ctx: Ctx,
                   key: Annotated[ApiKey, Depends(require("read"))]) -> Poll:
    found = await _polls(ctx, key, text("name", name, "path"))
    if not found or found[0].poll != name:
        raise Problem(404, f"no poll {name!r} (configured or voted in)")
    return found[0]


@router.get("/v1/leads", response_model=LeadList, summary="Leads, first captured first")
async def list_leads(
    ctx: Ctx, key: Annotated[ApiKey, Depends(require("read"))],
    vmn: str | None = None,
    msisdn: Annotated[str | None, Query(description="any spelling")] = None,
    keyword: str | None = None,
    since: Annotated[str | None, Query(description="seen (last) at or after: ISO-8601 or "
                                                   "an age like 15m, 2h, 7d")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
    cursor: str | None = None,
) -> LeadList:
    cfg = ctx.config()
    vmn, keyword = text("vmn", vmn), text("keyword", keyword)
    if vmn:
        forbid_unless(key, vmn)
    who = None
    if msisdn:
        try:
            who = canonical(msisdn, cfg.gateway.country_code)
        except InvalidNumber as exc:
            raise invalid([{"loc": "query.msisdn", "msg": str(exc)}]) from None
    after = decode(_CURSOR, cursor)
    if after is not None and (not isinstance(after, int) or isinstance(after, bool)
                              or not 0 <= after < 2**63):
        raise bad_cursor()
    start = instant("since", since, ctx.clock())
    vmns = [vmn] if vmn else list(key.vmns)
    rows = await ctx.store.read(leadq.list_leads, vmns=vmns, msisdn=who, keyword=keyword,
                                since=start, after=after, limit=limit + 1)
    more, rows = len(rows) > limit, rows[:limit]
    items = [Lead(vmn=r["vmn"], msisdn=r["msisdn"], keyword=r["keyword"] or "",
                  text=r["text"], count=r["count"], first_seen=iso(r["at"]) or "",
                  last_seen=iso(r["last_at"]) or "", message_id=r["message_id"])
             for r in rows]
    nxt = encode(_CURSOR, rows[-1]["id"]) if more else None
    return LeadList(items=items, next_cursor=nxt)
