"""`/v1/messages`: queue an MT (the same path as every other MT: `validate_send`, the
opt-out check, the durable queue, splitting and receipts in the MT sender), and read
the message log."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from gateway.api.auth import ApiKey, forbid_unless, require
from gateway.api.context import ApiContext, context
from gateway.api.problems import Problem, invalid
from gateway.commands import InvalidSend, validate_send
from gateway.smpp.text import encode_mt
from gateway.storage import api_messages

router = APIRouter(prefix="/v1/messages", tags=["messages"])


class SendRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    sender: str = Field(alias="from", description="a configured VMN or sender ID the key may use")
    to: str = Field(description="the recipient, any spelling (+1 555..., national)")
    text: str = Field(description="the message; split into parts when long")
    reference: str | None = Field(default=None, max_length=64,
                                  description="your reference, echoed in mt_status events")


class SendResponse(BaseModel):
    id: str
    status: str
    parts: int


Ctx = Annotated[ApiContext, Depends(context)]


@router.post("", status_code=202, response_model=SendResponse,
             summary="Queue an MT")
async def send(body: SendRequest, ctx: Ctx,
               key: Annotated[ApiKey, Depends(require("send"))]) -> SendResponse:
    cfg = ctx.config()
    try:
        cmd = validate_send(cfg, to=body.to, sender=body.sender, text=body.text,
                            client_id=body.reference)
    except InvalidSend as exc:
        raise invalid([{"loc": exc.field, "msg": exc.reason}]) from None
    forbid_unless(key, cmd.sender)
    queued = await ctx.store.transaction(api_messages.queue, ctx.store.emitter, cmd,
                                         now=ctx.clock())
    ctx.store.on_jobs()
    if queued.blocked:
        raise Problem(422, f"{cmd.to} opted out of {cmd.sender}: nothing was sent "
                           f"(logged as blocked, id {queued.id})", suffix="opted-out",
                      title="Recipient opted out")
    ctx.wake_mt()
    return SendResponse(id=queued.id, status=queued.status, parts=parts(cmd.text))


def parts(text: str) -> int:
    """How many submit_sm the MT sender will make of `text`."""
    return len(encode_mt(text, 0).parts)
