"""End to end: the real daemon in a subprocess, the node-smpp SMSC simulator, SQLite and
PostgreSQL. Each test runs once per database backend."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from conftest import Gateway, gateway_config, wait_for
from peers import http_get
from simctl import ESME_RINVPASWD, ESME_RTHROTTLED, Simulator

from gateway.smpp.text import encode_mt, gsm_decode, ucs2_decode

VMN = "5551000100"
CUSTOMER = "15551234567"

LONG_GSM = "The quick brown fox jumps over the lazy dog {with [braces]} and €uro. " * 5
LONG_UCS2 = "Привет 👋 мир — héllo wörld ✓ 😀 日本語のテキスト 🎉 " * 4


def start(make_gateway: Callable[..., Gateway], sim: Simulator, db_url: str,
          **kw: str) -> Gateway:
    gw = make_gateway(gateway_config(db=db_url, sim=sim, **kw))
    sim.wait_bound(timeout=20)
    return gw


def test_every_kind_of_mo_arrives_whole(sim: Simulator, db_url: str,
                                        make_gateway: Callable[..., Gateway]) -> None:
    gw = start(make_gateway, sim, db_url)
    cases = [
        ("gsm single", dict(text="Hello {world} ~ €5 [ok]", encoding="gsm")),
        ("ucs2 single", dict(text="Привет 😀", encoding="ucs2")),
        ("udh8 in order", dict(text=LONG_GSM, mode="udh8")),
        ("udh8 reversed ucs2", dict(text=LONG_UCS2, encoding="ucs2", mode="udh8",
                                    order="reverse")),
        ("udh16 duplicate", dict(text=LONG_GSM + "16", mode="udh16", order="dup")),
        ("sar reversed dup", dict(text=LONG_UCS2 + "sar", encoding="ucs2", mode="sar",
                                  order="reverse-dup")),
        ("payload", dict(text=LONG_GSM + "payload", mode="payload")),
    ]
    cases = [(name, dict(kw)) for name, kw in cases]
    expected: list[tuple[str, int, int]] = []
    for i, (_name, kw) in enumerate(cases):
        source = f"1555000{i:04d}"
        order = kw.pop("order", None)
        if order is not None:
            n = len(encode_mt(str(kw["text"]), 0).parts)
            seq = list(range(n, 0, -1)) if "reverse" in str(order) else list(range(1, n + 1))
            if "dup" in str(order):
                seq.insert(1, seq[0])
            kw["order"] = seq
        res = sim.mo(source=source, destination=VMN, **kw)
        assert res["statuses"] == [0] * res["sent"], res
        parts = res["parts"]
        assert order is None or parts == n
        dc = 8 if kw.get("encoding") == "ucs2" else 0
        expected.append((source, parts, dc))

    def all_in() -> list[dict[str, object]] | None:
        mos = gw.mos()
        return mos if len(mos) >= len(cases) else None

    mos = wait_for(all_in, what="every MO in the log")
    assert len(mos) == len(cases), mos
    by_source = {m["from"]: m for m in mos}
    for (name, kw), (source, parts, dc) in zip(cases, expected, strict=True):
        got = by_source[source]
        assert got["text"] == kw["text"], name
        assert got["segments"] == parts, name
        assert got["data_coding"] == dc, name
        assert got["vmn"] == VMN and got["smsc"] == "sim" and got["status"] == "received"
        assert got["received_at"].endswith("Z")
    assert sim.state()["deliver_sm_resp"].keys() == {"0"}


def test_send_reaches_the_simulator_split(sim: Simulator, db_url: str,
                                          make_gateway: Callable[..., Gateway]) -> None:
    gw = start(make_gateway, sim, db_url)
    gsm_text = "Line with extension chars {[~]} and € " * 10  # > 160 septets
    ucs_text = "Emoji 😀🎉 straddling parts " * 6
    gw.send(VMN, CUSTOMER, gsm_text)
    gw.send(VMN, "15559876543", ucs_text)
    gw.send(VMN, "15550000001", "short one")
    subs = sim.wait_submits(1 + 3 + 3, timeout=20)  # short + split parts

    def joined(to: str) -> tuple[str, list[dict[str, object]]]:
        parts = [s for s in subs if s["destination_addr"] == to]
        parts.sort(key=lambda s: s["udh"]["seq"] if s.get("udh") else 0)
        raw = b"".join(bytes.fromhex(str(s["body_hex"])) for s in parts)
        dc = parts[0]["data_coding"]
        return (ucs2_decode(raw) if dc == 8 else gsm_decode(raw)), parts

    text, parts = joined(CUSTOMER)
    assert text == gsm_text and all(p["data_coding"] == 0 for p in parts)
    assert len(parts) > 1
    refs = {p["udh"]["ref"] for p in parts}
    assert len(refs) == 1
    assert [p["udh"]["seq"] for p in parts] == list(range(1, len(parts) + 1))
    assert all(p["udh"]["total"] == len(parts) and p["esm_class"] & 0x40 for p in parts)
    for p in parts:
        body = bytes.fromhex(str(p["body_hex"]))
        assert len(body) <= 153 and not body.endswith(b"\x1b")
    text, parts = joined("15559876543")
    assert text == ucs_text and all(p["data_coding"] == 8 for p in parts)
    for p in parts:
        body = bytes.fromhex(str(p["body_hex"]))
        assert len(body) <= 134
        assert not 0xD800 <= int.from_bytes(body[-2:], "big") <= 0xDBFF
    text, parts = joined("15550000001")
    assert text == "short one" and len(parts) == 1 and not parts[0].get("udh")
    assert all(p["source_addr"] == "1" + VMN for p in subs)  # with its country code

    def submitted() -> bool:
        mts = [r for r in gw.logs() if r["direction"] == "mt"]
        return len(mts) == 3 and all(r["status"] == "submitted" for r in mts)

    wait_for(submitted, what="3 MTs submitted")


def test_receipt_updates_mt_and_creates_no_mo(sim: Simulator, db_url: str,
                                              make_gateway: Callable[..., Gateway]) -> None:
    gw = start(make_gateway, sim, db_url)
    first = gw.send(VMN, CUSTOMER, "receipt via TLV")
    second = gw.send(VMN, "15550000002", "receipt via text only")
    third = gw.send(VMN, "15550000003", "undeliverable")
    subs = sim.wait_submits(3)
    ids = {s["destination_addr"]: s["message_id"] for s in subs}

    def status_of(mt_id: str) -> str | None:
        for r in gw.logs():
            if r["id"] == mt_id:
                return str(r["status"])
        return None

    wait_for(lambda: status_of(third) == "submitted", what="MTs submitted")
    assert sim.receipt(message_id=ids[CUSTOMER], source=CUSTOMER, destination=VMN)["status"] == 0
    assert sim.receipt(message_id=ids["15550000002"], via="text", source="15550000002",
                       destination=VMN)["status"] == 0
    assert sim.receipt(message_id=ids["15550000003"], stat="UNDELIV", source="15550000003",
                       destination=VMN)["status"] == 0
    wait_for(lambda: status_of(first) == "delivered", what="first MT delivered")
    wait_for(lambda: status_of(second) == "delivered", what="second MT delivered")
    wait_for(lambda: status_of(third) == "failed", what="third MT failed")
    assert gw.mos() == []
    mt = next(r for r in gw.logs() if r["id"] == first)
    assert mt["smsc_message_id"] == ids[CUSTOMER] and mt["to"] == CUSTOMER
    assert [h["status"] for h in mt["history"]] == ["queued", "submitted", "delivered"]


def test_receipt_before_submit_is_recorded_is_applied_later(
        sim: Simulator, db_url: str, make_gateway: Callable[..., Gateway]) -> None:
    """A receipt can overtake our record of submit_sm_resp: it waits in `receipts`."""
    gw = start(make_gateway, sim, db_url)
    # The simulator numbers message ids sim-1, sim-2...: send the receipt first.
    assert sim.receipt(message_id="sim-1", source=CUSTOMER, destination=VMN)["status"] == 0
    mt_id = gw.send(VMN, CUSTOMER, "overtaken")
    sim.wait_submits(1)
    wait_for(lambda: any(r["id"] == mt_id and r["status"] == "delivered" for r in gw.logs()),
             what="MT delivered by the early receipt")


def test_bind_rejection_is_logged_and_retried(sim: Simulator, db_url: str,
                                              make_gateway: Callable[..., Gateway]) -> None:
    sim.configure(password="other")
    gw = make_gateway(gateway_config(db=db_url, sim=sim))
    wait_for(lambda: len(gw.log_events("smpp.bind_rejected")) >= 3, what="3 rejected binds")
    rejected = gw.log_events("smpp.bind_rejected")
    assert all(e["status"] == "ESME_RINVPASWD" for e in rejected)
    assert all("secret" not in str(e) for e in gw.log_lines())
    delays = [e["delay"] for e in gw.log_events("smpp.reconnect_scheduled")]
    assert len(delays) >= 3 and max(delays) > min(delays)  # the backoff grows
    assert sim.state()["bind_rejected"] >= 3
    assert ESME_RINVPASWD == 0x0E
    sim.configure(password=sim.password)
    sim.wait_bound(timeout=20)
    assert gw.running


def test_dropped_connection_is_rebound(sim: Simulator, db_url: str,
                                       make_gateway: Callable[..., Gateway]) -> None:
    gw = start(make_gateway, sim, db_url)
    assert sim.drop()["dropped"] == 1
    wait_for(lambda: sim.state()["bind_count"] >= 2, what="a second bind")
    sim.wait_bound()
    res = sim.mo(source=CUSTOMER, destination=VMN, text="after the drop")
    assert res["statuses"] == [0]
    wait_for(lambda: [m for m in gw.mos() if m["text"] == "after the drop"], what="MO")
    assert gw.log_events("smpp.connection_lost")


def test_throttling_is_backed_off_and_every_mt_accepted(
        sim: Simulator, db_url: str, make_gateway: Callable[..., Gateway]) -> None:
    gw = start(make_gateway, sim, db_url, smsc_extra="throttle_backoff = 0.1\n")
    sim.configure(throttle_next=6, throttle_status=ESME_RTHROTTLED)
    ids = [gw.send(VMN, f"1555000{i:04d}", f"mt {i}") for i in range(5)]
    accepted = sim.wait_for(lambda: (lambda s: s if len(s) >= 5 else None)(
        sim.submits(accepted_only=True)), timeout=30, message="5 accepted submit_sm")
    assert sorted(s["text"] for s in accepted) == sorted(f"mt {i}" for i in range(5))
    assert len(sim.submits()) >= 5 + 6  # the throttled ones were really refused
    assert gw.log_events("smpp.throttled")
    wait_for(lambda: all(r["status"] == "submitted" for r in gw.logs() if r["id"] in ids)
             and len(gw.logs()) == 5, what="every MT submitted")


def test_sigterm_unbinds_cleanly(sim: Simulator, db_url: str,
                                 make_gateway: Callable[..., Gateway]) -> None:
    gw = start(make_gateway, sim, db_url)
    sim.mo(source=CUSTOMER, destination=VMN, text="before stop")
    assert gw.terminate() == 0
    assert sim.state()["unbinds_received"] == 1
    assert gw.log_events("smpp.unbound") and gw.log_events("daemon.stopped")
    assert [m["text"] for m in gw.mos()] == ["before stop"]


def test_sigkill_mid_burst_loses_nothing(sim: Simulator, db_url: str,
                                        make_gateway: Callable[..., Gateway]) -> None:
    """Every MO the SMSC saw acknowledged is in the database exactly once, after a
    SIGKILL in the middle of the burst and a restart (the SMSC redelivers the rest)."""
    count = 3000
    gw = start(make_gateway, sim, db_url)
    sim.burst(count=count, window=50, source=CUSTOMER, destination=VMN, prefix="burst-",
              redeliver=True)
    sim.wait_for(lambda: len(sim.burst_status()["acked_ok"]) >= 600, timeout=30,
                 message="600 acked")
    gw.kill()
    acked_before_kill = set(sim.burst_status()["acked_ok"])
    assert 0 < len(acked_before_kill) < count
    gw.start()
    status = sim.wait_burst_done(timeout=120)
    acked = status["acked_ok"]
    assert len(set(acked)) == count
    texts = Counter(m["text"] for m in gw.mos())
    missing = [t for t in acked if texts[t] == 0]
    doubled = [t for t, n in texts.items() if n > 1]
    assert not missing, f"{len(missing)} acknowledged MOs lost, e.g. {missing[:5]}"
    assert not doubled, f"{len(doubled)} MOs stored twice, e.g. {doubled[:5]}"
    assert acked_before_kill <= set(texts)
    assert len(texts) == count


def test_the_same_pdu_again_on_a_live_bind_is_a_new_message(
        sim: Simulator, db_url: str, make_gateway: Callable[..., Gateway]) -> None:
    """SPEC §3 step 2: only a redelivery (an answer that may not have reached the SMSC)
    is folded, see tests/test_dedup.py; every copy answered in time is a message."""
    gw = start(make_gateway, sim, db_url)
    for _ in range(3):
        assert sim.mo(source=CUSTOMER, destination=VMN, text="same")["statuses"] == [0]
    n = len(encode_mt(LONG_GSM, 0).parts)
    order = [1, 1, *range(2, n + 1)]  # a part twice before completion: one message
    assert sim.mo(source=CUSTOMER, destination=VMN, text=LONG_GSM, mode="udh8", ref=7,
                  order=order)["statuses"] == [0] * len(order)
    wait_for(lambda: len(gw.mos()) == 4, what="four rows")
    assert sorted(m["text"] for m in gw.mos()) == sorted(["same"] * 3 + [LONG_GSM])


def test_incomplete_mo_is_kept_after_timeout(sim: Simulator, db_url: str,
                                             make_gateway: Callable[..., Gateway]) -> None:
    gw = start(make_gateway, sim, db_url, extra_gateway="reassembly_timeout = 1")
    res = sim.mo(source=CUSTOMER, destination=VMN, text=LONG_GSM, mode="udh8", order=[1, 3])
    assert res["statuses"] == [0, 0] and res["parts"] >= 3
    mos = wait_for(lambda: gw.mos(), what="the incomplete MO")
    assert mos[0]["status"] == "incomplete"
    assert mos[0]["text"].startswith(LONG_GSM[:100])
    missing = gw.log_events("intake.incomplete_mo")[0]["missing"]
    assert missing == [2, *range(4, res["parts"] + 1)]


def test_several_smsc_entries_run_several_binds(db_url: str,
                                                make_gateway: Callable[..., Gateway]) -> None:
    with Simulator.start() as a, Simulator.start() as b:
        smscs = "\n".join(f"""
[[smsc]]
name = "{name}"
host = "127.0.0.1"
port = {s.smpp_port}
system_id = "{s.system_id}"
password = "{s.password}"
reconnect_min = 0.2
""" for name, s in (("alpha", a), ("beta", b)))
        gw = make_gateway(f"""
[gateway]
database = "{db_url}"
mt_poll_interval = 0.1
{smscs}
[[number]]
vmn = "{VMN}"
[number.default]
""")
        a.wait_bound()
        b.wait_bound()
        assert a.mo(source="15550000001", destination=VMN, text="via alpha")["statuses"] == [0]
        assert b.mo(source="15550000002", destination=VMN, text="via beta")["statuses"] == [0]
        mos = wait_for(lambda: (lambda m: m if len(m) == 2 else None)(gw.mos()), what="2 MOs")
        assert {m["text"]: m["smsc"] for m in mos} == {"via alpha": "alpha", "via beta": "beta"}
        for i in range(4):
            gw.send(VMN, f"1555000{i:04d}", f"rr {i}")
        wait_for(lambda: len(a.submits()) + len(b.submits()) == 4, what="4 MTs submitted")
        assert a.submits() and b.submits()  # round-robin over the healthy binds


def test_window_and_throughput_are_respected(sim: Simulator, sqlite_url: str,
                                             make_gateway: Callable[..., Gateway]) -> None:
    """At most `window` submit_sm outstanding; at most `throughput` a second. Asserted
    as lower bounds on the spacing seen by the SMSC, which a slow machine only widens."""
    sim.configure(ack_delay_ms=300)
    gw = start(make_gateway, sim, sqlite_url, window=2)
    for i in range(6):
        gw.send(VMN, f"1555000{i:04d}", f"w {i}")
    subs = sim.wait_submits(6, timeout=30)
    t = sorted(s["received_at_ms"] for s in subs)
    assert all(t[i + 2] - t[i] >= 250 for i in range(len(t) - 2)), t
    sim.configure(ack_delay_ms=0)
    sim.clear_submits()
    gw.terminate()
    gw2 = start(make_gateway, sim, sqlite_url, throughput=5)
    for i in range(8):
        gw2.send(VMN, f"1555100{i:04d}", f"t {i}")
    subs = sim.wait_submits(8, timeout=30)
    t = sorted(s["received_at_ms"] for s in subs)
    # a bucket of 5 tokens, then 5 a second: the 8th can't go before ~0.6 s after the 1st
    assert t[-1] - t[0] >= 500, t


def test_admin_health_and_metrics(sim: Simulator, sqlite_url: str,
                                  make_gateway: Callable[..., Gateway]) -> None:
    import json as _json
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start(make_gateway, sim, sqlite_url, extra_gateway=f'admin_listen = "127.0.0.1:{port}"')
    sim.mo(source=CUSTOMER, destination=VMN, text="count me")

    def get(path: str) -> tuple[int, str]:
        return http_get(port, path, timeout=5)

    status, body = wait_for(lambda: (lambda r: r if r[0] else None)(get("/health")),
                            what="admin listener")
    health = _json.loads(body)
    assert status == 200 and health["ok"] is True and health["database"] is True
    assert health["binds"]["sim"]["state"] == "bound"
    assert get("/healthz")[0] == 200
    _, metrics = get("/metrics")
    assert "vmn_intake_mo_total 1.0" in metrics
    assert 'vmn_smpp_bound{smsc="sim"} 1.0' in metrics
    sim.configure(password="changed")
    sim.drop()
    wait_for(lambda: get("/health")[0] == 503, what="unhealthy without a bind")
