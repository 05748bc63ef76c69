"""`/v1/numbers`: numbers and keywords as JSON in the shape of their `[[number]]` table
(`keywords` for the `[[number.keyword]]` tables), validated by the models and
cross-checks of the configuration file (422 with `check`'s key paths and words), stored
in the database and applied at once on every instance (gateway/dynnumbers.py). The
file's numbers are shown but read-only here (409)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from gateway.api.auth import ApiKey, forbid_unless, require
from gateway.api.context import ApiContext, context
from gateway.api.problems import PROBLEM_CONTENT, Problem, ProblemBody, invalid
from gateway.config import KeywordConfig, NumberConfig, NumberRejected
from gateway.dynnumbers import Busy, LiveNumbers, NotFound, ReadOnly, Source, dump

_PROBLEMS: dict[int | str, dict[str, Any]] = {
    status: {"description": text, "model": ProblemBody, "content": PROBLEM_CONTENT}
    for status, text in ((404, "no such number (or keyword)"),
                         (409, "the number is defined in the configuration file"),
                         (503, "busy (Retry-After), or numbers not managed here"))
}
router = APIRouter(prefix="/v1/numbers", tags=["numbers"], responses=_PROBLEMS)

Ctx = Annotated[ApiContext, Depends(context)]
Reader = Annotated[ApiKey, Depends(require("read"))]
Manager = Annotated[ApiKey, Depends(require("manage"))]

_TABLE = ("the number's `[[number]]` table as JSON: `default` (required), `keywords` "
          "(the `[[number.keyword]]` tables), `optout`, `sender_id`, `source_ton`, "
          "`source_npi`; `vmn` may be left out (the URL's)")
_KEYWORD = ("one `[[number.keyword]]` table as JSON (`reply`, `aliases`, `webhook`, "
            "`poll`, ...); `keyword` may be left out (the URL's)")
NumberBody = Annotated[dict[str, Any], Body(description=_TABLE, examples=[{
    "sender_id": "5551000200", "default": {"reply": "Thanks, we got it."},
    "keywords": [{"keyword": "JOIN", "aliases": ["SUBSCRIBE"], "opt_in": True,
                  "reply": "Welcome {from}!"}]}])]
KeywordBody = Annotated[dict[str, Any], Body(description=_KEYWORD, examples=[{
    "reply": "Open 9-5, Monday to Friday.", "aliases": ["OPEN"]}])]


def _table_schema(model: type[BaseModel], *, optional: tuple[str, ...]) -> dict[str, Any]:
    """The JSON schema of a configuration model with its definitions inlined, for the
    OpenAPI document: the body is validated by that model (and the cross-checks of the
    file) in the handler, so that errors read as `check`'s, not FastAPI's."""
    schema = model.model_json_schema(by_alias=False)
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                rest = {k: v for k, v in node.items() if k != "$ref"}
                return {**inline(defs[ref.removeprefix("#/$defs/")]), **inline(rest)}
            return {k: inline(v) for k, v in node.items()}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    out: dict[str, Any] = inline(schema)
    out["required"] = [r for r in out.get("required", []) if r not in optional]
    return out


def _body(model: type[BaseModel], description: str, *,
          optional: tuple[str, ...]) -> dict[str, Any]:
    schema = {**_table_schema(model, optional=optional), "description": description}
    return {"requestBody": {"content": {"application/json": {"schema": schema}}}}


class NumberView(BaseModel):
    """A number as its `[[number]]` table (keys left at their default are omitted)."""

    model_config = ConfigDict(extra="allow")

    vmn: str
    sender_id: str
    source: Literal["file", "api"] = Field(
        description="file: from the configuration file, read-only here; api: stored "
                    "through this API")
    default: dict[str, Any]
    keywords: list[dict[str, Any]] = Field(default_factory=list)


class NumberList(BaseModel):
    items: list[NumberView]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page")


def _view(number: NumberConfig, source: Source) -> NumberView:
    return NumberView.model_validate({**dump(number), "source": source})


def _live(ctx: ApiContext) -> LiveNumbers:
    if ctx.numbers is None:
        raise Problem(503, "numbers are not managed on this instance")
    return ctx.numbers


def _refused(exc: Exception, vmn: str, live: LiveNumbers) -> Problem:
    """The problem for an exception of gateway/dynnumbers.py."""
    if isinstance(exc, NumberRejected):
        return invalid([{"loc": p, "msg": m} for p, m in exc.errors])
    if isinstance(exc, ReadOnly):
        file = live.file_cfg.source_file or "the configuration file"
        return Problem(409, f"the number {vmn} is defined in {file}: change it there "
                            "(read-only through the API)", suffix="read-only",
                       title="Defined in the configuration file")
    if isinstance(exc, NotFound):
        return Problem(404, str(exc))
    if isinstance(exc, Busy):
        return Problem(503, "the numbers kept changing while this change was checked; "
                            "try again", suffix="busy", headers={"Retry-After": "1"})
    raise exc


@router.get("", response_model=NumberList, summary="List the numbers")
async def list_numbers(
        ctx: Ctx, key: Reader,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        cursor: Annotated[str | None, Query(description="`next_cursor` of the page before",
                                            max_length=16)] = None) -> NumberList:
    live = _live(ctx)
    numbers = sorted((n for n in live.numbers() if key.may_use(n[0].vmn)),
                     key=lambda n: n[0].vmn)
    if cursor is not None:
        numbers = [n for n in numbers if n[0].vmn > cursor]
    page = numbers[:limit]
    more = len(numbers) > limit
    return NumberList(items=[_view(n, s) for n, s in page],
                      next_cursor=page[-1][0].vmn if more and page else None)


@router.get("/{vmn}", response_model=NumberView, summary="One number")
async def get_number(vmn: str, ctx: Ctx, key: Reader) -> NumberView:
    forbid_unless(key, vmn)
    live = _live(ctx)
    try:
        number, source = live.get(vmn)
    except NotFound as exc:
        raise Problem(404, str(exc)) from None
    return _view(number, source)


@router.put("/{vmn}", response_model=NumberView, summary="Create or replace a number",
            responses={201: {"model": NumberView, "description": "created"}},
            openapi_extra=_body(NumberConfig, _TABLE, optional=("vmn", "sender_id")))
async def put_number(vmn: str, body: NumberBody, ctx: Ctx, key: Manager,
                     response: Response) -> NumberView:
    forbid_unless(key, vmn)
    live = _live(ctx)
    try:
        number, created = await live.put(vmn, body)
    except (NumberRejected, ReadOnly, NotFound, Busy) as exc:
        raise _refused(exc, vmn, live) from None
    response.status_code = 201 if created else 200
    return _view(number, "api")


@router.delete("/{vmn}", status_code=204, response_class=Response,
               summary="Delete a number stored through the API")
async def delete_number(vmn: str, ctx: Ctx, key: Manager) -> Response:
    forbid_unless(key, vmn)
    live = _live(ctx)
    try:
        await live.delete(vmn)
    except (ReadOnly, NotFound, Busy) as exc:
        raise _refused(exc, vmn, live) from None
    return Response(status_code=204)


@router.put("/{vmn}/keywords/{keyword}", response_model=NumberView,
            summary="Create or replace one keyword of a number stored through the API",
            responses={201: {"model": NumberView, "description": "created"}},
            openapi_extra=_body(KeywordConfig, _KEYWORD, optional=("keyword",)))
async def put_keyword(vmn: str, keyword: str, body: KeywordBody, ctx: Ctx, key: Manager,
                      response: Response) -> NumberView:
    forbid_unless(key, vmn)
    live = _live(ctx)
    try:
        number, created = await live.put_keyword(vmn, keyword, body)
    except (NumberRejected, ReadOnly, NotFound, Busy) as exc:
        raise _refused(exc, vmn, live) from None
    response.status_code = 201 if created else 200
    return _view(number, "api")


@router.delete("/{vmn}/keywords/{keyword}", status_code=204, response_class=Response,
               summary="Delete one keyword: its messages fall back to the number's default")
async def delete_keyword(vmn: str, keyword: str, ctx: Ctx, key: Manager) -> Response:
    forbid_unless(key, vmn)
    live = _live(ctx)
    try:
        await live.delete_keyword(vmn, keyword)
    except (ReadOnly, NotFound, Busy) as exc:
        raise _refused(exc, vmn, live) from None
    return Response(status_code=204)
