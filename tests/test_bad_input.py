"""Bad input from the SMSC: malformed PDUs get generic_nack (or, when the framing is
lost, a clean reconnect); the session never crashes and nothing already accepted is
lost. PDUs are built by hand here, independently of our codec."""

from __future__ import annotations

import struct
from collections.abc import Callable

from conftest import Gateway, gateway_config, run_sql, wait_for
from simctl import ESME_RINVCMDID, Simulator

VMN = "5551000100"


def header(length: int, command_id: int, status: int, seq: int) -> bytes:
    return struct.pack(">IIII", length, command_id, status, seq)


def deliver_sm_body(source: str, dest: str, text: bytes, tlvs: bytes = b"") -> bytes:
    return (
        b"\0" + b"\x01\x01" + source.encode() + b"\0" + b"\x01\x01" + dest.encode() + b"\0"
        + b"\x00\x00\x00" + b"\0\0" + b"\x00\x00\x00\x00" + bytes([len(text)]) + text + tlvs
    )


def pdu(command_id: int, seq: int, body: bytes) -> bytes:
    return header(16 + len(body), command_id, 0, seq) + body


def replies(sim: Simulator, since: int, seq: int) -> list[dict[str, object]]:
    return [r for r in sim.received(since) if r.get("sequence_number") == seq]


def test_malformed_pdus_get_generic_nack_and_the_session_survives(
        sim: Simulator, sqlite_url: str, make_gateway: Callable[..., Gateway]) -> None:
    gw = make_gateway(gateway_config(db=sqlite_url, sim=sim))
    sim.wait_bound()
    start = sim.state()["received_next"]
    cases = {
        # unknown command id
        70001: (pdu(0x00000999, 70001, b"junk"), "generic_nack", ESME_RINVCMDID),
        # TLV header cut short (3 octets where 4 are needed)
        70002: (pdu(0x00000005, 70002, deliver_sm_body("15550001", VMN, b"hi", b"\x04\x24\x00")),
                "generic_nack", 0xC0),
        # TLV length running past the end of the PDU
        70003: (pdu(0x00000005, 70003,
                    deliver_sm_body("15550001", VMN, b"hi", b"\x04\x24\x00\x10abc")),
                "generic_nack", 0xC0),
        # C-string without its NUL (source_addr runs to the end)
        70004: (pdu(0x00000005, 70004, b"\0\x01\x01" + b"1" * 30), "generic_nack", None),
        # sm_length claims more octets than there are
        70005: (pdu(0x00000005, 70005, deliver_sm_body("15550001", VMN, b"hi")[:-3] + b"\xff"),
                "generic_nack", None),
    }
    for _seq, (data, _cmd, _status) in cases.items():
        sim.raw(data)
    for seq, (_data, cmd, status) in cases.items():
        got = wait_for(lambda seq=seq: replies(sim, start, seq), what=f"reply to {seq}")
        assert got[0]["command"] == cmd, got
        if status is not None:
            assert got[0]["command_status"] == status, got
        else:
            assert got[0]["command_status"] != 0, got
    # the same session still works: an MO is stored and acknowledged
    assert sim.state()["bind_count"] == 1
    assert sim.mo(source="15550002", destination=VMN, text="still alive")["statuses"] == [0]
    wait_for(lambda: [m for m in gw.mos() if m["text"] == "still alive"], what="MO stored")
    assert gw.running
    assert len(gw.log_events("smpp.bad_pdu")) == len(cases)


def test_broken_framing_reconnects_cleanly(sim: Simulator, sqlite_url: str,
                                           make_gateway: Callable[..., Gateway]) -> None:
    gw = make_gateway(gateway_config(db=sqlite_url, sim=sim))
    sim.wait_bound()
    sim.raw(header(8, 0x00000005, 0, 1))  # command_length below the 16-octet header
    wait_for(lambda: sim.state()["bind_count"] >= 2, what="a re-bind")
    sim.wait_bound()
    sim.raw(header(10_000_000, 0x00000005, 0, 2))  # absurdly long
    wait_for(lambda: sim.state()["bind_count"] >= 3, what="another re-bind")
    sim.wait_bound()
    assert sim.mo(source="15550003", destination=VMN, text="after")["statuses"] == [0]
    wait_for(lambda: gw.mos(), what="MO stored")
    assert gw.running and len(gw.log_events("smpp.framing_error")) == 2


def test_smsc_side_unbind_and_enquire_link_are_answered(
        sim: Simulator, sqlite_url: str, make_gateway: Callable[..., Gateway]) -> None:
    gw = make_gateway(gateway_config(db=sqlite_url, sim=sim))
    sim.wait_bound()
    res = sim.enquire_link()
    assert res["statuses"] == [0], res
    res = sim.unbind()
    assert res["results"][0]["resp_received"], res
    wait_for(lambda: sim.state()["bind_count"] >= 2, what="re-bind after the SMSC unbound")
    assert gw.running and gw.log_events("smpp.unbind_received")


def test_unanswered_enquire_link_reconnects(sim: Simulator, sqlite_url: str,
                                            make_gateway: Callable[..., Gateway]) -> None:
    gw = make_gateway(gateway_config(db=sqlite_url, sim=sim, enquire_link_interval=0.3,
                                     response_timeout=0.5))
    sim.wait_bound()
    wait_for(lambda: sim.state()["enquire_links_received"] >= 2, what="keep-alives")
    sim.configure(enquire_link_reply=False)
    wait_for(lambda: gw.log_events("smpp.enquire_link_timeout"), what="keep-alive timeout")
    sim.configure(enquire_link_reply=True)
    wait_for(lambda: sim.state()["bind_count"] >= 2, what="a re-bind")


def test_deliver_sm_is_refused_with_an_error_when_the_database_fails(
        sim: Simulator, sqlite_url: str, make_gateway: Callable[..., Gateway]) -> None:
    """If the commit fails, the MO gets an error status (the SMSC will redeliver) rather
    than an ack for something that is not stored; once the database works again the
    redelivery is stored."""
    gw = make_gateway(gateway_config(db=sqlite_url, sim=sim))
    sim.wait_bound()
    assert sim.mo(source="15550004", destination=VMN, text="stored")["statuses"] == [0]
    if sqlite_url.startswith("sqlite"):
        run_sql(sqlite_url, "CREATE TRIGGER fail BEFORE INSERT ON messages "
                            "BEGIN SELECT RAISE(ABORT, 'disk on fire'); END")
    else:
        run_sql(sqlite_url,
                "CREATE FUNCTION fail() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'disk on fire'; END $$",
                "CREATE TRIGGER fail BEFORE INSERT ON messages "
                "FOR EACH ROW EXECUTE FUNCTION fail()")
    res = sim.mo(source="15550004", destination=VMN, text="not yet stored")
    assert res["statuses"] == [0x64], res  # ESME_RX_T_APPN: try again later
    assert gw.log_events("intake.commit_failed")
    run_sql(sqlite_url, "DROP TRIGGER fail" if sqlite_url.startswith("sqlite")
            else "DROP TRIGGER fail ON messages")
    res = sim.mo(source="15550004", destination=VMN, text="not yet stored")  # redelivery
    assert res["statuses"] == [0], res
    wait_for(lambda: sorted(m["text"] for m in gw.mos()) == ["not yet stored", "stored"],
             what="both MOs stored once")
    assert gw.running
