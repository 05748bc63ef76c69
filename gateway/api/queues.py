"""`/v1/queues`: every queue's depth and the age of its oldest entry (MTs waiting to be
sent, MOs waiting for fan-out, action jobs pending per kind) and the jobs that ended
badly. The same figures as `vmn-gateway status`, from the same storage function
(gateway/storage/status.py); gateway-wide, like `/v1/binds`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from gateway.api.auth import ApiKey, require
from gateway.api.context import ApiContext, context
from gateway.model import JobKind, iso
from gateway.storage import status

router = APIRouter(prefix="/v1/queues", tags=["queues"])
Ctx = Annotated[ApiContext, Depends(context)]

# Shown even when empty, so a client sees every queue the gateway has.
ACTION_KINDS = tuple(k.value for k in JobKind)


class Queue(BaseModel):
    depth: int = Field(description="entries waiting")
    oldest_age: float | None = Field(
        description="seconds since the oldest entry was created; null when empty")
    oldest_at: str | None = Field(description="when it was created (ISO-8601 UTC)")


class MtQueues(BaseModel):
    queued: Queue = Field(description="MTs waiting for a bind (or for their next attempt)")
    sending: Queue = Field(description="MTs claimed by a sender, submit_sm not yet answered")


class Queues(BaseModel):
    at: str = Field(description="when the figures were read (ISO-8601 UTC)")
    mt: MtQueues
    mo_fanout: Queue = Field(description="MOs stored and acknowledged whose actions and "
                                         "replies are not yet expanded")
    actions: dict[str, Queue] = Field(
        description="action jobs pending (waiting or retrying), per kind: webhook, mqtt, "
                    "email and any other kind with jobs pending")
    dead: int = Field(description="jobs dead-lettered after their last attempt "
                                  "(`vmn-gateway redrive` re-queues them)")
    failed: int = Field(description="jobs that failed for good (a permanent error)")


def _queue(q: status.Queue | None, now: float) -> Queue:
    if q is None or q.oldest_at is None:
        return Queue(depth=0 if q is None else q.depth, oldest_age=None, oldest_at=None)
    return Queue(depth=q.depth, oldest_age=round(max(0.0, now - q.oldest_at), 3),
                 oldest_at=iso(q.oldest_at))


@router.get("", response_model=Queues, summary="Every queue's depth and oldest age")
async def get_queues(ctx: Ctx, _key: Annotated[ApiKey, Depends(require("read"))]) -> Queues:
    q = await ctx.store.read(status.queues)
    now = ctx.clock()
    kinds = sorted(set(ACTION_KINDS) | set(q.actions))
    return Queues(at=iso(now) or "",
                  mt=MtQueues(queued=_queue(q.mt.get("queued"), now),
                              sending=_queue(q.mt.get("sending"), now)),
                  mo_fanout=_queue(q.fanout, now),
                  actions={k: _queue(q.actions.get(k), now) for k in kinds},
                  dead=q.dead, failed=q.failed)
