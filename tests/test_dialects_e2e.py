"""Carrier dialects (issue 16) end to end: the daemon against the simulator configured
as each dialect (sim/smsc.js `default_alphabet`, `message_id_format`,
`receipt_id_format`, `no_response_next`, `unbind_resp_delay_ms`), on the run's
database (`db_url`: SQLite, or PostgreSQL with VMN_TEST_DB=postgres)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from conftest import Gateway, gateway_config, wait_for
from simctl import Simulator

VMN = "5551000100"
REPLYING = f"""
[[number]]
vmn = "{VMN}"
[number.default]
reply = "Thanks"
"""


def start(make_gateway: Callable[..., Gateway], sim: Simulator, db_url: str,
          smsc_extra: str = "", numbers: str = "", **smsc: float) -> Gateway:
    gw = make_gateway(gateway_config(db=db_url, sim=sim, smsc_extra=smsc_extra,
                                     numbers=numbers, **smsc))
    sim.wait_bound(timeout=20)
    return gw


def mt_to(gw: Gateway, to: str) -> dict[str, object]:
    return next(r for r in gw.logs() if r["direction"] == "mt" and r["to"] == to)


# --------------------------------------------------------------------- point 1

def test_replies_follow_the_mo_and_skip_alphanumeric_senders(
        sim: Simulator, db_url: str, make_gateway: Callable[..., Gateway]) -> None:
    gw = start(make_gateway, sim, db_url, numbers=REPLYING)
    for source, ton, npi in [("4155550704", 0, 1), ("+14155550705", 1, 1),
                             ("55123", 3, 0), ("ACMEBANK", 5, 0), ("24680", 5, 0)]:
        sim.mo(source=source, source_ton=ton, source_npi=npi, destination=VMN, text="hi")
    # An alphanumeric sender in digits only, in a long (two-part) MO.
    sim.mo(source="13579", source_ton=5, source_npi=0, destination=VMN, text="y" * 200,
           mode="udh8")
    subs = sim.wait_submits(3, timeout=30)
    got = sorted((s["destination_addr"], s["dest_addr_ton"], s["dest_addr_npi"])
                 for s in subs)
    assert got == [("14155550704", 1, 1), ("14155550705", 1, 1), ("55123", 3, 0)]

    def skipped() -> list[dict[str, object]]:
        return [r for r in gw.logs() if r["direction"] == "mt" and r["status"] == "skipped"]

    rows = wait_for(lambda: (lambda r: r if len(r) == 3 else None)(skipped()),
                    what="the skipped replies")
    assert sorted(str(r["to"]) for r in rows) == ["13579", "24680", "ACMEBANK"]
    assert all("alphanumeric sender ID (TON 5)" in str(r["error"]) for r in rows)
    assert len(gw.log_events("mt.skipped")) == 3
    # Nothing else went out meanwhile: the next MT is the fourth submit_sm.
    gw.send(VMN, "15550001234", "after")
    assert [s["destination_addr"] for s in sim.wait_submits(4, timeout=30)][3:] == [
        "15550001234"]


# --------------------------------------------------------------------- point 3

@pytest.mark.parametrize(("alphabet", "text"), [
    ("gsm", "@ {x} é ü"),
    ("ascii", "@ {x} [y] ~ `q`"),
    ("latin1", "café {x} @ ñ ¿"),
])
def test_default_alphabet_both_ways(alphabet: str, text: str, sim: Simulator, db_url: str,
                                    make_gateway: Callable[..., Gateway]) -> None:
    sim.configure(default_alphabet=alphabet)
    gw = start(make_gateway, sim, db_url, smsc_extra=f'default_alphabet = "{alphabet}"')
    assert sim.mo(source="15550002222", destination=VMN, text=text,
                  encoding="default")["statuses"] == [0]
    mo = wait_for(lambda: gw.mos(), what="the MO")[0]
    assert mo["text"] == text
    gw.send(VMN, "15550002222", text)
    sub = sim.wait_submits(1, timeout=30)[0]
    assert (sub["data_coding"], sub["text"]) == (0, text)


# --------------------------------------------------------------------- point 4

@pytest.mark.parametrize(("resp", "receipt", "form"), [
    ("hex", "decimal", "hex"),
    ("decimal", "hex", "decimal"),
    ("hex", "decimal", "auto"),
    ("decimal", "hex", "auto"),
])
def test_receipts_match_across_bases(resp: str, receipt: str, form: str, sim: Simulator,
                                     db_url: str, make_gateway: Callable[..., Gateway]) -> None:
    sim.configure(message_id_format=resp, receipt_id_format=receipt)
    gw = start(make_gateway, sim, db_url, smsc_extra=f'message_id = "{form}"')
    mt_id = gw.send(VMN, "15550003333", "receipted")
    sub = sim.wait_submits(1, timeout=30)[0]
    wait_for(lambda: mt_to(gw, "15550003333")["status"] == "submitted", what="submitted")
    sent = sim.receipt(message_id=sub["message_id"], stat="DELIVRD")
    assert sent["status"] == 0 and sent["message_id"] != sub["message_id"]  # other base
    wait_for(lambda: mt_to(gw, "15550003333")["status"] == "delivered", what="delivered")
    assert mt_to(gw, "15550003333")["id"] == mt_id


def test_an_empty_message_id_is_a_warning_and_a_receipt_less_mt(
        sim: Simulator, db_url: str, make_gateway: Callable[..., Gateway]) -> None:
    sim.configure(message_id_format="empty")
    gw = start(make_gateway, sim, db_url)
    gw.send(VMN, "15550004444", "no id")
    mt = wait_for(lambda: (lambda r: r if r["status"] == "submitted" else None)(
        mt_to(gw, "15550004444")), what="submitted")
    assert str(mt["error"]).startswith("receipt-less")
    warning = wait_for(lambda: gw.log_events("mt.no_message_id"), what="the warning")[0]
    assert warning["level"] == "warning"


# --------------------------------------------------------------------- point 5

@pytest.mark.parametrize("resend", [False, True])
def test_an_unanswered_submit_sm(resend: bool, sim: Simulator, db_url: str,
                                 make_gateway: Callable[..., Gateway]) -> None:
    sim.configure(no_response_next=1)
    gw = start(make_gateway, sim, db_url, response_timeout=1,
               smsc_extra=f"resend_unanswered = {str(resend).lower()}")
    gw.send(VMN, "15550005555", "once?")
    if resend:  # sent again, for a carrier that de-duplicates
        subs = sim.wait_submits(2, timeout=60)
        assert [s["destination_addr"] for s in subs] == ["15550005555"] * 2
        assert [s["answered"] for s in subs] == [False, True]
        wait_for(lambda: mt_to(gw, "15550005555")["status"] == "submitted", what="submitted",
                 timeout=60)
        assert gw.log_events("mt.unanswered")
        return
    mt = wait_for(lambda: (lambda r: r if r["status"] == "unknown" else None)(
        mt_to(gw, "15550005555")), what="unknown", timeout=60)
    assert "not sent again" in str(mt["error"])
    assert gw.log_events("mt.unknown")
    assert "unknown" in gw.cli("logs").stdout
    assert "unknown 1/min" in gw.cli("status", check=False).stdout
    # Whatever was due went out meanwhile: the next MT is the second submit_sm.
    gw.send(VMN, "15550005556", "next")
    subs = sim.wait_submits(2, timeout=30)
    assert [s["destination_addr"] for s in subs] == ["15550005555", "15550005556"]
    wait_for(lambda: mt_to(gw, "15550005556")["status"] == "submitted", what="next one")
    assert len(sim.submits()) == 2


# --------------------------------------------------------------------- point 6

def test_no_enquire_link_after_unbind(sim: Simulator, db_url: str,
                                      make_gateway: Callable[..., Gateway]) -> None:
    sim.configure(unbind_resp_delay_ms=1500)  # the SMSC takes its time to answer unbind
    gw = start(make_gateway, sim, db_url, enquire_link_interval=0.05)
    wait_for(lambda: sim.state()["enquire_links_received"] >= 3, what="keep-alives")
    assert gw.terminate() == 0
    state = sim.state()
    assert state["unbinds_received"] == 1
    assert state["enquire_links_after_unbind"] == 0
