"""A sans-IO MQTT 3.1.1 client protocol: bytes in, events out; calls in, bytes out.

No sockets, no asyncio, no clock (h11's shape, ``h11/_connection.py``). The IO shell
(`gateway.mqtt`) feeds what it reads to `Connection.receive_data`, takes events from
`Connection.next_event` until `NEED_DATA`, and writes `Connection.data_to_send()`::

    conn = Connection()
    conn.connect(client_id="gw1", keepalive=30)
    mid = conn.publish("vmn/mo/1", b"{...}", qos=1)
    sock.sendall(conn.data_to_send())        # CONNECT and PUBLISH in one write
    conn.receive_data(sock.recv(65536))
    while (event := conn.next_event()) is not NEED_DATA:
        ...                                  # ConnAck(...), then PubAck(mid=mid)

What the protocol answers by itself is decided here, not in the shell: PUBREC (our
QoS 2 publish) -> PUBREL, PUBREL (their QoS 2 publish) -> PUBCOMP, and a QoS 2
PUBLISH already acknowledged with PUBREC is answered again without a second event.
Received QoS 1/2 publishes are acknowledged only when the caller says so (`ack`): the
gateway acknowledges a command once it is stored.

Errors by fault: `LocalProtocolError` (also a ValueError) for a call we must not make
(a topic with a wildcard, QoS 3, a payload too large); `RemoteProtocolError` for bytes
from the broker that are not MQTT 3.1.1 (the connection is then unusable: every
later `next_event` raises it again). Events before the bad packet are never lost:
`next_event` returns them first.

One `Connection` per network connection. What a persistent session (CleanSession=0)
needs from the last connection is handed over explicitly (MQTT 3.1.1 §4.4)::

    state = old.session_state()              # after the old connection is lost
    conn = Connection(resume=state)
    conn.connect(client_id="gw1", clean_session=False)

`SessionState.unreleased` are our QoS 2 publishes that got no PUBCOMP: the broker may
still hold their packet ids ("PUBREC sent, waiting for PUBREL", §4.3.3) and would take
a new message under one of them for a duplicate and never deliver it. Those ids stay
reserved; once the CONNACK says the session is present, a PUBREL goes out for each
(with or without a PUBREC seen: the broker releases what it holds, and answers an id it
does not know with PUBCOMP) and the PUBCOMP frees the id, without an event: nothing of
this connection waits for it. The PUBLISH itself is not re-sent (we keep no payloads):
the gateway's outbox retries every publish not acknowledged, so a held message may
reach subscribers twice (at least once, never lost). QoS 1 needs nothing: the broker
keeps no state for a QoS 1 publish it received; packet ids go on from
`SessionState.next_mid`, so an id in flight before the break is not reused until the
65,535 ids come round. With a clean session, or a CONNACK without session present, the
broker has forgotten everything: the held ids are freed and nothing is sent.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

__all__ = [
    "MAX_REMAINING_LENGTH",
    "NEED_DATA",
    "ConnAck",
    "Connection",
    "Event",
    "LocalProtocolError",
    "PingResp",
    "ProtocolError",
    "PubAck",
    "PubComp",
    "Publish",
    "RemoteProtocolError",
    "SessionState",
    "State",
    "SubAck",
    "Will",
    "connack_name",
    "decode_remaining_length",
    "encode_remaining_length",
]

MAX_REMAINING_LENGTH: Final = 268_435_455  # four 7-bit groups (MQTT 3.1.1 §2.2.3)
MAX_STRING: Final = 65_535  # a UTF-8 string's 16-bit length prefix
SUBACK_FAILURE: Final = 0x80


class PacketType(enum.IntEnum):
    CONNECT = 1
    CONNACK = 2
    PUBLISH = 3
    PUBACK = 4
    PUBREC = 5
    PUBREL = 6
    PUBCOMP = 7
    SUBSCRIBE = 8
    SUBACK = 9
    UNSUBSCRIBE = 10
    UNSUBACK = 11
    PINGREQ = 12
    PINGRESP = 13
    DISCONNECT = 14


_CONNACK_NAMES: Final = {
    0: "connection accepted",
    1: "unacceptable protocol version",
    2: "identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorized",
}


def connack_name(return_code: int) -> str:
    """The MQTT 3.1.1 name of a CONNACK return code (§3.2.2.3)."""
    return _CONNACK_NAMES.get(return_code, f"unknown return code {return_code}")


# --------------------------------------------------------------------------- errors


class ProtocolError(Exception):
    """Something is not MQTT 3.1.1: see the two subclasses for whose fault."""


class LocalProtocolError(ProtocolError, ValueError):
    """We were asked to send something MQTT does not allow (nothing was sent)."""


class RemoteProtocolError(ProtocolError):
    """The broker sent bytes that are not valid MQTT 3.1.1 for a client to receive."""


# --------------------------------------------------------------------------- events


class _NeedData:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA: Final = _NeedData()


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnAck:
    session_present: bool
    return_code: int  # 0: accepted; 1-5: refused (`connack_name`)


@dataclass(frozen=True, slots=True, kw_only=True)
class PubAck:
    """Our QoS 1 publish `mid` is acknowledged."""

    mid: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PubComp:
    """Our QoS 2 publish `mid` is complete (PUBREC was answered with PUBREL)."""

    mid: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SubAck:
    mid: int
    granted: tuple[int, ...]  # per filter: the QoS granted, or 0x80 for a refusal


@dataclass(frozen=True, slots=True, kw_only=True)
class Publish:
    """A message from the broker; `mid` is 0 for QoS 0. Acknowledge QoS 1/2 with
    `Connection.ack(mid, qos)`."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    dup: bool
    mid: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PingResp:
    pass


Event = ConnAck | PubAck | PubComp | SubAck | Publish | PingResp

_PINGRESP: Final = PingResp()


@dataclass(frozen=True, slots=True, kw_only=True)
class Will:
    """The last will the broker publishes when the connection ends without DISCONNECT."""

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionState:
    """What the next connection of a persistent session takes over from this one
    (`Connection.session_state`, `Connection(resume=...)`): where packet ids go on, and
    our QoS 2 publishes without PUBCOMP, whose ids the broker may still hold."""

    next_mid: int = 1
    unreleased: frozenset[int] = frozenset()


# --------------------------------------------------------------------------- states

class State(enum.Enum):
    IDLE = "idle"  # nothing sent yet
    CONNECTING = "connecting"  # CONNECT sent, no CONNACK yet
    CONNECTED = "connected"  # CONNACK 0 received
    DISCONNECTING = "disconnecting"  # DISCONNECT sent: acks still in transit are read
    CLOSED = "closed"  # CONNACK refused, or the broker broke the protocol


# What each call and each packet from the broker is allowed in, and where it leads
# (None: the state does not change). One table for both directions, as h11's _state.py.
# MQTT lets a client send PUBLISH/SUBSCRIBE before its CONNACK (§3.1.4); anything from
# the broker before its CONNACK, or a second CONNACK, is a protocol error.
_ANY_OPEN = (State.CONNECTING, State.CONNECTED)
_RULES: Final[dict[str, tuple[tuple[State, ...], State | None]]] = {
    "connect": ((State.IDLE,), State.CONNECTING),
    "publish": (_ANY_OPEN, None),
    "subscribe": (_ANY_OPEN, None),
    "ack": (_ANY_OPEN, None),
    "ping": (_ANY_OPEN, None),
    "disconnect": (_ANY_OPEN, State.DISCONNECTING),
    "CONNACK accepted": ((State.CONNECTING,), State.CONNECTED),
    "CONNACK refused": ((State.CONNECTING,), State.CLOSED),
    # any other packet from the broker
    "packet": ((State.CONNECTED, State.DISCONNECTING), None),
}


# --------------------------------------------------------------------------- encodings


def encode_remaining_length(n: int) -> bytes:
    """The fixed header's variable-length integer (1-4 bytes, 7 bits each, LSB first)."""
    if n < 128:
        if n < 0:
            raise LocalProtocolError(f"remaining length {n} is negative")
        return bytes((n,))
    if n > MAX_REMAINING_LENGTH:
        raise LocalProtocolError(
            f"packet of {n:,} bytes after its header exceeds MQTT's {MAX_REMAINING_LENGTH:,}")
    out = bytearray()
    while True:
        digit = n & 0x7F
        n >>= 7
        if n:
            out.append(digit | 0x80)
        else:
            out.append(digit)
            return bytes(out)


def decode_remaining_length(data: bytes | bytearray, start: int = 0) -> tuple[int, int] | None:
    """(value, index after it) of the varint at `start`; None when more bytes are needed.

    RemoteProtocolError if it runs past four bytes (§2.2.3).
    """
    value = 0
    shift = 0
    i = start
    n = len(data)
    while True:
        if i >= n:
            return None
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, i
        shift += 7
        if shift == 28:
            raise RemoteProtocolError("remaining length longer than four bytes")


def _string(text: str, what: str) -> bytes:
    try:
        raw = text.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate
        raise LocalProtocolError(f"{what} {text!r} is not valid UTF-8: {exc.reason}") from None
    if len(raw) > MAX_STRING:
        raise LocalProtocolError(f"{what} is {len(raw):,} bytes of UTF-8 (at most {MAX_STRING})")
    if "\0" in text:
        raise LocalProtocolError(f"{what} {text!r} contains NUL")
    return len(raw).to_bytes(2, "big") + raw


def _binary(data: bytes, what: str) -> bytes:
    if len(data) > MAX_STRING:
        raise LocalProtocolError(f"{what} is {len(data):,} bytes (at most {MAX_STRING})")
    return len(data).to_bytes(2, "big") + data


def _topic_name(topic: str) -> bytes:
    """A topic to publish to, length-prefixed: not empty, no wildcard, no NUL."""
    if not topic or "+" in topic or "#" in topic:
        raise LocalProtocolError(f"invalid topic {topic!r}: empty or holds a wildcard")
    return _string(topic, "topic")


def _topic_filter(pattern: str) -> bytes:
    """A filter to subscribe to: `+` fills a level, `#` only the last one (§4.7.1)."""
    if not pattern:
        raise LocalProtocolError("empty topic filter")
    levels = pattern.split("/")
    for i, level in enumerate(levels):
        if ("+" in level and level != "+") or ("#" in level and (
                level != "#" or i != len(levels) - 1)):
            raise LocalProtocolError(f"invalid topic filter {pattern!r}")
    return _string(pattern, "topic filter")


def _check_mid(mid: int) -> int:
    """`mid` if it is a packet id (1..65535), else LocalProtocolError."""
    if not 0 < mid <= 0xFFFF:
        raise LocalProtocolError(f"packet id {mid} is not in 1..65535")
    return mid


def _pubrel(mid: int) -> bytes:
    """PUBREL (its fixed flags 0b0010) for packet id `mid`."""
    return b"\x62\x02" + mid.to_bytes(2, "big")


def _check_qos(qos: int) -> None:
    if qos not in (0, 1, 2):
        raise LocalProtocolError(f"expected qos 0, 1 or 2 (got {qos!r})")


# Fixed-length packets from the broker: (type, flags) -> remaining length. Checked as
# soon as the fixed header is in, so a bad length never waits for bytes that are not
# coming.
_FIXED_LENGTH: Final = {0x20: 2, 0x40: 2, 0x50: 2, 0x62: 2, 0x70: 2, 0xB0: 2, 0xD0: 0}
_PUBLISH_HEADERS: Final = frozenset(
    0x30 | dup | qos << 1 | retain
    for qos in (0, 1, 2) for dup in (0, 8) for retain in (0, 1) if not (dup and not qos)
)
_VALID_FIRST: Final = frozenset(_FIXED_LENGTH) | {0x90} | _PUBLISH_HEADERS
_BROKER_SENDS: Final = frozenset((PacketType.CONNACK, PacketType.PUBLISH, PacketType.PUBACK,
                                  PacketType.PUBREC, PacketType.PUBREL, PacketType.PUBCOMP,
                                  PacketType.SUBACK, PacketType.UNSUBACK,
                                  PacketType.PINGRESP))

# Our outgoing QoS > 0 publishes, by packet id: what we wait for.
_WAIT_PUBACK: Final = 1
_WAIT_PUBREC: Final = 2
_WAIT_PUBCOMP: Final = 3
# An earlier connection's QoS 2 publish without PUBCOMP (`resume`): the id is reserved
# until the CONNACK (_HELD), then PUBREL is sent and its PUBCOMP frees it (_RELEASING).
_HELD: Final = 4
_RELEASING: Final = 5
_UNRELEASED: Final = frozenset((_WAIT_PUBREC, _WAIT_PUBCOMP, _HELD, _RELEASING))


# --------------------------------------------------------------------------- connection


class Connection:
    """One MQTT 3.1.1 client connection's protocol state (no IO)."""

    def __init__(self, *, max_packet_size: int = MAX_REMAINING_LENGTH,
                 resume: SessionState | None = None) -> None:
        """`resume`: the last connection's `session_state()`, for a persistent session
        (used only if `connect` asks for one and the CONNACK says it is present)."""
        self.state = State.IDLE
        # Larger packets from the broker are refused before their body is read.
        self.max_packet_size = max_packet_size
        self._in = bytearray()
        self._pos = 0  # start of the unparsed bytes in _in
        self._out = bytearray()
        self._error: RemoteProtocolError | None = None
        self._next_mid = 1
        self._outgoing: dict[int, int] = {}  # mid -> _WAIT_* for our QoS 1/2 publishes
        self._subscribing: dict[int, int] = {}  # mid -> how many filters
        # Their QoS 2 publishes seen and not yet released: mid -> PUBREC sent (acked).
        self._incoming_qos2: dict[int, bool] = {}
        self._clean_session: bool | None = None  # None: before connect()
        if resume is not None:
            _check_mid(resume.next_mid)
            for mid in resume.unreleased:
                self._outgoing[_check_mid(mid)] = _HELD
            self._next_mid = resume.next_mid

    # ---------------------------------------------------------------- state

    def _apply(self, what: str, remote: bool = False) -> None:
        allowed, to = _RULES[what]
        if self.state not in allowed:
            message = f"{what} not allowed in state {self.state.value}"
            if remote:
                raise self._fail(message)
            raise LocalProtocolError(message)
        if to is not None:
            self.state = to

    @property
    def in_flight(self) -> int:
        """How many of our QoS 1/2 publishes await their acknowledgement (with an
        earlier connection's QoS 2 publishes not yet released)."""
        return len(self._outgoing)

    def session_state(self) -> SessionState:
        """What the next connection of a persistent session must take over (pass it as
        `Connection(resume=...)`): call it once this connection is lost. After a clean
        session there is nothing to release: the broker discarded the session."""
        if self._clean_session:
            return SessionState(next_mid=self._next_mid)
        return SessionState(next_mid=self._next_mid, unreleased=frozenset(
            mid for mid, wait in self._outgoing.items() if wait in _UNRELEASED))

    # ---------------------------------------------------------------- outgoing

    def data_to_send(self) -> bytes:
        """Everything queued to write since the last call (b"" for nothing)."""
        if not self._out:
            return b""
        data = bytes(self._out)
        self._out.clear()
        return data

    def connect(
        self,
        *,
        client_id: str,
        clean_session: bool = True,
        keepalive: int = 60,
        username: str | None = None,
        password: str | bytes | None = None,
        will: Will | None = None,
    ) -> None:
        """Queue CONNECT (protocol level 4)."""
        if not 0 <= keepalive <= 65_535:
            raise LocalProtocolError(f"keepalive {keepalive} is not in 0..65535 seconds")
        if not client_id and not clean_session:
            raise LocalProtocolError("an empty client id needs clean_session (§3.1.3.1)")
        if password is not None and username is None:
            raise LocalProtocolError("a password needs a user name (§3.1.2.9)")
        flags = 0x02 if clean_session else 0
        body = bytearray(b"\x00\x04MQTT\x04")
        payload = bytearray(_string(client_id, "client id"))
        if will is not None:
            _check_qos(will.qos)
            flags |= 0x04 | will.qos << 3 | (0x20 if will.retain else 0)
            payload += _topic_name(will.topic) + _binary(will.payload, "will payload")
        if username is not None:
            flags |= 0x80
            payload += _string(username, "user name")
        if password is not None:
            flags |= 0x40
            raw = password.encode("utf-8") if isinstance(password, str) else password
            payload += _binary(raw, "password")
        body.append(flags)
        body += keepalive.to_bytes(2, "big")
        body += payload
        self._apply("connect")
        self._clean_session = clean_session
        if clean_session:  # the broker discards the old session: nothing is held
            self._forget_held()
        self._out += b"\x10" + encode_remaining_length(len(body)) + body

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> int:
        """Queue PUBLISH; returns its packet id (0 for QoS 0). PubAck (QoS 1) or PubComp
        (QoS 2) with that id tells when the broker has it."""
        name = _topic_name(topic)
        mid = 0
        if qos == 0:
            length = len(name) + len(payload)
            header = b"\x31" if retain else b"\x30"
        else:
            _check_qos(qos)
            length = len(name) + 2 + len(payload)
            header = bytes((0x30 | qos << 1 | (1 if retain else 0),))
        rl = encode_remaining_length(length)  # raises for too large a payload
        self._apply("publish")
        if qos:
            mid = self._allocate()
            self._outgoing[mid] = _WAIT_PUBACK if qos == 1 else _WAIT_PUBREC
            self._out += header + rl + name + mid.to_bytes(2, "big") + payload
        else:
            self._out += header + rl + name + payload
        return mid

    def subscribe(self, filters: list[tuple[str, int]]) -> int:
        """Queue SUBSCRIBE for (filter, max qos) pairs; returns the packet id its SubAck
        will carry."""
        if not filters:
            raise LocalProtocolError("SUBSCRIBE needs at least one topic filter")
        body = bytearray()
        for pattern, qos in filters:
            _check_qos(qos)
            body += _topic_filter(pattern) + bytes((qos,))
        rl = encode_remaining_length(len(body) + 2)
        self._apply("subscribe")
        mid = self._allocate()
        self._subscribing[mid] = len(filters)
        self._out += b"\x82" + rl + mid.to_bytes(2, "big") + body
        return mid

    def ack(self, mid: int, qos: int) -> None:
        """Acknowledge a received Publish: PUBACK (QoS 1) or PUBREC (QoS 2; the broker's
        PUBREL is then answered with PUBCOMP). A no-op for QoS 0."""
        if qos == 0:
            return
        _check_qos(qos)
        _check_mid(mid)
        self._apply("ack")
        if qos == 1:
            self._out += b"\x40\x02" + mid.to_bytes(2, "big")
            return
        if mid not in self._incoming_qos2:
            raise LocalProtocolError(f"no QoS 2 publish {mid} waiting for its PUBREC")
        self._incoming_qos2[mid] = True
        self._out += b"\x50\x02" + mid.to_bytes(2, "big")

    def ping(self) -> None:
        """Queue PINGREQ (the broker answers PingResp)."""
        self._apply("ping")
        self._out += b"\xc0\x00"

    def disconnect(self) -> None:
        """Queue DISCONNECT: the broker then discards the will. Close the socket after
        writing it."""
        self._apply("disconnect")
        self._out += b"\xe0\x00"

    def _allocate(self) -> int:
        """The next packet id not in flight (1..65535, wrapping)."""
        mid = self._next_mid
        busy = self._outgoing
        subs = self._subscribing
        for _ in range(0xFFFF):
            nxt = mid + 1 if mid < 0xFFFF else 1
            if mid not in busy and mid not in subs:
                self._next_mid = nxt
                return mid
            mid = nxt
        raise LocalProtocolError("all 65,535 packet ids are in flight")

    # ---------------------------------------------------------------- incoming

    def receive_data(self, data: bytes) -> None:
        """Add bytes read from the broker (any fragment); then call `next_event`."""
        self._in += data

    def next_event(self) -> Event | _NeedData:
        """The next complete event, or NEED_DATA. RemoteProtocolError if the broker's
        bytes are not MQTT 3.1.1 (raised again on every later call)."""
        while True:
            if self._error is not None:
                raise self._error
            buf = self._in
            pos = self._pos
            n = len(buf)
            if pos >= n:
                if pos:
                    buf.clear()
                    self._pos = 0
                return NEED_DATA
            first = buf[pos]
            if first not in _VALID_FIRST:
                raise self._bad_header(first)
            if pos + 1 < n and buf[pos + 1] < 0x80:  # the usual one-byte length
                length = buf[pos + 1]
                start = pos + 2
            else:
                try:
                    found = decode_remaining_length(buf, pos + 1)
                except RemoteProtocolError as exc:
                    raise self._fail(str(exc)) from None
                if found is None:
                    return self._need_more()
                length, start = found
            fixed = _FIXED_LENGTH.get(first)
            if fixed is not None and length != fixed:
                raise self._fail(f"{_type_name(first)} with remaining length {length} "
                                 f"(expected {fixed})")
            if length > self.max_packet_size:
                raise self._fail(f"{_type_name(first)} of {length:,} bytes exceeds the "
                                 f"limit of {self.max_packet_size:,}")
            end = start + length
            if end > n:
                return self._need_more()
            self._pos = end
            event = self._packet(first, buf, start, end)
            if event is not None:
                return event

    def _need_more(self) -> _NeedData:
        if self._pos > 65_536:  # drop what was parsed, not on every packet
            del self._in[: self._pos]
            self._pos = 0
        return NEED_DATA

    def _fail(self, message: str) -> RemoteProtocolError:
        self._error = RemoteProtocolError(message)
        self.state = State.CLOSED
        return self._error

    def _bad_header(self, first: int) -> RemoteProtocolError:
        kind = first >> 4
        if kind in _BROKER_SENDS:
            return self._fail(f"flags 0x{first & 0x0F:x} are wrong for {_type_name(first)}")
        if 0 < kind < 15:
            return self._fail(f"{PacketType(kind).name} is not a packet a broker sends")
        return self._fail(f"unknown packet type {kind} (first byte 0x{first:02x})")

    def _packet(self, first: int, buf: bytearray, start: int, end: int) -> Event | None:
        """Decode one whole packet (first byte and flags already checked)."""
        if first == 0x40:  # PUBACK: the hot path
            if self.state is not State.CONNECTED:
                self._apply("packet", remote=True)
            mid = buf[start] << 8 | buf[start + 1]
            if self._outgoing.get(mid) == _WAIT_PUBACK:
                del self._outgoing[mid]
                return PubAck(mid=mid)
            self._unexpected_ack(mid, "PUBACK")
            return None
        if first == 0x20:
            return self._connack(buf[start], buf[start + 1])
        self._apply("packet", remote=True)
        kind = first >> 4
        if kind == PacketType.PUBLISH:
            return self._publish(first, bytes(buf[start:end]))
        if kind == PacketType.PINGRESP:
            return _PINGRESP
        if kind == PacketType.SUBACK:
            return self._suback(bytes(buf[start:end]))
        mid = buf[start] << 8 | buf[start + 1]
        if kind == PacketType.PUBREC:
            state = self._outgoing.get(mid)
            if state in (_WAIT_PUBREC, _WAIT_PUBCOMP, _RELEASING):
                if state == _WAIT_PUBREC:
                    self._outgoing[mid] = _WAIT_PUBCOMP
                self._out += _pubrel(mid)  # PUBREL, again if resent
                return None
            self._unexpected_ack(mid, "PUBREC")
            return None
        if kind == PacketType.PUBCOMP:
            state = self._outgoing.get(mid)
            if state == _WAIT_PUBCOMP:
                del self._outgoing[mid]
                return PubComp(mid=mid)
            if state == _RELEASING:  # an earlier connection's: nobody here waits for it
                del self._outgoing[mid]
                return None
            self._unexpected_ack(mid, "PUBCOMP")
            return None
        if kind == PacketType.PUBREL:
            if mid == 0:
                raise self._fail("PUBREL with packet id 0")
            # Answered even for an id we do not know: a PUBREL the broker resends to a
            # persistent session after a reconnect (§4.3.3).
            self._incoming_qos2.pop(mid, None)
            self._out += b"\x70\x02" + mid.to_bytes(2, "big")
            return None
        # UNSUBACK: we never send UNSUBSCRIBE
        raise self._fail(f"UNSUBACK {mid} for no UNSUBSCRIBE")

    def _unexpected_ack(self, mid: int, what: str) -> None:
        if mid == 0:
            raise self._fail(f"{what} with packet id 0")
        # An ack for an id not in flight (e.g. a duplicate): nothing waits for it.

    def _connack(self, flags: int, return_code: int) -> ConnAck:
        if flags & 0xFE:
            raise self._fail(f"CONNACK with reserved flags set (0x{flags:02x})")
        if return_code and flags:
            raise self._fail("CONNACK refusing with session present set (§3.2.2.2)")
        self._apply("CONNACK refused" if return_code else "CONNACK accepted", remote=True)
        if not return_code:
            if flags and not self._clean_session:
                self._release_held()
            else:  # a new session: the broker holds none of our ids
                self._forget_held()
        return ConnAck(session_present=bool(flags), return_code=return_code)

    def _release_held(self) -> None:
        """PUBREL for each QoS 2 publish of an earlier connection (§4.4): the broker
        releases what it holds under that id, and answers PUBCOMP either way."""
        outgoing = self._outgoing
        for mid in sorted(m for m, wait in outgoing.items() if wait == _HELD):
            outgoing[mid] = _RELEASING
            self._out += _pubrel(mid)

    def _forget_held(self) -> None:
        outgoing = self._outgoing
        for mid in [m for m, wait in outgoing.items() if wait == _HELD]:
            del outgoing[mid]

    def _publish(self, first: int, body: bytes) -> Publish | None:
        qos = (first >> 1) & 3
        size = len(body)
        if size < 2:
            raise self._fail("PUBLISH truncated before its topic length")
        tlen = body[0] << 8 | body[1]
        at = 2 + tlen
        if at + (2 if qos else 0) > size:
            raise self._fail(f"PUBLISH truncated: topic of {tlen} bytes in {size}")
        if not tlen:
            raise self._fail("PUBLISH with an empty topic")
        try:
            topic = body[2:at].decode("utf-8")
        except UnicodeDecodeError:
            raise self._fail(f"PUBLISH topic is not UTF-8: {body[2:at]!r}") from None
        if "+" in topic or "#" in topic or "\0" in topic:
            raise self._fail(f"PUBLISH topic {topic!r} holds a wildcard or NUL")
        mid = 0
        if qos:
            mid = body[at] << 8 | body[at + 1]
            at += 2
            if not mid:
                raise self._fail(f"QoS {qos} PUBLISH with packet id 0")
        dup = bool(first & 0x08)
        if qos == 2:
            acked = self._incoming_qos2.get(mid)
            if acked is not None:  # a resend of one we have: no second event
                if acked:
                    self._out += b"\x50\x02" + mid.to_bytes(2, "big")
                return None
            self._incoming_qos2[mid] = False
        return Publish(topic=topic, payload=body[at:], qos=qos, retain=bool(first & 1),
                       dup=dup, mid=mid)

    def _suback(self, body: bytes) -> SubAck:
        if len(body) < 3:
            raise self._fail(f"SUBACK of {len(body)} bytes (at least 3)")
        mid = body[0] << 8 | body[1]
        granted = tuple(body[2:])
        for code in granted:
            if code not in (0, 1, 2, SUBACK_FAILURE):
                raise self._fail(f"SUBACK return code 0x{code:02x} is not 0, 1, 2 or 0x80")
        count = self._subscribing.pop(mid, None)
        if count is None:
            raise self._fail(f"SUBACK {mid} for no SUBSCRIBE")
        if count != len(granted):
            raise self._fail(f"SUBACK {mid} has {len(granted)} codes for {count} filters")
        return SubAck(mid=mid, granted=granted)


def _type_name(first: int) -> str:
    kind = first >> 4
    return PacketType(kind).name if 0 < kind < 15 else f"type {kind}"
