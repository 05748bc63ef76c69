"""MQTT commands (`P/mt/send`, issue 9 points 4-6): a command is acknowledged to the
broker only once it is stored, so none is lost while the database is down; a
malformed command of any shape gets a `failed` record and event; instances that share
the command topic send each command once. Real peers: Mosquitto, the simulator, the
daemon in a subprocess, SQLite and PostgreSQL (`db_url`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import aiomqtt
import pytest
from conftest import PG_URL, Gateway, gateway_config, run_sql, wait_for
from peers import MQTT_HOST, MQTT_PORT, MqttWatcher, broker_up
from simctl import Simulator

from gateway.config import MqttConfig
from gateway.mqtt import MqttLink

VMN = "5551000100"


def _broker_up() -> bool:
    return broker_up(MQTT_HOST, MQTT_PORT)


pytestmark = pytest.mark.skipif(not _broker_up(),
                                reason=f"no MQTT broker on {MQTT_HOST}:{MQTT_PORT}")


def mqtt_cfg(prefix: str) -> MqttConfig:
    return MqttConfig(url=f"mqtt://{MQTT_HOST}:{MQTT_PORT}", topic_prefix=prefix)


async def forget_session(client_id: str) -> None:
    """Remove a persistent session a test left in the shared broker."""
    async with aiomqtt.Client(MQTT_HOST, MQTT_PORT, identifier=client_id,
                              clean_session=True):
        pass


# --------------------------------------------------------------------------- the link


async def test_a_command_not_stored_is_not_acknowledged_and_comes_back() -> None:
    """The handler never stores it (database down) and the link stops: the broker still
    holds the command, and delivers it to the same session when it is back."""
    prefix, name = f"t{uuid.uuid4().hex[:10]}", f"gw-{uuid.uuid4().hex[:8]}"
    attempts = 0

    async def down(_payload: bytes) -> None:
        nonlocal attempts
        attempts += 1
        raise RuntimeError("database down")

    link = MqttLink(mqtt_cfg(prefix), gateway_name=name, on_command=down,
                    reconnect_min=0.05, reconnect_max=0.1)
    try:
        async with link, aiomqtt.Client(MQTT_HOST, MQTT_PORT) as app:
            await asyncio.wait_for(link.connected.wait(), 10)
            await app.publish(link.command_topic, b'{"id": "kept"}', qos=1)
            deadline = asyncio.get_running_loop().time() + 10
            while attempts < 3:  # retried while it fails
                assert asyncio.get_running_loop().time() < deadline, "no retries"
                await asyncio.sleep(0.02)
        got: asyncio.Queue[bytes] = asyncio.Queue()

        async def store(payload: bytes) -> None:
            await got.put(payload)

        async with MqttLink(mqtt_cfg(prefix), gateway_name=name, on_command=store):
            assert await asyncio.wait_for(got.get(), 10) == b'{"id": "kept"}'
    finally:
        await forget_session(f"vmn-gateway-{name}")


async def test_two_instances_share_the_command_topic() -> None:
    """Two links of one group: every command reaches exactly one of them. Each link
    handles its commands in order, so once each has seen a marker sent after the
    commands, it has seen every command it will ever get."""
    prefix = f"t{uuid.uuid4().hex[:10]}"
    names = [f"gw-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    seen: dict[str, list[bytes]] = {n: [] for n in names}

    def handler(name: str) -> Callable[[bytes], Any]:
        async def on_command(payload: bytes) -> None:
            seen[name].append(payload)
        return on_command

    links = [MqttLink(mqtt_cfg(prefix), gateway_name=n, on_command=handler(n))
             for n in names]
    try:
        async with links[0], links[1], aiomqtt.Client(MQTT_HOST, MQTT_PORT) as app:
            for link in links:
                await asyncio.wait_for(link.connected.wait(), 10)
            commands = [f"cmd-{i}".encode() for i in range(20)]
            for c in commands:
                await app.publish(links[0].command_topic, c, qos=1)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 20
            while not all(any(p == b"marker" for p in got) for got in seen.values()):
                assert loop.time() < deadline, f"markers not seen by both: {seen}"
                await app.publish(links[0].command_topic, b"marker", qos=1)
                await asyncio.sleep(0.05)
        handled = [p for got in seen.values() for p in got if p != b"marker"]
        assert sorted(handled) == sorted(commands)  # each once, none twice
        assert all(seen[n] for n in names)  # and both took a share
    finally:
        for n in names:
            await forget_session(f"vmn-gateway-{n}")


# --------------------------------------------------------------------------- the daemon


@pytest.fixture
def watcher() -> Iterator[MqttWatcher]:
    with MqttWatcher() as w:
        yield w


def config(*, db: str, sim: Simulator, prefix: str, name: str = "test") -> str:
    client = f"vmn-gateway-{name}-{prefix}"
    extra = f"""retry_base = 0.05
retry_max = 0.3

[mqtt]
url = "mqtt://{MQTT_HOST}:{MQTT_PORT}"
topic_prefix = "{prefix}"
client_id = "{client}"
"""
    return gateway_config(db=db, sim=sim, extra_gateway=extra, name=name)


def mts(gw: Gateway) -> list[dict[str, Any]]:
    return [r for r in gw.logs() if r["direction"] == "mt"]


def failed_events(watcher: MqttWatcher) -> list[dict[str, Any]]:
    return [e for e in watcher.events("mt_status") if e["status"] == "failed"]


MALFORMED: list[tuple[bytes, str]] = [
    (b"[" * 5_000 + b"]" * 5_000, "nested too deeply"),
    (json.dumps({"to": "15550000001", "from": VMN, "text": "x", "id": True}).encode(),
     "id: expected a string"),
    (json.dumps({"to": "1" * 300, "from": VMN, "text": "long to", "id": "m-to"}).encode(),
     "to:"),
    (json.dumps({"to": "15550000002", "from": "5" * 300, "text": "long from",
                 "id": "m-from"}).encode(), "from:"),
    (json.dumps({"to": "15550000003", "from": VMN, "text": "long id",
                 "id": "i" * 65}).encode(), "id: 65 characters"),
    (json.dumps({"to": "15550000004", "from": VMN, "text": "nul\u0000text",
                 "id": "m-nul"}).encode(), "U+0000"),
    (json.dumps({"to": "1555\u00000000005", "from": VMN, "text": "nul in to",
                 "id": "m-nul-to"}).encode(), "to:"),
    (b'{"to": "15550000006", "from": "' + VMN.encode() + b'", "text": "half \\ud800"}',
     "unpaired surrogate"),
    (b"\xff\xfe not utf-8", "not JSON"),
    (b'["a", "list"]', "expected a JSON object"),
]


def test_malformed_commands_of_every_shape_get_a_failed_record_and_event(
        sim: Simulator, db_url: str, watcher: MqttWatcher,
        make_gateway: Callable[..., Gateway]) -> None:
    gw = make_gateway(config(db=db_url, sim=sim, prefix=watcher.prefix))
    wait_for(lambda: watcher.on("gateway/test/status")[-1:] == ["online"], what="online")
    for payload, _ in MALFORMED:
        watcher.publish(f"{watcher.prefix}/mt/send", payload)
    # a valid command after them: the bad ones did not stop the subscription
    watcher.publish(f"{watcher.prefix}/mt/send",
                    {"to": "15550000009", "from": VMN, "text": "still works", "id": "ok"})
    sim.wait_submits(1)
    events = wait_for(lambda: (lambda e: e if len(e) >= len(MALFORMED) else None)(
        failed_events(watcher)), what="a failed event per malformed command")
    assert len(events) == len(MALFORMED)
    errors = [e["error"] for e in events]  # published concurrently: in any order
    for _, expected in MALFORMED:
        match = next((e for e in errors if expected in e), None)
        assert match is not None, (expected, errors)
        errors.remove(match)
    rows = [r for r in mts(gw) if r["status"] == "failed"]
    assert len(rows) == len(MALFORMED)
    by_ref = {r["client_ref"]: r for r in rows if r["client_ref"]}
    assert by_ref["m-nul"]["text"] == "nul\ufffdtext"  # the stand-in, on both backends
    assert len(by_ref["m-to"]["to"]) <= 21 and by_ref["m-to"]["to"].startswith("111")
    assert by_ref["i" * 64]["status"] == "failed"  # cut to the column
    assert [s["destination_addr"] for s in sim.submits()] == ["15550000009"]
    assert gw.running


def test_commands_while_the_database_refuses_writes_are_all_recorded_after(
        sim: Simulator, db_url: str, watcher: MqttWatcher,
        make_gateway: Callable[..., Gateway]) -> None:
    """Every insert into messages fails (a trigger) while five commands arrive: none is
    acknowledged to the broker, all five are stored once the database takes writes."""
    gw = make_gateway(config(db=db_url, sim=sim, prefix=watcher.prefix))
    wait_for(lambda: watcher.on("gateway/test/status")[-1:] == ["online"], what="online")
    if db_url.startswith("sqlite"):
        run_sql(db_url, "CREATE TRIGGER fail BEFORE INSERT ON messages "
                        "BEGIN SELECT RAISE(ABORT, 'disk on fire'); END")
    else:
        run_sql(db_url,
                "CREATE FUNCTION fail() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'disk on fire'; END $$",
                "CREATE TRIGGER fail BEFORE INSERT ON messages "
                "FOR EACH ROW EXECUTE FUNCTION fail()")
    for i in range(5):
        watcher.publish(f"{watcher.prefix}/mt/send",
                        {"to": f"1555000010{i}", "from": VMN, "text": f"cmd {i}",
                         "id": f"c{i}"})
    wait_for(lambda: len(gw.log_events("mqtt.command_not_stored")) >= 2,
             what="commands retried")
    assert not mts(gw)
    run_sql(db_url, "DROP TRIGGER fail" if db_url.startswith("sqlite")
            else "DROP TRIGGER fail ON messages")
    rows = wait_for(lambda: (lambda r: r if len(r) >= 5 else None)(mts(gw)),
                    what="the five commands stored")
    assert sorted(r["client_ref"] for r in rows) == [f"c{i}" for i in range(5)]
    subs = sim.wait_submits(5)
    assert sorted(s["text"] for s in subs) == [f"cmd {i}" for i in range(5)]
    # nothing leaks SQL parameters into the log
    assert all("cmd 0" not in json.dumps(e) for e in gw.log_events("mqtt.command_not_stored"))


class CuttableProxy:
    """A TCP forwarder to PostgreSQL that the test can cut (every connection closed, new
    ones refused) and restore: the database unreachable for the daemon only."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.cut_off = threading.Event()
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            if self.cut_off.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._socks += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        self.cut_off.set()
        with self._lock:
            socks, self._socks = self._socks, []
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def restore(self) -> None:
        self.cut_off.clear()

    def close(self) -> None:
        self.server.close()
        self.cut()


@pytest.mark.postgres
def test_commands_while_postgres_is_unreachable_are_all_recorded_after(
        sim: Simulator, db_url: str, watcher: MqttWatcher,
        make_gateway: Callable[..., Gateway]) -> None:
    if db_url.startswith("sqlite"):
        pytest.skip("a PostgreSQL outage (see the trigger test for both backends)")
    host_port = PG_URL.split("@", 1)[1].split("/", 1)[0]
    host, port = host_port.rsplit(":", 1)
    proxy = CuttableProxy((host, int(port)))
    try:
        via_proxy = db_url.replace(host_port, f"127.0.0.1:{proxy.port}")
        gw = make_gateway(config(db=via_proxy, sim=sim, prefix=watcher.prefix))
        wait_for(lambda: watcher.on("gateway/test/status")[-1:] == ["online"],
                 what="online")
        proxy.cut()
        for i in range(5):
            watcher.publish(f"{watcher.prefix}/mt/send",
                            {"to": f"1555000020{i}", "from": VMN, "text": f"down {i}",
                             "id": f"d{i}"})
        wait_for(lambda: len(gw.log_events("mqtt.command_not_stored")) >= 2,
                 what="commands retried while the database is unreachable")
        proxy.restore()
        rows = wait_for(lambda: (lambda r: r if len(r) >= 5 else None)(mts(gw)),
                        timeout=60, what="the five commands stored")
        assert sorted(r["client_ref"] for r in rows) == [f"d{i}" for i in range(5)]
        subs = sim.wait_submits(5, timeout=30)
        assert sorted(s["text"] for s in subs) == [f"down {i}" for i in range(5)]
        assert gw.running
    finally:
        proxy.close()


def test_two_daemons_on_one_database_send_each_command_once(
        sim: Simulator, db_url: str, watcher: MqttWatcher,
        make_gateway: Callable[..., Gateway]) -> None:
    """Two instances, each with its own bind, share the database and the broker. A
    marker command after the real ones (refused: an unknown sender, logged by the
    instance that took it) tells when an instance has handled all its share."""
    # Scale-out shares one PostgreSQL database. Two daemons on one SQLite file are
    # refused (its lock file), so on SQLite each gets its own file: the shared
    # subscription alone must still hand each command to one of them.
    dbs = [db_url, db_url if not db_url.startswith("sqlite") else
           db_url.replace("gateway.db", "gateway-two.db")]
    assert dbs[1] != dbs[0] or not db_url.startswith("sqlite")
    gws = [make_gateway(config(db=db, sim=sim, prefix=watcher.prefix, name=n))
           for n, db in zip(("one", "two"), dbs, strict=True)]
    for n in ("one", "two"):
        wait_for(lambda n=n: watcher.on(f"gateway/{n}/status")[-1:] == ["online"],
                 what=f"{n} online")
    sim.wait_bound(count=2)
    n = 12
    for i in range(n):
        watcher.publish(f"{watcher.prefix}/mt/send",
                        {"to": f"155500003{i:02d}", "from": VMN, "text": f"once {i}",
                         "id": f"o{i}"})

    def both_saw_a_marker() -> bool:
        if all(gw.log_events("mqtt.command_refused") for gw in gws):
            return True
        watcher.publish(f"{watcher.prefix}/mt/send",
                        {"to": "15550000399", "from": "12345", "text": "marker"})
        return False

    wait_for(both_saw_a_marker, interval=0.2, what="a marker handled by each instance")
    found = {r["id"]: r for gw in gws for r in mts(gw)}  # one database or two
    rows = [r for r in found.values() if r["status"] != "failed"]
    assert sorted(r["client_ref"] for r in rows) == sorted(f"o{i}" for i in range(n))
    subs = sim.wait_submits(n, timeout=30)
    assert sorted(s["text"] for s in subs) == sorted(f"once {i}" for i in range(n))
