"""The demo's peers besides the simulator: the gateway daemon as a subprocess (plus its
CLI and HTTP API), a webhook receiver on a thread, and the configuration they share."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

import gateway

T = TypeVar("T")


class DemoError(Exception):
    """A step failed; the message says which and what to do."""


def tail(path: Path, lines: int = 15) -> str:
    """The end of a log, indented for the demo's output."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "    (no log)"
    return "\n".join("    " + line for line in text.splitlines()[-lines:]) or "    (empty)"


def wait_for(predicate: Callable[[], T | None], timeout: float, what: str,
             alive: Callable[[], None] | None = None, interval: float = 0.2) -> T:
    """Poll `predicate` until it returns something truthy; `alive` raises if a process died."""
    deadline = time.monotonic() + timeout
    while True:
        if alive is not None:
            alive()
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise DemoError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> int:
    """SIGTERM, then SIGKILL after `timeout`; returns the exit code."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return proc.returncode


# --------------------------------------------------------------------------- webhooks


class WebhookReceiver:
    """A tiny HTTP server (aiohttp, its own event loop on a thread) that keeps every
    request's JSON body: the trigger URL of the demo's configuration."""

    def __init__(self) -> None:
        self.url = ""
        self._events: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(self, timeout: float = 10.0) -> None:
        self._thread = threading.Thread(target=self._serve, name="demo-webhooks", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout) or self._error is not None:
            raise DemoError(f"the demo's webhook receiver did not start: {self._error}")

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)

        async def handle(request: web.Request) -> web.Response:
            with contextlib.suppress(ValueError, UnicodeDecodeError):
                body = json.loads(await request.read())
                if isinstance(body, dict):
                    with self._lock:
                        self._events.append(body)
            return web.Response(text="ok")

        async def start() -> web.AppRunner:
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", handle)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            return runner

        try:
            runner = loop.run_until_complete(start())
            host, port = runner.addresses[0][:2]
            self.url = f"http://{host}:{port}/hook"
        except Exception as exc:  # reported by start()
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(runner.cleanup())
            loop.close()

    def events(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._events)

    def stop(self) -> None:
        if self._thread is None or self._loop is None or not self._thread.is_alive():
            return
        with contextlib.suppress(RuntimeError):  # the loop already closed
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


# --------------------------------------------------------------------------- gateway


class Gateway:
    """The daemon as a subprocess, plus the CLI against the same configuration."""

    def __init__(self, config_path: Path, log_path: Path) -> None:
        self.config_path = config_path
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.api_base = ""  # http://127.0.0.1:PORT of its [api] listener
        self.api_key = ""
        env = dict(os.environ)
        # The same gateway package as this process, whatever the working directory.
        package_root = str(Path(gateway.__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH"))
                                            if p)
        env["PYTHONIOENCODING"] = "utf-8"
        self.env = env

    def start(self) -> None:
        with open(self.log_path, "wb") as log_file:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gateway", "run", "-c", str(self.config_path)],
                cwd=self.config_path.parent, stdin=subprocess.DEVNULL, stdout=log_file,
                stderr=subprocess.STDOUT, env=self.env, start_new_session=True,
            )

    def alive(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            rc = None if self.proc is None else self.proc.returncode
            raise DemoError(f"the gateway exited (exit code {rc}); its log ends with:\n"
                            f"{tail(self.log_path)}")

    def stop(self) -> int | None:
        return None if self.proc is None else stop_process(self.proc, 15.0)

    def cli(self, command: str, *args: str, sub: tuple[str, ...] = ()) -> str:
        cmd = [sys.executable, "-m", "gateway", command, *sub, "-c", str(self.config_path),
               *args]
        try:
            res = subprocess.run(cmd, cwd=self.config_path.parent, capture_output=True,
                                 env=self.env, timeout=60, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise DemoError(f"`vmn-gateway {command}` did not finish within 60 s") from None
        out = res.stdout.decode("utf-8", "replace")
        if res.returncode != 0:
            err = res.stderr.decode("utf-8", "replace").strip()
            raise DemoError(f"`vmn-gateway {command}` failed (exit {res.returncode}): {err}")
        return out

    def logs(self) -> list[dict[str, Any]]:
        out = self.cli("logs", "--json", "--limit", "0")
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def api(self, method: str, path: str, key: str, body: Any = None) -> tuple[int, Any]:
        """One HTTP API request: (status, JSON body)."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.api_base + path, data=data, method=method,
                                     headers={"Authorization": f"Bearer {key}",
                                              "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"null")
        except (OSError, ValueError) as exc:
            raise DemoError(f"the HTTP API did not answer {method} {path}: {exc}") from None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(directory: Path, smpp_port: int, webhook_url: str,
                 api_port: int | None = None) -> Path:
    template = resources.files("gateway").joinpath("demo.toml").read_text(encoding="utf-8")
    db = f"sqlite+aiosqlite:///{directory / 'gateway.db'}"
    toml_db = db.replace("\\", "\\\\").replace('"', '\\"')
    text = (template.replace("@SMPP_PORT@", str(smpp_port)).replace("@DATABASE@", toml_db)
            .replace("@WEBHOOK@", webhook_url)
            .replace("@API_PORT@", str(api_port or free_port())))
    path = directory / "gateway.toml"
    path.write_text(text, encoding="utf-8")
    return path
