"""Source TON/NPI per number (issue 10 point 5, issue 16 point 2): automatic by the kind
of sender, `[[smsc]]` over automatic, `[[number]]` over both; checked in the table and
at the simulator, which records each submit_sm's source_addr_ton/npi/source_addr."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from conftest import Gateway, gateway_config, wait_for
from simctl import Simulator

from gateway.addressing import SourceAddress, source_address
from gateway.config import ConfigError, NumberConfig, SmscConfig, parse_config

LONG, SHORT, ALNUM_VMN, OVERRIDE = "5551000100", "55123", "5551000300", "5551000400"
MINIMAL: dict[str, Any] = {"smsc": [{"name": "sim", "system_id": "test"}]}


def smsc(**keys: int) -> SmscConfig:
    return SmscConfig(name="s", system_id="x", **keys)  # type: ignore[arg-type]


def number(vmn: str = LONG, **keys: Any) -> NumberConfig:
    return NumberConfig.model_validate({"vmn": vmn, "default": {}, **keys})


@pytest.mark.parametrize(("sender", "cc", "want"), [
    ("4155550100", "1", (1, 1, "14155550100")),  # a national long code: with its country
    ("7700900123", "44", (1, 1, "447700900123")),
    ("14155550100", "1", (1, 1, "14155550100")),  # already international
    ("+447700900123", "1", (1, 1, "447700900123")),
    ("55123", "1", (3, 0, "55123")),  # short codes: network specific, as is
    ("123456", "44", (3, 0, "123456")),
    ("ACMEBANK", "1", (5, 0, "ACMEBANK")),  # alphanumeric
    ("Shop 24", "1", (5, 0, "Shop 24")),
])
def test_automatic_by_kind_of_sender(sender: str, cc: str, want: tuple[int, int, str]) -> None:
    assert source_address(sender, smsc(), None, cc) == SourceAddress(*want)


@pytest.mark.parametrize(("smsc_keys", "number_keys", "want"), [
    ({}, {}, (1, 1, "15551000100")),
    ({"source_ton": 0, "source_npi": 0}, {}, (0, 0, "5551000100")),  # smsc over automatic
    ({"source_ton": 0, "source_npi": 0}, {"source_ton": 2, "source_npi": 1},
     (2, 1, "5551000100")),  # number over smsc
    ({"source_npi": 9}, {"source_ton": 1}, (1, 9, "15551000100")),  # each key on its own
    ({"source_ton": 2}, {"source_ton": 1}, (1, 1, "15551000100")),  # TON 1: with country
])
def test_precedence_number_over_smsc_over_automatic(
        smsc_keys: dict[str, int], number_keys: dict[str, int],
        want: tuple[int, int, str]) -> None:
    assert source_address(LONG, smsc(**smsc_keys), number(**number_keys), "1") == \
        SourceAddress(*want)


@pytest.mark.parametrize(("keys", "error"), [
    ({"sender_id": "ACME", "source_ton": 1}, 'alphanumeric sender_id "ACME" goes out only as 5'),
    ({"source_ton": 5}, '5 (alphanumeric) is for a sender_id with letters; "5551000100"'),
    ({"source_npi": 256}, "source_npi"),
])
def test_number_source_ton_is_checked(keys: dict[str, Any], error: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({**MINIMAL, "number": [{"vmn": LONG, "default": {}, **keys}]},
                     file="mem.toml", env={})
    assert err.value.path.startswith("number[0].source_")
    assert error in str(err.value)


NUMBERS = f"""
[[number]]
vmn = "{LONG}"
[number.default]

[[number]]
vmn = "{SHORT}"
[number.default]

[[number]]
vmn = "{ALNUM_VMN}"
sender_id = "ACMEBANK"
[number.default]

[[number]]
vmn = "{OVERRIDE}"
source_ton = 2
source_npi = 1
[number.default]
"""


def submitted_sources(gw: Gateway, sim: Simulator) -> dict[str, tuple[int, int, str]]:
    for n, sender in enumerate((LONG, SHORT, "ACMEBANK", OVERRIDE)):
        gw.send(sender, f"1555000000{n}", f"from {sender}")
    subs = sim.wait_submits(4)
    return {s["text"].removeprefix("from "): (
        s["source_addr_ton"], s["source_addr_npi"], s["source_addr"]) for s in subs}


def test_each_kind_of_number_at_the_smsc(sim: Simulator, sqlite_url: str,
                                         make_gateway: Callable[..., Gateway]) -> None:
    gw = make_gateway(gateway_config(db=sqlite_url, sim=sim, numbers=NUMBERS))
    sim.wait_bound(timeout=20)
    assert submitted_sources(gw, sim) == {
        LONG: (1, 1, "1" + LONG),  # international with the country code
        SHORT: (3, 0, SHORT),  # network specific
        "ACMEBANK": (5, 0, "ACMEBANK"),  # alphanumeric
        OVERRIDE: (2, 1, OVERRIDE),  # the number's own: national, as is
    }


def test_smsc_source_ton_over_automatic_number_over_both(
        sim: Simulator, sqlite_url: str, make_gateway: Callable[..., Gateway]) -> None:
    gw = make_gateway(gateway_config(db=sqlite_url, sim=sim, numbers=NUMBERS,
                                     source_ton=0, source_npi=0))
    sim.wait_bound(timeout=20)
    got = submitted_sources(gw, sim)
    assert got == {LONG: (0, 0, LONG), SHORT: (0, 0, SHORT), "ACMEBANK": (0, 0, "ACMEBANK"),
                   OVERRIDE: (2, 1, OVERRIDE)}
    wait_for(lambda: sum(r["status"] == "submitted" for r in gw.logs()) == 4,
             what="4 MTs submitted")
