"""`/v1/messages`: queue an MT through the same path as every other MT (`validate_send`,
then `mts.insert_mt` after the opt-out check; the MT sender splits, submits and
applies receipts), and read the message log: one message with its status history,
receipt and actions, or a filtered, cursor-paged list."""

from __future__ import annotations

import hashlib
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Path, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import IntegrityError

from gateway.api import paging
from gateway.api.auth import ApiKey, forbid_unless, require
from gateway.api.context import ApiContext, context
from gateway.api.problems import PROBLEM_CONTENT, Problem, ProblemBody, invalid
from gateway.commands import InvalidSend, validate_send
from gateway.config import HttpUrl
from gateway.log import redact_urls
from gateway.model import iso
from gateway.msisdn import canonical_or_raw
from gateway.smpp.text import encode_mt, gsm_fits
from gateway.storage import api_messages
from gateway.storage.api_messages import Answer, Idempotency, Queued

router = APIRouter(prefix="/v1/messages", tags=["messages"])

Ctx = Annotated[ApiContext, Depends(context)]
Coding = Literal["auto", "gsm", "ucs2"]
RouteName = Literal["keyword", "default", "optout", "optin", "help", "expired", "unrouted"]
StatusName = Literal["received", "incomplete", "queued", "sending", "submitted", "delivered",
                     "failed", "blocked"]
MAX_VALIDITY = 7 * 24 * 60  # minutes
CALLBACK = "callback:"  # the webhook action's prefix for an MT's callback_url
WHEN = "ISO-8601 date-time (naive = UTC) or an age: 30s, 15m, 2h, 7d, 1w"
WHEN_RE = r"^(\d+(\.\d+)?[smhdw]|\d{4}-\d{2}-\d{2}([T ].*)?)$"
NOT_FOUND = {"description": "no such message", "model": ProblemBody,
             "content": PROBLEM_CONTENT}


class SendRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    sender: str = Field(alias="from", min_length=1, max_length=21,
                        description="a configured VMN or sender ID the key may use")
    to: str = Field(min_length=1, max_length=40,
                    description="the recipient, any spelling (+1 555..., national)")
    text: str = Field(min_length=1, max_length=1600,
                      description="the message; split into parts when long")
    reference: str | None = Field(default=None, max_length=64,
                                  description="your reference; in the message and its "
                                              "mt_status events as client_id")
    callback_url: Annotated[HttpUrl, Field(max_length=2000, pattern=r"^https?://")] | None \
        = Field(
        default=None, description="receives this MT's mt_status events (POST JSON, "
                                  "X-VMN-Signature with [api] callback_secret)")
    coding: Coding = Field(default="auto", description="auto: GSM 03.38 when the text fits "
                                                       "it, else UCS-2")
    validity: int | None = Field(default=None, ge=1, le=MAX_VALIDITY, strict=True,
                                 description="minutes the SMSC may keep trying to deliver")


class SendResponse(BaseModel):
    id: str
    status: Literal["queued"]
    parts: int


class StatusChange(BaseModel):
    status: str
    at: str | None
    detail: str | None = None


class Receipt(BaseModel):
    stat: str
    err: str | None


class Attempt(BaseModel):
    attempt: int
    at: str | None
    outcome: str
    status: int | None
    latency_ms: float | None
    detail: str | None


class ActionOut(BaseModel):
    id: int
    kind: str
    target: str
    status: str
    attempts: int
    max_attempts: int
    last_status: int | None
    last_error: str | None
    attempts_log: list[Attempt]


class Vote(BaseModel):
    poll: str
    option: str


class MessageOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    id: str
    direction: Literal["mo", "mt"]
    vmn: str
    sender: str = Field(alias="from")
    to: str
    msisdn: str = Field(description="the customer's number")
    text: str
    status: str
    created_at: str | None
    updated_at: str | None
    smsc: str | None
    segments: int
    data_coding: int
    keyword: str | None = Field(description="MO: the keyword matched")
    route: str | None = Field(description="MO: how it was routed")
    error: str | None
    in_reply_to: str | None = Field(description="MT: the MO it answers")
    reference: str | None = Field(description="MT: the sender's reference (client_id)")
    receipt: Receipt | None = Field(description="MT: the delivery receipt that decided it")
    smsc_message_ids: list[str | None]
    history: list[StatusChange] = Field(description="every status, oldest first")
    actions: list[ActionOut] = Field(description="what it caused: webhooks, emails, "
                                                 "MQTT events, with every attempt")
    vote: Vote | None = None
    lead: bool | None = None


class MessagePage(BaseModel):
    items: list[MessageOut]
    next_cursor: str | None


def _problem_response(status: int, body: dict[str, Any]) -> JSONResponse:
    return JSONResponse(body, status_code=status, media_type="application/problem+json")


@router.post("", status_code=202, response_model=SendResponse, summary="Queue an MT",
             operation_id="send_message",
             responses={202: {"links": {"GetMessage": {
                 "operationId": "get_message",
                 "parameters": {"message_id": "$response.body#/id"}}}}})
async def send(body: SendRequest, ctx: Ctx,
               key: Annotated[ApiKey, Depends(require("send"))],
               idempotency_key: Annotated[str | None, Header(
                   min_length=1, max_length=255,
                   description="a retry with the same key gets the first answer")] = None,
               ) -> JSONResponse:
    cfg = ctx.config()
    try:
        cmd = validate_send(cfg, to=body.to, sender=body.sender, text=body.text,
                            client_id=body.reference)
    except InvalidSend as exc:
        raise invalid([{"loc": exc.field, "msg": exc.reason}]) from None
    forbid_unless(key, cmd.sender)
    coding = None if body.coding == "auto" else body.coding
    if coding == "gsm" and not gsm_fits(cmd.text):
        raise invalid([{"loc": "text", "msg": "does not fit GSM 03.38 (coding is gsm; use "
                                              "ucs2 or auto)"}])
    try:
        parts = len(encode_mt(cmd.text, 0, coding=coding).parts)
    except ValueError as exc:
        raise invalid([{"loc": "text", "msg": str(exc)}]) from None

    def answer(queued: Queued) -> tuple[int, dict[str, Any]]:
        if queued.blocked:
            return 422, Problem(
                422, f"{cmd.to} opted out of {cmd.sender}: nothing was sent (logged as "
                     f"blocked, id {queued.id})", suffix="opted-out",
                title="Recipient opted out").body()
        return 202, {"id": queued.id, "status": queued.status, "parts": parts}

    idem = None
    if idempotency_key is not None:
        digest = hashlib.sha256(body.model_dump_json(by_alias=True).encode()).hexdigest()
        api = cfg.api
        idem = Idempotency(key_name=key.name, idem_key=idempotency_key, request_hash=digest,
                           ttl=api.idempotency_ttl if api else 86400.0)
    store = ctx.store
    for tries in range(2):
        try:
            result: Answer = await store.transaction(
                api_messages.send, store.emitter, cmd, now=ctx.clock(), answer=answer,
                idem=idem, notify=CALLBACK + body.callback_url if body.callback_url else None,
                coding=coding, validity=body.validity)
            break
        except IntegrityError:
            if idem is None or tries:  # not the race of one Idempotency-Key
                raise
    store.on_jobs()
    if result.mismatch:
        raise Problem(422, "this Idempotency-Key was used for a different request",
                      suffix="idempotency-mismatch", title="Idempotency-Key reused")
    headers = {"Idempotent-Replayed": "true"} if result.replayed else {}
    if result.status != 202:
        response = _problem_response(result.status, result.body)
        response.headers.update(headers)
        return response
    if not result.replayed:
        ctx.wake_mt()
    return JSONResponse(result.body, status_code=202, headers=headers)


@router.get("/{message_id}", response_model=MessageOut, summary="One MO or MT",
            operation_id="get_message", responses={404: NOT_FOUND})
async def get_message(ctx: Ctx, key: Annotated[ApiKey, Depends(require("read"))],
                      message_id: Annotated[str, Path(max_length=32,
                                                      pattern=r"^[0-9a-f]{1,32}$")],
                      ) -> MessageOut:
    rows = await ctx.store.list_messages(ids=[message_id], limit=1)
    if not rows:
        raise Problem(404, f"no message {message_id}")
    forbid_unless(key, rows[0]["vmn"])
    return message_out(rows[0])


@router.get("", response_model=MessagePage, summary="The message log, newest first",
            operation_id="list_messages")
async def list_messages(
    ctx: Ctx, key: Annotated[ApiKey, Depends(require("read"))],
    vmn: Annotated[str | None, Query(max_length=21)] = None,
    msisdn: Annotated[str | None, Query(max_length=40, description="any spelling")] = None,
    direction: Literal["mo", "mt"] | None = None,
    route: RouteName | None = None,
    status: StatusName | None = None,
    since: Annotated[str | None, Query(description=WHEN, pattern=WHEN_RE)] = None,
    until: Annotated[str | None, Query(description=WHEN, pattern=WHEN_RE)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")]
    = None,
) -> MessagePage:
    vmns: tuple[str, ...] = ()
    if vmn is not None:
        forbid_unless(key, vmn)
    else:
        vmns = key.vmns
    cc = ctx.config().gateway.country_code
    now = time.time()
    rows = await ctx.store.list_messages(
        vmn=vmn, vmns=vmns, msisdn=canonical_or_raw(msisdn, cc) if msisdn else None,
        direction=direction, route=route, status=status, since=paging.instant("since", since, now),
        until=paging.instant("until", until, now), before=_cursor(cursor), limit=limit + 1)
    rows.reverse()  # newest first
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = _make_cursor(rows[-1]) if more and rows else None
    return MessagePage(items=[message_out(r) for r in rows], next_cursor=next_cursor)


def _make_cursor(row: dict[str, Any]) -> str:
    return paging.encode("messages", [row["created_at"], row["id"]])


def _cursor(value: str | None) -> tuple[float, str] | None:
    key = paging.decode("messages", value)
    if key is None:
        return None
    if (isinstance(key, list) and len(key) == 2 and isinstance(key[0], int | float)
            and not isinstance(key[0], bool) and isinstance(key[1], str)):
        return float(key[0]), key[1]
    raise paging.bad_cursor()


def message_out(row: dict[str, Any]) -> MessageOut:
    mo = row["direction"] == "mo"
    history = row.get("history") or []
    if mo:
        history = [{"status": row["status"], "at": iso(row["created_at"]), "detail": None}]

    def shown(value: str | None) -> str | None:
        return None if value is None else redact_urls(value)

    return MessageOut(
        id=row["id"], direction=row["direction"], vmn=row["vmn"], sender=row["sender"],
        to=row["recipient"], msisdn=row["msisdn"], text=row["text"], status=row["status"],
        created_at=iso(row["created_at"]), updated_at=iso(row["updated_at"]),
        smsc=row["smsc"], segments=row["segments"], data_coding=row["data_coding"],
        keyword=row["keyword"], route=row["route"], error=row["error"],
        in_reply_to=row["in_reply_to"], reference=row["client_ref"],
        receipt=Receipt(stat=row["receipt_stat"], err=row.get("receipt_err"))
        if row.get("receipt_stat") else None,
        smsc_message_ids=row.get("smsc_message_ids") or [],
        history=[StatusChange(**h) for h in history],
        actions=[ActionOut(
            id=a["id"], kind=a["kind"], target=shown(a["target"]) or "", status=a["status"],
            attempts=a["attempts"], max_attempts=a["max_attempts"],
            last_status=a["last_status"], last_error=shown(a["last_error"]),
            attempts_log=[Attempt(**(t | {"detail": shown(t.get("detail"))}))
                          for t in a["attempts_log"]]) for a in row.get("actions", [])],
        vote=Vote(**row["vote"]) if mo and row.get("vote") else None,
        lead=row.get("lead") if mo else None,
    )
