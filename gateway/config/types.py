"""The values one key may hold: annotated types with their validators, the enums of
the keys with a fixed set of choices, and the small forms the rest of the gateway
shares with the configuration (keywords, templates, ``host:port``).

Validators raise ValueError; its text becomes the "expected" part of a ConfigError
(`gateway.config.errors`). Nothing here knows the shape of the file.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime, time
from enum import StrEnum
from typing import Annotated, Any, TypeVar, get_args
from urllib.parse import SplitResult, urlsplit

from pydantic import (
    AfterValidator,
    Field,
    GetCoreSchemaHandler,
    PlainValidator,
    Strict,
    ValidationInfo,
)
from pydantic_core import core_schema

from gateway.msisdn import InvalidNumber, canonical

DEFAULT_DATABASE = "sqlite+aiosqlite:///./vmn-gateway.db"
KEYWORD_MAX_LENGTH = 30
TEMPLATE_PLACEHOLDERS = ("from", "vmn", "keyword", "text", "args")


# --------------------------------------------------------------------------- shared forms


def normalize_keyword(s: str) -> str:
    """The form keywords are compared in: case-folded, whitespace collapsed, trimmed."""
    return " ".join(s.casefold().split())


def render_template(template: str, values: Mapping[str, str]) -> str:
    """Fill a validated reply template; placeholders missing from `values` become ""."""
    return template.format_map({name: values.get(name, "") for name in TEMPLATE_PLACEHOLDERS})


def split_host_port(value: str) -> tuple[str, int]:
    """``"host:port"`` (``"[::1]:25"`` for IPv6) -> ``(host, port)``; ValueError if malformed."""
    host, sep, port_text = value.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or any(c.isspace() for c in host) or not port_text.isdigit():
        raise ValueError(f'expected "host:port" (got {quote(value)})')
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise ValueError(f"expected a port 1-65535 (got {port})")
    return host, port


def quote(value: object) -> str:
    """A value quoted the way TOML would show it."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def mask_url(url: str) -> str:
    """A URL as shown: credentials and query values hidden (`gateway.log.redact_url`)."""
    from gateway.log import redact_url

    return redact_url(url)


K = TypeVar("K")
V = TypeVar("V")


class FrozenDict(Mapping[K, V]):
    """An immutable, hashable mapping (for tables inside frozen models)."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[K, V] | None = None) -> None:
        self._data: dict[K, V] = dict(data or {})

    def __getitem__(self, key: K) -> V:
        return self._data[key]

    def __iter__(self) -> Iterator[K]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __hash__(self) -> int:
        return hash(frozenset(self._data.items()))

    def __repr__(self) -> str:
        return f"FrozenDict({self._data!r})"

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        key_type, value_type = get_args(source) or (Any, Any)
        dict_schema = handler.generate_schema(dict[key_type, value_type])  # type: ignore[valid-type]
        return core_schema.no_info_after_validator_function(
            cls,
            dict_schema,
            serialization=core_schema.plain_serializer_function_ser_schema(
                dict, return_schema=dict_schema
            ),
        )


# --------------------------------------------------------------------------- validators
#
# Validators raise ValueError; its text becomes the "expected" part of ConfigError.

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_ENV_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
DIGITS_RE = re.compile(r"[0-9]+")
_MSISDN_RE = re.compile(r"\+?[0-9]{5,15}")
_EMAIL_RE = re.compile(r"[^@\s]+@[^@\s.][^@\s]*")
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?"
_HOSTNAME_RE = re.compile(rf"{_LABEL}(\.{_LABEL})*")
_DATETIME_RE = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")
_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
_DATABASE_RE = re.compile(r"(sqlite|postgresql)(\+[A-Za-z0-9_]+)?://.*", re.DOTALL)
ALNUM_SENDER_RE = re.compile(r"(?=.*[A-Za-z])[A-Za-z0-9 .&_-]{1,11}")


def _check_name(value: str) -> str:
    if not _NAME_RE.fullmatch(value):
        raise ValueError(
            "expected 1-64 characters of letters, digits, '_', '.', '-' "
            f"starting with a letter or digit (got {quote(value)})"
        )
    return value


def _check_env_name(value: str) -> str:
    if not _ENV_RE.fullmatch(value):
        raise ValueError(f"expected an environment variable name (got {quote(value)})")
    return value


def _check_host(value: str) -> str:
    value = value.strip()
    if not value or any(c.isspace() for c in value):
        raise ValueError(f"expected a host name or address (got {quote(value)})")
    return value


def _check_host_port(value: str) -> str:
    split_host_port(value)
    return value


def _url_with_host(value: str, schemes: tuple[str, ...]) -> SplitResult | None:
    """`value` split, if it has one of `schemes`, a host and a valid port (or none)."""
    try:
        parts = urlsplit(value)
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        return None
    return parts if parts.scheme in schemes and parts.hostname and port_ok else None


def _check_http_url(value: str) -> str:
    if _url_with_host(value, ("http", "https")) is None:
        raise ValueError(f"expected an http:// or https:// URL (got {quote(mask_url(value))})")
    return value


def _check_mqtt_url(value: str) -> str:
    parts = _url_with_host(value, ("mqtt", "mqtts"))
    if parts is None:
        raise ValueError(
            f"expected mqtt://host[:port] or mqtts://host[:port] (got {quote(mask_url(value))})"
        )
    if parts.username is not None or parts.password is not None:
        raise ValueError("put credentials in username and password_env, not in the URL")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"expected mqtt://host[:port] with no path (got {quote(value)})")
    return value


def _check_database(value: str) -> str:
    if not _DATABASE_RE.fullmatch(value):
        raise ValueError(
            "expected an SQLAlchemy URL for SQLite or PostgreSQL, e.g. "
            f"{DEFAULT_DATABASE} or postgresql+asyncpg://user@host/db "
            f"(got {quote(mask_url(value))})"
        )
    return value


def _check_country_code(value: object) -> str:
    if not isinstance(value, str) or not DIGITS_RE.fullmatch(value) or len(value) > 3:
        raise ValueError(f'expected a string of 1-3 digits, e.g. "1" (got {quote(value)})')
    return value


def _check_vmn(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f'expected a string of digits (write vmn = "{value}")')
    if not DIGITS_RE.fullmatch(value) or len(value) not in (5, 6, 10):
        raise ValueError(
            f"expected 10 digits (long code) or 5-6 digits (short code) (got {quote(value)})"
        )
    return value


def _check_sender_id(value: str) -> str:
    if _MSISDN_RE.fullmatch(value) or ALNUM_SENDER_RE.fullmatch(value):
        return value
    raise ValueError(
        "expected a number (5-15 digits, optional +) or an alphanumeric sender ID "
        f"of at most 11 characters (got {quote(value)})"
    )


def _check_msisdn(value: str, info: ValidationInfo) -> str:
    """The canonical form (gateway.msisdn), national numbers read in `[gateway]
    country_code` (handed in as validation context by `parse_config`)."""
    country_code = (info.context or {}).get("country_code", "1")
    try:
        return canonical(value, country_code)
    except InvalidNumber as exc:
        raise ValueError(f"expected a phone number ({exc})") from None


def _check_email(value: str) -> str:
    if not _EMAIL_RE.fullmatch(value):
        raise ValueError(f"expected an email address local@domain (got {quote(value)})")
    return value


def _check_domain(value: str) -> str:
    if not _HOSTNAME_RE.fullmatch(value):
        raise ValueError(f"expected a domain name, e.g. replies.example.com (got {quote(value)})")
    return value


def _check_keyword(value: str) -> str:
    # Stored trimmed and whitespace-collapsed, case kept for display.
    collapsed = " ".join(value.split())
    if not 1 <= len(collapsed) <= KEYWORD_MAX_LENGTH:
        raise ValueError(
            f"expected 1-{KEYWORD_MAX_LENGTH} characters (got {len(collapsed)}: {quote(value)})"
        )
    return collapsed


def _check_optout_word(value: str) -> str:
    word = value.strip()
    if not word or len(word.split()) != 1 or len(word) > KEYWORD_MAX_LENGTH:
        raise ValueError(
            f"expected one word of 1-{KEYWORD_MAX_LENGTH} characters (got {quote(value)})"
        )
    return word


def _check_template(value: str) -> str:
    allowed = ", ".join("{" + name + "}" for name in TEMPLATE_PLACEHOLDERS)
    try:
        fields = list(string.Formatter().parse(value))
    except ValueError:
        raise ValueError(
            f"unbalanced {{ or }} (write {{{{ and }}}} for literal braces; placeholders: {allowed})"
        ) from None
    for _literal, name, spec, conversion in fields:
        if name is None:
            continue
        if name not in TEMPLATE_PLACEHOLDERS or spec or conversion:
            shown = name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "")
            raise ValueError(f"unknown placeholder {{{shown}}} (expected one of {allowed})")
    return value


def _parse_datetime(value: object, *, end_of_day: bool = False) -> datetime:
    """ISO-8601 date-time (TOML datetime or string); naive means UTC; result in UTC.

    A date alone (TOML ``2025-12-31`` or ``"2025-12-31"``) is a whole day in UTC: its
    start, or with `end_of_day` its last microsecond, so ``expires = 2025-12-31`` still
    runs on the 31st."""
    dt: datetime | None = None
    day: date | None = None
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, date):
        day = value
    elif isinstance(value, str) and _DATE_RE.fullmatch(value.strip()):
        try:
            day = date.fromisoformat(value.strip())
        except ValueError:
            day = None
    elif isinstance(value, str) and _DATETIME_RE.match(value.strip()):
        try:
            dt = datetime.fromisoformat(value.strip())
        except ValueError:
            dt = None
    if day is not None:
        moment = time.max if end_of_day else time.min
        return datetime.combine(day, moment, tzinfo=UTC)
    if dt is None:
        raise ValueError(
            f"not an ISO-8601 date-time (got {quote(value)}; e.g. 2025-12-31T23:59:59Z, "
            "or a date 2025-12-31 for the whole day in UTC)"
        )
    if dt.tzinfo is None:
        return dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def _parse_end(value: object) -> datetime:
    return _parse_datetime(value, end_of_day=True)


# --------------------------------------------------------------------------- value types

Seconds = Annotated[float, Strict(), Field(gt=0)]
NonNegative = Annotated[float, Strict(), Field(ge=0)]
Port = Annotated[int, Strict(), Field(ge=1, le=65535)]
Octet = Annotated[int, Strict(), Field(ge=0, le=255)]
Name = Annotated[str, AfterValidator(_check_name)]
EnvName = Annotated[str, AfterValidator(_check_env_name)]
Host = Annotated[str, AfterValidator(_check_host)]
HostPort = Annotated[str, AfterValidator(_check_host_port)]
HttpUrl = Annotated[str, AfterValidator(_check_http_url)]
MqttUrl = Annotated[str, AfterValidator(_check_mqtt_url)]
DatabaseUrl = Annotated[str, AfterValidator(_check_database)]
CountryCode = Annotated[str, PlainValidator(_check_country_code)]
Vmn = Annotated[str, PlainValidator(_check_vmn)]
SenderId = Annotated[str, AfterValidator(_check_sender_id)]
Msisdn = Annotated[str, AfterValidator(_check_msisdn)]
Email = Annotated[str, AfterValidator(_check_email)]
Domain = Annotated[str, AfterValidator(_check_domain)]
Keyword = Annotated[str, AfterValidator(_check_keyword)]
OptoutWord = Annotated[str, AfterValidator(_check_optout_word)]
Template = Annotated[str, AfterValidator(_check_template)]
Timestamp = Annotated[datetime, PlainValidator(_parse_datetime)]
EndTimestamp = Annotated[datetime, PlainValidator(_parse_end)]


# --------------------------------------------------------------------------- choices


class Unrouted(StrEnum):
    ACCEPT = "accept"  # log + event, answer ESME_ROK
    REJECT = "reject"  # answer ESME_RINVDSTADR


class Durability(StrEnum):
    """What an acknowledged MO survives (README, "Durability")."""

    POWER_LOSS = "power-loss"  # SQLite synchronous=FULL, PostgreSQL synchronous_commit=on
    CRASH = "crash"  # SQLite synchronous=NORMAL, PostgreSQL synchronous_commit=off


class LogLevel(StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


class MatchMode(StrEnum):
    FIRST_WORD = "first_word"  # keyword followed by end of text, whitespace or punctuation
    EXACT = "exact"  # the whole message


class OptoutScope(StrEnum):
    SENDER = "sender"  # the VMN / sender ID that received it
    ALL = "all"  # every sender ID


class Alphabet(StrEnum):
    """What data_coding 0 means on a bind (Kannel: alt-charset)."""

    GSM = "gsm"  # GSM 03.38, unpacked (the SMPP default)
    ASCII = "ascii"  # IA5 / ASCII
    LATIN1 = "latin1"  # ISO-8859-1


class MessageIdForm(StrEnum):
    """How submit_sm_resp and receipt message ids relate (Kannel: msg-id-type)."""

    AUTO = "auto"  # as strings, else as one number written in either base
    HEX = "hex"  # submit_sm_resp hexadecimal, receipt decimal (msg-id-type 0x01)
    DECIMAL = "decimal"  # submit_sm_resp decimal, receipt hexadecimal (msg-id-type 0x02)
    STRING = "string"  # the same string in both (msg-id-type 0x00/0x03 as text)


class HttpMethod(StrEnum):
    POST = "POST"
    GET = "GET"


class AcceptFrom(StrEnum):
    """Who may answer a forwarded email (``[email_replies] accept_from``)."""

    RECIPIENTS = "recipients"  # only the address the forward was sent to
    ANY = "any"  # whoever holds the reply address
