"""gateway.mqttproto, the sans-IO MQTT 3.1.1 client: table tests from the specification
and property tests against the tests' own broker-side encoder and client-side decoder
(tests/mqttwire.py), every stream fed in random fragments."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from mqttwire import (
    ClientDecoder,
    Packet,
    connack,
    pingresp,
    puback,
    pubcomp,
    publish,
    pubrec,
    pubrel,
    suback,
    varint,
)

from gateway.mqttproto import (
    MAX_REMAINING_LENGTH,
    NEED_DATA,
    ConnAck,
    Connection,
    Event,
    LocalProtocolError,
    PingResp,
    ProtocolError,
    PubAck,
    PubComp,
    Publish,
    RemoteProtocolError,
    SessionState,
    State,
    SubAck,
    Will,
    connack_name,
    decode_remaining_length,
    encode_remaining_length,
)

# --------------------------------------------------------------------------- helpers


def drain(conn: Connection) -> list[Event]:
    events: list[Event] = []
    while (event := conn.next_event()) is not NEED_DATA:
        assert not isinstance(event, type(NEED_DATA))
        events.append(event)
    return events


def feed(conn: Connection, data: bytes, cuts: list[int] | None = None) -> list[Event]:
    """Feed `data` cut at `cuts` (None: one byte at a time), collecting events."""
    points = sorted({c for c in (cuts if cuts is not None else range(len(data))) if
                     0 < c < len(data)})
    events: list[Event] = []
    start = 0
    for end in [*points, len(data)]:
        conn.receive_data(data[start:end])
        events += drain(conn)
        start = end
    return events


def connected(**kw: object) -> tuple[Connection, ClientDecoder]:
    conn = Connection()
    conn.connect(client_id="c1", **kw)  # type: ignore[arg-type]
    wire = ClientDecoder()
    assert [p.kind for p in wire.feed(conn.data_to_send())] == ["CONNECT"]
    conn.receive_data(connack())
    assert drain(conn) == [ConnAck(session_present=False, return_code=0)]
    assert conn.state is State.CONNECTED
    return conn, wire


topics = st.text(st.characters(exclude_characters="+#\0", exclude_categories=("Cs",)),
                 min_size=1, max_size=40)
fragments = st.lists(st.integers(min_value=1, max_value=2000), max_size=30)


# --------------------------------------------------------------------------- remaining length

VARINTS = [
    (0, b"\x00"), (127, b"\x7f"), (128, b"\x80\x01"), (16_383, b"\xff\x7f"),
    (16_384, b"\x80\x80\x01"), (2_097_151, b"\xff\xff\x7f"), (2_097_152, b"\x80\x80\x80\x01"),
    (268_435_455, b"\xff\xff\xff\x7f"),
]  # fmt: skip


@pytest.mark.parametrize(("value", "wire"), VARINTS)
def test_remaining_length_table_from_the_spec(value: int, wire: bytes) -> None:
    assert encode_remaining_length(value) == wire
    assert decode_remaining_length(wire + b"tail") == (value, len(wire))
    assert decode_remaining_length(wire[:-1]) is None  # more bytes needed


@given(st.integers(min_value=0, max_value=MAX_REMAINING_LENGTH), st.binary(max_size=3))
def test_remaining_length_round_trips(value: int, prefix: bytes) -> None:
    wire = encode_remaining_length(value)
    assert wire == varint(value) and 1 <= len(wire) <= 4
    assert decode_remaining_length(prefix + wire, len(prefix)) == (value, len(prefix) + len(wire))


@given(st.integers(min_value=MAX_REMAINING_LENGTH + 1, max_value=2**40))
def test_remaining_length_over_the_limit_is_refused(value: int) -> None:
    with pytest.raises(LocalProtocolError, match="exceeds"):
        encode_remaining_length(value)


def test_remaining_length_of_five_bytes_is_a_remote_error() -> None:
    with pytest.raises(RemoteProtocolError, match="four bytes"):
        decode_remaining_length(b"\xff\xff\xff\xff\x01")
    with pytest.raises(RemoteProtocolError):  # known bad before the fifth byte arrives
        decode_remaining_length(b"\x80\x80\x80\x80")


# --------------------------------------------------------------------------- outgoing


def test_connect_bytes_match_the_spec() -> None:
    conn = Connection()
    conn.connect(client_id="gw", clean_session=True, keepalive=30)
    assert conn.data_to_send() == (
        b"\x10\x0e\x00\x04MQTT\x04\x02\x00\x1e\x00\x02gw")
    assert conn.data_to_send() == b""
    assert conn.state is State.CONNECTING


@given(client_id=st.text(st.characters(exclude_characters="\0", exclude_categories=("Cs",)),
                         min_size=1, max_size=30),
       clean=st.booleans(), keepalive=st.integers(0, 65535),
       user=st.none() | st.text(st.characters(exclude_characters="\0",
                                              exclude_categories=("Cs",)), max_size=20),
       password=st.binary(max_size=20), will=st.none() | st.tuples(
           topics, st.binary(max_size=50), st.integers(0, 2), st.booleans()))
def test_connect_round_trips(client_id: str, clean: bool, keepalive: int, user: str | None,
                             password: bytes, will: tuple[str, bytes, int, bool] | None) -> None:
    conn = Connection()
    conn.connect(client_id=client_id, clean_session=clean, keepalive=keepalive, username=user,
                 password=password if user is not None else None,
                 will=Will(topic=will[0], payload=will[1], qos=will[2], retain=will[3])
                 if will else None)
    [p] = ClientDecoder().feed(conn.data_to_send())
    expected: dict[str, object] = {"client_id": client_id, "keepalive": keepalive,
                                   "clean_session": clean}
    if will:
        expected["will"] = will
    if user is not None:
        expected["username"] = user
        expected["password"] = password
    assert p == Packet("CONNECT", fields=expected)


@given(st.lists(st.tuples(topics, st.binary(max_size=300), st.integers(0, 2), st.booleans()),
                min_size=1, max_size=20))
def test_publishes_round_trip_and_take_packet_ids_in_turn(
        messages: list[tuple[str, bytes, int, bool]]) -> None:
    conn, wire = connected()
    mids = [conn.publish(t, p, q, r) for t, p, q, r in messages]
    packets = wire.feed(conn.data_to_send())  # all of them in one write
    assert [(p.fields["topic"], p.fields["payload"], p.fields["qos"], p.fields["retain"])
            for p in packets] == messages
    assert [p.mid for p in packets] == mids
    qos_mids = [m for m, (_, _, q, _) in zip(mids, messages, strict=True) if q]
    assert qos_mids == list(range(1, len(qos_mids) + 1))
    assert all(m == 0 for m, (_, _, q, _) in zip(mids, messages, strict=True) if not q)
    assert not any(p.fields["dup"] for p in packets)
    assert conn.in_flight == len(qos_mids)


def test_packet_ids_wrap_and_skip_those_in_flight() -> None:
    conn, _ = connected()
    first = [conn.publish("t", b"", 1) for _ in range(3)]
    assert first == [1, 2, 3]
    conn.receive_data(puback(2))
    assert drain(conn) == [PubAck(mid=2)]
    conn._next_mid = 65_534
    got = [conn.publish("t", b"", 1) for _ in range(4)]
    assert got == [65_534, 65_535, 2, 4]  # 1 and 3 still in flight, 0 never used
    sub = conn.subscribe([("a/#", 1)])
    assert sub == 5


def test_all_packet_ids_in_flight_is_a_local_error() -> None:
    conn, _ = connected()
    for _ in range(65_535):
        conn.publish("t", b"", 1)
    with pytest.raises(LocalProtocolError, match="65,535"):
        conn.publish("t", b"", 1)
    conn.publish("t", b"", 0)  # QoS 0 needs no id


def test_subscribe_ping_ack_disconnect_bytes() -> None:
    conn, wire = connected()
    mid = conn.subscribe([("$share/g/vmn/mt/send", 1), ("a/+/c", 2), ("#", 0)])
    conn.ping()
    conn.ack(9, 1)
    conn.ack(0, 0)  # QoS 0: nothing to acknowledge
    conn.disconnect()
    assert wire.feed(conn.data_to_send()) == [
        Packet("SUBSCRIBE", mid, {"filters": [("$share/g/vmn/mt/send", 1), ("a/+/c", 2),
                                              ("#", 0)]}),
        Packet("PINGREQ"), Packet("PUBACK", 9), Packet("DISCONNECT"),
    ]
    assert conn.state is State.DISCONNECTING
    with pytest.raises(LocalProtocolError, match="not allowed"):
        conn.publish("t", b"x")


class _Huge(bytes):
    """Claims a length the remaining length cannot carry, without allocating it."""

    def __len__(self) -> int:
        return MAX_REMAINING_LENGTH


@pytest.mark.parametrize(("call", "match"), [
    (lambda c: c.publish("a/+/b", b""), "wildcard"),
    (lambda c: c.publish("a/#", b""), "wildcard"),
    (lambda c: c.publish("", b""), "empty"),
    (lambda c: c.publish("a\0b", b""), "NUL"),
    (lambda c: c.publish("\ud800", b""), "UTF-8"),
    (lambda c: c.publish("é" * 32_768, b""), "65,536 bytes"),
    (lambda c: c.publish("t", b"", 3), "qos"),
    (lambda c: c.publish("t", b"", -1), "qos"),
    (lambda c: c.publish("t", _Huge(), 0), "exceeds"),
    (lambda c: c.subscribe([]), "at least one"),
    (lambda c: c.subscribe([("a/b#", 1)]), "invalid topic filter"),
    (lambda c: c.subscribe([("a/#/b", 1)]), "invalid topic filter"),
    (lambda c: c.subscribe([("a+", 1)]), "invalid topic filter"),
    (lambda c: c.subscribe([("a", 3)]), "qos"),
    (lambda c: c.ack(0, 1), "packet id"),
    (lambda c: c.ack(5, 2), "no QoS 2 publish"),
    (lambda c: c.connect(client_id="again"), "not allowed in state connected"),
])  # fmt: skip
def test_what_mqtt_does_not_allow_is_refused_and_nothing_is_sent(call: object,
                                                                 match: str) -> None:
    conn, _ = connected()
    with pytest.raises(LocalProtocolError, match=match) as info:
        call(conn)  # type: ignore[operator]
    assert isinstance(info.value, ValueError)  # the action treats it as a bad request
    assert conn.data_to_send() == b""
    assert conn.in_flight == 0


def test_connect_arguments_are_checked() -> None:
    for kw, match in [({"keepalive": 70_000}, "keepalive"),
                      ({"client_id": "", "clean_session": False}, "empty client id"),
                      ({"password": "pw"}, "user name")]:
        conn = Connection()
        args: dict[str, object] = {"client_id": "c", **kw}
        with pytest.raises(LocalProtocolError, match=match):
            conn.connect(**args)  # type: ignore[arg-type]
        assert conn.state is State.IDLE and conn.data_to_send() == b""


def test_nothing_before_connect() -> None:
    with pytest.raises(LocalProtocolError, match="state idle"):
        Connection().publish("t", b"x", 1)


# --------------------------------------------------------------------------- incoming


@given(acks=st.permutations(list(range(8))), incoming=st.lists(st.tuples(
    topics, st.binary(max_size=200), st.integers(0, 2), st.booleans()), max_size=10),
    cuts=fragments, granted=st.lists(st.sampled_from([0, 1, 2, 0x80]), min_size=1,
                                     max_size=4))
def test_every_broker_packet_round_trips_in_random_fragments(
        acks: list[int], incoming: list[tuple[str, bytes, int, bool]], cuts: list[int],
        granted: list[int]) -> None:
    conn = Connection()
    conn.connect(client_id="c1")
    # 8 publishes: even indices QoS 1, odd QoS 2; and one SUBSCRIBE
    mids = [conn.publish(f"out/{i}", b"x", 1 + i % 2) for i in range(8)]
    sub = conn.subscribe([(f"f/{i}", 1) for i in range(len(granted))])
    wire = ClientDecoder()
    wire.feed(conn.data_to_send())
    stream = connack(session_present=True) + suback(sub, granted)
    expected: list[Event] = [ConnAck(session_present=True, return_code=0),
                             SubAck(mid=sub, granted=tuple(granted))]
    for i in acks:
        if i % 2:
            stream += pubrec(mids[i]) + pubcomp(mids[i])
            expected.append(PubComp(mid=mids[i]))
        else:
            stream += puback(mids[i])
            expected.append(PubAck(mid=mids[i]))
    for n, (t, p, q, r) in enumerate(incoming, start=100):
        stream += publish(t, p, q, n if q else 0, r)
        expected.append(Publish(topic=t, payload=p, qos=q, retain=r, dup=False,
                                mid=n if q else 0))
    stream += pingresp()
    expected.append(PingResp())
    cut_points, at = [], 0
    for c in cuts:
        at += c
        cut_points.append(at)
    assert feed(conn, stream, cut_points) == expected
    assert conn.in_flight == 0
    # each PUBREC was answered with a PUBREL, in the order they came
    rels = [p.mid for p in wire.feed(conn.data_to_send())]
    assert rels == [mids[i] for i in acks if i % 2]


def test_one_byte_at_a_time() -> None:
    conn = Connection()
    conn.connect(client_id="c")
    mid = conn.publish("a", b"b", 1)
    big = b"p" * 20_000  # a three-byte remaining length
    stream = connack() + puback(mid) + publish("in/x", big, 1, 7, retain=True) + pingresp()
    assert feed(conn, stream) == [
        ConnAck(session_present=False, return_code=0), PubAck(mid=mid),
        Publish(topic="in/x", payload=big, qos=1, retain=True, dup=False, mid=7), PingResp()]


def test_incoming_qos2_is_delivered_once_and_completed() -> None:
    conn, wire = connected()
    one = publish("t", b"once", 2, 7)
    conn.receive_data(one)
    assert drain(conn) == [Publish(topic="t", payload=b"once", qos=2, retain=False,
                                   dup=False, mid=7)]
    conn.receive_data(publish("t", b"once", 2, 7, dup=True))  # resent before our PUBREC
    assert drain(conn) == [] and conn.data_to_send() == b""
    conn.ack(7, 2)
    assert wire.feed(conn.data_to_send()) == [Packet("PUBREC", 7)]
    conn.receive_data(publish("t", b"once", 2, 7, dup=True))  # our PUBREC was lost
    assert drain(conn) == []
    assert wire.feed(conn.data_to_send()) == [Packet("PUBREC", 7)]
    conn.receive_data(pubrel(7))
    assert drain(conn) == []
    assert wire.feed(conn.data_to_send()) == [Packet("PUBCOMP", 7)]
    conn.receive_data(pubrel(7))  # a resent PUBREL: answered again
    drain(conn)
    assert wire.feed(conn.data_to_send()) == [Packet("PUBCOMP", 7)]
    conn.receive_data(one)  # released: the id may carry a new message
    assert len(drain(conn)) == 1


def test_outgoing_qos2_pubrec_then_pubrel_then_pubcomp() -> None:
    conn, wire = connected()
    mid = conn.publish("t", b"x", 2)
    wire.feed(conn.data_to_send())
    conn.receive_data(puback(mid))  # the wrong ack for QoS 2: nothing waits for it
    assert drain(conn) == []
    conn.receive_data(pubcomp(mid))  # before PUBREC: ignored too
    assert drain(conn) == [] and conn.in_flight == 1
    conn.receive_data(pubrec(mid) + pubrec(mid))  # a duplicate PUBREC: PUBREL again
    assert drain(conn) == []
    assert wire.feed(conn.data_to_send()) == [Packet("PUBREL", mid), Packet("PUBREL", mid)]
    conn.receive_data(pubcomp(mid))
    assert drain(conn) == [PubComp(mid=mid)]
    conn.receive_data(pubcomp(mid))
    assert drain(conn) == [] and conn.in_flight == 0


def test_refused_connack_closes() -> None:
    conn = Connection()
    conn.connect(client_id="c")
    conn.receive_data(connack(5))
    assert drain(conn) == [ConnAck(session_present=False, return_code=5)]
    assert conn.state is State.CLOSED
    assert connack_name(5) == "not authorized" and connack_name(4) == "bad user name or password"
    assert connack_name(1) == "unacceptable protocol version" and "9" in connack_name(9)
    with pytest.raises(LocalProtocolError):
        conn.publish("t", b"")


def test_acks_after_our_disconnect_are_still_read() -> None:
    conn, _ = connected()
    mid = conn.publish("t", b"", 1)
    conn.disconnect()
    conn.receive_data(puback(mid))
    assert drain(conn) == [PubAck(mid=mid)]


# --------------------------------------------------------------------------- malformed input

MALFORMED: list[tuple[str, bytes, str]] = [
    ("remaining length of five bytes", b"\x40\xff\xff\xff\xff\x01", "four bytes"),
    ("reserved type 0", b"\x00\x00", "unknown packet type 0"),
    ("reserved type 15", b"\xf0\x00", "unknown packet type 15"),
    ("CONNECT from the broker", b"\x10\x00", "CONNECT is not a packet a broker sends"),
    ("SUBSCRIBE from the broker", b"\x82\x03\x00\x01\x00", "SUBSCRIBE is not"),
    ("PINGREQ from the broker", b"\xc0\x00", "PINGREQ is not"),
    ("PUBACK with flags", b"\x41\x02\x00\x01", "flags 0x1 are wrong for PUBACK"),
    ("PUBREL without its flags", b"\x60\x02\x00\x01", "flags 0x0 are wrong for PUBREL"),
    ("PUBLISH with QoS 3", b"\x36\x05\x00\x01t\x00\x01", "flags 0x6 are wrong for PUBLISH"),
    ("DUP on QoS 0", b"\x38\x03\x00\x01t", "flags 0x8 are wrong for PUBLISH"),
    ("PUBACK too long", b"\x40\x03\x00\x01\x00", "PUBACK with remaining length 3"),
    ("PINGRESP with a body", b"\xd0\x01\x00", "PINGRESP with remaining length 1"),
    ("PUBACK id 0", puback(0), "PUBACK with packet id 0"),
    ("PUBLISH truncated topic", b"\x30\x04\x00\x09ab", "truncated"),
    ("PUBLISH no topic length", b"\x30\x01\x00", "truncated before its topic"),
    ("PUBLISH QoS 1 without id", b"\x32\x03\x00\x01t", "truncated"),
    ("PUBLISH empty topic", publish(b"", b"x"), "empty topic"),
    ("PUBLISH topic not UTF-8", publish(b"\xff\xfe", b"x"), "not UTF-8"),
    ("PUBLISH topic wildcard", publish("a/+", b"x"), "wildcard"),
    ("PUBLISH topic NUL", publish("a\0", b"x"), "NUL"),
    ("PUBLISH QoS 1 id 0", publish("t", b"x", 1, 0), "packet id 0"),
    ("SUBACK bad code", suback(1, [3]), "return code 0x03"),
    ("SUBACK too short", b"\x90\x02\x00\x01", "at least 3"),
    ("SUBACK for nothing", suback(77, [1]), "SUBACK 77 for no SUBSCRIBE"),
    ("UNSUBACK for nothing", b"\xb0\x02\x00\x01", "UNSUBACK"),
    ("second CONNACK", connack(), "CONNACK accepted not allowed in state connected"),
]  # fmt: skip


@pytest.mark.parametrize(("what", "bad", "match"), MALFORMED, ids=[m[0] for m in MALFORMED])
@pytest.mark.parametrize("bytewise", [False, True])
def test_malformed_input_is_a_clear_error_after_the_events_before_it(
        what: str, bad: bytes, match: str, bytewise: bool) -> None:
    conn, _ = connected()
    mid = conn.publish("t", b"x", 1)
    stream = puback(mid) + publish("ok", b"fine") + bad + pingresp()
    events: list[Event] = []
    with pytest.raises(RemoteProtocolError, match=match):
        if bytewise:
            for i in range(len(stream)):
                conn.receive_data(stream[i:i + 1])
                while (e := conn.next_event()) is not NEED_DATA:
                    events.append(e)  # type: ignore[arg-type]
        else:
            conn.receive_data(stream)
            while (e := conn.next_event()) is not NEED_DATA:
                events.append(e)  # type: ignore[arg-type]
    assert events == [PubAck(mid=mid), Publish(topic="ok", payload=b"fine", qos=0,
                                               retain=False, dup=False, mid=0)]
    assert conn.state is State.CLOSED
    with pytest.raises(RemoteProtocolError, match=match):  # and stays broken
        conn.next_event()


def test_bad_header_fails_before_the_body_arrives() -> None:
    """A wrong length or packet type is an error at once, not a wait for bytes."""
    conn, _ = connected()
    conn.receive_data(b"\x40\x7f")  # a PUBACK announcing 127 bytes
    with pytest.raises(RemoteProtocolError, match="remaining length 127"):
        conn.next_event()
    conn, _ = connected()
    conn.receive_data(b"\x00")
    with pytest.raises(RemoteProtocolError, match="unknown packet type"):
        conn.next_event()
    small = Connection(max_packet_size=100)
    small.connect(client_id="c")
    small.receive_data(connack() + b"\x30\xe8\x07")  # a PUBLISH of 1,000 bytes
    assert drain_until_error(small) == [ConnAck(session_present=False, return_code=0)]


def drain_until_error(conn: Connection) -> list[Event]:
    events: list[Event] = []
    with pytest.raises(RemoteProtocolError, match="exceeds the limit of 100"):
        while (e := conn.next_event()) is not NEED_DATA:
            events.append(e)  # type: ignore[arg-type]
    return events


def test_anything_before_connack_is_an_error() -> None:
    for early in (puback(1), publish("t", b"x"), pingresp()):
        conn = Connection()
        conn.connect(client_id="c")
        conn.receive_data(early)
        with pytest.raises(RemoteProtocolError, match="not allowed in state connecting"):
            conn.next_event()
    conn = Connection()
    conn.connect(client_id="c")
    conn.receive_data(b"\x20\x02\x02\x00")
    with pytest.raises(RemoteProtocolError, match="reserved flags"):
        conn.next_event()
    conn = Connection()
    conn.connect(client_id="c")
    conn.receive_data(b"\x20\x02\x01\x05")
    with pytest.raises(RemoteProtocolError, match="session present"):
        conn.next_event()


def _outcome(conn: Connection, data: bytes, cuts: list[int]) -> tuple[list[Event], str | None]:
    """The events, then the error (None: no error), feeding `data` cut at `cuts`."""
    events: list[Event] = []
    start = 0
    try:
        for end in [*sorted({c for c in cuts if 0 < c < len(data)}), len(data)]:
            conn.receive_data(data[start:end])
            start = end
            while (e := conn.next_event()) is not NEED_DATA:
                events.append(e)  # type: ignore[arg-type]
    except ProtocolError as exc:
        assert isinstance(exc, RemoteProtocolError)
        return events, str(exc)
    return events, None


@given(st.binary(max_size=300), fragments, st.booleans())
def test_garbage_raises_only_protocol_errors_the_same_in_any_fragments(
        garbage: bytes, cuts: list[int], after_connack: bool) -> None:
    outcomes = []
    for split in (cuts, list(range(len(garbage) + 10)), []):
        conn = Connection()
        conn.connect(client_id="c")
        for i in range(1, 4):
            conn.publish("t", b"", i % 3)
        conn.subscribe([("a", 1)])
        if after_connack:
            conn.receive_data(connack())
            assert len(drain(conn)) == 1
        cut_points, at = [], 0
        for c in split:
            at += c
            cut_points.append(at)
        outcomes.append(_outcome(conn, garbage, cut_points))
    assert outcomes[0] == outcomes[1] == outcomes[2]


@given(st.lists(st.sampled_from([connack(), puback(1), pubrec(2), pubcomp(2), pubrel(3),
                                 suback(4, [1]), pingresp(), publish("t", b"x", 1, 5),
                                 publish("t", b"y", 2, 6)]), max_size=12), st.binary(max_size=40),
       fragments)
def test_valid_packets_then_garbage(packets: list[bytes], garbage: bytes,
                                    cuts: list[int]) -> None:
    """Whatever order valid packets come in, and whatever follows them: events or a
    RemoteProtocolError, never another exception, and the same whole or in pieces."""
    stream = b"".join(packets) + garbage
    results = []
    for split in (cuts, []):
        conn = Connection()
        conn.connect(client_id="c")
        conn.publish("t", b"", 1)
        conn.publish("t", b"", 2)
        cut_points, at = [], 0
        for c in split:
            at += c
            cut_points.append(at)
        results.append(_outcome(conn, stream, cut_points))
    assert results[0] == results[1]


# --------------------------------------------------------------------------- resuming a session


def lost_with_unfinished_publishes() -> tuple[Connection, int, int, int, int]:
    """A persistent session's connection that broke with: a QoS 2 publish PUBRECed (PUBREL
    sent, no PUBCOMP), a QoS 2 publish without PUBREC, a QoS 1 publish without PUBACK,
    and a QoS 2 publish completed. Returns it and those four ids."""
    conn, wire = connected(clean_session=False)
    recd, sent, qos1, done = (conn.publish("t", b"x", q) for q in (2, 2, 1, 2))
    wire.feed(conn.data_to_send())
    conn.receive_data(pubrec(recd) + pubrec(done) + pubcomp(done))
    assert drain(conn) == [PubComp(mid=done)]
    assert wire.feed(conn.data_to_send()) == [Packet("PUBREL", recd), Packet("PUBREL", done)]
    return conn, recd, sent, qos1, done


def resumed(state: SessionState, *, clean: bool = False,
            session_present: bool = True) -> tuple[Connection, ClientDecoder, list[Packet]]:
    """The next connection, up to its CONNACK; returns what it sent after the CONNECT."""
    conn = Connection(resume=state)
    conn.connect(client_id="c1", clean_session=clean)
    wire = ClientDecoder()
    assert [p.kind for p in wire.feed(conn.data_to_send())] == ["CONNECT"]
    conn.receive_data(connack(session_present=session_present))
    assert drain(conn) == [ConnAck(session_present=session_present, return_code=0)]
    return conn, wire, wire.feed(conn.data_to_send())


def test_session_state_holds_the_qos2_publishes_without_pubcomp_and_the_id_counter() -> None:
    conn, recd, sent, _qos1, _done = lost_with_unfinished_publishes()
    assert conn.session_state() == SessionState(next_mid=5, unreleased=frozenset({recd, sent}))
    assert Connection().session_state() == SessionState(next_mid=1, unreleased=frozenset())


def test_a_resumed_session_releases_each_held_id_after_the_connack_and_never_reuses_it(
        ) -> None:
    old, recd, sent, qos1, done = lost_with_unfinished_publishes()
    conn = Connection(resume=old.session_state())
    conn.connect(client_id="c1", clean_session=False)
    early = conn.publish("t", b"before the CONNACK", 2)  # allowed (§3.1.4): a fresh id
    assert early == 5 and conn.in_flight == 3
    wire = ClientDecoder()
    assert [(p.kind, p.mid) for p in wire.feed(conn.data_to_send())] == [
        ("CONNECT", 0), ("PUBLISH", early)]  # no PUBREL before the broker says it kept us
    conn.receive_data(connack(session_present=True))
    assert drain(conn) == [ConnAck(session_present=True, return_code=0)]
    assert wire.feed(conn.data_to_send()) == [Packet("PUBREL", recd), Packet("PUBREL", sent)]
    # Even when the counter comes round to them, a held id is never given to a new
    # publish (the QoS 1's and the completed one's are free: the broker holds neither).
    conn._next_mid = recd
    mids = [conn.publish("t", b"new", 2) for _ in range(3)]
    assert not {recd, sent} & set(mids) and qos1 in mids and done in mids
    # A broker resending PUBREC for a held id gets the PUBREL again.
    conn.receive_data(pubrec(sent))
    assert drain(conn) == []
    assert wire.feed(conn.data_to_send())[-1] == Packet("PUBREL", sent)
    # Their PUBCOMPs free the ids without an event: nothing of this connection waits.
    conn.receive_data(pubcomp(recd) + pubcomp(sent))
    assert drain(conn) == [] and conn.in_flight == 4  # early and the three new ones
    assert conn.session_state().unreleased == frozenset({early, *mids})
    conn.receive_data(pubcomp(recd))  # a duplicate PUBCOMP: nothing waits for it
    assert drain(conn) == []
    conn._next_mid = recd
    assert conn.publish("t", b"reuse", 1) == recd  # released: free again


@pytest.mark.parametrize(("clean", "session_present"), [(True, False), (False, False)])
def test_a_new_session_forgets_the_held_ids_and_sends_no_pubrel(
        clean: bool, session_present: bool) -> None:
    old, recd, sent, _qos1, _done = lost_with_unfinished_publishes()
    conn, _wire, after = resumed(old.session_state(), clean=clean,
                                 session_present=session_present)
    assert after == [] and conn.in_flight == 0
    assert conn.session_state().unreleased == frozenset()
    conn._next_mid = recd
    assert [conn.publish("t", b"x", 2) for _ in range(2)] == [recd, sent]


def test_a_clean_session_hands_nothing_over() -> None:
    conn, _ = connected(clean_session=True)
    mid = conn.publish("t", b"x", 2)
    assert conn.session_state() == SessionState(next_mid=mid + 1, unreleased=frozenset())


def test_held_ids_carry_over_again_until_released() -> None:
    """A connection refused, or lost before the PUBCOMP: the next one still holds them."""
    old, recd, sent, _qos1, _done = lost_with_unfinished_publishes()
    state = old.session_state()
    refused = Connection(resume=state)
    refused.connect(client_id="c1", clean_session=False)
    refused.receive_data(connack(3))
    assert drain(refused) == [ConnAck(session_present=False, return_code=3)]
    assert refused.session_state() == state
    second, _wire, after = resumed(refused.session_state())
    assert after == [Packet("PUBREL", recd), Packet("PUBREL", sent)]
    second.receive_data(pubcomp(recd))
    assert drain(second) == []
    assert second.session_state() == SessionState(next_mid=5, unreleased=frozenset({sent}))
    _third, _wire, after = resumed(second.session_state())
    assert after == [Packet("PUBREL", sent)]


@pytest.mark.parametrize("bad", [
    SessionState(next_mid=0), SessionState(next_mid=65_536),
    SessionState(unreleased=frozenset({0})), SessionState(unreleased=frozenset({65_536})),
])  # fmt: skip
def test_a_resume_with_an_impossible_packet_id_is_refused(bad: SessionState) -> None:
    with pytest.raises(LocalProtocolError, match="packet id"):
        Connection(resume=bad)


# (qos, what the broker answered before the break) per publish of the lost connection
_ANSWERS = {1: ("none", "PUBACK"), 2: ("none", "PUBREC", "PUBREC+PUBCOMP")}


@given(history=st.lists(st.integers(1, 2).flatmap(lambda q: st.tuples(
           st.just(q), st.sampled_from(_ANSWERS[q]))), max_size=40),
       start=st.integers(1, 65_535), new=st.lists(st.integers(0, 2), max_size=40),
       session_present=st.booleans(), cuts=fragments)
def test_resume_releases_exactly_the_unfinished_qos2_ids_and_new_publishes_avoid_them(
        history: list[tuple[int, str]], start: int, new: list[int], session_present: bool,
        cuts: list[int]) -> None:
    old, _wire = connected(clean_session=False)
    old._next_mid = start
    answers = b""
    unfinished: set[int] = set()
    in_flight: set[int] = set()  # QoS 1 or 2, unacknowledged when the connection broke
    for qos, answer in history:
        mid = old.publish("t", b"x", qos)
        if answer == "PUBACK":
            answers += puback(mid)
        elif answer == "PUBREC":
            answers += pubrec(mid)
        elif answer == "PUBREC+PUBCOMP":
            answers += pubrec(mid) + pubcomp(mid)
        if answer in ("none", "PUBREC"):
            in_flight.add(mid)
            if qos == 2:
                unfinished.add(mid)
    cut_points, at = [], 0
    for c in cuts:
        at += c
        cut_points.append(at)
    feed(old, answers, cut_points)
    state = old.session_state()
    assert state.unreleased == unfinished and old.in_flight == len(in_flight)

    conn, _wire, after = resumed(state, session_present=session_present)
    if session_present:
        assert after == [Packet("PUBREL", m) for m in sorted(unfinished)]
    else:
        assert after == []
    mids = [conn.publish("t", b"new", q) for q in new]
    taken = [m for m in mids if m]
    assert len(set(taken)) == len(taken)
    assert not set(taken) & in_flight  # the counter went on: no id of the lost connection
    conn.receive_data(b"".join(pubcomp(m) for m in sorted(unfinished)))
    assert drain(conn) == []  # releases are not this connection's events
    assert conn.in_flight == len(taken)
