"""Sans-IO ESME connection: bind state, sequence numbers, outstanding requests.

Bytes in (`receive_data`), PDUs out (`next_event`); PDUs in (`send`), bytes out.
It never touches a socket or a clock: the session owns those.
"""

from __future__ import annotations

import dataclasses
import struct
from collections import deque

from gateway.smpp.codec import Decoder, LocalProtocolError, decode, encode
from gateway.smpp.dialect import mo_data_coding
from gateway.smpp.pdu import (
    MAX_SEQUENCE,
    CommandId,
    CommandStatus,
    DataSm,
    DeliverSm,
    Pdu,
)
from gateway.smpp.state import CAN_ENQUIRE, CAN_EXCHANGE_MESSAGES, BindState, Transition, next_state

_RESPONSE_BIT = 0x80000000
_RESP_HEADER = struct.Struct(">IIII")

# Requests that need a bound session (the others are link management).
_MESSAGE_COMMANDS = frozenset(
    {CommandId.SUBMIT_SM, CommandId.DELIVER_SM, CommandId.DATA_SM}
)


def encode_empty_resp(command_id: int, sequence_number: int, status: int) -> bytes:
    """deliver_sm_resp / data_sm_resp with an empty message_id: the hot-path answer."""
    return _RESP_HEADER.pack(17, command_id | _RESPONSE_BIT, status, sequence_number) + b"\0"


class AnsweredLog:
    """When this connection's deliver_sm_resp / data_sm_resp were written, and for which
    MOs (their dedup keys), over the last `window` seconds: the SMSC's response timeout.

    A response written less than `window` before the connection dropped may never have
    reached the SMSC, which then redelivers the MO: those keys are the suspects. One
    entry per write (a batch of answers), never per MO. Times come from the caller.
    """

    __slots__ = ("_entries", "window")

    def __init__(self, window: float) -> None:
        self.window = window
        self._entries: deque[tuple[float, list[str]]] = deque()

    def answered(self, at: float, keys: list[str]) -> None:
        entries = self._entries
        entries.append((at, keys))
        horizon = at - self.window
        while entries[0][0] < horizon:
            entries.popleft()

    def settled(self, before: float) -> None:
        """The SMSC answered a request written at `before`: it read every response
        written up to then (one TCP stream, in order)."""
        entries = self._entries
        while entries and entries[0][0] <= before:
            entries.popleft()

    def in_flight(self, at: float) -> list[str]:
        """Keys whose response was written within `window` before `at` (the drop)."""
        horizon = at - self.window
        return [k for t, keys in self._entries if t >= horizon for k in keys]


class Connection:
    """One TCP connection's worth of SMPP state, as seen by the ESME.

    `default_alphabet`: what data_coding 0 means on this bind (gsm, ascii, latin1;
    Kannel's alt-charset): a deliver_sm / data_sm in it is handed out with the
    data_coding that names it (gateway/smpp/dialect.py)."""

    __slots__ = ("_decoder", "_pending", "_seq", "default_alphabet", "state")

    def __init__(self, default_alphabet: str = "gsm") -> None:
        self.default_alphabet = default_alphabet
        self.state = BindState.OPEN
        self._decoder = Decoder()
        self._seq = 0
        self._pending: dict[int, CommandId] = {}

    # -- sequence numbers -------------------------------------------------------------
    def next_sequence(self) -> int:
        """1..0x7FFFFFFF, wrapping, never one still awaiting its response."""
        seq = self._seq
        while True:
            seq = 1 if seq >= MAX_SEQUENCE else seq + 1
            if seq not in self._pending:
                self._seq = seq
                return seq

    @property
    def outstanding(self) -> int:
        return len(self._pending)

    # -- outgoing ---------------------------------------------------------------------
    def send(self, pdu: Pdu) -> bytes:
        """Encode `pdu`, checking that the bind state allows it."""
        cid = pdu.command_id
        is_request = not cid & _RESPONSE_BIT and cid != CommandId.GENERIC_NACK
        if is_request:
            self._check_may_send(cid)
            self._pending[pdu.sequence_number] = cid
        data = encode(pdu)
        if cid == CommandId.BIND_TRANSCEIVER:
            self._transition(Transition.SEND_BIND)
        elif cid == CommandId.UNBIND:
            self._transition(Transition.SEND_UNBIND)
        elif cid == CommandId.UNBIND_RESP and self.state is BindState.BOUND_TRX:
            self._transition(Transition.RECV_UNBIND)
        return data

    def _check_may_send(self, cid: CommandId) -> None:
        state = self.state
        if cid == CommandId.BIND_TRANSCEIVER:
            ok = state is BindState.OPEN
        elif cid in _MESSAGE_COMMANDS or cid == CommandId.UNBIND:
            ok = state in CAN_EXCHANGE_MESSAGES
        elif cid == CommandId.ENQUIRE_LINK:
            ok = state in CAN_ENQUIRE
        else:
            ok = False
        if not ok:
            raise LocalProtocolError(
                f"cannot send {cid.name} in state {state.value}",
                command_status=CommandStatus.ESME_RINVBNDSTS,
            )

    # -- incoming ---------------------------------------------------------------------
    def receive_data(self, data: bytes) -> None:
        self._decoder.receive_data(data)

    def next_event(self) -> tuple[Pdu, bytes] | None:
        """The next PDU and its raw bytes, or None when more data is needed.

        Raises FrameError (drop the connection) or PduDecodeError (answer generic_nack
        and go on), both from the codec.
        """
        frame = self._decoder.next_frame()
        if frame is None:
            return None
        pdu = decode(frame)
        cid = pdu.command_id
        if cid & _RESPONSE_BIT:
            self._on_response(pdu)
        elif (self.default_alphabet != "gsm" and isinstance(pdu, DeliverSm | DataSm)
              and pdu.data_coding == 0):  # (the default alphabet costs nothing here)
            pdu = dataclasses.replace(
                pdu, data_coding=mo_data_coding(0, self.default_alphabet))
        elif cid == CommandId.UNBIND:
            # Answered by the session; the state closes once unbind_resp is sent.
            pass
        return pdu, frame

    def _on_response(self, pdu: Pdu) -> None:
        cid = self._pending.pop(pdu.sequence_number, None)
        if cid == CommandId.BIND_TRANSCEIVER:
            ok = pdu.command_status == 0 and pdu.command_id == CommandId.BIND_TRANSCEIVER_RESP
            self._transition(Transition.BIND_OK if ok else Transition.BIND_FAILED)
        elif cid == CommandId.UNBIND:
            self._transition(Transition.UNBIND_DONE)

    def is_pending(self, sequence_number: int) -> bool:
        return sequence_number in self._pending

    def may_exchange_messages(self) -> bool:
        return self.state in CAN_EXCHANGE_MESSAGES

    def may_enquire(self) -> bool:
        """Whether an enquire_link may go out now (not once unbind is sent)."""
        return self.state in CAN_ENQUIRE

    def connection_lost(self) -> list[int]:
        """Close, returning the sequence numbers that will never be answered."""
        self.state = BindState.CLOSED
        lost = list(self._pending)
        self._pending.clear()
        return lost

    def _transition(self, transition: Transition) -> None:
        new = next_state(self.state, transition)
        if new is None:
            raise LocalProtocolError(
                f"{transition.value} not allowed in state {self.state.value}",
                command_status=CommandStatus.ESME_RINVBNDSTS,
            )
        self.state = new
