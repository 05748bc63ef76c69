"""Real peers for the end-to-end tests of actions, each in the test process or its own
process: an HTTP server for webhooks (aiohttp, on a thread), an SMTP server (aiosmtpd),
an MQTT subscriber (paho) and a private Mosquitto broker that tests can stop and start."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from aiohttp import web
from aiosmtpd.controller import Controller

MQTT_HOST = os.environ.get("MQTT_HOST", "127.0.0.1")
MQTT_PORT = int(os.environ.get("MQTT_PORT", "1883"))


def broker_up(host: str, port: int) -> bool:
    """Whether something accepts TCP connections on host:port (the MQTT tests skip
    without a broker)."""
    try:
        socket.create_connection((host, port), timeout=1).close()
    except OSError:
        return False
    return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    at: float

    def json(self) -> Any:
        return json.loads(self.body)


class HttpRecorder:
    """A webhook receiver. `status`/`delay` decide the answers; every request is kept."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.status = 200
        self.delay = 0.0
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._runner: web.AppRunner | None = None

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def handle(request: web.Request) -> web.Response:
            body = await request.read()
            self.requests.append(Request(request.method, request.path, dict(request.query),
                                         dict(request.headers), body, time.time()))
            if self.delay:
                await asyncio.sleep(self.delay)
            return web.Response(status=self.status, text="ok")

        async def start() -> None:
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", handle)
            self._runner = web.AppRunner(app, access_log=None)
            await self._runner.setup()
            await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
            self._ready.set()

        self._loop.run_until_complete(start())
        self._loop.run_forever()

    def __enter__(self) -> HttpRecorder:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            if self._runner is not None:
                await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


class _Sink:
    def __init__(self, owner: SmtpSink) -> None:
        self.owner = owner

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.owner.messages.append((envelope.mail_from, list(envelope.rcpt_tos),
                                    bytes(envelope.original_content or envelope.content)))
        return "250 OK"


class SmtpSink:
    """An SMTP server capturing every message; `stop()`/`start()` for outages."""

    def __init__(self) -> None:
        self.port = free_port()
        self.messages: list[tuple[str, list[str], bytes]] = []
        self._controller: Controller | None = None

    def start(self) -> None:
        self._controller = Controller(_Sink(self), hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> SmtpSink:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class MqttWatcher:
    """Subscribes to `<prefix>/#` and keeps every message (topic, JSON or text, retain)."""

    prefix: str = field(default_factory=lambda: f"t{uuid.uuid4().hex[:10]}")
    host: str = MQTT_HOST
    port: int = MQTT_PORT
    messages: list[tuple[str, Any, bool]] = field(default_factory=list)
    # A fixed id and clean_session=False: a persistent session, which the broker keeps
    # (with the messages for it) while this watcher is away.
    client_id: str | None = None
    clean_session: bool = True

    def __post_init__(self) -> None:
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=self.client_id or f"watch-{uuid.uuid4().hex[:8]}",
                                  clean_session=self.clean_session)
        self._subscribed = threading.Event()
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(f"{self.prefix}/#", qos=1)
        self.client.on_subscribe = lambda c, u, mid, rc, p: self._subscribed.set()
        self.client.on_message = self._on_message

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            payload: Any = json.loads(msg.payload)
        except (ValueError, RecursionError):
            payload = msg.payload.decode(errors="replace")
        self.messages.append((msg.topic, payload, bool(msg.retain)))

    def __enter__(self) -> MqttWatcher:
        self.client.connect(self.host, self.port)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise TimeoutError("MQTT subscription not acknowledged")
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.loop_stop()
        self.client.disconnect()

    def publish(self, topic: str, payload: Any) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.client.publish(topic, data, qos=1).wait_for_publish(10)

    def on(self, suffix: str) -> list[Any]:
        t = f"{self.prefix}/{suffix}"
        return [p for topic, p, _ in self.messages if topic == t]

    def events(self, kind: str) -> list[dict[str, Any]]:
        return [p for _, p, _ in self.messages if isinstance(p, dict) and p.get("type") == kind]


class PrivateBroker:
    """A Mosquitto of the test's own on a free port, to take down and bring back."""

    def __init__(self, persistent: bool = False) -> None:
        self.port = free_port()
        self._dir = tempfile.mkdtemp(prefix="mosq-")
        self.conf = os.path.join(self._dir, "mosquitto.conf")
        with open(self.conf, "w") as f:
            f.write(f"listener {self.port} 127.0.0.1\nallow_anonymous true\n")
            # persistent: sessions and their queued messages survive a restart
            f.write(f"persistence true\npersistence_location {self._dir}/\n" if persistent
                    else "persistence false\n")
        # Started as root, mosquitto drops to its own user: let it write its database.
        os.chmod(self._dir, 0o777)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(["mosquitto", "-c", self.conf],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise TimeoutError("private mosquitto did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


def http_get(port: int, path: str, timeout: float = 10.0) -> tuple[int, str]:
    """GET http://127.0.0.1:port/path: (status, body); (0, "") when nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError:
        return 0, ""
