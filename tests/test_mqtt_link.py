"""gateway.mqtt's own MQTT client (the `mqttproto` codec behind an asyncio protocol)
against real peers: the shared Mosquitto, Mosquitto seen through a TCP proxy the test
reads and cuts, a private Mosquitto over TLS (a CA made in the test), and hostile
brokers written here (garbage, a refusal, silence) that must give a clear error and a
reconnect, never a hang."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, Self

import aiomqtt
import pytest
import trustme
from mqttwire import ClientDecoder, Packet, connack, puback, pubcomp, pubrec, suback
from peers import broker_up
from structlog.testing import capture_logs

from gateway import mqttproto
from gateway.config import MqttConfig
from gateway.mqtt import MqttCodeError, MqttConnectionLostError, MqttLink, topic

HOST = os.environ.get("MQTT_HOST", "127.0.0.1")
PORT = int(os.environ.get("MQTT_PORT", "1883"))


def _broker_up() -> bool:
    return broker_up(HOST, PORT)


def cfg(prefix: str, *, url: str | None = None, port: int = PORT) -> MqttConfig:
    return MqttConfig(url=url or f"mqtt://{HOST}:{port}", topic_prefix=prefix)


needs_broker = pytest.mark.skipif(not _broker_up(), reason=f"no MQTT broker on {HOST}:{PORT}")


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


async def until(predicate: Callable[[], object], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def forget_session(client_id: str) -> None:
    async with aiomqtt.Client(HOST, PORT, identifier=client_id, clean_session=True):
        pass


async def clear_retained(name: str) -> None:
    async with aiomqtt.Client(HOST, PORT) as c:
        await c.publish(name, b"", qos=1, retain=True)


# --------------------------------------------------------------------------- a proxy


def whole_packet(buf: bytes) -> int:
    """The length of the first whole MQTT packet in `buf` (0: not all of it yet)."""
    length, mult, i = 0, 1, 1
    while True:
        if i >= len(buf):
            return 0
        length += (buf[i] & 127) * mult
        mult *= 128
        i += 1
        if buf[i - 1] < 128:
            return i + length if len(buf) >= i + length else 0


class Proxy:
    """A TCP proxy in front of the broker: keeps what the client sent on each
    connection (decoded) and what the broker sent (whole packets), and can cut every
    connection: at once (`cut`), or in place of passing on the broker's next PUBREC
    (`cut_at_pubrec`), so that the client's PUBREL never reaches the broker."""

    def __init__(self, port: int = PORT) -> None:
        self.upstream = port
        self.sent: list[list[Packet]] = []  # per connection, client -> broker
        self.received: list[list[bytes]] = []  # per connection, broker -> client
        self.cut_at_pubrec = False
        self._writers: list[asyncio.StreamWriter] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> Proxy:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.cut()
        assert self.server is not None
        self.server.close()

    def cut(self) -> None:
        for w in self._writers:
            w.transport.abort()
        self._writers.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_r, up_w = await asyncio.open_connection(HOST, self.upstream)
        self._writers += [writer, up_w]
        packets: list[Packet] = []
        self.sent.append(packets)
        answers: list[bytes] = []
        self.received.append(answers)
        decoder = ClientDecoder()

        async def up() -> None:
            with contextlib.suppress(OSError):
                while data := await reader.read(65536):
                    packets.extend(decoder.feed(data))
                    up_w.write(data)
            up_w.transport.abort()

        async def down() -> None:  # packet by packet, to cut before one
            buf = b""
            with contextlib.suppress(OSError):
                while data := await up_r.read(65536):
                    buf += data
                    out = b""
                    while n := whole_packet(buf):
                        p, buf = buf[:n], buf[n:]
                        if p[0] == 0x50 and self.cut_at_pubrec:
                            self.cut_at_pubrec = False
                            writer.write(out)
                            self.cut()
                            return
                        answers.append(p)
                        out += p
                    writer.write(out)
            writer.transport.abort()

        await asyncio.gather(up(), down())


# --------------------------------------------------------------------------- Mosquitto


@needs_broker
async def test_publish_qos_0_1_2_each_acknowledged_and_delivered(prefix: str) -> None:
    name = topic(prefix, "mo", "x")
    link = MqttLink(cfg(prefix), gateway_name=f"gw-{prefix}", on_command=None)
    try:
        async with aiomqtt.Client(HOST, PORT) as watcher, link:
            await watcher.subscribe(name, qos=2)
            await asyncio.wait_for(link.connected.wait(), 10)
            for qos in (0, 1, 2):
                await link.publish(name, f"q{qos}".encode(), qos, timeout=5)
            got = []
            async with asyncio.timeout(5):
                async for message in watcher.messages:
                    got.append((message.payload, message.qos))
                    if len(got) == 3:
                        break
        assert got == [(b"q0", 0), (b"q1", 1), (b"q2", 2)]
    finally:
        await clear_retained(link.status_topic)


@needs_broker
async def test_a_bad_publish_is_a_value_error_and_the_link_carries_on(prefix: str) -> None:
    link = MqttLink(cfg(prefix), gateway_name=f"gw-{prefix}", on_command=None)
    try:
        async with link:
            await asyncio.wait_for(link.connected.wait(), 10)
            for bad, qos in (("a/+", 1), ("a/#", 1), ("a\0", 1), ("a", 3)):
                with pytest.raises(ValueError):
                    await link.publish(bad, b"x", qos)
            await link.publish(topic(prefix, "ok"), b"x", 1, timeout=5)
            assert link.connected.is_set()
    finally:
        await clear_retained(link.status_topic)


@needs_broker
async def test_keepalive_pings_an_idle_connection_and_it_stays_up(prefix: str) -> None:
    link = MqttLink(cfg(prefix), gateway_name=f"gw-{prefix}", on_command=None,
                    keepalive=1)
    try:
        with capture_logs() as logs:
            async with Proxy() as proxy:
                link.cfg = cfg(prefix, port=proxy.port)
                async with link:
                    await asyncio.wait_for(link.connected.wait(), 10)
                    await asyncio.sleep(3.5)  # idle: nothing published, nothing received
                    assert link.connected.is_set()
                    await link.publish(topic(prefix, "after"), b"x", 1, timeout=5)
        assert len(proxy.sent) == 1  # one connection all along
        kinds = [p.kind for p in proxy.sent[0]]
        assert kinds[0] == "CONNECT" and proxy.sent[0][0].fields["keepalive"] == 1
        assert 2 <= kinds.count("PINGREQ") <= 5, kinds
        assert not [e for e in logs if e["event"] == "mqtt.disconnected"]
    finally:
        await clear_retained(link.status_topic)


@needs_broker
async def test_a_command_not_acknowledged_comes_back_after_the_connection_breaks(
        prefix: str) -> None:
    """The handler fails (database down) when the connection breaks: the command was not
    PUBACKed, and the broker delivers it again to the persistent session."""
    name = f"gw-{prefix}"
    calls: list[bytes] = []
    stored: asyncio.Queue[bytes] = asyncio.Queue()
    database_up = False

    async def on_command(payload: bytes) -> None:
        calls.append(payload)
        if not database_up:
            raise RuntimeError("database down")
        await stored.put(payload)

    link = MqttLink(cfg(prefix), gateway_name=name, on_command=on_command,
                    reconnect_min=0.05, reconnect_max=0.2)
    try:
        async with Proxy() as proxy:
            link.cfg = cfg(prefix, port=proxy.port)
            async with link, aiomqtt.Client(HOST, PORT) as app:
                await asyncio.wait_for(link.connected.wait(), 10)
                assert proxy.sent[0][0].fields["clean_session"] is False
                await app.publish(link.command_topic, b"cmd-1", qos=1)
                await until(lambda: len(calls) >= 2)  # retried, not stored
                proxy.cut()
                await until(lambda: len(proxy.sent) >= 2 and link.connected.is_set())
                database_up = True
                assert await asyncio.wait_for(stored.get(), 10) == b"cmd-1"
        first, second = proxy.sent[0], proxy.sent[1]
        assert not [p for p in first if p.kind == "PUBACK"]  # never acknowledged there
        await until(lambda: any(p.kind == "PUBACK" for p in second))
    finally:
        await forget_session(f"vmn-gateway-{name}")
        await clear_retained(link.status_topic)


@needs_broker
async def test_a_qos2_event_cut_before_its_pubrel_costs_no_later_event(prefix: str) -> None:
    """The connection breaks right after the broker's PUBREC of a QoS 2 event: our
    PUBREL never reaches it, and the persistent session holds that packet id, waiting
    for it. On the next connection the link releases the id (PUBREL right after the
    CONNACK, then the broker's PUBCOMP) and gives it to no new publish (MQTT 3.1.1
    §4.4); every event reaches a subscriber. A fresh codec numbering from 1 again gave
    a new event the held id. Mosquitto (since 2.0.9) takes a different payload under a
    held id for a new message and so delivers it anyway; a broker holding ids by the
    letter of §4.3.3 drops it (`test_a_new_event_never_takes_a_packet_id_...`)."""
    name = f"gw-{prefix}"
    events = topic(prefix, "mo", "x")

    async def store(_payload: bytes) -> None:
        pass

    link = MqttLink(cfg(prefix), gateway_name=name, on_command=store,
                    reconnect_min=0.05, reconnect_max=0.2)
    got: list[bytes] = []
    try:
        async with Proxy() as proxy, aiomqtt.Client(HOST, PORT) as watcher:
            await watcher.subscribe(events, qos=2)
            link.cfg = cfg(prefix, port=proxy.port)
            async with link:
                await asyncio.wait_for(link.connected.wait(), 10)
                assert proxy.sent[0][0].fields["clean_session"] is False
                proxy.cut_at_pubrec = True
                with pytest.raises(MqttConnectionLostError):
                    await link.publish(events, b"e1", 2, timeout=5)
                await until(lambda: len(proxy.sent) >= 2 and link.connected.is_set())
                for n in (2, 3, 4):
                    await link.publish(events, f"e{n}".encode(), 2, timeout=5)
                await link.publish(events, b"e1", 2, timeout=5)  # the outbox's retry
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(5):
                        async for message in watcher.messages:
                            assert isinstance(message.payload, bytes)
                            got.append(message.payload)
                            if {b"e1", b"e2", b"e3", b"e4"} <= set(got):
                                break
        # Every event arrived, once; e1 perhaps twice (at least once): the broker
        # released the copy it held, and the retry is a new message.
        assert sorted(set(got)) == [b"e1", b"e2", b"e3", b"e4"], got
        assert [got.count(e) for e in (b"e2", b"e3", b"e4")] == [1, 1, 1], got
        [held] = [p.mid for p in proxy.sent[0] if p.kind == "PUBLISH"
                  and p.fields["payload"] == b"e1"]
        again = proxy.sent[1]
        assert again[0].kind == "CONNECT" and again[1] == Packet("PUBREL", held), again
        assert not [p for p in again if p.kind == "PUBLISH" and p.mid == held], again
        assert b"\x70\x02" + held.to_bytes(2, "big") in proxy.received[1]  # PUBCOMP
    finally:
        await forget_session(f"vmn-gateway-{name}")
        await clear_retained(link.status_topic)


# --------------------------------------------------------------------------- TLS


@pytest.fixture
def tls_broker() -> Iterator[tuple[int, trustme.CA, str]]:
    """A private Mosquitto with a TLS listener; its certificate is for `localhost`,
    from a CA made here. Yields (port, CA, CA file)."""
    if shutil.which("mosquitto") is None:
        pytest.skip("no mosquitto binary")
    ca = trustme.CA()
    cert = ca.issue_cert("localhost")
    work = Path(tempfile.mkdtemp(prefix="mosq-tls-"))
    os.chmod(work, 0o755)  # started as root, mosquitto reads these as its own user
    ca_file, cert_file, key_file = work / "ca.pem", work / "cert.pem", work / "key.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    for f in (ca_file, cert_file, key_file):
        os.chmod(f, 0o644)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conf = work / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                    f"cafile {ca_file}\ncertfile {cert_file}\nkeyfile {key_file}\n")
    proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert proc.poll() is None, "mosquitto exited"
                assert time.monotonic() < deadline, "mosquitto did not listen"
                time.sleep(0.05)
        yield port, ca, str(ca_file)
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(work, ignore_errors=True)


async def test_tls_to_mosquitto_verified_with_the_host_name(
        tls_broker: tuple[int, trustme.CA, str], prefix: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    port, _ca, ca_file = tls_broker
    # The link uses ssl.create_default_context(): the CA comes in the way an operator
    # would add a private one, through OpenSSL's SSL_CERT_FILE.
    monkeypatch.setenv("SSL_CERT_FILE", ca_file)
    link = MqttLink(cfg(prefix, url=f"mqtts://localhost:{port}"), gateway_name="gw",
                    on_command=None)
    async with link:
        await asyncio.wait_for(link.connected.wait(), 10)
        for qos in (0, 1, 2):
            await link.publish(topic(prefix, "tls"), b"secret", qos, timeout=5)


@pytest.mark.parametrize("case", ["wrong host name", "unknown CA"])
async def test_tls_without_a_valid_certificate_never_connects(
        tls_broker: tuple[int, trustme.CA, str], prefix: str, case: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    port, _ca, ca_file = tls_broker
    if case == "wrong host name":  # the certificate is for localhost, not 127.0.0.1
        monkeypatch.setenv("SSL_CERT_FILE", ca_file)
        url = f"mqtts://127.0.0.1:{port}"
    else:
        url = f"mqtts://localhost:{port}"
    link = MqttLink(cfg(prefix, url=url), gateway_name="gw", on_command=None,
                    reconnect_min=0.05, reconnect_max=0.1)
    with capture_logs() as logs:
        async with link:
            await until(lambda: len([e for e in logs if e["event"] == "mqtt.disconnected"]) >= 2)
            assert not link.connected.is_set()
    errors = {e["error"] for e in logs if e["event"] == "mqtt.disconnected"}
    assert all("CERTIFICATE_VERIFY_FAILED" in e for e in errors), errors
    assert all(("mismatch" in e) == (case == "wrong host name") for e in errors), errors


# --------------------------------------------------------------------------- hostile brokers

Behaviour = Callable[[asyncio.StreamReader, asyncio.StreamWriter, list[Packet]],
                     Awaitable[None]]


class ScriptedServer:
    """A TCP server on a free port of 127.0.0.1 that keeps each connection's packets from
    the client (`connections`) and drops every connection on leaving; `_serve` answers."""

    def __init__(self) -> None:
        self.connections: list[list[Packet]] = []
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for w in self._writers:
            w.transport.abort()
        assert self._server is not None
        self._server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        packets: list[Packet] = []
        self.connections.append(packets)
        await self._serve(reader, writer, packets)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     packets: list[Packet]) -> None:
        raise NotImplementedError


class Hostile(ScriptedServer):
    """A TCP server that reads the client's packets and answers as `behaviour` says."""

    def __init__(self, behaviour: Behaviour) -> None:
        super().__init__()
        self.behaviour = behaviour

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     packets: list[Packet]) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            await self.behaviour(reader, writer, packets)
            while data := await reader.read(4096):  # then listen until the client goes
                packets.extend(ClientDecoder().feed(data))


async def read_packets(reader: asyncio.StreamReader, packets: list[Packet], kind: str,
                       decoder: ClientDecoder | None = None) -> Packet:
    """Read until the client has sent a packet of `kind`; returns it."""
    decoder = decoder or ClientDecoder()
    while True:
        data = await reader.read(4096)
        if not data:
            raise ConnectionResetError("the client went away")
        for p in decoder.feed(data):
            packets.append(p)
            if p.kind == kind:
                return p


async def garbage_after_connect(r: asyncio.StreamReader, w: asyncio.StreamWriter,
                                packets: list[Packet]) -> None:
    await read_packets(r, packets, "CONNECT")
    w.write(b"\x00\x01\x02garbage")


async def refuses(r: asyncio.StreamReader, w: asyncio.StreamWriter,
                  packets: list[Packet]) -> None:
    await read_packets(r, packets, "CONNECT")
    w.write(connack(4))


async def silent(r: asyncio.StreamReader, w: asyncio.StreamWriter,
                 packets: list[Packet]) -> None:
    await read_packets(r, packets, "CONNECT")


async def connack_then_silence(r: asyncio.StreamReader, w: asyncio.StreamWriter,
                               packets: list[Packet]) -> None:
    await read_packets(r, packets, "CONNECT")
    w.write(connack())


async def refuses_the_subscription(r: asyncio.StreamReader, w: asyncio.StreamWriter,
                                   packets: list[Packet]) -> None:
    decoder = ClientDecoder()
    await read_packets(r, packets, "CONNECT", decoder)
    w.write(connack())
    sub = await read_packets(r, packets, "SUBSCRIBE", decoder)
    w.write(suback(sub.mid, [0x80]))


async def ack_then_garbage(r: asyncio.StreamReader, w: asyncio.StreamWriter,
                           packets: list[Packet]) -> None:
    """Acknowledges the status and the first event, with garbage after the second ack
    in the same write."""
    decoder = ClientDecoder()
    await read_packets(r, packets, "CONNECT", decoder)
    w.write(connack())
    status = await read_packets(r, packets, "PUBLISH", decoder)  # the retained online
    w.write(puback(status.mid))
    event = await read_packets(r, packets, "PUBLISH", decoder)
    w.write(puback(event.mid) + b"\x40\x09")  # a PUBACK announcing 9 bytes


HOSTILE: list[tuple[str, Behaviour, dict[str, Any], str]] = [
    ("garbage", garbage_after_connect, {}, "protocol error from the broker: unknown packet type 0"),
    ("refusal", refuses, {}, "Connection refused: bad user name or password (CONNACK code 4)"),
    ("silence", silent, {"timeout": 0.3}, "Operation timed out"),
    ("no PINGRESP", connack_then_silence, {"keepalive": 1, "on_command": None,
                                           "announce": False}, "no PINGRESP within 1s"),
    ("SUBACK 0x80", refuses_the_subscription, {}, "refused the subscription"),
]  # fmt: skip


@pytest.mark.parametrize(("what", "behaviour", "kw", "error"), HOSTILE,
                         ids=[h[0] for h in HOSTILE])
async def test_a_hostile_broker_gives_a_clear_error_and_a_reconnect(
        what: str, behaviour: Behaviour, kw: dict[str, Any], error: str) -> None:
    async def store(_payload: bytes) -> None:
        pass

    args: dict[str, Any] = {"on_command": store, "reconnect_min": 0.05,
                            "reconnect_max": 0.1, **kw}
    started = time.monotonic()
    async with Hostile(behaviour) as broker:
        link = MqttLink(cfg("hostile", port=broker.port), gateway_name="gw", **args)
        with capture_logs() as logs:
            async with link:
                await until(lambda: len(broker.connections) >= 3)
                await until(lambda: sum(e["event"] == "mqtt.disconnected" for e in logs) >= 2)
    assert time.monotonic() - started < 10
    drops = [e for e in logs if e["event"] == "mqtt.disconnected"]
    assert all(e["error"] == error or error in e["error"] for e in drops), drops
    # only those answering CONNECT with a CONNACK 0 got as far as a connection
    accepted = what in ("no PINGRESP", "SUBACK 0x80")
    assert all(e["was_connected"] == accepted for e in drops), drops
    assert all(p[0].kind == "CONNECT" for p in broker.connections if p)


async def test_an_ack_before_garbage_still_completes_its_publish() -> None:
    async with Hostile(ack_then_garbage) as broker:
        link = MqttLink(cfg("hostile", port=broker.port), gateway_name="gw", on_command=None,
                        reconnect_min=0.05, reconnect_max=0.1)
        with capture_logs() as logs:
            async with link:
                await asyncio.wait_for(link.connected.wait(), 10)
                await link.publish("hostile/mo/1", b"event", 1, timeout=5)  # acked
                await until(lambda: len(broker.connections) >= 2)  # then a reconnect
    drops = [e for e in logs if e["event"] == "mqtt.disconnected"]
    assert drops and drops[0]["was_connected"]
    assert "PUBACK with remaining length 9" in drops[0]["error"]


class StrictBroker(ScriptedServer):
    """A broker of QoS 2 by the letter of MQTT 3.1.1 (§4.3.3, the receiver's method B,
    as most brokers do it): a QoS 2 PUBLISH is stored and PUBRECed, and delivered on its
    PUBREL; a PUBLISH under an id it holds is a duplicate: PUBREC, nothing delivered.
    Sessions of clean_session=0 clients (their held ids) outlive the connection.
    Mosquitto (since 2.0.9) instead takes a different topic or payload under a held id
    for a new message, which hides a client reusing such an id. `cut_at_qos2`: store the
    next QoS 2 PUBLISH, then drop the connection instead of answering PUBREC."""

    def __init__(self) -> None:
        super().__init__()
        self.sessions: dict[str, dict[int, bytes]] = {}  # client id -> held mid -> payload
        self.delivered: list[bytes] = []  # what subscribers got
        self.cut_at_qos2 = False

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     packets: list[Packet]) -> None:
        decoder = ClientDecoder()
        with contextlib.suppress(OSError):
            connect = await read_packets(reader, packets, "CONNECT", decoder)
            client_id = str(connect.fields["client_id"])
            present = not connect.fields["clean_session"] and client_id in self.sessions
            if connect.fields["clean_session"]:
                self.sessions.pop(client_id, None)
            held = self.sessions.setdefault(client_id, {})
            writer.write(connack(session_present=present))
            while data := await reader.read(4096):
                for p in decoder.feed(data):
                    packets.append(p)
                    payload = p.fields.get("payload")
                    if p.kind == "SUBSCRIBE":
                        writer.write(suback(p.mid, [1]))
                    elif p.kind == "PUBLISH" and p.fields["qos"] == 1:
                        assert isinstance(payload, bytes)
                        self.delivered.append(payload)
                        writer.write(puback(p.mid))
                    elif p.kind == "PUBLISH" and p.fields["qos"] == 2:
                        assert isinstance(payload, bytes)
                        held.setdefault(p.mid, payload)  # a duplicate changes nothing
                        if self.cut_at_qos2:
                            self.cut_at_qos2 = False
                            writer.transport.abort()
                            return
                        writer.write(pubrec(p.mid))
                    elif p.kind == "PUBREL":
                        if p.mid in held:
                            self.delivered.append(held.pop(p.mid))
                        writer.write(pubcomp(p.mid))
                    elif p.kind == "PINGREQ":
                        writer.write(b"\xd0\x00")
        writer.transport.abort()


async def test_a_new_event_never_takes_a_packet_id_the_broker_still_holds() -> None:
    """Against a broker that holds QoS 2 ids by the letter of the specification: the
    connection breaks after a QoS 2 event reached the broker, before its PUBREL. Every
    event published after the reconnect is delivered. A fresh codec numbering from 1
    again gave the next event the held id: PUBREC, PUBCOMP, a publish that returned
    success, and nothing delivered (the held event was released in its place)."""
    async def store(_payload: bytes) -> None:
        pass

    async with StrictBroker() as broker:
        link = MqttLink(cfg("strict", port=broker.port), gateway_name="gw", on_command=store,
                        reconnect_min=0.05, reconnect_max=0.1)
        async with link:
            await asyncio.wait_for(link.connected.wait(), 10)
            broker.cut_at_qos2 = True
            with pytest.raises(MqttConnectionLostError):
                await link.publish("strict/mo/1", b"e1", 2, timeout=5)
            await until(lambda: len(broker.connections) >= 2 and link.connected.is_set())
            for n in (2, 3, 4):
                await link.publish("strict/mo/1", f"e{n}".encode(), 2, timeout=5)
            await link.publish("strict/mo/1", b"e1", 2, timeout=5)  # the outbox's retry
    # e1 twice: the held copy released, and the retry (at least once)
    events = [d for d in broker.delivered if d.startswith(b"e")]
    assert sorted(events) == [b"e1", b"e1", b"e2", b"e3", b"e4"], broker.delivered
    [held] = [p.mid for p in broker.connections[0] if p.kind == "PUBLISH"
              and p.fields["payload"] == b"e1"]
    again = broker.connections[1]
    assert [(p.kind, p.mid) for p in again[:2]] == [("CONNECT", 0), ("PUBREL", held)]
    assert broker.sessions["vmn-gateway-gw"] == {}  # nothing left held


def test_codec_errors_are_protocol_errors() -> None:
    """What the link raises for a bad publish is the codec's local error, a ValueError."""
    assert issubclass(mqttproto.LocalProtocolError, ValueError)
    assert str(MqttCodeError(5, "Connection refused")) == (
        "Connection refused: not authorized (CONNACK code 5)")

