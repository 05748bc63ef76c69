"""The sans-IO ESME connection against scripted peers: no sockets, bytes in (one at a
time, as h11's tests feed them), events and bytes out.

Each script is a sequence of steps: what we send (the bytes must be the PDU's, or the
send must be refused), and what the peer sends (the one event it must give, with the
bytes the connection answers by itself), each with the bind state after it. The
scripts also walk every row of `gateway/smpp/state.py`'s table: a row no script takes
is dead (`test_every_row_of_the_table_is_taken`).
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from gateway.smpp.codec import LocalProtocolError, encode
from gateway.smpp.connection import Answer, Connection, Message, PeerUnbind, Replied
from gateway.smpp.pdu import (
    MAX_SEQUENCE,
    BindTransceiver,
    BindTransceiverResp,
    CommandId,
    CommandStatus,
    DataSm,
    DataSmResp,
    DeliverSm,
    DeliverSmResp,
    EnquireLink,
    EnquireLinkResp,
    GenericNack,
    Pdu,
    SubmitSm,
    SubmitSmResp,
    Unbind,
    UnbindResp,
)
from gateway.smpp.state import TABLE, BindState, Direction

S = BindState
ST = CommandStatus


@dataclass(frozen=True)
class Send:
    """We send `pdu` (waiter: its sequence number as text); then the state is `state`,
    or the send is refused when `state` is None."""

    pdu: Pdu
    state: BindState | None


@dataclass(frozen=True)
class Recv:
    """The peer sends `pdu` (or raw bytes); the connection gives `event`; then `state`.

    `event`: ("message",) | ("answer", request command id or None, waiter or None) |
    ("replied", answer PDU) | ("bad", answer PDU) | ("unbind", answer PDU)."""

    pdu: Pdu | bytes
    event: tuple[object, ...]
    state: BindState


def bind(status: int = 0) -> list[Send | Recv]:
    return [Send(BindTransceiver(sequence_number=1, system_id="gw", password="pw"), S.BINDING),
            Recv(BindTransceiverResp(sequence_number=1, command_status=status),
                 ("answer", CommandId.BIND_TRANSCEIVER, "1"),
                 S.BOUND_TRX if status == 0 else S.CLOSED)]


MO = DeliverSm(sequence_number=40, source_addr="15550001111",
               destination_addr="5551000100", short_message=b"hi")
DATA_MO = DataSm(sequence_number=41, source_addr="15550001111",
                 destination_addr="5551000100")


def nack(seq: int, status: int) -> GenericNack:
    return GenericNack(sequence_number=seq, command_status=status)


SCRIPTS: dict[str, list[Send | Recv]] = {
    "bind, traffic both ways, our unbind": [
        *bind(),
        Send(SubmitSm(sequence_number=2, short_message=b"x"), S.BOUND_TRX),
        Send(DataSm(sequence_number=3), S.BOUND_TRX),
        Send(EnquireLink(sequence_number=4), S.BOUND_TRX),
        Recv(MO, ("message",), S.BOUND_TRX),
        Recv(DATA_MO, ("message",), S.BOUND_TRX),
        Recv(EnquireLink(sequence_number=42),
             ("replied", EnquireLinkResp(sequence_number=42)), S.BOUND_TRX),
        Recv(SubmitSmResp(sequence_number=2, message_id="m1"),
             ("answer", CommandId.SUBMIT_SM, "2"), S.BOUND_TRX),
        Recv(DataSmResp(sequence_number=3, message_id="m2"),
             ("answer", CommandId.DATA_SM, "3"), S.BOUND_TRX),
        Recv(EnquireLinkResp(sequence_number=4),
             ("answer", CommandId.ENQUIRE_LINK, "4"), S.BOUND_TRX),
        Send(SubmitSm(sequence_number=5, short_message=b"x"), S.BOUND_TRX),
        Send(DataSm(sequence_number=6), S.BOUND_TRX),
        Send(EnquireLink(sequence_number=7), S.BOUND_TRX),
        Send(Unbind(sequence_number=8), S.UNBINDING),
        Send(SubmitSm(sequence_number=9, short_message=b"x"), None),
        Send(EnquireLink(sequence_number=9), None),
        # answers to what went out before the unbind still come
        Recv(SubmitSmResp(sequence_number=5), ("answer", CommandId.SUBMIT_SM, "5"),
             S.UNBINDING),
        Recv(DataSmResp(sequence_number=6), ("answer", CommandId.DATA_SM, "6"),
             S.UNBINDING),
        Recv(EnquireLinkResp(sequence_number=7), ("answer", CommandId.ENQUIRE_LINK, "7"),
             S.UNBINDING),
        Recv(MO, ("replied", DeliverSmResp(sequence_number=40,
                                          command_status=ST.ESME_RINVBNDSTS)), S.UNBINDING),
        Recv(EnquireLink(sequence_number=43),
             ("replied", EnquireLinkResp(sequence_number=43)), S.UNBINDING),
        Recv(UnbindResp(sequence_number=8), ("answer", CommandId.UNBIND, "8"), S.CLOSED),
        Recv(MO, ("replied", DeliverSmResp(sequence_number=40,
                                          command_status=ST.ESME_RINVBNDSTS)), S.CLOSED),
        Send(BindTransceiver(sequence_number=10), None),
    ],
    "refused answers leave a bind bound; an unbind refused leaves it unbinding": [
        *bind(),
        Send(SubmitSm(sequence_number=2, short_message=b"x"), S.BOUND_TRX),
        Send(EnquireLink(sequence_number=3), S.BOUND_TRX),
        Send(SubmitSm(sequence_number=4, short_message=b"x"), S.BOUND_TRX),
        Recv(SubmitSmResp(sequence_number=2, command_status=ST.ESME_RTHROTTLED),
             ("answer", CommandId.SUBMIT_SM, "2"), S.BOUND_TRX),
        Recv(nack(3, ST.ESME_RINVCMDID), ("answer", CommandId.ENQUIRE_LINK, "3"),
             S.BOUND_TRX),
        Recv(nack(77, ST.ESME_RINVCMDID), ("answer", None, None), S.BOUND_TRX),
        Recv(SubmitSmResp(sequence_number=78), ("answer", None, None), S.BOUND_TRX),
        Send(Unbind(sequence_number=5), S.UNBINDING),
        Recv(nack(4, ST.ESME_RSYSERR), ("answer", CommandId.SUBMIT_SM, "4"), S.UNBINDING),
        Recv(UnbindResp(sequence_number=5, command_status=ST.ESME_RSYSERR),
             ("answer", CommandId.UNBIND, "5"), S.UNBINDING),
    ],
    "bind refused by status": [*bind(ST.ESME_RINVPASWD)],
    "bind refused by generic_nack": [
        Send(BindTransceiver(sequence_number=1), S.BINDING),
        Recv(nack(1, ST.ESME_RSYSERR), ("answer", CommandId.BIND_TRANSCEIVER, "1"), S.CLOSED),
    ],
    "before the bind: only the bind goes out; MOs refused, link management answered": [
        Send(SubmitSm(sequence_number=1, short_message=b"x"), None),
        Send(EnquireLink(sequence_number=1), None),
        Send(Unbind(sequence_number=1), None),
        Recv(EnquireLink(sequence_number=50),
             ("replied", EnquireLinkResp(sequence_number=50)), S.OPEN),
        Send(BindTransceiver(sequence_number=1), S.BINDING),
        Send(BindTransceiver(sequence_number=2), None),
        Send(EnquireLink(sequence_number=2), None),
        Recv(MO, ("replied", DeliverSmResp(sequence_number=40,
                                          command_status=ST.ESME_RINVBNDSTS)), S.BINDING),
        Recv(DATA_MO, ("replied", DataSmResp(sequence_number=41,
                                            command_status=ST.ESME_RINVBNDSTS)), S.BINDING),
        Recv(EnquireLink(sequence_number=51),
             ("replied", EnquireLinkResp(sequence_number=51)), S.BINDING),
        Recv(Unbind(sequence_number=52), ("unbind", UnbindResp(sequence_number=52)),
             S.CLOSED),
        Recv(EnquireLink(sequence_number=53),
             ("replied", EnquireLinkResp(sequence_number=53)), S.CLOSED),
        Recv(Unbind(sequence_number=54), ("unbind", UnbindResp(sequence_number=54)),
             S.CLOSED),
    ],
    "the peer unbinds a bound link": [
        *bind(),
        Recv(Unbind(sequence_number=60), ("unbind", UnbindResp(sequence_number=60)),
             S.CLOSED),
    ],
    "both unbind at once": [
        *bind(),
        Send(Unbind(sequence_number=2), S.UNBINDING),
        Recv(Unbind(sequence_number=61), ("unbind", UnbindResp(sequence_number=61)),
             S.CLOSED),
    ],
    "the peer unbinds before we bind": [
        Recv(Unbind(sequence_number=62), ("unbind", UnbindResp(sequence_number=62)),
             S.CLOSED),
    ],
    "requests an ESME never takes, and frames that cannot be decoded": [
        *bind(),
        Recv(SubmitSm(sequence_number=70, short_message=b"x"),
             ("replied", nack(70, ST.ESME_RINVCMDID)), S.BOUND_TRX),
        Recv(BindTransceiver(sequence_number=71),
             ("replied", nack(71, ST.ESME_RINVCMDID)), S.BOUND_TRX),
        Recv(b"\x00\x00\x00\x10\x00\x00\x09\x99\x00\x00\x00\x00\x00\x00\x00\x07",
             ("bad", nack(7, ST.ESME_RINVCMDID)), S.BOUND_TRX),
        Recv(MO, ("message",), S.BOUND_TRX),  # and the stream goes on
    ],
    "what we never send": [
        *bind(),
        Send(DeliverSm(sequence_number=2), None),
        Send(BindTransceiver(sequence_number=2), None),
        Send(DeliverSmResp(sequence_number=2), None),
        Send(nack(2, 0), None),
    ],
}


def run(script: list[Send | Recv], taken: set[tuple[BindState, Direction, int]] | None = None,
        ) -> Connection[str]:
    conn: Connection[str] = Connection()
    for n, step in enumerate(script):
        where = f"step {n}: {step}"
        before = conn.state
        if isinstance(step, Send):
            if step.state is None:
                with pytest.raises(LocalProtocolError):
                    conn.send(step.pdu, str(step.pdu.sequence_number))
                assert conn.state is before, where
                continue
            data = conn.send(step.pdu, str(step.pdu.sequence_number))
            assert data == encode(step.pdu), where
            assert conn.state is step.state, where
            if taken is not None:
                taken.add((before, Direction.SEND, step.pdu.command_id))
            continue
        raw = step.pdu if isinstance(step.pdu, bytes) else encode(step.pdu)
        for i in range(len(raw) - 1):  # one byte at a time: nothing before the last
            conn.receive_data(raw[i:i + 1])
            assert conn.next_event() is None, where
        conn.receive_data(raw[-1:])
        event = conn.next_event()
        assert conn.next_event() is None, where
        kind = step.event[0]
        if kind == "message":
            assert isinstance(event, Message), where
            assert event.pdu == step.pdu and event.raw == raw, where
        elif kind == "answer":
            assert isinstance(event, Answer), where
            assert event.pdu == step.pdu, where
            assert (event.request, event.waiter) == step.event[1:], where
        elif kind in ("replied", "bad"):
            assert isinstance(event, Replied), where
            assert event.data == encode(step.event[1]), where  # type: ignore[arg-type]
            assert (event.error is not None) is (kind == "bad"), where
            assert event.pdu == (None if kind == "bad" else step.pdu), where
        else:
            assert isinstance(event, PeerUnbind), where
            assert event.data == encode(step.event[1]), where  # type: ignore[arg-type]
        assert conn.state is step.state, where
        if taken is not None and isinstance(step.pdu, Pdu) and (
                kind != "replied" or step.pdu.command_id == CommandId.ENQUIRE_LINK):
            cid = step.pdu.command_id
            if kind == "answer":
                request = step.event[1]
                if request is None:
                    continue
                accepts = int(request) | 0x80000000  # type: ignore[call-overload]
                ok = step.pdu.command_status == 0 and cid == accepts
                cid = CommandId(accepts) if ok else CommandId.GENERIC_NACK
            taken.add((before, Direction.RECV, cid))
    return conn


@pytest.mark.parametrize("name", SCRIPTS)
def test_scripted_peer(name: str) -> None:
    run(SCRIPTS[name])


def test_every_row_of_the_table_is_taken() -> None:
    taken: set[tuple[BindState, Direction, int]] = set()
    for script in SCRIPTS.values():
        run(script, taken)
    assert not [k for k in TABLE if k not in taken]
    assert taken <= TABLE.keys()


def test_ack_answers_a_message_in_the_bytes_of_its_response() -> None:
    conn = run(SCRIPTS["the peer unbinds a bound link"][:2])
    assert conn.ack(CommandId.DELIVER_SM, 40, 0) == encode(DeliverSmResp(sequence_number=40))
    assert conn.ack(CommandId.DATA_SM, 41, ST.ESME_RX_T_APPN) == encode(
        DataSmResp(sequence_number=41, command_status=ST.ESME_RX_T_APPN))


def test_the_lost_connection_hands_back_every_waiter() -> None:
    conn = run(SCRIPTS["the peer unbinds a bound link"][:2])
    conn.send(SubmitSm(sequence_number=2, short_message=b"x"), "a")
    conn.send(EnquireLink(sequence_number=3), "b")
    conn.send(SubmitSm(sequence_number=4, short_message=b"x"))
    assert conn.outstanding == 3
    assert sorted(conn.connection_lost()) == ["a", "b"]
    assert conn.state is S.CLOSED and conn.outstanding == 0


def test_may_exchange_and_may_enquire_follow_the_table() -> None:
    conn: Connection[str] = Connection()
    assert not conn.may_exchange_messages() and not conn.may_enquire()
    conn = run(bind())
    assert conn.may_exchange_messages() and conn.may_enquire()
    conn.send(Unbind(sequence_number=2))
    assert not conn.may_exchange_messages() and not conn.may_enquire()


def test_sequence_numbers_wrap_and_skip_pending() -> None:
    conn = run(bind())
    conn._seq = MAX_SEQUENCE - 1
    a = conn.next_sequence()
    conn.send(SubmitSm(sequence_number=a, short_message=b"x"))
    assert a == MAX_SEQUENCE
    b = conn.next_sequence()
    assert b == 1
    conn.send(SubmitSm(sequence_number=b, short_message=b"y"))
    conn._seq = MAX_SEQUENCE - 1  # next would be MAX and then 1: both are pending
    assert conn.next_sequence() == 2
    conn.receive_data(encode(SubmitSmResp(sequence_number=a, message_id="m1")))
    conn.next_event()
    assert not conn.is_pending(a) and conn.is_pending(b)


def test_a_request_that_cannot_be_encoded_is_not_kept_pending() -> None:
    conn = run(bind())
    with pytest.raises(LocalProtocolError):
        conn.send(SubmitSm(sequence_number=2, short_message=b"x" * 300), "w")
    assert conn.outstanding == 0 and conn.state is S.BOUND_TRX


def test_a_whole_stream_in_one_chunk_gives_the_same_events() -> None:
    stream = b"".join(encode(p) for p in [EnquireLink(sequence_number=5), MO])
    conn = run(bind())
    conn.receive_data(stream)
    first, second = conn.next_event(), conn.next_event()
    assert conn.next_event() is None
    assert isinstance(first, Replied) and first.data == encode(EnquireLinkResp(sequence_number=5))
    assert isinstance(second, Message) and second.pdu == MO
