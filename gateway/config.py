"""Configuration: one TOML file -> validated, frozen models.

`load_config` reads the file, resolves `*_env` secrets from the environment,
validates every key and then the cross-references (unique VMNs, keyword clashes,
callback profiles that exist). Any problem is one `ConfigError` naming the file,
the key path and what was expected::

    gateway.toml: number[2].keyword[0].expires: not an ISO-8601 date-time

Library code never exits; the CLI prints the error and decides.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import string
import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, time
from enum import StrEnum
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, TypeVar, Union, get_args, get_origin
from urllib.parse import SplitResult, urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    PlainValidator,
    SecretStr,
    Strict,
    StrictBool,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails, core_schema

from gateway.msisdn import InvalidNumber, canonical

__all__ = [
    "DEFAULT_DATABASE",
    "KEYWORD_MAX_LENGTH",
    "TEMPLATE_PLACEHOLDERS",
    "ActionConfig",
    "Alphabet",
    "CallbackProfile",
    "Config",
    "ConfigError",
    "Durability",
    "EmailRepliesConfig",
    "FrozenDict",
    "GatewayConfig",
    "HttpMethod",
    "KeywordConfig",
    "LogLevel",
    "MatchMode",
    "MessageIdForm",
    "MqttConfig",
    "NumberChecker",
    "NumberConfig",
    "NumberRejected",
    "OptoutConfig",
    "OptoutOverride",
    "OptoutScope",
    "PollConfig",
    "SmscConfig",
    "SmtpConfig",
    "Unrouted",
    "load_config",
    "normalize_keyword",
    "parse_config",
    "parse_number",
    "render_template",
    "split_host_port",
    "sqlite_relative_to",
    "summary",
]

DEFAULT_DATABASE = "sqlite+aiosqlite:///./vmn-gateway.db"
KEYWORD_MAX_LENGTH = 30
TEMPLATE_PLACEHOLDERS = ("from", "vmn", "keyword", "text", "args")

DEFAULT_STOP_KEYWORDS = (
    "STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT",
)  # fmt: skip
DEFAULT_START_KEYWORDS = ("START", "YES", "UNSTOP")
DEFAULT_HELP_KEYWORDS = ("HELP", "INFO")
DEFAULT_STOP_REPLY = (
    "You have been unsubscribed and will receive no more messages. Reply START to resubscribe."
)
DEFAULT_START_REPLY = (
    "You have been resubscribed and will receive messages again. Reply STOP to unsubscribe."
)
DEFAULT_HELP_REPLY = "Reply STOP to unsubscribe, START to resubscribe. Msg&data rates may apply."


# --------------------------------------------------------------------------- errors


class ConfigError(Exception):
    """An invalid configuration file: which file, which key, what was expected.

    `str(err)` is one line: ``"{file}: {path}: {expected}"`` (``"{file}: {expected}"``
    when the problem has no key path, e.g. a TOML syntax error).
    """

    def __init__(self, file: str, path: str, expected: str) -> None:
        self.file = file
        self.path = path
        # The message must stay on one line whatever the offending value holds.
        self.expected = " ".join(expected.split())
        super().__init__(file, path, self.expected)

    def __str__(self) -> str:
        if self.path:
            return f"{self.file}: {self.path}: {self.expected}"
        return f"{self.file}: {self.expected}"


# --------------------------------------------------------------------------- helpers


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
        raise ValueError(f'expected "host:port" (got {_q(value)})')
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise ValueError(f"expected a port 1-65535 (got {port})")
    return host, port


def _q(value: object) -> str:
    """A value quoted the way TOML would show it."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _mask_url(url: str) -> str:
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


# --------------------------------------------------------------------------- value types
#
# Validators raise ValueError; its text becomes the "expected" part of ConfigError.

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_ENV_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DIGITS_RE = re.compile(r"[0-9]+")
_MSISDN_RE = re.compile(r"\+?[0-9]{5,15}")
_EMAIL_RE = re.compile(r"[^@\s]+@[^@\s.][^@\s]*")
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?"
_HOSTNAME_RE = re.compile(rf"{_LABEL}(\.{_LABEL})*")
_DATETIME_RE = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")
_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
_DATABASE_RE = re.compile(r"(sqlite|postgresql)(\+[A-Za-z0-9_]+)?://.*", re.DOTALL)
_ALNUM_SENDER_RE = re.compile(r"(?=.*[A-Za-z])[A-Za-z0-9 .&_-]{1,11}")


def _check_name(value: str) -> str:
    if not _NAME_RE.fullmatch(value):
        raise ValueError(
            "expected 1-64 characters of letters, digits, '_', '.', '-' "
            f"starting with a letter or digit (got {_q(value)})"
        )
    return value


def _check_env_name(value: str) -> str:
    if not _ENV_RE.fullmatch(value):
        raise ValueError(f"expected an environment variable name (got {_q(value)})")
    return value


def _check_host(value: str) -> str:
    value = value.strip()
    if not value or any(c.isspace() for c in value):
        raise ValueError(f"expected a host name or address (got {_q(value)})")
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
        raise ValueError(f"expected an http:// or https:// URL (got {_q(_mask_url(value))})")
    return value


def _check_mqtt_url(value: str) -> str:
    parts = _url_with_host(value, ("mqtt", "mqtts"))
    if parts is None:
        raise ValueError(
            f"expected mqtt://host[:port] or mqtts://host[:port] (got {_q(_mask_url(value))})"
        )
    if parts.username is not None or parts.password is not None:
        raise ValueError("put credentials in username and password_env, not in the URL")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"expected mqtt://host[:port] with no path (got {_q(value)})")
    return value


def _check_database(value: str) -> str:
    if not _DATABASE_RE.fullmatch(value):
        raise ValueError(
            "expected an SQLAlchemy URL for SQLite or PostgreSQL, e.g. "
            f"{DEFAULT_DATABASE} or postgresql+asyncpg://user@host/db "
            f"(got {_q(_mask_url(value))})"
        )
    return value


def _check_country_code(value: object) -> str:
    if not isinstance(value, str) or not _DIGITS_RE.fullmatch(value) or len(value) > 3:
        raise ValueError(f'expected a string of 1-3 digits, e.g. "1" (got {_q(value)})')
    return value


def _check_vmn(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f'expected a string of digits (write vmn = "{value}")')
    if not _DIGITS_RE.fullmatch(value) or len(value) not in (5, 6, 10):
        raise ValueError(
            f"expected 10 digits (long code) or 5-6 digits (short code) (got {_q(value)})"
        )
    return value


def _check_sender_id(value: str) -> str:
    if _MSISDN_RE.fullmatch(value) or _ALNUM_SENDER_RE.fullmatch(value):
        return value
    raise ValueError(
        "expected a number (5-15 digits, optional +) or an alphanumeric sender ID "
        f"of at most 11 characters (got {_q(value)})"
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
        raise ValueError(f"expected an email address local@domain (got {_q(value)})")
    return value


def _check_domain(value: str) -> str:
    if not _HOSTNAME_RE.fullmatch(value):
        raise ValueError(f"expected a domain name, e.g. replies.example.com (got {_q(value)})")
    return value


def _check_keyword(value: str) -> str:
    # Stored trimmed and whitespace-collapsed, case kept for display.
    collapsed = " ".join(value.split())
    if not 1 <= len(collapsed) <= KEYWORD_MAX_LENGTH:
        raise ValueError(
            f"expected 1-{KEYWORD_MAX_LENGTH} characters (got {len(collapsed)}: {_q(value)})"
        )
    return collapsed


def _check_optout_word(value: str) -> str:
    word = value.strip()
    if not word or len(word.split()) != 1 or len(word) > KEYWORD_MAX_LENGTH:
        raise ValueError(
            f"expected one word of 1-{KEYWORD_MAX_LENGTH} characters (got {_q(value)})"
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
            f"not an ISO-8601 date-time (got {_q(value)}; e.g. 2025-12-31T23:59:59Z, "
            "or a date 2025-12-31 for the whole day in UTC)"
        )
    if dt.tzinfo is None:
        return dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def _parse_end(value: object) -> datetime:
    return _parse_datetime(value, end_of_day=True)


def _upper(value: object) -> object:
    return value.upper() if isinstance(value, str) else value


def _lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


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


# --------------------------------------------------------------------------- models


class _Model(BaseModel):
    # Fields are read from TOML by alias (`number`, `keyword`, `from`); Python code
    # may construct models by attribute name as well.
    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        validate_by_alias=True,
        validate_by_name=True,
        allow_inf_nan=False,
    )


class GatewayConfig(_Model):
    """``[gateway]``."""

    name: Name = "vmn-gateway"
    database: DatabaseUrl = DEFAULT_DATABASE
    database_env: EnvName | None = None
    country_code: CountryCode = "1"
    unrouted: Unrouted = Unrouted.ACCEPT
    admin_listen: HostPort | None = None
    # How long a suspect MO (one the SMSC may redeliver) folds its first copy; 0: never.
    dedup_window: NonNegative = 600.0
    reassembly_timeout: Seconds = 120.0
    durability: Annotated[Durability, BeforeValidator(_lower)] = Durability.POWER_LOSS
    # PostgreSQL only: intake transactions in flight at once (SQLite has one writer).
    pg_intake_commits: Annotated[int, Strict(), Field(ge=1, le=8)] = 4
    # Bytes. Over it the writer truncates the WAL (SQLite only; see storage/db.py).
    sqlite_wal_limit: Annotated[int, Strict(), Field(ge=65536)] = 64 * 1024 * 1024
    # Open long MOs held in memory; over either cap the oldest is delivered incomplete.
    reassembly_max_groups: Annotated[int, Strict(), Field(ge=1)] = 10000
    reassembly_max_bytes: Annotated[int, Strict(), Field(ge=65536)] = 32 * 1024 * 1024
    shutdown_timeout: Seconds = 10.0
    log_level: Annotated[LogLevel, BeforeValidator(_lower)] = LogLevel.INFO
    mt_poll_interval: Seconds = 0.5
    retry_base: Seconds = 1.0
    retry_max: Seconds = 300.0
    max_attempts: Annotated[int, Strict(), Field(ge=1)] = 8
    action_workers: Annotated[int, Strict(), Field(ge=0, le=8)] = 0

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        for key, value in super().__repr_args__():
            yield key, (_mask_url(value) if key == "database" else value)

    @model_validator(mode="before")
    @classmethod
    def _sqlite_synchronous_replaced(cls, data: Any) -> Any:
        if isinstance(data, dict) and "sqlite_synchronous" in data:
            raise ValueError(
                'sqlite_synchronous is replaced by durability: "FULL" is durability = '
                '"power-loss", "NORMAL" is durability = "crash" (and it now applies to '
                "PostgreSQL as well)")
        return data


class SmscConfig(_Model):
    """One ``[[smsc]]`` entry: one transceiver bind."""

    name: Name
    host: Host = "127.0.0.1"
    port: Port = 2775
    system_id: Annotated[str, Field(min_length=1, max_length=15)]
    password: SecretStr | None = None
    password_env: EnvName | None = None
    system_type: Annotated[str, Field(max_length=12)] = ""
    enquire_link_interval: Seconds = 30.0
    window: Annotated[int, Strict(), Field(ge=1)] = 10
    throughput: NonNegative = 0.0
    reconnect_min: Seconds = 1.0
    reconnect_max: Seconds = 60.0
    bind_timeout: Seconds = 10.0
    # Ours for submit_sm / enquire_link, and assumed to be the SMSC's for deliver_sm:
    # an answer later than this, or in flight when the link drops, may be redelivered.
    response_timeout: Seconds = 10.0
    throttle_backoff: Seconds = 1.0
    # None: the `[[number]]`'s, else automatic by the kind of sender (gateway/addressing.py)
    source_ton: Octet | None = None
    source_npi: Octet | None = None
    # None: by the form of the recipient (gateway/addressing.py destination_address)
    dest_ton: Octet | None = None
    dest_npi: Octet | None = None
    registered_delivery: StrictBool = True
    # Carrier dialects (issue 16; gateway/smpp/dialect.py)
    default_alphabet: Alphabet = Alphabet.GSM
    message_id: MessageIdForm = MessageIdForm.AUTO
    # A submit_sm whose response never came: sent again (true) or recorded `unknown`.
    resend_unanswered: StrictBool = False

    def password_value(self) -> str:
        """The bind password ("" when none is configured)."""
        return "" if self.password is None else self.password.get_secret_value()

    @field_validator("password")
    @classmethod
    def _password_length(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) > 8:
            raise ValueError("expected at most 8 characters (SMPP limit)")
        return value

    @field_validator("reconnect_max")
    @classmethod
    def _reconnect_order(cls, value: float, info: ValidationInfo) -> float:
        low = info.data.get("reconnect_min")
        if low is not None and value < low:
            raise ValueError(f"must be >= reconnect_min ({low:g}) (got {value:g})")
        return value


class MqttConfig(_Model):
    """``[mqtt]``: where events are published and commands received."""

    url: MqttUrl
    username: str | None = None
    password: SecretStr | None = None
    password_env: EnvName | None = None
    topic_prefix: str = "vmn"
    qos: Annotated[int, Strict(), Field(ge=0, le=2)] = 1
    client_id: str | None = None
    # Instances with the same group share P/mt/send: each command goes to one of them
    # ("" = a plain subscription: every instance gets every command).
    command_group: str = "vmn-gateway"

    @field_validator("command_group")
    @classmethod
    def _command_group(cls, value: str) -> str:
        if set(value) & set("/+#\0"):
            raise ValueError(f"expected a name without /, + or # (got {_q(value)})")
        return value

    @field_validator("topic_prefix")
    @classmethod
    def _topic_prefix(cls, value: str) -> str:
        if not value or value.startswith("/") or value.endswith("/") or set(value) & set("+#"):
            raise ValueError(
                f"expected a topic without wildcards or leading/trailing / (got {_q(value)})"
            )
        return value

    def password_value(self) -> str | None:
        return None if self.password is None else self.password.get_secret_value()

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    @property
    def tls(self) -> bool:
        return self.url.startswith("mqtts:")

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or (8883 if self.tls else 1883)


class SmtpConfig(_Model):
    """``[smtp]``: outbound mail for `forward_email`."""

    host: Host
    port: Port = 25
    username: str | None = None
    password: SecretStr | None = None
    password_env: EnvName | None = None
    starttls: StrictBool = False
    tls: StrictBool = False
    from_: Email = Field(alias="from")
    timeout: Seconds = 30.0

    def password_value(self) -> str | None:
        return None if self.password is None else self.password.get_secret_value()

    @field_validator("tls")
    @classmethod
    def _one_tls_mode(cls, value: bool, info: ValidationInfo) -> bool:
        if value and info.data.get("starttls"):
            raise ValueError("give either tls (implicit TLS) or starttls, not both")
        return value


class AcceptFrom(StrEnum):
    """Who may answer a forwarded email (``[email_replies] accept_from``)."""

    RECIPIENTS = "recipients"  # only the address the forward was sent to
    ANY = "any"  # whoever holds the reply address


class EmailRepliesConfig(_Model):
    """``[email_replies]``: inbound SMTP so a reply to a forwarded email becomes an SMS."""

    listen: HostPort = "127.0.0.1:2525"
    domain: Domain
    token_ttl: Annotated[int, Strict(), Field(ge=1)] = 30  # days
    accept_from: Annotated[AcceptFrom, BeforeValidator(_lower)] = AcceptFrom.RECIPIENTS
    # Replies per reply address and hour; 0 = no limit.
    max_replies_per_token: Annotated[int, Strict(), Field(ge=0)] = 10


class ApiConfig(_Model):
    """``[api]``: the HTTP API (SPEC §8); off when the section is absent."""

    listen: HostPort
    # Request bodies above this many bytes are refused with 413.
    max_body: Annotated[int, Strict(), Field(ge=1024, le=16 * 1024 * 1024)] = 64 * 1024
    # HMAC-SHA256 key of the X-VMN-Signature on `callback_url` requests (unsigned if unset).
    callback_secret: SecretStr | None = None
    callback_secret_env: EnvName | None = None
    # Attempts of one `callback_url` event before it is dead-lettered.
    callback_max_attempts: Annotated[int, Strict(), Field(ge=1)] = 8
    # Seconds an `Idempotency-Key` answer is kept.
    idempotency_ttl: Seconds = 86400.0

    def callback_secret_value(self) -> str | None:
        return None if self.callback_secret is None else self.callback_secret.get_secret_value()


class CallbackProfile(_Model):
    """``[callback_profiles.NAME]``: a reusable webhook target."""

    url: HttpUrl
    method: Annotated[HttpMethod, BeforeValidator(_upper)] = HttpMethod.POST
    headers: FrozenDict[str, str] = Field(default_factory=FrozenDict)
    secret: SecretStr | None = None
    secret_env: EnvName | None = None
    timeout: Seconds = 10.0
    max_attempts: Annotated[int, Strict(), Field(ge=1)] = 8
    retry_on_4xx: StrictBool = False

    def secret_value(self) -> str | None:
        """The HMAC-SHA256 key, or None when requests are not signed."""
        return None if self.secret is None else self.secret.get_secret_value()

    @field_validator("headers")
    @classmethod
    def _header_names(cls, value: FrozenDict[str, str]) -> FrozenDict[str, str]:
        for name in value:
            if not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", name):
                raise ValueError(f"not a valid HTTP header name: {_q(name)}")
        return value

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        # Header values often carry credentials (Authorization): show names only.
        for key, value in super().__repr_args__():
            if key == "headers":
                yield key, tuple(value)
            elif key == "url":
                yield key, _mask_url(value)
            else:
                yield key, value


class OptoutConfig(_Model):
    """``[optout]``: STOP / START / HELP handling (matched on the whole message)."""

    stop_keywords: tuple[OptoutWord, ...] = DEFAULT_STOP_KEYWORDS
    start_keywords: tuple[OptoutWord, ...] = DEFAULT_START_KEYWORDS
    help_keywords: tuple[OptoutWord, ...] = DEFAULT_HELP_KEYWORDS
    scope: OptoutScope = OptoutScope.SENDER
    stop_reply: Template = DEFAULT_STOP_REPLY
    start_reply: Template = DEFAULT_START_REPLY
    help_reply: Template = DEFAULT_HELP_REPLY
    callback_profile: str | None = None


class OptoutOverride(_Model):
    """``[number.optout]``: any `OptoutConfig` field, overriding ``[optout]`` for one VMN."""

    stop_keywords: tuple[OptoutWord, ...] | None = None
    start_keywords: tuple[OptoutWord, ...] | None = None
    help_keywords: tuple[OptoutWord, ...] | None = None
    scope: OptoutScope | None = None
    stop_reply: Template | None = None
    start_reply: Template | None = None
    help_reply: Template | None = None
    callback_profile: str | None = None


def _check_poll_options(options: tuple[str, ...]) -> tuple[str, ...]:
    if len(options) < 2:
        raise ValueError(f"a poll needs at least 2 options (got {len(options)})")
    seen: set[str] = set()
    for option in options:
        key = normalize_keyword(option)
        if key in seen:
            raise ValueError(
                f"{_q(option)} appears twice (options are compared case-insensitively)"
            )
        seen.add(key)
    return options


class PollConfig(_Model):
    """``poll = { name, options, aliases, invalid_reply }``: the text after the keyword
    is a vote; ``aliases = { RED = ["R", "ROUGE"] }`` are other words for an option."""

    name: Name
    options: Annotated[tuple[Keyword, ...], AfterValidator(_check_poll_options)]
    aliases: FrozenDict[str, tuple[Keyword, ...]] = Field(default_factory=FrozenDict)
    invalid_reply: Template | None = None

    @field_validator("aliases")
    @classmethod
    def _aliases_of_options(
        cls, value: FrozenDict[str, tuple[str, ...]], info: ValidationInfo
    ) -> FrozenDict[str, tuple[str, ...]]:
        options = info.data.get("options")
        if options is None:
            return value  # options failed validation already
        seen = {normalize_keyword(o): f"option {_q(o)}" for o in options}
        out: dict[str, tuple[str, ...]] = {}
        for option, words in value.items():
            canonical = next(
                (o for o in options if normalize_keyword(o) == normalize_keyword(option)), None
            )
            if canonical is None:
                raise ValueError(f"{_q(option)} is not one of the options")
            for word in words:
                key = normalize_keyword(word)
                if key in seen:
                    raise ValueError(f"alias {_q(word)} clashes with {seen[key]}")
                seen[key] = f"alias {_q(word)}"
            out[canonical] = words
        return FrozenDict(out)

    def option_for(self, vote: str) -> str | None:
        """The option (as configured) that `vote` names, by itself or by an alias;
        compared case-folded and whitespace-collapsed."""
        key = normalize_keyword(vote)
        for option in self.options:
            if normalize_keyword(option) == key:
                return option
        for option, words in self.aliases.items():
            if any(normalize_keyword(w) == key for w in words):
                return option
        return None


class ActionConfig(_Model):
    """A configuration: the VMN's ``default`` or a keyword's settings and actions."""

    aliases: tuple[Keyword, ...] = ()
    match: MatchMode = MatchMode.FIRST_WORD
    starts: Timestamp | None = None
    expires: EndTimestamp | None = None
    expiry_reply: Template | None = None
    webhook: HttpUrl | None = None
    callback_profile: str | None = None
    reply: Template | None = None
    forward_sms: tuple[Msisdn, ...] = ()
    forward_email: tuple[Email, ...] = ()
    opt_in: StrictBool = False
    opt_out: StrictBool = False
    poll: PollConfig | None = None
    lead: StrictBool = False

    @field_validator("expires")
    @classmethod
    def _after_starts(cls, value: datetime | None, info: ValidationInfo) -> datetime | None:
        starts = info.data.get("starts")
        if value is not None and starts is not None and value <= starts:
            raise ValueError(
                f"must be later than starts ({starts.isoformat()}) (got {value.isoformat()})"
            )
        return value

    @field_validator("callback_profile")
    @classmethod
    def _one_webhook(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and info.data.get("webhook") is not None:
            raise ValueError("give either webhook or callback_profile, not both")
        return value

    @field_validator("opt_out")
    @classmethod
    def _not_in_and_out(cls, value: bool, info: ValidationInfo) -> bool:
        if value and info.data.get("opt_in"):
            raise ValueError("opt_in and opt_out cannot both be true")
        return value

    def in_window(self, now: datetime) -> bool:
        """True when `now` is within [starts, expires) (open ends when unset)."""
        if self.starts is not None and now < self.starts:
            return False
        return self.expires is None or now < self.expires

    def action_names(self) -> tuple[str, ...]:
        """The actions this configuration runs, in a stable order (registry keys)."""
        from gateway.actions.registry import enabled_names  # the kinds declare their keys

        return enabled_names(self)


class KeywordConfig(ActionConfig):
    """One ``[[number.keyword]]``."""

    keyword: Keyword


class NumberConfig(_Model):
    """One ``[[number]]``: a VMN, its default configuration and its keywords."""

    vmn: Vmn
    sender_id: SenderId  # defaults to the VMN
    optout: OptoutOverride | None = None
    default: ActionConfig
    keywords: tuple[KeywordConfig, ...] = Field(default=(), alias="keyword")
    # The MT source address; None: the `[[smsc]]`'s, else automatic by the kind of sender
    # (gateway/addressing.py).
    source_ton: Octet | None = None
    source_npi: Octet | None = None

    @model_validator(mode="before")
    @classmethod
    def _sender_defaults_to_vmn(cls, data: Any) -> Any:
        if isinstance(data, dict) and "sender_id" not in data and isinstance(data.get("vmn"), str):
            return {**data, "sender_id": data["vmn"]}
        return data

    @field_validator("source_ton")
    @classmethod
    def _ton_fits_sender(cls, value: int | None, info: ValidationInfo) -> int | None:
        sender = info.data.get("sender_id")
        if value is None or not isinstance(sender, str):
            return value
        alphanumeric = _ALNUM_SENDER_RE.fullmatch(sender) is not None
        if alphanumeric and value != 5:
            raise ValueError(f"the alphanumeric sender_id {_q(sender)} goes out only as 5 "
                             f"(alphanumeric) (got {value})")
        if not alphanumeric and value == 5:
            raise ValueError(f"5 (alphanumeric) is for a sender_id with letters; "
                             f"{_q(sender)} is a number (got {value})")
        return value

    @property
    def is_short_code(self) -> bool:
        return len(self.vmn) != 10


class Config(_Model):
    """The whole file."""

    gateway: GatewayConfig = Field(default_factory=GatewayConfig)
    smsc: Annotated[tuple[SmscConfig, ...], Field(min_length=1)]
    mqtt: MqttConfig | None = None
    smtp: SmtpConfig | None = None
    email_replies: EmailRepliesConfig | None = None
    api: ApiConfig | None = None
    callback_profiles: FrozenDict[str, CallbackProfile] = Field(default_factory=FrozenDict)
    optout: OptoutConfig = Field(default_factory=OptoutConfig)
    numbers: tuple[NumberConfig, ...] = Field(default=(), alias="number")
    source_file: str = ""

    def number(self, vmn: str) -> NumberConfig | None:
        """The configured number for `vmn`, or None."""
        for number in self.numbers:
            if number.vmn == vmn:
                return number
        return None

    def optout_for(self, number: NumberConfig) -> OptoutConfig:
        """``[optout]`` with the number's ``[number.optout]`` overrides applied."""
        if number.optout is None:
            return self.optout
        override = number.optout
        update = {
            key: getattr(override, key)
            for key in type(override).model_fields
            if getattr(override, key) is not None
        }
        return self.optout.model_copy(update=update)


# --------------------------------------------------------------------------- loading

# Secrets that may come from the environment as `<key>_env = "VAR"`.
_SECRET_KEYS = frozenset({"password", "secret", "database", "callback_secret"})


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> Config:
    """Read, parse and validate a TOML configuration file."""
    file = str(path)
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise ConfigError(file, "", f"cannot read file ({e.strerror or e})") from None
    except UnicodeDecodeError:
        raise ConfigError(file, "", "invalid TOML (not UTF-8 text)") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(file, "", _toml_error_text(str(e))) from None
    config = parse_config(data, file=file, env=os.environ if env is None else env)
    url = sqlite_relative_to(config.gateway.database, Path(path).parent)
    if url == config.gateway.database:
        return config
    return config.model_copy(update={"gateway": config.gateway.model_copy(
        update={"database": url})})


def sqlite_relative_to(url: str, base: Path) -> str:
    """`url` with a relative SQLite path made absolute against `base` (the directory of
    the configuration file): the daemon and the read-only commands then find the same
    file whatever their working directory."""
    m = re.fullmatch(r"(sqlite(?:\+[A-Za-z0-9_]+)?:///)([^?]*)(\?.*)?", url, re.DOTALL)
    if m is None or not m[2] or m[2] == ":memory:" or m[2].startswith("/"):
        return url
    return f"{m[1]}{(base.absolute() / m[2]).resolve()}{m[3] or ''}"


def _toml_error_text(message: str) -> str:
    m = re.fullmatch(r"(.*) \(at line (\d+), column (\d+)\)", message, re.DOTALL)
    if m:
        return f"line {m[2]} column {m[3]}: invalid TOML ({m[1]})"
    m = re.fullmatch(r"(.*) \(at end of document\)", message, re.DOTALL)
    if m:
        return f"end of file: invalid TOML ({m[1]})"
    return f"invalid TOML ({message})"


def parse_config(data: Mapping[str, Any], *, file: str, env: Mapping[str, str]) -> Config:
    """Validate already-parsed TOML `data`; `file` is only used in error messages."""
    if "source_file" in data:
        raise ConfigError(file, "source_file", "unknown key")
    resolved = _resolve_env_secrets(data, file, env)
    resolved["source_file"] = file
    gateway = resolved.get("gateway")
    cc = gateway.get("country_code") if isinstance(gateway, dict) else None
    # Numbers elsewhere in the file (forward_sms) are read in this country; a bad
    # country_code is reported on its own key, by the model.
    context = {"country_code": cc if isinstance(cc, str) and _DIGITS_RE.fullmatch(cc) else "1"}
    try:
        config = Config.model_validate(resolved, by_alias=True, by_name=False, context=context)
    except ValidationError as e:
        errors = e.errors(include_url=False)
        # A misspelt key also leaves the key it meant "missing": name the cause.
        first = next((err for err in errors if err["type"] == "extra_forbidden"), errors[0])
        raise ConfigError(file, _format_loc(first["loc"]), _describe(first)) from None
    _check_cross_references(config, file)
    return config



class NumberRejected(ValueError):
    """A number given on its own (`parse_number`) that the file would not accept:
    ``errors`` are ``(key path, expected)`` pairs, paths relative to the number."""

    def __init__(self, errors: Sequence[tuple[str, str]]) -> None:
        self.errors = list(errors)
        super().__init__("; ".join(f"{p}: {e}" if p else e for p, e in self.errors))


def parse_number(data: Mapping[str, Any], rest: Config) -> NumberConfig:
    """One ``[[number]]`` table given as JSON (its keyword tables under ``keywords``),
    validated by the models and cross-checks of the file against `rest`, the rest of
    the configuration (which must not hold this VMN): the callback profiles, [smtp],
    the opt words, the polls and the VMNs of the other numbers. Raises NumberRejected
    with every model error, or else the first cross-check that fails; key paths are
    relative to the number (``keywords[0].reply``) and the wording is `check`'s."""
    return NumberChecker(rest).check(data)


class NumberChecker:
    """`parse_number` for many numbers in a row: each checked against `rest` and the
    numbers `add`ed so far, without walking all of them again for each."""

    def __init__(self, rest: Config) -> None:
        self.rest = rest
        self._vmns: set[str] = set()
        self._polls: _Polls = {}
        for number in rest.numbers:
            self.add(number)

    def add(self, number: NumberConfig) -> None:
        """Count `number` in (its VMN and polls) for the numbers checked after it."""
        self._vmns.add(number.vmn)
        for path, action in _configurations(number, _Paths(f"number[{_q(number.vmn)}]")):
            if action.poll is not None:
                options = tuple(normalize_keyword(o) for o in action.poll.options)
                self._polls.setdefault(action.poll.name, (options, f"{path}.poll"))

    def check(self, data: Mapping[str, Any]) -> NumberConfig:
        """The number of `data`; NumberRejected if the file would not accept it."""
        cc = self.rest.gateway.country_code
        try:
            number = NumberConfig.model_validate(data, by_alias=False, by_name=True,
                                                 context={"country_code": cc})
        except ValidationError as e:
            errors = e.errors(include_url=False)
            # Described as if at numbers[0] of a file: the same words, suggestions included.
            raise NumberRejected([
                (_format_loc(err["loc"]),
                 _describe({**err, "loc": ("numbers", 0, *err["loc"])}, names=True))
                for err in errors
            ]) from None

        def fail(path: str, expected: str) -> None:
            raise NumberRejected([(path, " ".join(expected.split()))])

        vmn = number.vmn
        if vmn in self._vmns:
            fail("vmn", f"duplicate VMN {_q(vmn)} (configured already)")
        # An incoming destination_addr of country_code + vmn matches vmn (as in the file).
        for other in (cc + vmn, vmn[len(cc):] if vmn.startswith(cc) else None):
            if other in self._vmns:
                fail("vmn", f"ambiguous: equals number[{_q(other)}].vmn with country code "
                            f"{cc} prepended")
        _check_number(self.rest, number, _Paths("", "keywords"), dict(self._polls), fail)
        return number


def _configurations(number: NumberConfig, at: _Paths) -> list[tuple[str, ActionConfig]]:
    """The default and keyword configurations of `number` with their key paths."""
    return [(at("default"), number.default),
            *((at.keyword(j), k) for j, k in enumerate(number.keywords))]


def _resolve_env_secrets(
    data: Mapping[str, Any], file: str, env: Mapping[str, str]
) -> dict[str, Any]:
    """Copy `data`, filling ``password`` from ``password_env`` etc.; the *_env key stays."""

    def resolve(table: Any, path: str, key: str) -> Any:
        if not isinstance(table, dict) or not isinstance(table.get(f"{key}_env"), str):
            return table  # absent or mistyped: model validation reports it
        var = table[f"{key}_env"]
        if key in table:
            raise ConfigError(
                file, f"{path}.{key}_env", f"give either {key} or {key}_env, not both"
            )
        if var not in env:
            raise ConfigError(file, f"{path}.{key}_env", f"environment variable {var} is not set")
        return {**table, key: env[var]}

    out = dict(data)
    if "gateway" in out:
        out["gateway"] = resolve(out["gateway"], "gateway", "database")
    for section in ("mqtt", "smtp"):
        if section in out:
            out[section] = resolve(out[section], section, "password")
    if "api" in out:
        out["api"] = resolve(out["api"], "api", "callback_secret")
    if isinstance(out.get("smsc"), list):
        out["smsc"] = [
            resolve(entry, f"smsc[{i}]", "password") for i, entry in enumerate(out["smsc"])
        ]
    if isinstance(out.get("callback_profiles"), dict):
        out["callback_profiles"] = {
            name: resolve(profile, _format_loc(("callback_profiles", name)), "secret")
            for name, profile in out["callback_profiles"].items()
        }
    return out


def _format_loc(loc: Sequence[int | str]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part == "[key]":
            path += " (key)"
        else:
            text = part if re.fullmatch(r"[A-Za-z0-9_-]+", part) else json.dumps(part)
            path += f".{text}" if path else text
    return path


# Names from older versions or other products, and what the key is called here.
_RENAMED_KEYS = {"trigger_url": "webhook", "expiry_message": "expiry_reply"}


def _suggestion(loc: Sequence[int | str], names: bool = False) -> str:
    """`` (did you mean KEY?)`` for an unknown key at `loc`, or ""."""
    if not loc or not isinstance(loc[-1], str):
        return ""
    key = loc[-1]
    known = _known_keys(loc[:-1], names)
    if not known:
        return ""
    if key in _RENAMED_KEYS and _RENAMED_KEYS[key] in known:
        match: str | None = _RENAMED_KEYS[key]
    elif key.lower() in known:
        match = key.lower()
    else:
        matches = difflib.get_close_matches(key.lower(), known, n=1, cutoff=0.7)
        match = matches[0] if matches else None
    return f" (did you mean {match}?)" if match else ""


def _key_name(name: str, field: FieldInfo, names: bool) -> str:
    return name if names else (field.alias or name)


def _known_keys(loc: Sequence[int | str], names: bool = False) -> list[str]:
    """The TOML keys of the table at `loc` in the file (by the models), [] if unknown;
    `names`: the field names (the API's JSON, e.g. `keywords`), not the TOML aliases."""
    current: Any = Config
    for part in loc:
        current = _unwrap_annotation(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            fields = {_key_name(n, f, names): f for n, f in current.model_fields.items()}
            if not isinstance(part, str) or part not in fields:
                return []
            current = fields[part].annotation
            continue
        origin, args = get_origin(current), get_args(current)
        if origin is tuple and isinstance(part, int) and args:
            current = args[0]
        elif origin in (dict, FrozenDict) and isinstance(part, str) and len(args) == 2:
            current = args[1]
        else:
            return []
    current = _unwrap_annotation(current)
    if not (isinstance(current, type) and issubclass(current, BaseModel)):
        return []
    keys = [_key_name(n, f, names) for n, f in current.model_fields.items()]
    return [k for k in keys if k != "source_file"]


def _unwrap_annotation(tp: Any) -> Any:
    """`X` from ``Annotated[X, ...]`` and ``X | None``."""
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            tp = get_args(tp)[0]
        elif origin in (Union, UnionType):
            rest = [a for a in get_args(tp) if a is not type(None)]
            if len(rest) != 1:
                return tp
            tp = rest[0]
        else:
            return tp


_MISSING_HINTS = {
    "default": "missing (exactly one default configuration per VMN)",
    "smsc": "missing (at least one [[smsc]] entry)",
}

_TYPE_NAMES = {
    "string_type": "expected a string",
    "int_type": "expected an integer",
    "int_from_float": "expected an integer",
    "float_type": "expected a number",
    "bool_type": "expected true or false",
    "model_type": "expected a table",
    "model_attributes_type": "expected a table",
    "dict_type": "expected a table",
    "tuple_type": "expected an array",
    "list_type": "expected an array",
    "finite_number": "expected a finite number",
}


def _describe(error: ErrorDetails, names: bool = False) -> str:
    """Turn one pydantic error into the `expected` text of a ConfigError."""
    kind = error["type"]
    ctx: dict[str, Any] = dict(error.get("ctx") or {})
    loc = error["loc"]
    last = loc[-1] if loc else ""
    if kind == "missing":
        return _MISSING_HINTS.get(str(last), "missing")
    if kind == "extra_forbidden":
        return "unknown key" + _suggestion(loc, names)
    if kind == "value_error":
        return str(ctx["error"])
    bounds: dict[str, Callable[[Any], str]] = {
        "greater_than": lambda b: f"expected a value > {b}",
        "greater_than_equal": lambda b: f"expected a value >= {b}",
        "less_than": lambda b: f"expected a value < {b}",
        "less_than_equal": lambda b: f"expected a value <= {b}",
    }
    if kind in _TYPE_NAMES:
        text = _TYPE_NAMES[kind]
    elif kind in bounds:
        text = bounds[kind](next(iter(ctx.values())))
    elif kind in ("enum", "literal_error"):
        text = "expected " + str(ctx["expected"]).replace("'", '"')
    elif kind == "string_too_short":
        text = "expected a non-empty string"
    elif kind == "string_too_long":
        text = f"expected at most {ctx['max_length']} characters"
    elif kind == "too_short":
        n = ctx["min_length"]
        text = f"expected at least {n} {'entry' if n == 1 else 'entries'}"
    elif kind == "too_long":
        text = f"expected at most {ctx['max_length']} entries"
    else:
        text = error["msg"]
    secret = any(str(part) in _SECRET_KEYS for part in loc)
    value = error.get("input")
    if not secret and isinstance(value, str | int | float | bool) and len(_q(value)) <= 60:
        text += f" (got {_q(value)})"
    return text


def _check_cross_references(config: Config, file: str) -> None:
    """Rules that span several keys; each failure names the later of the places."""

    def fail(path: str, expected: str) -> None:
        raise ConfigError(file, path, expected)

    smsc_names: dict[str, int] = {}
    for i, smsc in enumerate(config.smsc):
        if smsc.name in smsc_names:
            other = smsc_names[smsc.name]
            fail(f"smsc[{i}].name", f"duplicate name {_q(smsc.name)} (also smsc[{other}].name)")
        smsc_names[smsc.name] = i

    profiles = config.callback_profiles

    def check_profile(name: str | None, path: str) -> None:
        if name is not None and name not in profiles:
            defined = ", ".join(profiles) or "none"
            fail(path, f"unknown callback profile {_q(name)} (defined: {defined})")

    check_profile(config.optout.callback_profile, "optout.callback_profile")
    _check_optout_lists(config.optout, None, "optout", "optout", fail)

    vmns: dict[str, int] = {}
    polls: _Polls = {}
    cc = config.gateway.country_code
    for i, number in enumerate(config.numbers):
        base = f"number[{i}]"
        if number.vmn in vmns:
            other = vmns[number.vmn]
            fail(f"{base}.vmn", f"duplicate VMN {_q(number.vmn)} (also number[{other}].vmn)")
        vmns[number.vmn] = i
        _check_number(config, number, _Paths(base), polls, fail)

    # An incoming destination_addr of country_code + vmn matches vmn: it must not be
    # another configured VMN.
    for i, number in enumerate(config.numbers):
        if cc + number.vmn in vmns:
            other = vmns[cc + number.vmn]
            fail(
                f"number[{other}].vmn",
                f"ambiguous: equals number[{i}].vmn with country code {cc} prepended",
            )


# Poll name -> (normalized options, the key path of the first poll of that name).
_Polls = dict[str, tuple[tuple[str, ...], str]]


class _Paths:
    """Key paths inside one number: ``number[2].keyword[0].reply`` in the file, or
    ``keywords[0].reply`` in a number on its own (the JSON of the HTTP API)."""

    def __init__(self, base: str, keywords: str = "keyword") -> None:
        self.base = base
        self.keywords = keywords

    def __call__(self, path: str) -> str:
        return f"{self.base}.{path}" if self.base else path

    def keyword(self, j: int) -> str:
        return self(f"{self.keywords}[{j}]")


def _check_number(
    config: Config,
    number: NumberConfig,
    at: _Paths,
    polls: _Polls,
    fail: Callable[[str, str], None],
) -> None:
    """The cross-checks of one number against `config` (callback profiles, [smtp],
    opt words) and the polls seen so far (`polls`, filled in)."""
    profiles = config.callback_profiles

    def check_profile(name: str | None, path: str) -> None:
        if name is not None and name not in profiles:
            defined = ", ".join(profiles) or "none"
            fail(path, f"unknown callback profile {_q(name)} (defined: {defined})")

    if number.optout is not None:
        check_profile(number.optout.callback_profile, at("optout.callback_profile"))
        _check_optout_lists(
            config.optout_for(number), number.optout, "optout", at("optout"), fail
        )

    default = number.default
    if default.aliases:
        fail(at("default.aliases"), "not allowed in the default configuration")
    if "match" in default.model_fields_set:
        fail(at("default.match"), "not allowed in the default configuration")

    seen: dict[str, str] = {}
    for j, keyword in enumerate(number.keywords):
        kbase = at.keyword(j)
        names = [(f"{kbase}.keyword", keyword.keyword)]
        names += [(f"{kbase}.aliases[{k}]", a) for k, a in enumerate(keyword.aliases)]
        for path, text in names:
            key = normalize_keyword(text)
            if key in seen:
                fail(path, f"{_q(text)} clashes with {seen[key]}")
            seen[key] = path
    _check_shadowed_keywords(config, number, at("optout"), seen, fail)

    for cpath, action in _configurations(number, at):
        check_profile(action.callback_profile, f"{cpath}.callback_profile")
        if action.forward_email and config.smtp is None:
            fail(f"{cpath}.forward_email", "needs an [smtp] section to send mail")
        if action.poll is not None:
            options = tuple(normalize_keyword(o) for o in action.poll.options)
            earlier = polls.setdefault(action.poll.name, (options, f"{cpath}.poll"))
            if earlier[0] != options:
                fail(
                    f"{cpath}.poll.options",
                    f"poll {_q(action.poll.name)} has other options at {earlier[1]}",
                )


def _check_shadowed_keywords(
    config: Config,
    number: NumberConfig,
    optout_path: str,
    keywords: Mapping[str, str],
    fail: Callable[[str, str], None],
) -> None:
    """A keyword (or alias) that is also an opt-out/opt-in/help word: a message of that
    word alone is taken by the opt handling first (SPEC §3), so it would only fire with
    more text after it."""
    effective = config.optout_for(number)
    override = number.optout
    for field in ("stop_keywords", "start_keywords", "help_keywords"):
        own = override is not None and getattr(override, field) is not None
        list_base = optout_path if own else "optout"
        for k, word in enumerate(getattr(effective, field)):
            path = keywords.get(normalize_keyword(word))
            if path is not None:
                fail(
                    path,
                    f"{_q(word)} is an opt word ({list_base}.{field}[{k}]), which is "
                    "matched first: this keyword would never fire on its own "
                    "(choose another word or remove it from that list)",
                )


def _check_optout_lists(
    effective: OptoutConfig,
    override: OptoutOverride | None,
    global_base: str,
    override_base: str,
    fail: Callable[[str, str], None],
) -> None:
    """A word may be in only one of stop/start/help keywords."""
    owner: dict[str, str] = {}
    for field in ("stop_keywords", "start_keywords", "help_keywords"):
        base = override_base if override is not None and getattr(override, field) else global_base
        for k, word in enumerate(getattr(effective, field)):
            key = normalize_keyword(word)
            path = f"{base}.{field}[{k}]"
            if key in owner:
                fail(path, f"{_q(word)} is also in {owner[key]}")
            owner[key] = path


# --------------------------------------------------------------------------- summary


def summary(config: Config, *, now: datetime | None = None) -> str:
    """A human summary for ``vmn-gateway check``; never shows a secret."""
    now = now or datetime.now(UTC)
    g = config.gateway
    lines = [
        f"configuration: {config.source_file or '<memory>'}",
        f"gateway: {g.name}",
        f"  database: {_mask_url(g.database)}",
        f"  country code: {g.country_code}, unrouted: {g.unrouted.value}"
        + (f", admin: {g.admin_listen}" if g.admin_listen else ""),
        f"smsc binds: {len(config.smsc)}",
    ]
    for s in config.smsc:
        cap = f"{s.throughput:g}/s" if s.throughput else "no cap"
        lines.append(
            f"  {s.name} {s.host}:{s.port} system_id={s.system_id} window={s.window} "
            f"throughput={cap}"
        )
    if config.mqtt is not None:
        m = config.mqtt
        lines.append(f"mqtt: {_mask_url(m.url)} topic_prefix={m.topic_prefix} qos={m.qos}")
    if config.smtp is not None:
        mode = "tls" if config.smtp.tls else "starttls" if config.smtp.starttls else "plain"
        lines.append(
            f"smtp: {config.smtp.host}:{config.smtp.port} ({mode}) from={config.smtp.from_}"
        )
    if config.email_replies is not None:
        e = config.email_replies
        limit = (f"at most {e.max_replies_per_token} per address and hour"
                 if e.max_replies_per_token else "no rate limit")
        lines.append(f"email replies: listen {e.listen}, reply+<token>@{e.domain}, "
                     f"accepted from {e.accept_from.value}, {limit}")
    if config.api is not None:
        a = config.api
        signed = "signed" if a.callback_secret is not None else "unsigned"
        lines.append(f"http api: listen {a.listen}, body cap {a.max_body} bytes, "
                     f"callbacks {signed}")
    for name, profile in config.callback_profiles.items():
        lines.append(f"callback profile {name}: {profile.method.value} {_mask_url(profile.url)}")
    o = config.optout
    lines.append(
        f"opt-out: stop={','.join(o.stop_keywords)} start={','.join(o.start_keywords)} "
        f"help={','.join(o.help_keywords)} scope={o.scope.value}"
    )

    keyword_count = alias_count = 0
    lines.append(f"numbers: {len(config.numbers)}")
    for number in config.numbers:
        kind = "short code" if number.is_short_code else "long code"
        extra = f", sender {number.sender_id}" if number.sender_id != number.vmn else ""
        extra += ", opt-out overrides" if number.optout is not None else ""
        lines.append(f"  {number.vmn} ({kind}{extra}, {len(number.keywords)} keywords)")
        for keyword in number.keywords:
            keyword_count += 1
            alias_count += len(keyword.aliases)
            details = [f"+{len(keyword.aliases)} aliases"] if keyword.aliases else []
            details.append(keyword.match.value)
            actions = _describe_actions(keyword, now)
            lines.append(f"    {keyword.keyword} ({', '.join(details)}): {actions}")
        lines.append(f"    <default>: {_describe_actions(number.default, now)}")
    lines.append(
        f"totals: {len(config.smsc)} smsc, {len(config.numbers)} numbers, "
        f"{keyword_count} keywords, {alias_count} aliases, "
        f"{len(config.callback_profiles)} callback profiles"
    )
    return "\n".join(lines)


def _describe_actions(action: ActionConfig, now: datetime) -> str:
    from gateway.actions.registry import describe  # each kind words its own

    text = ", ".join(describe(action)) or "no action (event only)"
    if action.starts is not None and now < action.starts:
        text += f" [starts {action.starts.isoformat()}]"
    if action.expires is not None:
        state = "expired" if now >= action.expires else "expires"
        text += f" [{state} {action.expires.isoformat()}]"
    return text


# The key-path form and the wording of `check`, for other edges that validate input
# with these models (the HTTP API's 422 problems).
format_loc = _format_loc
describe_error = _describe
