"""`[api]` in the configuration: off when absent, loopback in the example, errors with
key paths, the callback secret from the environment and never shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import ConfigError, load_config, parse_config, summary

EXAMPLE = Path(__file__).resolve().parent.parent / "config" / "gateway.example.toml"
ENV = {"MQTT_PASSWORD": "m", "SMTP_PASSWORD": "s", "CRM_WEBHOOK_SECRET": "c"}
MINIMAL = {"smsc": [{"name": "sim", "system_id": "test"}]}


def test_example_has_the_api_on_loopback() -> None:
    cfg = load_config(EXAMPLE, env=ENV)
    assert cfg.api is not None
    assert cfg.api.listen.startswith("127.0.0.1:")
    assert cfg.api.max_body == 65536


def test_absent_means_off() -> None:
    assert parse_config(MINIMAL, file="m.toml", env={}).api is None


def test_callback_secret_from_env_not_in_summary() -> None:
    cfg = parse_config({**MINIMAL, "api": {"listen": "127.0.0.1:8080",
                                           "callback_secret_env": "CB"}},
                       file="m.toml", env={"CB": "topsecret-81"})
    assert cfg.api is not None and cfg.api.callback_secret_value() == "topsecret-81"
    text = summary(cfg)
    assert "http api: listen 127.0.0.1:8080" in text and "signed" in text
    assert "topsecret-81" not in text and "topsecret-81" not in repr(cfg)


@pytest.mark.parametrize(("api", "path", "words"), [
    ({}, "api.listen", "missing"),
    ({"listen": "nowhere"}, "api.listen", "host:port"),
    ({"listen": "127.0.0.1:8080", "max_body": 10}, "api.max_body", ">= 1024"),
    ({"listen": "127.0.0.1:8080", "colour": 1}, "api.colour", "unknown key"),
    ({"listen": "127.0.0.1:8080", "callback_secret": "a", "callback_secret_env": "B"},
     "api.callback_secret_env", "not both"),
])
def test_errors_name_the_key(api: dict[str, object], path: str, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({**MINIMAL, "api": api}, file="m.toml", env={"B": "x"})
    assert err.value.path == path
    assert words in err.value.expected
