"""Sans-IO ESME connection: it owns the SMPP protocol of one TCP connection.

Bytes in (`receive_data`), events out (`next_event`); requests in (`send`), bytes out.
What the bind state allows, and where each PDU takes it, is the table in
`gateway/smpp/state.py`. The connection answers by itself what needs no decision
(enquire_link_resp, unbind_resp, generic_nack for what it cannot take, the refusal of
a deliver_sm when not bound): those events carry the bytes to write. MOs come out as
`Message` events and are answered later through `ack`. Every request sent waits in one
pending table, beside an opaque `waiter` the caller gives (the session's future),
handed back with the answer (`Answer`) or by `connection_lost`.

It never touches a socket or a clock: the session (`gateway/smpp/session.py`) owns
those, and moves bytes and events.
"""

from __future__ import annotations

import dataclasses
import struct
from collections import deque
from dataclasses import dataclass
from typing import Generic, TypeVar

from gateway.smpp.codec import Decoder, LocalProtocolError, PduDecodeError, decode, encode
from gateway.smpp.dialect import mo_data_coding
from gateway.smpp.pdu import (
    MAX_SEQUENCE,
    CommandId,
    CommandStatus,
    DataSm,
    DeliverSm,
    Pdu,
)
from gateway.smpp.state import BindState, Direction, moves

W = TypeVar("W")

_RESPONSE_BIT = 0x80000000
_RESP_HEADER = struct.Struct(">IIII")
_MO_COMMANDS = (CommandId.DELIVER_SM, CommandId.DATA_SM)
_GENERIC_NACK = CommandId.GENERIC_NACK
_SEND = {s: moves(s, Direction.SEND) for s in BindState}
_RECV = {s: moves(s, Direction.RECV) for s in BindState}


def _header_only(command_id: int, sequence_number: int, status: int) -> bytes:
    return _RESP_HEADER.pack(16, command_id, status, sequence_number)


def _empty_resp(command_id: int, sequence_number: int, status: int) -> bytes:
    """deliver_sm_resp / data_sm_resp with an empty message_id."""
    return _RESP_HEADER.pack(17, command_id | _RESPONSE_BIT, status, sequence_number) + b"\0"


# ------------------------------------------------------------------------------ events


@dataclass(slots=True)
class Message:
    """A deliver_sm / data_sm taken while bound: answer it with `Connection.ack`."""

    pdu: DeliverSm | DataSm
    raw: bytes


@dataclass(slots=True)
class Answer(Generic[W]):
    """The answer (response or generic_nack) to `request`, sent with `waiter`; both None
    when it answers nothing outstanding (late, or never sent)."""

    pdu: Pdu
    request: CommandId | None
    waiter: W | None


@dataclass(slots=True)
class Replied:
    """A request the connection answered by itself: write `data`. `pdu` is None for a
    frame that could not be decoded (`error` says why; `data` is its generic_nack)."""

    pdu: Pdu | None
    data: bytes
    error: PduDecodeError | None = None


@dataclass(slots=True)
class PeerUnbind:
    """The peer unbinds: write `data` (unbind_resp), then close; the state is CLOSED."""

    pdu: Pdu
    data: bytes


Event = Message | Answer[W] | Replied | PeerUnbind


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


class Connection(Generic[W]):
    """One TCP connection's worth of SMPP state, as seen by the ESME.

    `default_alphabet`: what data_coding 0 means on this bind (gsm, ascii, latin1;
    Kannel's alt-charset): a deliver_sm / data_sm in it is handed out with the
    data_coding that names it (gateway/smpp/dialect.py)."""

    __slots__ = ("_decoder", "_pending", "_recv", "_send", "_seq", "_state",
                 "default_alphabet")

    def __init__(self, default_alphabet: str = "gsm") -> None:
        self.default_alphabet = default_alphabet
        self._decoder = Decoder()
        self._seq = 0
        # sequence number -> (the request's command id, the caller's waiter)
        self._pending: dict[int, tuple[CommandId, W | None]] = {}
        self._set(BindState.OPEN)

    @property
    def state(self) -> BindState:
        return self._state

    def _set(self, state: BindState) -> None:
        self._state = state
        self._send = _SEND[state]
        self._recv = _RECV[state]

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

    def is_pending(self, sequence_number: int) -> bool:
        return sequence_number in self._pending

    # -- outgoing ---------------------------------------------------------------------
    def send(self, pdu: Pdu, waiter: W | None = None) -> bytes:
        """Encode the request `pdu` if the bind state allows it, and keep it pending
        (with `waiter`) until it is answered. Raises LocalProtocolError."""
        cid = pdu.command_id
        if cid & _RESPONSE_BIT:
            raise LocalProtocolError(
                f"{cid.name} is an answer: the connection writes its own answers",
                command_status=CommandStatus.ESME_RINVCMDID)
        new = self._send.get(cid)
        if new is None:
            raise LocalProtocolError(
                f"cannot send {cid.name} in state {self._state.value}",
                command_status=CommandStatus.ESME_RINVBNDSTS,
            )
        data = encode(pdu)
        self._pending[pdu.sequence_number] = (cid, waiter)
        if new is not self._state:
            self._set(new)
        return data

    def ack(self, command_id: int, sequence_number: int, status: int) -> bytes:
        """The answer to a `Message` (its PDU's command id and sequence number): a
        deliver_sm_resp / data_sm_resp with an empty message_id. The MO hot path: the
        intake joins a batch's answers into one write per connection."""
        return _RESP_HEADER.pack(17, command_id | _RESPONSE_BIT, status, sequence_number) + b"\0"

    def may_exchange_messages(self) -> bool:
        return CommandId.SUBMIT_SM in self._send

    def may_enquire(self) -> bool:
        """Whether an enquire_link may go out now (not once unbind is sent)."""
        return CommandId.ENQUIRE_LINK in self._send

    # -- incoming ---------------------------------------------------------------------
    def receive_data(self, data: bytes) -> None:
        self._decoder.receive_data(data)

    def next_event(self) -> Event[W] | None:
        """The next event, or None when more data is needed. Raises FrameError (from
        the codec) when the stream cannot be resynchronised: drop the connection."""
        frame = self._decoder.next_frame()
        if frame is None:
            return None
        try:
            pdu = decode(frame)
        except PduDecodeError as exc:
            return Replied(None, _header_only(_GENERIC_NACK, exc.sequence_number or 0,
                                              exc.command_status), exc)
        cid = pdu.command_id
        if cid in _MO_COMMANDS:  # the hot path, first
            if cid not in self._recv:
                return Replied(pdu, _empty_resp(cid, pdu.sequence_number,
                                                CommandStatus.ESME_RINVBNDSTS))
            if (self.default_alphabet != "gsm" and isinstance(pdu, DeliverSm | DataSm)
                    and pdu.data_coding == 0):  # (the default alphabet costs nothing here)
                pdu = dataclasses.replace(
                    pdu, data_coding=mo_data_coding(0, self.default_alphabet))
            return Message(pdu, frame)  # type: ignore[arg-type]  # (by its command id)
        if cid & _RESPONSE_BIT:
            return self._answer(pdu)
        new = self._recv.get(cid)
        seq = pdu.sequence_number
        if new is None:
            return Replied(pdu, _header_only(_GENERIC_NACK, seq, CommandStatus.ESME_RINVCMDID))
        self._set(new)
        if cid == CommandId.UNBIND:
            return PeerUnbind(pdu, _header_only(CommandId.UNBIND_RESP, seq, 0))
        return Replied(pdu, _header_only(CommandId.ENQUIRE_LINK_RESP, seq, 0))

    def _answer(self, pdu: Pdu) -> Answer[W]:
        entry = self._pending.pop(pdu.sequence_number, None)
        if entry is None:
            return Answer(pdu, None, None)
        request, waiter = entry
        accepts = request | _RESPONSE_BIT
        key = accepts if pdu.command_status == 0 and pdu.command_id == accepts else _GENERIC_NACK
        new = self._recv.get(key)
        if new is not None and new is not self._state:
            self._set(new)
        return Answer(pdu, request, waiter)

    def connection_lost(self) -> list[W]:
        """Close, returning the waiters of the requests that will never be answered."""
        self._set(BindState.CLOSED)
        lost = [w for _, w in self._pending.values() if w is not None]
        self._pending.clear()
        return lost
