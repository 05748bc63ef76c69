"""structlog set-up: JSON lines when stdout is not a TTY (journald), console otherwise.

What a log line never contains, whatever logs it: values under secret-looking keys
(masked), credentials and query strings of URLs (`redact_url`, applied to every string
value by `redact_urls`), and the parameters of a failed SQL statement (the engines are
made with ``hide_parameters``; `describe_error` gives a one-line, parameter-free
description of any exception)."""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any, Final

import orjson
import structlog

__all__ = ["configure", "describe_error", "redact_url", "redact_urls"]

_SECRET_KEYS = ("password", "secret", "token", "authorization")
_URL_RE: Final = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s\"'<>]+")
_QUERY_SPLIT_RE: Final = re.compile(r"[?#]")


def _mask_query(tail: str) -> str:
    """``?a=1&b=2#frag`` -> ``?a=***&b=***#***``: names kept, values hidden."""
    if not tail:
        return ""
    sep, rest = tail[0], tail[1:]
    if sep == "#":
        return "#***"
    query, hash_, _fragment = rest.partition("#")
    pairs = []
    for pair in re.split(r"[&;]", query):
        name, eq, _value = pair.partition("=")
        pairs.append(f"{name}=***" if eq else "***" if pair else "")
    return "?" + "&".join(pairs) + ("#***" if hash_ else "")


def redact_url(url: str) -> str:
    """A URL safe to show: the password (or a lone user name, often a token) of its
    user information becomes ``***``, as do the values of its query string and its
    fragment. ``postgresql://app:pa/ss@db/gw?sslmode=require`` ->
    ``postgresql://app:***@db/gw?sslmode=***``. A password may hold ``/``, ``?`` or
    ``@`` (SQLAlchemy reads up to the last ``@``), so when in doubt more is hidden."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    prefix = ""
    userinfo, at, host_part = rest.rpartition("@")
    if at:
        user, colon, _password = userinfo.partition(":")
        if colon and not re.search(r"[/?#]", user):
            prefix, rest = f"{user}:***@", host_part
        elif not re.search(r"[/?#]", userinfo):  # a lone user name
            prefix, rest = "***@", host_part
        # else: the "@" is in the path or query (no user information)
    return f"{scheme}://{prefix}{_redact_after_userinfo(rest)}"


def _redact_after_userinfo(rest: str) -> str:
    match = _QUERY_SPLIT_RE.search(rest)
    if match is None:
        return rest
    return rest[: match.start()] + _mask_query(rest[match.start() :])


def redact_urls(text: str) -> str:
    """`text` with every URL in it passed through `redact_url`."""
    if "://" not in text:
        return text
    def one(match: re.Match[str]) -> str:
        url = match.group(0)
        trailing = len(url) - len(url.rstrip(".,:;!)]}"))  # punctuation after a URL
        return redact_url(url[: len(url) - trailing]) + url[len(url) - trailing :]

    return _URL_RE.sub(one, text)


def describe_error(exc: BaseException) -> str:
    """``Class: message`` on one line, without SQL parameters or statements: for a
    SQLAlchemy error the driver's exception and the first line of its message (which
    names the constraint or limit, never the values), URLs redacted."""
    orig = getattr(exc, "orig", None)  # sqlalchemy.exc.DBAPIError wraps the driver's
    if isinstance(orig, BaseException):
        exc = orig
        # SQLAlchemy's asyncpg adapter wraps the driver's exception once more, as
        # "<class 'asyncpg...RaiseError'>: message": the driver's own says it plainly.
        if exc.__cause__ is not None and str(exc).startswith("<class "):
            exc = exc.__cause__
    elif type(exc).__module__.startswith("sqlalchemy"):
        # A StatementError without a driver error: its text holds the statement.
        return type(exc).__name__
    message = str(exc).strip().splitlines()
    # Drivers quote the value they could not send ("invalid input for query argument
    # $8: 'text...'"): the message stops before the first quote.
    first = message[0].split("'", 1)[0].strip() if message else ""
    return redact_urls(f"{type(exc).__name__}: {first}" if first else type(exc).__name__)


def _redact(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in list(event.items()):
        if any(s in key.lower() for s in _SECRET_KEYS):
            event[key] = "***"
        elif isinstance(value, str):
            event[key] = redact_urls(value)
        elif isinstance(value, list | tuple) and any(isinstance(v, str) for v in value):
            event[key] = [redact_urls(v) if isinstance(v, str) else v for v in value]
    return event


_ORJSON_OPTS = orjson.OPT_NON_STR_KEYS


def json_line(obj: Any, default: Any = None, **_kw: Any) -> str:
    """One log line's JSON: orjson (compact, UTF-8), the structlog renderer's serializer
    and `daemon.write_mo_lines`'. The stdlib encoder cost ~6 us per `mo.received` line on
    the MO path (10% of the main thread in a webhook burst, py-spy); orjson ~0.5. What
    orjson refuses (an int beyond 64 bits, a NaN key) falls back to the stdlib's form:
    a log line never raises."""
    try:
        return orjson.dumps(obj, default=default, option=_ORJSON_OPTS).decode()
    except (TypeError, orjson.JSONEncodeError):
        return json.dumps(obj, default=default if default is not None else repr)


def configure(level: str = "info", *, json: bool | None = None) -> None:
    if json is None:
        json = not sys.stdout.isatty()
    renderer: Any = (
        structlog.processors.JSONRenderer(serializer=json_line) if json
        else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=True,
    )
