"""Configuration loading: the example file, defaults, secrets, and one error per bad file."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from gateway.config import (
    DEFAULT_DATABASE,
    Config,
    ConfigError,
    Durability,
    HttpMethod,
    LogLevel,
    MatchMode,
    OptoutScope,
    SmtpConfig,
    Unrouted,
    load_config,
    normalize_keyword,
    parse_config,
    render_template,
    summary,
)

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "config" / "gateway.example.toml"
INVALID = Path(__file__).resolve().parent / "configs" / "invalid"

EXAMPLE_ENV = {
    "MQTT_PASSWORD": "mqtt-pw-7f3a",
    "SMTP_PASSWORD": "smtp-pw-91bc",
    "CRM_WEBHOOK_SECRET": "crm-hmac-5d2e",
}

MINIMAL: dict[str, Any] = {"smsc": [{"name": "sim", "system_id": "test"}]}


def parse(data: dict[str, Any], env: dict[str, str] | None = None) -> Config:
    return parse_config(data, file="mem.toml", env=env or {})


def number(**fields: Any) -> dict[str, Any]:
    return {"vmn": "5551000100", "default": {"reply": "hi"}, **fields}


# --------------------------------------------------------------------------- example


def test_example_loads() -> None:
    cfg = load_config(EXAMPLE, env=EXAMPLE_ENV)
    assert cfg.source_file == str(EXAMPLE)
    assert [s.name for s in cfg.smsc] == ["local-sim"]
    smsc = cfg.smsc[0]
    assert (smsc.host, smsc.port, smsc.system_id) == ("127.0.0.1", 2775, "test")
    assert cfg.smsc[0].password_value() == "secret"
    assert [n.vmn for n in cfg.numbers] == ["5551000100", "55510"]
    assert cfg.numbers[1].is_short_code and not cfg.numbers[0].is_short_code
    assert cfg.mqtt is not None and cfg.mqtt.password_value() == "mqtt-pw-7f3a"
    assert cfg.smtp is not None and cfg.smtp.from_ == "sms-gateway@example.com"
    assert cfg.callback_profiles["crm"].secret_value() == "crm-hmac-5d2e"
    assert cfg.email_replies is not None and cfg.email_replies.domain == "replies.example.com"

    long_code = cfg.numbers[0]
    by_keyword = {k.keyword: k for k in long_code.keywords}
    assert set(by_keyword) == {"HELLO", "PRICE LIST", "SUMMER", "SUPPORT", "JOIN"}
    assert by_keyword["HELLO"].aliases == ("HI", "HEY")
    assert by_keyword["HELLO"].webhook == "http://127.0.0.1:8080/hook"
    assert by_keyword["PRICE LIST"].match is MatchMode.EXACT
    summer = by_keyword["SUMMER"]
    assert summer.expires == datetime(2020, 9, 1, tzinfo=UTC)
    assert summer.expiry_reply and not summer.in_window(datetime.now(UTC))
    assert by_keyword["SUPPORT"].action_names() == ("reply", "forward_sms", "forward_email")
    assert by_keyword["JOIN"].opt_in
    vote = cfg.numbers[1].keywords[0]
    assert vote.poll is not None and vote.poll.options == ("RED", "GREEN", "BLUE")
    assert cfg.numbers[1].keywords[1].lead

    # The per-number optout override replaces only the keys it sets.
    merged = cfg.optout_for(long_code)
    assert merged.help_reply.startswith("Example Co.")
    assert merged.stop_keywords == cfg.optout.stop_keywords
    assert cfg.optout_for(cfg.numbers[1]) is cfg.optout


def test_example_documents_every_key() -> None:
    text = EXAMPLE.read_text()
    models: list[type[Any]] = [Config]
    seen: set[type[Any]] = set()
    while models:
        model = models.pop()
        if model in seen:
            continue
        seen.add(model)
        for name, field in model.model_fields.items():
            if name == "source_file":
                continue
            key = re.escape(field.alias or name)
            # `key =` (maybe commented out), a table header `[x.key]`, an inline table
            # `{ key = `, or an entry of the configuration key list (`#   key  text`).
            pattern = rf"^#? ?{key} =|[\[.]{key}[\].]|[{{,] {key} =|^#\s+(\w+/)?{key}(/\w+)?\s"
            assert re.search(pattern, text, re.M), f"{model.__name__}.{key} is not documented"
            for sub in _submodels(field.annotation):
                models.append(sub)


def _submodels(annotation: Any) -> list[type[Any]]:
    from typing import get_args

    from pydantic import BaseModel

    found: list[type[Any]] = []
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        found.append(annotation)
    for arg in get_args(annotation):
        found.extend(_submodels(arg))
    return found


def test_example_needs_its_env_vars() -> None:
    with pytest.raises(ConfigError) as err:
        load_config(EXAMPLE, env={})
    assert err.value.path == "mqtt.password_env"
    assert "MQTT_PASSWORD" in str(err.value)


# --------------------------------------------------------------------------- defaults


def test_defaults() -> None:
    cfg = parse(MINIMAL)
    g = cfg.gateway
    assert g.name == "vmn-gateway"
    assert g.database == DEFAULT_DATABASE == "sqlite+aiosqlite:///./vmn-gateway.db"
    assert g.country_code == "1"
    assert g.unrouted is Unrouted.ACCEPT
    assert str(g.unrouted) == "accept"
    assert g.admin_listen is None
    assert g.dedup_window == 600
    assert g.reassembly_timeout == 120
    assert g.durability is Durability.POWER_LOSS
    assert g.shutdown_timeout == 10
    assert g.log_level is LogLevel.INFO
    assert g.mt_poll_interval == 0.5

    s = cfg.smsc[0]
    assert (s.host, s.port, s.password, s.password_value(), s.system_type) == (
        "127.0.0.1", 2775, None, "", ""
    )  # fmt: skip
    assert (s.enquire_link_interval, s.window, s.throughput) == (30, 10, 0)
    assert (s.reconnect_min, s.reconnect_max) == (1.0, 60.0)
    assert (s.bind_timeout, s.response_timeout, s.throttle_backoff) == (10, 10, 1.0)
    assert (s.source_ton, s.source_npi, s.dest_ton, s.dest_npi) == (None, None, None, None)
    assert (s.default_alphabet, s.message_id, s.resend_unanswered) == ("gsm", "auto", False)
    assert s.registered_delivery is True

    assert cfg.mqtt is None and cfg.smtp is None and cfg.email_replies is None
    assert dict(cfg.callback_profiles) == {}
    assert cfg.numbers == ()
    o = cfg.optout
    assert o.stop_keywords == (
        "STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT",
    )  # fmt: skip
    assert o.start_keywords == ("START", "YES", "UNSTOP")
    assert o.help_keywords == ("HELP", "INFO")
    assert o.scope is OptoutScope.SENDER
    assert "unsubscribed" in o.stop_reply and o.callback_profile is None


def test_section_defaults() -> None:
    cfg = parse(
        {
            **MINIMAL,
            "mqtt": {"url": "mqtts://broker.example.com"},
            "smtp": {"host": "mail", "from": "gw@example.com"},
            "email_replies": {"domain": "r.example.com"},
            "callback_profiles": {"crm": {"url": "https://crm.example.com/x"}},
            "number": [number(keyword=[{"keyword": "HI"}])],
        }
    )
    assert cfg.mqtt is not None
    assert (cfg.mqtt.topic_prefix, cfg.mqtt.qos, cfg.mqtt.client_id) == ("vmn", 1, None)
    assert (cfg.mqtt.host, cfg.mqtt.port, cfg.mqtt.tls) == ("broker.example.com", 8883, True)
    assert cfg.smtp is not None
    assert (cfg.smtp.port, cfg.smtp.starttls, cfg.smtp.tls, cfg.smtp.username) == (
        25, False, False, None
    )  # fmt: skip
    assert cfg.email_replies is not None
    assert (cfg.email_replies.listen, cfg.email_replies.token_ttl) == ("127.0.0.1:2525", 30)
    p = cfg.callback_profiles["crm"]
    assert (p.method, p.timeout, p.max_attempts, p.retry_on_4xx) == (HttpMethod.POST, 10, 8, False)
    assert dict(p.headers) == {} and p.secret_value() is None
    n = cfg.numbers[0]
    assert n.sender_id == "5551000100" and n.optout is None
    k = n.keywords[0]
    assert (k.aliases, k.match, k.starts, k.expires, k.webhook, k.lead) == (
        (), MatchMode.FIRST_WORD, None, None, None, False
    )  # fmt: skip
    assert k.action_names() == ()


def test_case_insensitive_enums() -> None:
    cfg = parse({**MINIMAL, "gateway": {"log_level": "DEBUG", "durability": "Crash"}})
    assert cfg.gateway.log_level is LogLevel.DEBUG
    assert cfg.gateway.durability is Durability.CRASH


# --------------------------------------------------------------------------- secrets


def test_env_secrets_are_read() -> None:
    data = {
        "gateway": {"database_env": "DB_URL"},
        "smsc": [{"name": "sim", "system_id": "test", "password_env": "SMSC_PASSWORD"}],
        "mqtt": {"url": "mqtt://127.0.0.1", "username": "u", "password_env": "MQTT_PW"},
        "callback_profiles": {"crm": {"url": "https://x.example.com", "secret_env": "CRM"}},
    }
    env = {
        "SMSC_PASSWORD": "pw",
        "MQTT_PW": "mq",
        "CRM": "hmac",
        "DB_URL": "postgresql+asyncpg://vmn:dbpass@db/vmn",
    }
    cfg = parse(data, env)
    assert cfg.smsc[0].password_value() == "pw"
    assert cfg.smsc[0].password_env == "SMSC_PASSWORD"
    assert cfg.mqtt is not None and cfg.mqtt.password_value() == "mq"
    assert cfg.callback_profiles["crm"].secret_value() == "hmac"
    assert cfg.gateway.database == "postgresql+asyncpg://vmn:dbpass@db/vmn"


def test_env_defaults_to_os_environ(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "g.toml"
    path.write_text('[[smsc]]\nname = "a"\nsystem_id = "b"\npassword_env = "VMN_TEST_PW"\n')
    monkeypatch.setenv("VMN_TEST_PW", "fromenv")
    assert load_config(path).smsc[0].password_value() == "fromenv"


def test_secrets_never_shown() -> None:
    secrets = {"SMSC": "smpp-pw1", "MQTT": "mqtt-pw-x1", "SMTP": "smtp-pw-x2", "CRM": "hmac-x3"}
    data = {
        "gateway": {"database": "postgresql+asyncpg://vmn:db-pw-x4@db.example.com/vmn"},
        "smsc": [{"name": "sim", "system_id": "test", "password_env": "SMSC"}],
        "mqtt": {"url": "mqtt://127.0.0.1", "username": "u", "password_env": "MQTT"},
        "smtp": {"host": "mail", "from": "gw@example.com", "password_env": "SMTP"},
        "callback_profiles": {
            "crm": {
                "url": "https://hookuser:url-pw-x5@crm.example.com/x",
                "secret_env": "CRM",
                "headers": {"Authorization": "Bearer header-pw-x6"},
            }
        },
        "number": [number()],
    }
    cfg = parse(data, secrets)
    shown = repr(cfg) + str(cfg) + summary(cfg)
    for secret in [*secrets.values(), "db-pw-x4", "url-pw-x5", "header-pw-x6"]:
        assert secret not in shown, secret
    assert "db.example.com" in summary(cfg)  # the URL is shown, masked


def test_secret_not_echoed_in_error() -> None:
    with pytest.raises(ConfigError) as err:
        parse({"smsc": [{"name": "a", "system_id": "b", "password": "toolong-secret"}]})
    assert "toolong-secret" not in str(err.value)


# --------------------------------------------------------------------------- keywords


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("HELLO", "hello"),
        ("  Price   LIST ", "price list"),
        ("tab\there", "tab here"),
        ("STRASSE", "strasse"),
        ("Straße", "strasse"),  # case folding, not just lower()
        ("ΣΊΣΥΦΟΣ", "σίσυφοσ"),
    ],
)
def test_normalize_keyword(raw: str, normal: str) -> None:
    assert normalize_keyword(raw) == normal


@given(st.text())
def test_normalize_keyword_is_idempotent(s: str) -> None:
    once = normalize_keyword(s)
    assert normalize_keyword(once) == once
    assert once == once.strip() and "  " not in once


def test_keywords_stored_trimmed_and_collapsed() -> None:
    cfg = parse({**MINIMAL, "number": [number(keyword=[{"keyword": "  Price \t List "}])]})
    assert cfg.numbers[0].keywords[0].keyword == "Price List"


def test_keyword_clash_after_case_folding_and_spaces() -> None:
    kws = [{"keyword": "price list"}, {"keyword": "PRICE   LIST"}]
    with pytest.raises(ConfigError) as err:
        parse({**MINIMAL, "number": [number(keyword=kws)]})
    assert err.value.path == "number[0].keyword[1].keyword"
    assert "number[0].keyword[0].keyword" in err.value.expected


def test_same_keyword_on_two_numbers_is_fine() -> None:
    cfg = parse(
        {
            **MINIMAL,
            "number": [
                number(keyword=[{"keyword": "HI"}]),
                number(vmn="5551000101", keyword=[{"keyword": "HI"}]),
            ],
        }
    )
    assert len(cfg.numbers) == 2


# --------------------------------------------------------------------------- values


def test_timestamps_are_utc() -> None:
    kws = [
        {"keyword": "A", "starts": "2025-01-01T10:00:00", "expires": "2025-01-01T14:00:00+02:00"},
        {"keyword": "B", "expires": datetime(2025, 1, 1, 12, tzinfo=timezone(timedelta(hours=-5)))},
        {"keyword": "C", "expires": "2025-01-01T00:00:00Z"},
    ]
    k = parse({**MINIMAL, "number": [number(keyword=kws)]}).numbers[0].keywords
    assert k[0].starts == datetime(2025, 1, 1, 10, tzinfo=UTC)
    assert k[0].expires == datetime(2025, 1, 1, 12, tzinfo=UTC)
    assert k[0].expires is not None and k[0].expires.tzinfo is UTC
    assert k[1].expires == datetime(2025, 1, 1, 17, tzinfo=UTC)
    assert k[2].expires == datetime(2025, 1, 1, tzinfo=UTC)
    assert k[0].in_window(datetime(2025, 1, 1, 10, tzinfo=UTC))
    assert not k[0].in_window(datetime(2025, 1, 1, 9, 59, tzinfo=UTC))


def test_render_template() -> None:
    values = {"from": "15550001111", "vmn": "55510", "args": "{x}"}
    assert render_template("Hi {from} on {vmn}: {args} {text}", values) == (
        "Hi 15550001111 on 55510: {x} "
    )
    assert render_template("{{literal}}", {}) == "{literal}"


def test_models_are_frozen_and_hashable() -> None:
    cfg = parse({**MINIMAL, "callback_profiles": {"c": {"url": "http://h", "headers": {"A": "b"}}}})
    with pytest.raises(ValidationError):
        cfg.gateway.name = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        cfg.callback_profiles["x"] = cfg.callback_profiles["c"]  # type: ignore[index]
    assert isinstance(cfg.smsc, tuple)
    assert hash(cfg) == hash(parse({**MINIMAL, "callback_profiles": {"c": {
        "url": "http://h", "headers": {"A": "b"}}}}))  # fmt: skip


def test_construct_by_attribute_name() -> None:
    smtp = SmtpConfig(host="mail", from_="gw@example.com")
    assert smtp.from_ == "gw@example.com"


def test_toml_must_use_contract_key_names() -> None:
    # `numbers` is the attribute, `number` the TOML key: the attribute name is a typo there.
    with pytest.raises(ConfigError) as err:
        parse({**MINIMAL, "numbers": [number()]})
    assert str(err.value) == "mem.toml: numbers: unknown key (did you mean number?)"


def test_missing_file() -> None:
    with pytest.raises(ConfigError) as err:
        load_config("/nonexistent/gateway.toml")
    assert str(err.value).startswith("/nonexistent/gateway.toml: cannot read file")


def test_summary() -> None:
    cfg = load_config(EXAMPLE, env=EXAMPLE_ENV)
    text = summary(cfg, now=datetime(2025, 1, 1, tzinfo=UTC))
    assert "local-sim 127.0.0.1:2775 system_id=test window=10" in text
    assert "  HELLO (+2 aliases, first_word): webhook, reply" in text
    assert "<default>: webhook, reply" in text
    assert "SUMMER (first_word): reply [expired 2020-09-01T00:00:00+00:00]" in text
    assert "poll(colour)" in text
    assert "2 numbers, 7 keywords, 2 aliases" in text


# --------------------------------------------------------------------------- invalid files

# file -> (key path, substring of the one-line message after the path)
INVALID_CASES: dict[str, tuple[str, str]] = {
    "vmn_seven_digits": (
        "number[0].vmn",
        'expected 10 digits (long code) or 5-6 digits (short code) (got "5551234")',
    ),
    "vmn_integer": ("number[0].vmn", "expected a string of digits"),
    "duplicate_vmn": ("number[1].vmn", 'duplicate VMN "5551000100" (also number[0].vmn)'),
    "alias_clash": (
        "number[0].keyword[2].aliases[1]",
        '"INFO" clashes with number[0].keyword[0].keyword',
    ),
    "keyword_too_long": ("number[0].keyword[0].keyword", "expected 1-30 characters"),
    "bad_expires": ("number[2].keyword[0].expires", "not an ISO-8601 date-time"),
    "expires_time_only": ("number[0].keyword[0].expires", "not an ISO-8601 date-time"),
    "starts_after_expires": ("number[0].keyword[0].expires", "must be later than starts"),
    "unknown_key": ("smsc[0].pasword", "unknown key (did you mean password?)"),
    "misspelt_key": ("smsc[0].sytem_id", "unknown key (did you mean system_id?)"),
    "trigger_url": ("number[0].default.trigger_url", "unknown key (did you mean webhook?)"),
    "keyword_is_help_word": (
        "number[0].keyword[0].keyword",
        '"INFO" is an opt word (optout.help_keywords[1]), which is matched first',
    ),
    "missing_default": (
        "number[0].default",
        "missing (exactly one default configuration per VMN)",
    ),
    "unknown_callback_profile": (
        "number[0].keyword[0].callback_profile",
        'unknown callback profile "crn" (defined: crm)',
    ),
    "webhook_not_url": ("number[0].default.webhook", "expected an http:// or https:// URL"),
    "webhook_and_profile": (
        "number[0].default.callback_profile",
        "give either webhook or callback_profile, not both",
    ),
    "unrouted_maybe": ("gateway.unrouted", 'expected "accept" or "reject" (got "maybe")'),
    "window_zero": ("smsc[0].window", "expected a value >= 1 (got 0)"),
    "reconnect_max_below_min": ("smsc[0].reconnect_max", "must be >= reconnect_min (30)"),
    "password_env_missing": (
        "smsc[0].password_env",
        "environment variable SMSC_PASSWORD is not set",
    ),
    "password_and_password_env": (
        "smsc[0].password_env",
        "give either password or password_env, not both",
    ),
    "password_too_long": ("smsc[0].password", "expected at most 8 characters"),
    "duplicate_smsc_name": ("smsc[1].name", 'duplicate name "sim" (also smsc[0].name)'),
    "no_smsc": ("smsc", "missing (at least one [[smsc]] entry)"),
    "unknown_placeholder": (
        "number[0].keyword[1].reply",
        "unknown placeholder {foo} (expected one of {from}, {vmn}, {keyword}, {text}, {args})",
    ),
    "optout_reply_placeholder": ("optout.stop_reply", "unknown placeholder {name}"),
    "invalid_toml": ("", "line 3 column 11: invalid TOML ("),
    "poll_one_option": (
        "number[0].keyword[0].poll.options",
        "a poll needs at least 2 options (got 1)",
    ),
    "forward_email_without_smtp": (
        "number[0].default.forward_email",
        "needs an [smtp] section",
    ),
    "country_code_integer": ("gateway.country_code", "expected a string of 1-3 digits"),
    "optin_and_optout": ("number[0].keyword[0].opt_out", "opt_in and opt_out cannot both be"),
    "optout_word_in_two_lists": (
        "number[0].optout.start_keywords[1]",
        '"STOP" is also in optout.stop_keywords[0]',
    ),
    "default_with_aliases": (
        "number[0].default.aliases",
        "not allowed in the default configuration",
    ),
    "forward_sms_bad_number": ("number[0].default.forward_sms[0]", "expected a phone number"),
}


def test_every_invalid_file_has_a_case() -> None:
    files = {p.stem for p in INVALID.glob("*.toml")}
    assert files == set(INVALID_CASES)
    assert len(files) >= 12


@pytest.mark.parametrize("name", sorted(INVALID_CASES))
def test_invalid_config(name: str) -> None:
    path, expected = INVALID_CASES[name]
    file = INVALID / f"{name}.toml"
    with pytest.raises(ConfigError) as err:
        load_config(file, env={})
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{file}: ")
    assert err.value.file == str(file)
    assert err.value.path == path
    prefix = f"{file}: {path}: " if path else f"{file}: "
    assert message.startswith(prefix + err.value.expected)
    assert expected in err.value.expected, message


# --------------------------------------------------------------------------- misspelt keys

SMSC = {"name": "sim", "system_id": "test"}

# (data, key path, the one-line message after the path)
UNKNOWN_KEY_CASES = [
    pytest.param({"smsc": [{"name": "sim", "sytem_id": "test"}]},
                 "smsc[0].sytem_id", "unknown key (did you mean system_id?)",
                 id="misspelt-before-missing"),
    pytest.param({"smsc": [{**SMSC, "Port": 2775}]},
                 "smsc[0].Port", "unknown key (did you mean port?)", id="case"),
    pytest.param({**MINIMAL, "gateway": {"admin_lisen": "127.0.0.1:9108"}},
                 "gateway.admin_lisen", "unknown key (did you mean admin_listen?)",
                 id="gateway"),
    pytest.param({**MINIMAL, "number": [number(default={"trigger_url": "http://h/x"})]},
                 "number[0].default.trigger_url", "unknown key (did you mean webhook?)",
                 id="trigger_url"),
    pytest.param({**MINIMAL, "number": [number(keyword=[
                     {"keyword": "SALE", "expires": "2025-01-01", "expiry_message": "over"}])]},
                 "number[0].keyword[0].expiry_message",
                 "unknown key (did you mean expiry_reply?)", id="expiry_message"),
    pytest.param({**MINIMAL, "number": [number(keyword=[{"keyword": "V", "poll": {
                     "name": "p", "options": ["A", "B"], "invalid_replly": "no"}}])]},
                 "number[0].keyword[0].poll.invalid_replly",
                 "unknown key (did you mean invalid_reply?)", id="nested-poll"),
    pytest.param({**MINIMAL, "number": [number(optout={"stop_keyword": ["X"]})]},
                 "number[0].optout.stop_keyword", "unknown key (did you mean stop_keywords?)",
                 id="number-optout"),
    pytest.param({**MINIMAL, "callback_profiles": {"crm": {"url": "http://h", "secet": "s"}}},
                 "callback_profiles.crm.secet", "unknown key (did you mean secret?)",
                 id="callback-profile"),
    pytest.param({**MINIMAL, "wibble": 1}, "wibble", "unknown key", id="no-suggestion"),
]


@pytest.mark.parametrize(("data", "path", "message"), UNKNOWN_KEY_CASES)
def test_unknown_key_is_named_with_a_suggestion(data: dict[str, Any], path: str,
                                                message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse(data)
    assert (err.value.path, err.value.expected) == (path, message)


# --------------------------------------------------------------------------- date-only

# (starts, expires) as written -> (starts, expires) read
DATE_ONLY_CASES = [
    pytest.param(None, "2025-12-31", None,
                 datetime(2025, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), id="expires-string"),
    pytest.param(None, date(2025, 12, 31), None,
                 datetime(2025, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), id="expires-toml-date"),
    pytest.param("2025-12-01", "2025-12-01", datetime(2025, 12, 1, tzinfo=UTC),
                 datetime(2025, 12, 1, 23, 59, 59, 999999, tzinfo=UTC), id="one-day"),
    pytest.param(date(2025, 12, 1), "2025-12-02T12:00:00Z", datetime(2025, 12, 1, tzinfo=UTC),
                 datetime(2025, 12, 2, 12, tzinfo=UTC), id="starts-toml-date"),
]


@pytest.mark.parametrize(("starts", "expires", "read_starts", "read_expires"), DATE_ONLY_CASES)
def test_date_only_is_a_whole_day_in_utc(starts: Any, expires: Any, read_starts: Any,
                                         read_expires: datetime) -> None:
    keyword: dict[str, Any] = {"keyword": "SALE", "expires": expires}
    if starts is not None:
        keyword["starts"] = starts
    k = parse({**MINIMAL, "number": [number(keyword=[keyword])]}).numbers[0].keywords[0]
    assert (k.starts, k.expires) == (read_starts, read_expires)
    assert k.in_window(read_expires - timedelta(microseconds=1))
    assert not k.in_window(read_expires)


def test_date_only_from_a_toml_file(tmp_path: Path) -> None:
    cfg = tmp_path / "gw.toml"
    cfg.write_text('[[smsc]]\nname = "sim"\nsystem_id = "test"\n[[number]]\nvmn = "5551000100"\n'
                   '[number.default]\nreply = "a"\n[[number.keyword]]\nkeyword = "SALE"\n'
                   "starts = 2025-12-01\nexpires = 2025-12-31\n")
    k = load_config(cfg, env={}).numbers[0].keywords[0]
    assert k.starts == datetime(2025, 12, 1, tzinfo=UTC)
    assert k.expires == datetime(2025, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)


# --------------------------------------------------------------------------- shadowed keywords

# (number fields, [optout], key path, opt list that shadows it)
SHADOW_CASES = [
    pytest.param({"keyword": [{"keyword": "INFO"}]}, None,
                 "number[0].keyword[0].keyword", "optout.help_keywords[1]", id="help-word"),
    pytest.param({"keyword": [{"keyword": "stop"}]}, None,
                 "number[0].keyword[0].keyword", "optout.stop_keywords[0]", id="stop-any-case"),
    pytest.param({"keyword": [{"keyword": "JOIN"}, {"keyword": "OK", "aliases": ["Yes"]}]},
                 None, "number[0].keyword[1].aliases[0]", "optout.start_keywords[1]",
                 id="alias"),
    pytest.param({"keyword": [{"keyword": "ARRET"}]}, {"stop_keywords": ["ARRET"]},
                 "number[0].keyword[0].keyword", "optout.stop_keywords[0]",
                 id="global-list-changed"),
    pytest.param({"keyword": [{"keyword": "AIDE"}], "optout": {"help_keywords": ["AIDE"]}},
                 None, "number[0].keyword[0].keyword", "number[0].optout.help_keywords[0]",
                 id="number-override"),
]


@pytest.mark.parametrize(("fields", "optout", "path", "shadow"), SHADOW_CASES)
def test_keyword_shadowed_by_an_opt_word(fields: dict[str, Any], optout: dict[str, Any] | None,
                                         path: str, shadow: str) -> None:
    data: dict[str, Any] = {**MINIMAL, "number": [number(**fields)]}
    if optout is not None:
        data["optout"] = optout
    with pytest.raises(ConfigError) as err:
        parse(data)
    assert err.value.path == path
    assert f"is an opt word ({shadow}), which is matched first" in err.value.expected


@pytest.mark.parametrize("fields", [
    pytest.param({"keyword": [{"keyword": "INFO"}], "optout": {"help_keywords": ["HELP"]}},
                 id="overridden-away"),
    pytest.param({"keyword": [{"keyword": "STOP ALL"}, {"keyword": "INFO ME"}]},
                 id="several-words"),
])
def test_keyword_not_shadowed(fields: dict[str, Any]) -> None:
    assert parse({**MINIMAL, "number": [number(**fields)]}).numbers[0].keywords


# --------------------------------------------------------------------------- check and run

def vmn_gateway(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The real command, as an operator runs it."""
    return subprocess.run([sys.executable, "-m", "gateway", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


@pytest.fixture
def held_port() -> Iterator[int]:
    """A port some other process listens on (this test holds it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def write_config(path: Path, *, database: Path, admin_port: int | None = None,
                 extra: str = "") -> Path:
    admin = f'admin_listen = "127.0.0.1:{admin_port}"\n' if admin_port else ""
    # Nothing listens on port 9 (discard): `run` never gets as far as a bind.
    path.write_text(f'[gateway]\ndatabase = "sqlite+aiosqlite:///{database}"\n{admin}'
                    f'[[smsc]]\nname = "sim"\nsystem_id = "test"\nport = 9\n{extra}')
    return path


def one_line(res: subprocess.CompletedProcess[str]) -> str:
    out = (res.stdout + res.stderr).strip()
    assert "Traceback" not in out, out
    assert len(out.splitlines()) == 1, out
    return out


def test_check_names_a_misspelt_key(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "gw.toml", database=tmp_path / "gw.db",
                       extra='[[number]]\nvmn = "5551000100"\n[number.default]\n'
                             'trigger_url = "http://127.0.0.1/x"\n')
    res = vmn_gateway("check", "-c", str(cfg))
    assert res.returncode == 1
    assert one_line(res) == (f"error: {cfg}: number[0].default.trigger_url: unknown key "
                             "(did you mean webhook?)")


def test_check_rejects_a_shadowed_keyword(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "gw.toml", database=tmp_path / "gw.db",
                       extra='[[number]]\nvmn = "5551000100"\n[number.default]\nreply = "a"\n'
                             '[[number.keyword]]\nkeyword = "STOP"\nreply = "b"\n')
    res = vmn_gateway("check", "-c", str(cfg))
    assert res.returncode == 1
    assert one_line(res).startswith(
        f'error: {cfg}: number[0].keyword[0].keyword: "STOP" is an opt word '
        "(optout.stop_keywords[0]), which is matched first")


def test_check_missing_database_directory(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dir"
    cfg = write_config(tmp_path / "gw.toml", database=missing / "gw.db")
    res = vmn_gateway("check", "-c", str(cfg))
    assert res.returncode == 1
    assert one_line(res) == (f"error: {cfg}: gateway.database: database directory {missing} "
                             "does not exist (create it or change the path)")
    assert not missing.exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_check_read_only_database_directory(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    cfg = write_config(tmp_path / "gw.toml", database=ro / "gw.db")
    res = vmn_gateway("check", "-c", str(cfg))
    assert res.returncode == 1
    assert f"database directory {ro} is not writable" in one_line(res)


def test_check_warns_of_an_address_in_use(tmp_path: Path, held_port: int) -> None:
    # Beside the gateway's own running daemon the port is taken too: a warning, and the
    # file still passes (ExecReload runs check before it signals).
    cfg = write_config(tmp_path / "gw.toml", database=tmp_path / "gw.db",
                       admin_port=held_port)
    res = vmn_gateway("check", "-c", str(cfg))
    assert res.returncode == 0, res.stderr
    assert res.stderr.strip() == (
        f"warning: {cfg}: gateway.admin_listen: 127.0.0.1:{held_port} is already in use "
        "by another process (expected if this gateway is running; a second `run` would "
        "not start)")
    assert "configuration:" in res.stdout


def test_run_refuses_an_address_in_use(tmp_path: Path, held_port: int) -> None:
    cfg = write_config(tmp_path / "gw.toml", database=tmp_path / "gw.db",
                       admin_port=held_port)
    res = vmn_gateway("run", "-c", str(cfg))
    assert res.returncode != 0
    assert one_line(res) == (f"error: {cfg}: gateway.admin_listen: 127.0.0.1:{held_port} "
                             "is already in use by another process")


def test_run_refuses_a_missing_database_directory(tmp_path: Path, held_port: int) -> None:
    missing = tmp_path / "no-such-dir"
    cfg = write_config(tmp_path / "gw.toml", database=missing / "gw.db", admin_port=held_port)
    res = vmn_gateway("run", "-c", str(cfg))
    assert res.returncode != 0
    assert one_line(res) == (f"error: {cfg}: gateway.database: database directory {missing} "
                             "does not exist (create it or change the path)")
