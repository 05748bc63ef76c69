"""The ESME's bind states and what each allows, in one table (h11 `_state.py` style).

`TABLE[(state, direction, command)]` is the state after that PDU; a key that is not in
the table is not allowed. Rules (SMPP 3.4 §2.2-2.3, ESME side, transceiver only):

- a new TCP connection is OPEN; we send bind_transceiver (BINDING), and nothing else
  goes out until it is answered;
- the answer to a request is looked up under the response that request expects when
  it accepts (ESME_ROK with that command id), and under GENERIC_NACK when it refuses
  (any other status, another command id, or a generic_nack in its place). A refused
  bind closes (the peer refused us; the session reconnects later); a refused request
  in any other state leaves the state where it is (the session closes the socket after
  any answer to its unbind). An answer to nothing we sent, or one the table has no
  row for, changes nothing (an answer is never refused);
- in BOUND_TRX we may send submit_sm / data_sm / enquire_link and the peer deliver_sm /
  data_sm / enquire_link; a deliver_sm / data_sm received in any other state is refused
  (its response with ESME_RINVBNDSTS);
- enquire_link goes out only while bound, never once unbind is sent (the peer is
  closing: a keep-alive then is noise it may answer with a nack, issue 16 point 6);
  one received is answered in every state, and so is unbind, which closes;
- either side may unbind: we send unbind (UNBINDING) and wait for unbind_resp, or the
  peer sends unbind and we answer unbind_resp; both end CLOSED;
- any other request received (submit_sm, a bind, ...) is answered generic_nack
  ESME_RINVCMDID; generic_nack and every response we send are not in the table (the
  connection writes them itself, as answers);
- a lost socket moves any state to CLOSED (`Connection.connection_lost`).
"""

from __future__ import annotations

from enum import Enum

from gateway.smpp.pdu import CommandId


class BindState(Enum):
    OPEN = "open"
    BINDING = "binding"
    BOUND_TRX = "bound_trx"
    UNBINDING = "unbinding"
    CLOSED = "closed"


class Direction(Enum):
    SEND = "send"  # a request we send
    RECV = "recv"  # a request the peer sends, or the answer to one of ours


_S = BindState
_C = CommandId
SEND, RECV = Direction.SEND, Direction.RECV

TABLE: dict[tuple[BindState, Direction, CommandId], BindState] = {
    # we bind
    (_S.OPEN, SEND, _C.BIND_TRANSCEIVER): _S.BINDING,
    (_S.BINDING, RECV, _C.BIND_TRANSCEIVER_RESP): _S.BOUND_TRX,
    (_S.BINDING, RECV, _C.GENERIC_NACK): _S.CLOSED,
    # bound: messages and keep-alives both ways (the peer's enquire_link: below)
    **{(_S.BOUND_TRX, SEND, c): _S.BOUND_TRX
       for c in (_C.SUBMIT_SM, _C.DATA_SM, _C.ENQUIRE_LINK)},
    **{(_S.BOUND_TRX, RECV, c): _S.BOUND_TRX
       for c in (_C.DELIVER_SM, _C.DATA_SM, _C.SUBMIT_SM_RESP, _C.DATA_SM_RESP,
                 _C.ENQUIRE_LINK_RESP, _C.GENERIC_NACK)},
    # we unbind: answers to what went out before the unbind still come
    (_S.BOUND_TRX, SEND, _C.UNBIND): _S.UNBINDING,
    (_S.UNBINDING, RECV, _C.UNBIND_RESP): _S.CLOSED,
    **{(_S.UNBINDING, RECV, c): _S.UNBINDING
       for c in (_C.SUBMIT_SM_RESP, _C.DATA_SM_RESP, _C.ENQUIRE_LINK_RESP,
                 _C.GENERIC_NACK)},
    # the peer's link management, answered in every state
    **{(s, RECV, _C.ENQUIRE_LINK): s for s in BindState},
    **{(s, RECV, _C.UNBIND): _S.CLOSED for s in BindState},
}


def moves(state: BindState, direction: Direction) -> dict[int, BindState]:
    """TABLE's rows for one state and direction, by command id: what the connection
    looks up per PDU (an int key hashes faster than a tuple of enums)."""
    return {c: new for (s, d, c), new in TABLE.items() if s is state and d is direction}
