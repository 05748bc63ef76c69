"""`/v1/stats`: MO and MT counts per VMN per time step, for graphs (storage/stats.py
counts them from an index, so a day costs that day's rows, whatever the table holds)."""

from __future__ import annotations

import math
import re
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from gateway.api.auth import ApiKey, forbid_unless, require
from gateway.api.context import ApiContext, context
from gateway.api.paging import instant, text
from gateway.api.problems import invalid
from gateway.model import iso
from gateway.storage import stats

router = APIRouter(prefix="/v1/stats", tags=["stats"])
Ctx = Annotated[ApiContext, Depends(context)]

MAX_BUCKETS = 10_000
_STEP = re.compile(r"^(\d{1,9})([smhd]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


class Series(BaseModel):
    vmn: str = Field(description="the VMN (an MT from a number's sender ID counts for "
                                 "that number)")
    mo: list[int] = Field(description="MOs per step, one number per `buckets` entry")
    mt: list[int]
    mo_total: int
    mt_total: int


class Stats(BaseModel):
    since: str = Field(description="the first step's start (`since` rounded down to a "
                                   "multiple of `step`)")
    until: str
    step: int = Field(description="seconds")
    buckets: list[str] = Field(description="each step's start, ISO-8601 UTC")
    series: list[Series] = Field(description="one per VMN with traffic in the window")


def _step(value: str) -> int:
    m = _STEP.match(value.strip())
    n = int(m.group(1)) * _UNITS[m.group(2)] if m else 0
    if n < 1:
        raise invalid([{"loc": "query.step",
                        "msg": f"expected seconds or 1m, 5m, 1h, 1d (got {value!r})"}])
    return n


@router.get("", response_model=Stats, summary="MO and MT counts per VMN per step")
async def get_stats(
    ctx: Ctx, key: Annotated[ApiKey, Depends(require("read"))],
    since: Annotated[str | None, Query(description="ISO-8601 or an age like 15m, 2h, 7d; "
                                                   "default 1h ago")] = None,
    until: Annotated[str | None, Query(description="ISO-8601 or an age; default now")] = None,
    step: Annotated[str, Query(description="seconds, or 1m, 5m, 1h, 1d")] = "60",
    vmn: str | None = None,
) -> Stats:
    now = ctx.clock()
    width = _step(step)
    end = instant("until", until, now)
    end = now if end is None else end
    start = instant("since", since, now)
    start = end - 3600 if start is None else start
    start = math.floor(start / width) * width
    if end <= start:
        raise invalid([{"loc": "query.until", "msg": "must be after since"}])
    n = math.ceil((end - start) / width)
    if n > MAX_BUCKETS:
        raise invalid([{"loc": "query.step",
                        "msg": f"{n} steps between since and until; at most {MAX_BUCKETS} "
                               "(take a longer step)"}])
    vmn = text("vmn", vmn)
    if vmn:
        forbid_unless(key, vmn)
    vmns = [vmn] if vmn else list(key.vmns)
    # An MT is stored under its sender: a number's sender ID counts for its VMN.
    owner = {n.sender_id: n.vmn for n in ctx.config().numbers if n.sender_id != n.vmn}
    if vmns:
        vmns += [sid for sid, v in owner.items() if v in vmns]
    counted = await ctx.store.read(stats.counts, since=start, until=end, step=width,
                                   vmns=vmns)
    series: dict[str, Series] = {}
    for c in counted:
        name = owner.get(c.vmn, c.vmn)
        s = series.get(name)
        if s is None:
            s = series[name] = Series(vmn=name, mo=[0] * n, mt=[0] * n, mo_total=0,
                                      mt_total=0)
        if 0 <= c.bucket < n:
            if c.direction == "mo":
                s.mo[c.bucket] += c.n
                s.mo_total += c.n
            else:
                s.mt[c.bucket] += c.n
                s.mt_total += c.n
    return Stats(since=iso(start) or "", until=iso(end) or "", step=width,
                 buckets=[iso(start + i * width) or "" for i in range(n)],
                 series=[series[v] for v in sorted(series)])
