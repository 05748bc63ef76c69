"""gateway.mqtt (the link) and gateway.actions.mqtt against a real Mosquitto: the shared
one on 127.0.0.1:1883 (MQTT_HOST / MQTT_PORT override) and, for outages, a private
`mosquitto` started and stopped on a free port. Every test uses its own topic prefix and
clears the retained messages it left."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from peers import broker_up
from structlog.testing import capture_logs

from gateway.actions.base import Job, Outcome, Result
from gateway.actions.mqtt import MqttAction
from gateway.config import MqttConfig
from gateway.mqtt import MqttLink, topic

REPO = Path(__file__).resolve().parent.parent
HOST = os.environ.get("MQTT_HOST", "127.0.0.1")
PORT = int(os.environ.get("MQTT_PORT", "1883"))


def _broker_up() -> bool:
    return broker_up(HOST, PORT)


pytestmark = pytest.mark.skipif(not _broker_up(), reason=f"no MQTT broker on {HOST}:{PORT}")


# --------------------------------------------------------------------------- helpers


def cfg(prefix: str, *, host: str = HOST, port: int = PORT) -> MqttConfig:
    return MqttConfig(url=f"mqtt://{host}:{port}", topic_prefix=prefix)


def job(target: str, payload: dict[str, Any], n: int = 1) -> Job:
    return Job(id=n, kind="mqtt", target=target, event_id=f"ev-{n}", payload=payload, attempts=0)


class Watcher:
    """A plain subscriber collecting what arrives on its filters."""

    def __init__(self, *filters: str, host: str = HOST, port: int = PORT) -> None:
        self.filters = filters
        self.client = aiomqtt.Client(host, port, identifier=f"watch-{uuid.uuid4().hex[:8]}")
        self.queue: asyncio.Queue[aiomqtt.Message] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Watcher:
        await self.client.__aenter__()
        for f in self.filters:
            await self.client.subscribe(f, qos=1)
        self._task = asyncio.create_task(self._pump())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
            await self._task
        with contextlib.suppress(aiomqtt.MqttError):
            await self.client.__aexit__(None, None, None)

    async def _pump(self) -> None:
        async for message in self.client.messages:
            self.queue.put_nowait(message)

    async def next(self, timeout: float = 5.0) -> aiomqtt.Message:
        return await asyncio.wait_for(self.queue.get(), timeout)


async def retained(name: str, *, host: str = HOST, port: int = PORT) -> bytes | None:
    """The retained payload on `name` as a new subscriber sees it (None: nothing)."""
    async with Watcher(name, host=host, port=port) as w:
        try:
            message = await w.next(timeout=0.5)
        except TimeoutError:
            return None
        assert message.retain
        assert isinstance(message.payload, bytes)
        return message.payload


async def wait_until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    """A unique topic prefix; retained messages left under it are cleared afterwards."""
    p = f"test-{uuid.uuid4().hex[:8]}"
    yield p
    if not _broker_up():
        return
    async with Watcher(f"{p}/#") as w:
        leftovers: set[str] = set()
        with contextlib.suppress(TimeoutError):
            while True:
                message = await w.next(timeout=0.3)
                if message.retain:
                    leftovers.add(message.topic.value)
        for name in leftovers:
            await w.client.publish(name, b"", qos=1, retain=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateBroker:
    """A throw-away `mosquitto` on a fixed free port that can be stopped and restarted."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.conf = tmp / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert self.proc is None
        self.proc = subprocess.Popen(
            ["mosquitto", "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                assert self.proc.poll() is None, "mosquitto exited"
                assert time.monotonic() < deadline, "mosquitto did not listen"
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


@pytest.fixture
def private_broker(tmp_path: Path) -> Iterator[PrivateBroker]:
    if shutil.which("mosquitto") is None:
        pytest.skip("no mosquitto binary")
    broker = PrivateBroker(tmp_path)
    try:
        yield broker
    finally:
        broker.stop()


# --------------------------------------------------------------------------- pure helpers


def test_topic_joins_levels() -> None:
    assert topic("vmn", "mo", "5551234567") == "vmn/mo/5551234567"
    assert topic("acme/vmn", "gateway", "gw-1", "status") == "acme/vmn/gateway/gw-1/status"
    for bad in (("vmn", ""), ("vmn", "+"), ("vmn", "a#"), ("",)):
        with pytest.raises(ValueError):
            topic(*bad)


async def test_bad_target_or_payload_fails_without_a_broker() -> None:
    link = MqttLink(cfg("x", port=free_port()), gateway_name="gw", on_command=None)
    action = MqttAction(link, publish_timeout=5.0)
    started = time.monotonic()
    for target in ("", "vmn/mo/+", "vmn/#"):
        r = await action.run(job(target, {"type": "mo"}))
        assert r.outcome is Outcome.FAIL and "invalid topic" in r.detail
    r = await action.run(job("vmn/mo/1", {"when": object()}))
    assert r.outcome is Outcome.FAIL and "JSON" in r.detail
    assert time.monotonic() - started < 1.0
    assert action.kind == "mqtt" and action.concurrency == 128
    await action.close()


# --------------------------------------------------------------------------- status / will


async def test_status_is_retained_online_then_offline_after_stop(prefix: str) -> None:
    link = MqttLink(cfg(prefix), gateway_name="gw1", on_command=None)
    assert link.status_topic == f"{prefix}/gateway/gw1/status"
    assert link.client_id == "vmn-gateway-gw1"
    async with Watcher(link.status_topic) as live, link:
        await asyncio.wait_for(link.connected.wait(), 10)
        assert (await live.next()).payload == b"online"
        assert await retained(link.status_topic) == b"online"
    assert (await live.next()).payload == b"offline"
    assert not link.connected.is_set()
    assert await retained(link.status_topic) == b"offline"


async def test_cancelling_the_link_task_still_says_offline(prefix: str) -> None:
    link = MqttLink(cfg(prefix), gateway_name="gw1", on_command=None)
    task = asyncio.create_task(link.run())
    await asyncio.wait_for(link.connected.wait(), 10)
    assert await retained(link.status_topic) == b"online"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await retained(link.status_topic) == b"offline"


LINK_PROCESS = """
import asyncio, sys
from gateway.config import MqttConfig
from gateway.mqtt import MqttLink

async def main() -> None:
    cfg = MqttConfig(url=sys.argv[1], topic_prefix=sys.argv[2])
    async with MqttLink(cfg, gateway_name=sys.argv[3], on_command=None) as link:
        await link.connected.wait()
        print("READY", flush=True)
        await asyncio.sleep(3600)

asyncio.run(main())
"""


async def test_last_will_says_offline_when_the_process_dies(prefix: str) -> None:
    name = "doomed"
    status = topic(prefix, "gateway", name, "status")
    async with Watcher(status) as live:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", LINK_PROCESS, f"mqtt://{HOST}:{PORT}", prefix, name,
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            assert proc.stdout is not None
            while (line := await asyncio.wait_for(proc.stdout.readline(), 20)) != b"READY\n":
                assert line, "link process exited before connecting"
            assert (await live.next()).payload == b"online"
            proc.send_signal(signal.SIGKILL)  # no DISCONNECT: the broker must use the will
            await proc.wait()
            message = await live.next(timeout=10)
            assert message.payload == b"offline"
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    assert await retained(status) == b"offline"


# --------------------------------------------------------------------------- events


async def test_action_publishes_the_job_payload_as_json(prefix: str) -> None:
    event = {
        "type": "mo",
        "id": "01J9ZQ",
        "vmn": "5551000100",
        "from": "15551234567",
        "text": "Привет 😀 {x}",
        "keyword": None,
        "segments": 2,
        "tally": {"yes": 3},
    }
    target = topic(prefix, "mo", "5551000100")
    async with (
        Watcher(f"{prefix}/mo/+") as w,
        MqttLink(cfg(prefix), gateway_name="gw1", on_command=None) as link,
    ):
        action = MqttAction(link)
        r = await action.run(job(target, event))
        assert r == Result(outcome=Outcome.OK, detail="PUBACK", latency_ms=r.latency_ms)
        assert r.latency_ms > 0
        message = await w.next()
    assert message.topic.value == target
    assert message.payload == json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8"
    )
    assert isinstance(message.payload, bytes)
    assert json.loads(message.payload) == event


async def test_a_thousand_concurrent_runs_all_ok_and_all_received(prefix: str) -> None:
    n = 1000
    target = topic(prefix, "mt", "status")
    async with (
        Watcher(target) as w,
        MqttLink(cfg(prefix), gateway_name="gw1", on_command=None) as link,
    ):
        action = MqttAction(link)
        slots = asyncio.Semaphore(action.concurrency)

        async def one(i: int) -> Result:
            async with slots:
                return await action.run(job(target, {"type": "mt_status", "id": i}, i))

        results = await asyncio.gather(*(one(i) for i in range(n)))
        assert [r.outcome for r in results] == [Outcome.OK] * n
        seen: set[int] = set()
        while len(seen) < n:
            seen.add(json.loads((await w.next()).payload)["id"])  # type: ignore[arg-type]
    assert seen == set(range(n))


# --------------------------------------------------------------------------- commands


async def test_a_command_reaches_on_command(prefix: str) -> None:
    got: asyncio.Queue[bytes] = asyncio.Queue()
    failures = 0

    async def on_command(payload: bytes) -> None:
        nonlocal failures
        if payload == b"boom" and failures < 2:
            failures += 1
            raise RuntimeError("database down")
        await got.put(payload)

    link = MqttLink(cfg(prefix), gateway_name=f"gw-{prefix}", on_command=on_command,
                    reconnect_min=0.05, reconnect_max=0.2)
    assert link.command_topic == f"{prefix}/mt/send"
    assert link.command_filter == f"$share/vmn-gateway/{prefix}/mt/send"
    command = {"to": "15551234567", "from": "5551000100", "text": "hé", "id": "c1"}
    body = json.dumps(command, ensure_ascii=False).encode()
    async with link, aiomqtt.Client(HOST, PORT) as app:
        with capture_logs() as logs:
            await asyncio.wait_for(link.connected.wait(), 10)
            await app.publish(f"{prefix}/mt/other", b"not a command", qos=1)
            # the handler raises twice: retried (in order) until it stores it
            await app.publish(link.command_topic, b"boom", qos=1)
            await app.publish(link.command_topic, body, qos=1)
            assert await asyncio.wait_for(got.get(), 5) == b"boom"
            assert await asyncio.wait_for(got.get(), 5) == body
            assert got.empty()
    assert [e["attempt"] for e in logs if e["event"] == "mqtt.command_not_stored"] == [1, 2]


# --------------------------------------------------------------------------- outages


async def test_unreachable_broker_gives_retry_and_the_link_backs_off(prefix: str) -> None:
    link = MqttLink(
        cfg(prefix, port=free_port()),
        gateway_name="gw1",
        on_command=None,
        reconnect_min=0.05,
        reconnect_max=0.4,
    )
    action = MqttAction(link, publish_timeout=0.3)
    with capture_logs() as logs:
        async with link:
            started = time.monotonic()
            r = await action.run(job(topic(prefix, "mo", "1"), {"type": "mo"}))
            assert time.monotonic() - started < 1.5
            assert r.outcome is Outcome.RETRY
            assert r.detail.startswith("not connected to 127.0.0.1:") and "0.3s" in r.detail
            await wait_until(
                lambda: sum(e["event"] == "mqtt.disconnected" for e in logs) >= 6, timeout=10
            )
    drops = [e for e in logs if e["event"] == "mqtt.disconnected"]
    assert all(e["log_level"] == "warning" and e["error"] for e in drops)
    assert all(not e["was_connected"] for e in drops)
    assert [e["attempt"] for e in drops[:6]] == [1, 2, 3, 4, 5, 6]
    delays = [e["delay"] for e in drops]
    assert all(0.05 <= d <= 0.4 for d in delays)
    assert max(delays[3:]) > max(delays[:1])  # it backs off
    assert not any(e["event"] == "mqtt.connected" for e in logs)


async def test_broker_outages_give_retry_then_ok_again(
    prefix: str, private_broker: PrivateBroker
) -> None:
    broker = private_broker
    link = MqttLink(
        cfg(prefix, port=broker.port),
        gateway_name="gw1",
        on_command=None,
        reconnect_min=0.05,
        reconnect_max=0.3,
    )
    action = MqttAction(link, publish_timeout=0.5)
    target = topic(prefix, "mo", "1")

    async def attempt() -> Result:
        return await action.run(job(target, {"type": "mo", "n": 1}))

    with capture_logs() as logs:
        async with link:
            r = await attempt()  # broker down
            assert r.outcome is Outcome.RETRY and r.detail.startswith("not connected"), r

            broker.start()
            await asyncio.wait_for(link.connected.wait(), 10)
            assert (await attempt()).outcome is Outcome.OK
            assert await retained(link.status_topic, port=broker.port) == b"online"

            broker.stop()
            await wait_until(lambda: not link.connected.is_set(), timeout=10)
            r = await attempt()
            assert r.outcome is Outcome.RETRY, r

            broker.start()  # a fresh broker: no retained status until the link says so
            await asyncio.wait_for(link.connected.wait(), 10)
            async with Watcher(target, port=broker.port) as w:
                assert (await attempt()).outcome is Outcome.OK
                assert json.loads((await w.next()).payload) == {"type": "mo", "n": 1}  # type: ignore[arg-type]
            assert await retained(link.status_topic, port=broker.port) == b"online"
    events = [e["event"] for e in logs if e["event"].startswith("mqtt.")]
    assert events.count("mqtt.connected") == 2
    lost = [e for e in logs if e["event"] == "mqtt.disconnected" and e["was_connected"]]
    assert len(lost) == 1


async def test_publish_in_flight_when_the_broker_dies_is_retry(
    prefix: str, private_broker: PrivateBroker
) -> None:
    broker = private_broker
    broker.start()
    link = MqttLink(
        cfg(prefix, port=broker.port),
        gateway_name="gw1",
        on_command=None,
        reconnect_min=0.05,
        reconnect_max=0.3,
    )
    action = MqttAction(link, publish_timeout=5.0)
    async with link:
        await asyncio.wait_for(link.connected.wait(), 10)
        assert broker.proc is not None
        broker.proc.send_signal(signal.SIGSTOP)  # the broker stops answering
        run = asyncio.create_task(action.run(job(topic(prefix, "mo", "1"), {"n": 1})))
        await asyncio.sleep(0.2)
        assert not run.done()
        broker.proc.kill()  # ...and dies (still stopped) with the PUBLISH unacknowledged
        broker.proc.wait()
        broker.proc = None
        started = time.monotonic()
        r = await run
        assert time.monotonic() - started < 2.0  # not the 5 s publish timeout
        assert r.outcome is Outcome.RETRY and r.detail == "connection lost before PUBACK", r


async def test_no_puback_in_time_is_retry_and_the_link_carries_on(
    prefix: str, private_broker: PrivateBroker
) -> None:
    broker = private_broker
    broker.start()
    link = MqttLink(cfg(prefix, port=broker.port), gateway_name="gw1", on_command=None)
    action = MqttAction(link, publish_timeout=0.3)
    target = topic(prefix, "mo", "1")
    async with link:
        await asyncio.wait_for(link.connected.wait(), 10)
        assert broker.proc is not None
        broker.proc.send_signal(signal.SIGSTOP)  # connected, but nobody answers
        try:
            started = time.monotonic()
            r = await action.run(job(target, {"n": 1}))
            assert time.monotonic() - started < 1.0
            assert r.outcome is Outcome.RETRY and r.detail == "no PUBACK within 0.3s", r
        finally:
            broker.proc.send_signal(signal.SIGCONT)
        assert link.connected.is_set()
        assert (await action.run(job(target, {"n": 2}))).outcome is Outcome.OK
