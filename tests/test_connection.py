"""The sans-IO ESME connection and its state table: no sockets, bytes in, PDUs out."""

from __future__ import annotations

import pytest

from gateway.smpp.codec import LocalProtocolError, PduDecodeError, encode
from gateway.smpp.connection import Connection
from gateway.smpp.pdu import (
    MAX_SEQUENCE,
    BindTransceiver,
    BindTransceiverResp,
    CommandStatus,
    DeliverSm,
    EnquireLink,
    SubmitSm,
    SubmitSmResp,
    Unbind,
    UnbindResp,
)
from gateway.smpp.state import TRANSITIONS, BindState, Transition, next_state


def bound() -> Connection:
    conn = Connection()
    seq = conn.next_sequence()
    conn.send(BindTransceiver(sequence_number=seq, system_id="a", password="b"))
    conn.receive_data(encode(BindTransceiverResp(sequence_number=seq, system_id="smsc")))
    assert conn.next_event() is not None
    assert conn.state is BindState.BOUND_TRX
    return conn


def test_bind_ok_and_rejected() -> None:
    conn = bound()
    assert conn.outstanding == 0
    conn = Connection()
    conn.send(BindTransceiver(sequence_number=1))
    assert conn.state is BindState.BINDING
    conn.receive_data(encode(BindTransceiverResp(
        sequence_number=1, command_status=CommandStatus.ESME_RINVPASWD)))
    pdu, _raw = conn.next_event() or (None, b"")
    assert pdu is not None and pdu.command_status == CommandStatus.ESME_RINVPASWD
    assert conn.state is BindState.CLOSED


def test_messages_need_a_bind() -> None:
    conn = Connection()
    with pytest.raises(LocalProtocolError) as err:
        conn.send(SubmitSm(sequence_number=1, short_message=b"x"))
    assert err.value.command_status == CommandStatus.ESME_RINVBNDSTS
    assert not conn.may_exchange_messages()
    assert bound().may_exchange_messages()


def test_sequence_numbers_wrap_and_skip_pending() -> None:
    conn = bound()
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


def test_unbind_from_us_and_from_the_peer() -> None:
    conn = bound()
    conn.send(Unbind(sequence_number=conn.next_sequence()))
    assert conn.state is BindState.UNBINDING
    conn.receive_data(encode(UnbindResp(sequence_number=conn._seq)))
    conn.next_event()
    assert conn.state is BindState.CLOSED
    conn = bound()
    conn.receive_data(encode(Unbind(sequence_number=9)))
    pdu, _ = conn.next_event() or (None, b"")
    assert isinstance(pdu, Unbind)
    conn.send(UnbindResp(sequence_number=9))
    assert conn.state is BindState.CLOSED


def test_bytes_one_at_a_time_give_the_same_events() -> None:
    stream = b"".join(encode(p) for p in [
        EnquireLink(sequence_number=5),
        DeliverSm(sequence_number=6, source_addr="1555", destination_addr="5551000100",
                  short_message=b"hello"),
    ])
    conn = bound()
    events = []
    for i in range(len(stream)):
        conn.receive_data(stream[i:i + 1])
        while (ev := conn.next_event()) is not None:
            events.append(ev)
    assert [p for p, _ in events] == [EnquireLink(sequence_number=5), DeliverSm(
        sequence_number=6, source_addr="1555", destination_addr="5551000100",
        short_message=b"hello")]
    assert b"".join(raw for _, raw in events) == stream


def test_unknown_command_is_a_decode_error_with_its_sequence() -> None:
    conn = bound()
    conn.receive_data(b"\x00\x00\x00\x10\x00\x00\x09\x99\x00\x00\x00\x00\x00\x00\x00\x07")
    with pytest.raises(PduDecodeError) as err:
        conn.next_event()
    assert err.value.sequence_number == 7
    assert err.value.command_status == CommandStatus.ESME_RINVCMDID
    assert conn.next_event() is None  # and the stream goes on


@pytest.mark.parametrize(("state", "transition"), sorted(
    ((s, t) for s in BindState for t in Transition if t is not Transition.CONNECTION_LOST),
    key=str))
def test_state_table_is_the_only_source_of_transitions(state: BindState,
                                                        transition: Transition) -> None:
    assert next_state(state, transition) == TRANSITIONS.get((state, transition))
    assert next_state(state, Transition.CONNECTION_LOST) is BindState.CLOSED
