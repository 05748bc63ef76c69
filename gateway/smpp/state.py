"""Bind states of an ESME connection and every allowed transition, in one table.

Rules (SMPP 3.4 §2.2-2.3, ESME side, transceiver only):
- a new TCP connection is OPEN; we send bind_transceiver (BINDING);
- a bind_transceiver_resp with ESME_ROK makes it BOUND_TRX, any other status CLOSED
  (the peer refused us; the session reconnects later);
- in BOUND_TRX both sides may send submit_sm / deliver_sm / data_sm / enquire_link;
- either side may unbind: we send unbind (UNBINDING) and wait for unbind_resp, or the
  peer sends unbind and we answer unbind_resp; both end CLOSED;
- enquire_link is allowed while binding or bound, never once unbind is sent (the
  peer is closing: a keep-alive then is noise it may answer with a nack, issue 16
  point 6); generic_nack in every open state;
- a lost socket moves any state to CLOSED.
"""

from __future__ import annotations

from enum import Enum


class BindState(Enum):
    OPEN = "open"
    BINDING = "binding"
    BOUND_TRX = "bound_trx"
    UNBINDING = "unbinding"
    CLOSED = "closed"


class Transition(Enum):
    SEND_BIND = "send_bind"
    BIND_OK = "bind_ok"
    BIND_FAILED = "bind_failed"
    SEND_UNBIND = "send_unbind"
    RECV_UNBIND = "recv_unbind"
    UNBIND_DONE = "unbind_done"
    CONNECTION_LOST = "connection_lost"


TRANSITIONS: dict[tuple[BindState, Transition], BindState] = {
    (BindState.OPEN, Transition.SEND_BIND): BindState.BINDING,
    (BindState.BINDING, Transition.BIND_OK): BindState.BOUND_TRX,
    (BindState.BINDING, Transition.BIND_FAILED): BindState.CLOSED,
    (BindState.BOUND_TRX, Transition.SEND_UNBIND): BindState.UNBINDING,
    (BindState.BOUND_TRX, Transition.RECV_UNBIND): BindState.CLOSED,
    (BindState.UNBINDING, Transition.RECV_UNBIND): BindState.CLOSED,
    (BindState.UNBINDING, Transition.UNBIND_DONE): BindState.CLOSED,
    (BindState.BINDING, Transition.RECV_UNBIND): BindState.CLOSED,
}

# Which states may send / receive a given kind of traffic.
CAN_EXCHANGE_MESSAGES = frozenset({BindState.BOUND_TRX})
CAN_ENQUIRE = frozenset({BindState.BINDING, BindState.BOUND_TRX})


def next_state(state: BindState, transition: Transition) -> BindState | None:
    """The state after `transition`, or None when the table forbids it."""
    if transition is Transition.CONNECTION_LOST:
        return BindState.CLOSED
    return TRANSITIONS.get((state, transition))
