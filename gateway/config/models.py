"""The file as frozen pydantic models: one class per table (``[gateway]``,
``[[smsc]]``, ``[[number]]``, ...), with the checks that stay inside one table.

Checks that span tables are in `gateway.config.checks`; the value types the fields
use are in `gateway.config.types`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    Strict,
    StrictBool,
    ValidationInfo,
    field_validator,
    model_validator,
)

from gateway.config.types import (
    ALNUM_SENDER_RE,
    DEFAULT_DATABASE,
    AcceptFrom,
    Alphabet,
    CountryCode,
    DatabaseUrl,
    Domain,
    Durability,
    Email,
    EndTimestamp,
    EnvName,
    FrozenDict,
    Host,
    HostPort,
    HttpMethod,
    HttpUrl,
    Keyword,
    LogLevel,
    MatchMode,
    MessageIdForm,
    MqttUrl,
    Msisdn,
    Name,
    NonNegative,
    Octet,
    OptoutScope,
    OptoutWord,
    Port,
    Seconds,
    SenderId,
    Template,
    Timestamp,
    Unrouted,
    Vmn,
    mask_url,
    normalize_keyword,
    quote,
)

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


def _upper(value: object) -> object:
    return value.upper() if isinstance(value, str) else value


def _lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


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
    # Bytes. Over it the WAL is checkpointed and restarted (SQLite only; storage/db.py).
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
            yield key, (mask_url(value) if key == "database" else value)

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
            raise ValueError(f"expected a name without /, + or # (got {quote(value)})")
        return value

    @field_validator("topic_prefix")
    @classmethod
    def _topic_prefix(cls, value: str) -> str:
        if not value or value.startswith("/") or value.endswith("/") or set(value) & set("+#"):
            raise ValueError(
                f"expected a topic without wildcards or leading/trailing / (got {quote(value)})"
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
                raise ValueError(f"not a valid HTTP header name: {quote(name)}")
        return value

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        # Header values often carry credentials (Authorization): show names only.
        for key, value in super().__repr_args__():
            if key == "headers":
                yield key, tuple(value)
            elif key == "url":
                yield key, mask_url(value)
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
                f"{quote(option)} appears twice (options are compared case-insensitively)"
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
        seen = {normalize_keyword(o): f"option {quote(o)}" for o in options}
        out: dict[str, tuple[str, ...]] = {}
        for option, words in value.items():
            canonical = next(
                (o for o in options if normalize_keyword(o) == normalize_keyword(option)), None
            )
            if canonical is None:
                raise ValueError(f"{quote(option)} is not one of the options")
            for word in words:
                key = normalize_keyword(word)
                if key in seen:
                    raise ValueError(f"alias {quote(word)} clashes with {seen[key]}")
                seen[key] = f"alias {quote(word)}"
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
        alphanumeric = ALNUM_SENDER_RE.fullmatch(sender) is not None
        if alphanumeric and value != 5:
            raise ValueError(f"the alphanumeric sender_id {quote(sender)} goes out only as 5 "
                             f"(alphanumeric) (got {value})")
        if not alphanumeric and value == 5:
            raise ValueError(f"5 (alphanumeric) is for a sender_id with letters; "
                             f"{quote(sender)} is a number (got {value})")
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
