"""The action registry (gateway/actions/registry.py): every kind has its module, the
stored job kinds are the ones the database always had, steps run in the order fan-out
always used, each special route has one kind, and the runners follow the config."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest

from gateway.actions import registry
from gateway.actions.emitter import Emitter
from gateway.actions.kind import Runtime
from gateway.actions.mqtt_events import MQTT_ATTEMPTS
from gateway.config import ActionConfig, Config, parse_config
from gateway.model import ActionKind, JobKind
from gateway.routing.router import Route

BASE = """
[gateway]
name = "t"
max_attempts = 5
[[smsc]]
name = "s"
host = "127.0.0.1"
port = 2775
system_id = "x"
password = "y"
[callback_profiles.crm]
url = "http://127.0.0.1:9/crm"
max_attempts = 3
[[number]]
vmn = "5551000100"
[number.default]
webhook = "http://127.0.0.1:9/hook"
"""
SMTP = '\n[smtp]\nhost = "127.0.0.1"\nport = 2525\nfrom = "g@example.com"\n'


def _cfg(extra: str = "") -> Config:
    return parse_config(tomllib.loads(BASE + extra), file="t.toml", env={})


def test_every_kind_has_its_module_and_the_stored_job_kinds_are_unchanged() -> None:
    assert set(registry.BY_KIND) == set(ActionKind)
    assert [k.value for k in JobKind] == ["webhook", "email", "mqtt"]
    assert set(registry.JOBS) == {"webhook", "email", "mqtt"}
    assert set(registry.ORDERED_JOBS) == {"mqtt"}  # one worker per topic: in order


def test_steps_run_in_fan_outs_order_and_each_route_has_one_kind() -> None:
    order = [k.kind for k in registry.KINDS if k.step is not None]
    assert order == [ActionKind.OPT_OUT, ActionKind.OPT_IN, ActionKind.POLL, ActionKind.LEAD,
                     ActionKind.REPLY, ActionKind.FORWARD_SMS, ActionKind.FORWARD_EMAIL]
    assert set(registry.ROUTES) == {Route.OPTOUT, Route.OPTIN, Route.HELP, Route.EXPIRED}


@pytest.mark.parametrize(("fields", "names", "words"), [
    ({}, (), []),
    ({"webhook": "http://h/x", "reply": "hi", "lead": True},
     ("webhook", "reply", "lead"), ["webhook", "reply", "lead"]),
    ({"callback_profile": "crm", "forward_sms": ["15550001111", "15550002222"]},
     ("webhook", "forward_sms"), ["webhook(crm)", "forward_sms(2)"]),
    ({"forward_email": ["a@example.com"], "opt_out": True,
      "poll": {"name": "color", "options": ["RED", "BLUE"]}},
     ("forward_email", "opt_out", "poll"), ["forward_email(1)", "opt_out", "poll(color)"]),
])
def test_the_kinds_a_configuration_enables(fields: dict[str, Any], names: tuple[str, ...],
                                           words: list[str]) -> None:
    action = ActionConfig.model_validate(fields)
    assert action.action_names() == names
    assert registry.describe(action) == words
    for name in names:
        assert set(registry.BY_KIND[ActionKind(name)].fields) & set(fields)


def test_the_runners_follow_the_configuration() -> None:
    cfg = _cfg()
    assert list(registry.runners(cfg, Runtime(lambda: cfg))) == ["webhook"]
    cfg = _cfg(SMTP)
    assert list(registry.runners(cfg, Runtime(lambda: cfg))) == ["webhook", "email"]
    # MQTT needs its link (built by the daemon or the worker), not only [mqtt]
    assert "mqtt" not in registry.runners(cfg, Runtime(lambda: cfg, mqtt_link=None))


def test_attempts_per_job_kind() -> None:
    e = Emitter(max_attempts=5, profile_attempts={"crm": 3}, callback_attempts=7)
    assert e.attempts_for("mqtt", "p/mo/5551000100") == MQTT_ATTEMPTS
    assert e.attempts_for("webhook", "http://h/x") == 5
    assert e.attempts_for("webhook", "profile:crm") == 3
    assert e.attempts_for("webhook", "profile:other") == 5
    assert e.attempts_for("webhook", "callback:http://h/cb") == 7
    assert e.attempts_for("email", "a@example.com") == 5
