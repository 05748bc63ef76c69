"""Receiver processes and the orchestrator's handle on them.

A receiver (the webhook receiver and MQTT subscriber below, bench/sink.py) records
``(receive time, seq, event id)`` per delivery, where seq is the load generator's
sequence number in the MO's text, and speaks one protocol: a JSON line
``{"ready": true, ...}`` on stdout once it listens, then per stdin line ``stats`` /
``dump`` / ``quit`` one JSON line back. ``Helper`` is the orchestrator's side of it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchlib.procs import REPO_DIR, TargetError

TEXT_SEQ = re.compile(r"HELLO (\d+) ")
PIPE_LIMIT = 64 * 1024 * 1024  # a dump is one JSON line of ~1-2 MB


def seq_of(event: Any) -> int | None:
    """The loadgen sequence number carried in an mo event's text, None if none."""
    if not isinstance(event, dict):
        return None
    m = TEXT_SEQ.match(str(event.get("text") or ""))
    return int(m.group(1)) if m else None


def event_seq(body: bytes | bytearray) -> tuple[int, str] | None:
    """(seq, event id) of a JSON mo event (the gateway's webhook body or MQTT payload)."""
    try:
        event = json.loads(body)
    except ValueError:
        return None
    seq = seq_of(event)
    return None if seq is None else (seq, str(event.get("id")))


class Records:
    """What a receiver got: (receive time, seq, event id); thread-safe enough under the
    GIL (appends from one thread, copies from the control thread). ``parse`` finds the
    (seq, event id) of a delivery's bytes, None for a delivery without one ("bad")."""

    def __init__(
        self, parse: Callable[[bytes | bytearray], tuple[int, str] | None] = event_seq
    ) -> None:
        self.parse = parse
        self.items: list[tuple[float, int, str]] = []
        self.seqs: set[int] = set()
        self.bad = 0
        self.last = 0.0

    def add(self, t: float, body: bytes | bytearray) -> None:
        found = self.parse(body)
        if found is None:
            self.bad += 1
            return
        seq, event_id = found
        self.items.append((t, seq, event_id))
        self.seqs.add(seq)
        self.last = t

    def stats(self) -> dict[str, Any]:
        return {"n": len(self.items), "unique": len(self.seqs), "bad": self.bad, "last": self.last}


def control(records: Records, on_quit: Callable[[], None]) -> None:
    """Answer the orchestrator's commands, one JSON line each, until quit or EOF."""
    out = sys.stdout
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "stats":
            reply: dict[str, Any] = records.stats()
        elif cmd == "dump":
            reply = {**records.stats(), "records": list(records.items)}
        elif cmd == "quit":
            break
        else:
            reply = {"error": f"unknown command {cmd!r}"}
        out.write(json.dumps(reply, separators=(",", ":")) + "\n")
        out.flush()
    on_quit()


def ready(**info: Any) -> None:
    sys.stdout.write(json.dumps({"ready": True, **info}) + "\n")
    sys.stdout.flush()


async def webhook_receiver(port: int) -> int:
    from aiohttp import web

    records = Records()

    async def hook(request: web.Request) -> web.Response:
        t = time.time()
        records.add(t, await request.read())
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, backlog=1024)
    await site.start()
    server = site._server
    assert server is not None
    sockets = getattr(server, "sockets", None) or []
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    threading.Thread(
        target=control,
        args=(records, lambda: loop.call_soon_threadsafe(stop.set)),
        daemon=True,
    ).start()
    ready(port=int(sockets[0].getsockname()[1]), pid=os.getpid())
    await stop.wait()
    await runner.cleanup()
    return 0


def mqtt_subscriber(host: str, port: int, topic_filter: str, client_id: str) -> int:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    records = Records()
    subscribed = threading.Event()

    def on_connect(client: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        if not rc.is_failure:
            client.subscribe(topic_filter, qos=1)

    def on_subscribe(_c: mqtt.Client, _u: Any, _mid: int, codes: Any, _p: Any) -> None:
        if codes and not codes[0].is_failure:
            subscribed.set()

    def on_message(_c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        records.add(time.time(), msg.payload)

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.connect(host, port, keepalive=60)
    client.loop_start()
    if not subscribed.wait(10.0):
        print("mqtt subscriber: no SUBACK within 10 s", file=sys.stderr)
        client.loop_stop()
        return 1
    ready(pid=os.getpid())
    control(records, lambda: None)
    client.disconnect()
    client.loop_stop()
    return 0


class Helper:
    """A receiver process driven over stdin/stdout, one JSON line per command."""

    def __init__(self, name: str, proc: asyncio.subprocess.Process) -> None:
        self.name = name
        self.proc = proc
        self._lock = asyncio.Lock()

    @classmethod
    async def start(
        cls, name: str, argv: list[str], log: Path, timeout: float = 15.0
    ) -> tuple[Helper, dict[str, Any]]:
        with log.open("ab") as err:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                cwd=REPO_DIR,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=err,
                limit=PIPE_LIMIT,
            )
        helper = cls(name, proc)
        try:
            info = await asyncio.wait_for(helper._read(), timeout)
        except (TimeoutError, TargetError) as exc:
            await helper.stop()
            raise TargetError(f"{name} did not start ({exc!r}); log {log}") from None
        return helper, info

    async def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = await self.proc.stdout.readline()
        if not line:
            raise TargetError(f"{self.name} exited (code {self.proc.returncode})")
        reply: dict[str, Any] = json.loads(line)
        return reply

    async def request(self, cmd: str, timeout: float = 30.0) -> dict[str, Any]:
        async with self._lock:
            assert self.proc.stdin is not None
            self.proc.stdin.write(cmd.encode() + b"\n")
            await self.proc.stdin.drain()
            return await asyncio.wait_for(self._read(), timeout)

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def stop(self) -> None:
        if self.proc.returncode is not None:
            return
        with contextlib.suppress(Exception):
            assert self.proc.stdin is not None
            self.proc.stdin.write(b"quit\n")
            await self.proc.stdin.drain()
            self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 5.0)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()
