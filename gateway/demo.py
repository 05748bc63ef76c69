"""`vmn-gateway demo`: a newcomer's first run.

Starts the SMSC simulator (``node sim/smsc.js``), a small webhook receiver (in this
process) and the gateway daemon on loopback, sends a handful of MOs through the
simulator (a keyword, a default, STOP, a long UCS-2 message in reverse order, an expired
keyword, a keyword alias), queues one MT with ``vmn-gateway send`` and one through the
HTTP API (``POST /v1/messages`` with a key from ``vmn-gateway apikey create``), answers
both with delivery receipts, waits until every MO got its reply and the webhook its events, and
shows what happened to each. The gateway and the CLI run in subprocesses, exactly as a
user would run them; the simulator driver here is a small stdlib-only copy of
tests/simctl.py (the package does not import from tests/).
"""

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
import tempfile
import threading
import time
import unicodedata
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

from aiohttp import web

import gateway

T = TypeVar("T")

VMN = "5551000100"
CUSTOMER = "15551234567"
# STOP comes from a second phone: it opts that sender out, and the customer above
# still gets the replies to its other messages and the MT.
OTHER_PHONE = "15559876543"
MT_TEXT = "Your table is ready"
API_TEXT = "Your order has shipped"
LONG_TEXT = (
    "Привет! 👋 This long message mixes Cyrillic, Latin and emoji, so it travels as "
    "UCS-2 and does not fit one SMS: the simulator splits it with an 8-bit "
    "concatenation UDH and sends the parts in reverse order. 😀"
)


@dataclass(frozen=True)
class DemoMo:
    label: str  # how the table names it
    text: str
    sender: str = CUSTOMER
    extra: dict[str, Any] = field(default_factory=dict)  # more /mo fields
    webhook: bool = False  # its configuration (gateway/demo.toml) has a webhook


MOS: list[DemoMo] = [
    DemoMo("HELLO there", "HELLO there", webhook=True),
    DemoMo("What time do you open?", "What time do you open?", webhook=True),
    DemoMo("STOP (2nd phone)", "STOP", sender=OTHER_PHONE),
    DemoMo("Привет! 👋 (long UCS-2)", LONG_TEXT, extra={"encoding": "ucs2", "mode": "udh8"},
           webhook=True),
    DemoMo("SALE", "SALE"),
    DemoMo("PRICE?", "PRICE?"),
]
FINAL_MT = ("submitted", "delivered", "failed", "blocked")
UCS2_PART_OCTETS = 134  # the simulator's default part size for UCS-2 with a UDH

BIND_TIMEOUT = 20.0
STEP_TIMEOUT = 30.0


class DemoError(Exception):
    """A step failed; the message says which and what to do."""


# --------------------------------------------------------------------------- output


def _say(text: str = "") -> None:
    """print() that never fails on a terminal that cannot show Cyrillic or emoji."""
    encoding = getattr(sys.stdout, "encoding", None) or "utf-8"
    print(text.encode(encoding, "replace").decode(encoding, "replace"), flush=True)


def _short(text: str, width: int = 34) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _pad(text: str, width: int) -> str:
    """ljust by terminal columns: wide characters (emoji, CJK) take two."""
    columns = sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)
    return text + " " * max(0, width - columns)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "    (no log)"
    return "\n".join("    " + line for line in text.splitlines()[-lines:]) or "    (empty)"


def _wait_for(predicate: Callable[[], T | None], timeout: float, what: str,
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


def _stop_process(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> int:
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


# --------------------------------------------------------------------------- simulator


def sim_dir() -> Path:
    """`$VMN_SIM_DIR`, else the repository's sim/ next to the gateway package."""
    env = os.environ.get("VMN_SIM_DIR")
    if env:
        return Path(env).expanduser().resolve()
    return Path(gateway.__file__).resolve().parent.parent / "sim"


class Simulator:
    """`node smsc.js` plus the few control-API calls the demo needs."""

    def __init__(self, directory: Path, log_path: Path) -> None:
        self.directory = directory
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.smpp_port = 0
        self.control_port = 0

    def start(self, timeout: float = 15.0) -> None:
        script = self.directory / "smsc.js"
        if not script.is_file():
            raise DemoError(
                f"the SMSC simulator is not at {script}: run the demo from a checkout of the "
                "repository, or set VMN_SIM_DIR to the directory that holds smsc.js"
            )
        if not (self.directory / "node_modules").is_dir():
            raise DemoError(
                f"the simulator's dependencies are missing ({self.directory / 'node_modules'}).\n"
                f"  Install them once with:  npm ci --prefix {self._prefix()}"
            )
        node = shutil.which("node")
        if node is None:
            raise DemoError("node (Node.js >= 18) is not on PATH; the SMSC simulator needs it")
        cmd = [node, str(script), "--smpp-port", "0", "--control-port", "0",
               "--system-id", "test", "--password", "secret", "--quiet", "--parent-watch"]
        with open(self.log_path, "wb") as log_file:
            self.proc = subprocess.Popen(
                cmd, cwd=self.directory, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=log_file, start_new_session=True,  # Ctrl-C is handled by the demo
            )
        line = self._read_line(timeout)
        try:
            ready = json.loads(line) if line else None
        except ValueError:
            ready = None
        if not isinstance(ready, dict) or not ready.get("ready"):
            raise DemoError(f"the SMSC simulator did not start:\n{_tail(self.log_path)}")
        self.smpp_port = int(ready["smpp_port"])
        self.control_port = int(ready["control_port"])

    def _prefix(self) -> str:
        with contextlib.suppress(ValueError):
            return str(self.directory.relative_to(Path.cwd())) or "."
        return str(self.directory)

    def _read_line(self, timeout: float) -> str:
        proc = self.proc
        assert proc is not None and proc.stdout is not None
        stdout = proc.stdout
        result: list[bytes] = []

        def reader() -> None:
            with contextlib.suppress(OSError, ValueError):
                result.append(stdout.readline())

        t = threading.Thread(target=reader, daemon=True)
        t.start()
        t.join(timeout)
        return result[0].decode(errors="replace").strip() if result else ""

    def stop(self) -> None:
        if self.proc is None:
            return
        _stop_process(self.proc, 5.0)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()

    def alive(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            raise DemoError(f"the SMSC simulator exited:\n{_tail(self.log_path)}")

    def request(self, method: str, path: str, body: Any = None, timeout: float = 30.0) -> Any:
        data = None if body is None else json.dumps(body).encode()
        headers = {} if body is None else {"Content-Type": "application/json"}
        req = urllib.request.Request(f"http://127.0.0.1:{self.control_port}{path}",
                                     data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as e:
            detail = e.read().decode(errors="replace")
            raise DemoError(f"simulator {method} {path} -> {e.code}: {detail}") from None
        except OSError as e:
            raise DemoError(f"simulator {method} {path} failed: {e}") from None

    def state(self) -> dict[str, Any]:
        return dict(self.request("GET", "/state"))

    def mo(self, **kw: Any) -> dict[str, Any]:
        return dict(self.request("POST", "/mo", kw, timeout=60.0))

    def receipt(self, **kw: Any) -> dict[str, Any]:
        return dict(self.request("POST", "/receipt", kw))

    def submits(self) -> list[dict[str, Any]]:
        return list(self.request("GET", "/submits"))


def ucs2_parts(text: str, part_octets: int = UCS2_PART_OCTETS) -> int:
    """How many parts the simulator makes of `text` in UCS-2 (it never splits a code point)."""
    parts, used = 1, 0
    for ch in text:
        size = len(ch.encode("utf-16-be"))
        if used and used + size > part_octets:
            parts, used = parts + 1, 0
        used += size
    return parts


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
                            f"{_tail(self.log_path)}")

    def stop(self) -> int | None:
        return None if self.proc is None else _stop_process(self.proc, 15.0)

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


# --------------------------------------------------------------------------- the demo


def run_demo(*, keep: bool = False) -> int:
    """Run the demo; 0 on success, 1 (with the reason printed) on failure."""
    workdir = Path(tempfile.mkdtemp(prefix="vmn-demo-"))
    sim = Simulator(sim_dir(), workdir / "simulator.log")
    hooks = WebhookReceiver()
    gw: Gateway | None = None
    ok = False
    # The children run in their own sessions (a Ctrl-C must not reach them before the
    # demo stops them in order); a SIGTERM to the demo is handled like a Ctrl-C.
    previous = _on_sigterm(_interrupt)
    try:
        _say("vmn-gateway demo: an SMSC simulator, a webhook receiver and the gateway "
             "on 127.0.0.1")
        sim.start()
        hooks.start()
        api_port = free_port()
        cfg = write_config(workdir, sim.smpp_port, hooks.url, api_port)
        gw = Gateway(cfg, workdir / "gateway.log")
        gw.api_base = f"http://127.0.0.1:{api_port}"
        _demo(sim, hooks, gw)
        ok = True
    except DemoError as exc:
        _say(f"\ndemo failed: {exc}")
    except KeyboardInterrupt:
        _say("\ndemo interrupted")
    finally:
        ok = _cleanup(sim, hooks, gw) and ok
        if ok:
            _next_steps(workdir, keep)
        elif gw is not None or sim.proc is not None:
            _say(f"Logs and configuration kept in {workdir}")
            keep = True
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
        _on_sigterm(previous)
    return 0 if ok else 1


_Handler = Callable[[int, FrameType | None], Any] | int | None


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _on_sigterm(handler: _Handler) -> _Handler:
    """Install a SIGTERM handler (main thread only); returns the previous one."""
    if handler is None or threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, handler)


@dataclass
class Outcome:
    """What became of one of the demo's MOs."""

    mo: DemoMo
    row: dict[str, Any] | None  # its `vmn-gateway logs --json` record
    replies: list[dict[str, Any]]  # the MT records with in_reply_to = its id
    hooks: list[dict[str, Any]]  # webhook bodies: its mo event, its replies' mt_status

    def problem(self) -> str | None:
        """Why it is not finished yet (None: it is)."""
        if self.row is None:
            return "not in `vmn-gateway logs`"
        if self.row["status"] != "received":
            return f"logged as {self.row['status']}"
        if not self.replies:
            return "no reply queued"
        if any(r["status"] not in FINAL_MT for r in self.replies):
            return "its reply is not submitted yet"
        if self.mo.webhook:
            if not any(e.get("type") == "mo" for e in self.hooks):
                return "the webhook did not get its mo event"
            heard = {(e.get("id"), e.get("status")) for e in self.hooks
                     if e.get("type") == "mt_status"}
            if any((r["id"], r["status"]) not in heard for r in self.replies):
                return "the webhook did not get its reply's mt_status"
        return None


def _outcomes(logs: list[dict[str, Any]], events: list[dict[str, Any]]) -> list[Outcome]:
    rows = {(r["from"], r["text"]): r for r in logs if r["direction"] == "mo"}
    result = []
    for mo in MOS:
        row = rows.get((mo.sender, mo.text))
        mo_id = None if row is None else row["id"]
        replies = [r for r in logs if r["direction"] == "mt" and mo_id is not None
                   and r.get("in_reply_to") == mo_id]
        hooks = [e for e in events if mo_id is not None and (
            (e.get("type") == "mo" and e.get("id") == mo_id)
            or (e.get("type") == "mt_status" and e.get("in_reply_to") == mo_id))]
        result.append(Outcome(mo, row, replies, hooks))
    return result


def _demo(sim: Simulator, hooks: WebhookReceiver, gw: Gateway) -> None:
    _say(f"  simulator: SMPP on port {sim.smpp_port}, control API on port {sim.control_port}")
    _say(f"  webhooks:  {hooks.url} (the trigger URL in the demo's configuration)")
    gw.start()

    def alive() -> None:
        sim.alive()
        gw.alive()

    binds = _wait_for(lambda: sim.state()["binds"], BIND_TIMEOUT,
                      "the gateway to bind to the simulator", alive)
    _say(f"  gateway:   bound as {binds[0]['system_id']!r} ({binds[0]['bind_type']}), "
         f"config {gw.config_path}")

    _say(f"\nSending {len(MOS)} MOs to {VMN} from {CUSTOMER} (STOP from {OTHER_PHONE}) ...")
    for mo in MOS:
        body: dict[str, Any] = {"source": mo.sender, "destination": VMN, "text": mo.text,
                                **mo.extra}
        if mo.extra.get("mode") == "udh8":
            body["order"] = list(range(ucs2_parts(mo.text), 0, -1))  # last part first
        alive()
        res = sim.mo(**body)
        bad = [s for s in res.get("statuses", []) if s != 0]
        if bad or res.get("sent") != len(res.get("statuses", [])):
            _say(f"  note: {_short(mo.text, 20)!r} was answered with {res.get('statuses')}")

    mt_id = gw.cli("send", "--from", VMN, "--to", CUSTOMER, MT_TEXT).strip()
    submit = _wait_for(
        lambda: next((s for s in sim.submits() if s.get("destination_addr") == CUSTOMER
                      and s.get("text") == MT_TEXT and s.get("command_status") == 0), None),
        STEP_TIMEOUT, "the MT's submit_sm at the simulator", alive)
    rcpt = sim.receipt(message_id=submit["message_id"], stat="DELIVRD")
    _say(f"Queued an MT with `vmn-gateway send` -> submit_sm {submit['message_id']}, "
         f"receipt DELIVRD sent (deliver_sm_resp {rcpt.get('status')})")
    api_id = _api_send(sim, gw, alive)

    # Wait until every MO has its reply submitted, the webhook heard what it should,
    # and the MT is delivered; on a timeout, show how far it got.
    seen: dict[str, Any] = {"outcomes": _outcomes([], []), "mt": None, "events": []}

    def finished() -> bool:
        logs, events = gw.logs(), hooks.events()
        outcomes = _outcomes(logs, events)
        mt = next((r for r in logs if r["id"] == mt_id), None)
        api_mt = next((r for r in logs if r["id"] == api_id), None)
        seen.update(outcomes=outcomes, mt=mt, events=events, api_mt=api_mt)
        return (all(o.problem() is None for o in outcomes)
                and mt is not None and mt["status"] == "delivered"
                and api_mt is not None and api_mt["status"] == "delivered")

    problems: list[str] = []
    try:
        _wait_for(finished, STEP_TIMEOUT, "the replies, the webhook calls and the MT's "
                  "receipt", alive, 0.3)
    except DemoError as exc:
        problems.append(str(exc))
    outcomes: list[Outcome] = seen["outcomes"]
    mt: dict[str, Any] | None = seen["mt"]
    api_mt = seen.get("api_mt")
    status, shown = gw.api("GET", f"/v1/messages/{api_id}", gw.api_key)
    api_line = None
    if status == 200:
        changes = ", ".join(h["status"] for h in shown["history"])
        receipt = shown["receipt"] or {}
        api_line = (f"  MT POST /v1/messages to {shown['to']}: {shown['text']!r} -> "
                    f"{changes} ({receipt.get('stat')})")
    _report(outcomes, seen["events"], mt, sim.state(), sim.submits(), api_line)
    problems += [f"{o.mo.label}: {o.problem()}" for o in outcomes if o.problem()]
    if mt is None or mt["status"] != "delivered":
        problems.append(f"the MT is {'missing' if mt is None else mt['status']}")
    if api_mt is None or api_mt["status"] != "delivered" or status != 200:
        problems.append("the MT sent through the HTTP API is "
                        f"{'missing' if api_mt is None else api_mt['status']}")
    if problems:
        raise DemoError("; ".join(problems) + f"; see {gw.log_path}")


def _api_send(sim: Simulator, gw: Gateway, alive: Callable[[], None]) -> str:
    """Make an API key, send one MT with POST /v1/messages, answer it with a receipt."""
    gw.api_key = gw.cli("apikey", "demo-app", "--scope", "send,read",
                        sub=("create",)).strip().split()[-1]
    status, body = gw.api("POST", "/v1/messages", gw.api_key,
                          {"from": VMN, "to": f"+{CUSTOMER}", "text": API_TEXT})
    if status != 202:
        raise DemoError(f"POST /v1/messages answered {status}: {body}")
    submit = _wait_for(
        lambda: next((s for s in sim.submits() if s.get("text") == API_TEXT
                      and s.get("command_status") == 0), None),
        STEP_TIMEOUT, "the API MT's submit_sm at the simulator", alive)
    sim.receipt(message_id=submit["message_id"], stat="DELIVRD")
    _say(f"Sent an MT through the HTTP API: POST /v1/messages -> {status} "
         f"{{status: {body['status']}, parts: {body['parts']}}}, receipt DELIVRD sent")
    return str(body["id"])


def _wire_text(mt: dict[str, Any], submits: dict[str, dict[str, Any]]) -> str:
    """The MT's text as the simulator received it (its submit_sm parts), else as logged."""
    ids = mt.get("smsc_message_id")
    ids = ids if isinstance(ids, list) else [ids]
    parts = [submits[i].get("text") for i in ids if i in submits]
    if parts and all(isinstance(p, str) for p in parts):
        return "".join(str(p) for p in parts)
    return str(mt.get("text") or "")


def _report(outcomes: list[Outcome], events: list[dict[str, Any]], mt: dict[str, Any] | None,
            state: dict[str, Any], submit_list: list[dict[str, Any]],
            api_line: str | None = None) -> None:
    submits = {s["message_id"]: s for s in submit_list if s.get("message_id")}
    _say("\nWhat happened to each (`vmn-gateway logs --json`, the simulator's submits, "
         "the webhook):")
    _say(f"  {'MO':<24} {'route':<8} {'keyword':<8} {'segs/dc':<7}  webhook calls")
    for o in outcomes:
        if o.row is None:
            _say(f"  {_pad(o.mo.label, 24)} MISSING from the log")
            continue
        statuses = [e for e in o.hooks if e.get("type") == "mt_status"]
        hooked = (f"mo + {len(statuses)} mt_status" if any(e.get("type") == "mo"
                                                           for e in o.hooks)
                  else f"{len(statuses)} mt_status" if statuses else "-")
        seg = f"{o.row['segments']}/{o.row['data_coding']}"
        if o.row["status"] != "received":
            seg += f" {o.row['status']}"
        _say(f"  {_pad(o.mo.label, 24)} {o.row.get('route') or '-':<8} "
             f"{o.row.get('keyword') or '-':<8} {seg:<7}  {hooked}")
        for r in o.replies or [{}]:
            if not r:
                _say("      (no reply)")
                continue
            state_note = "" if r["status"] in ("submitted", "delivered") else f" [{r['status']}]"
            _say(f"      reply{state_note}: {_short(_wire_text(r, submits), 66)}")
    if mt is None:
        _say(f"  MT to {CUSTOMER}: MISSING from the log")
    else:
        _say(f"  MT `vmn-gateway send` to {mt['to']}: {mt['text']!r} -> "
             f"{mt['smsc_message_id']}, {mt['status']}")
    if api_line is not None:
        _say(api_line + "  (GET /v1/messages/{id})")
    counts = state.get("deliver_sm_resp") or {}
    shown = ", ".join(f"status {k}: {v}" for k, v in sorted(counts.items())) or "none"
    _say(f"Simulator: deliver_sm_resp {shown} (0 = ESME_ROK: every part acknowledged), "
         f"{state.get('submits_accepted', 0)} submit_sm accepted")
    kinds = Counter(str(e.get("type")) for e in events)
    detail = ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items()))
    _say(f"Webhook receiver: {len(events)} POSTs" + (f" ({detail})" if detail else ""))
    _say("Routes: keyword = a keyword or alias matched, default = none did, optout = STOP,")
    _say("        expired = the keyword's campaign is over (only its expiry_reply is sent).")


def _cleanup(sim: Simulator, hooks: WebhookReceiver, gw: Gateway | None) -> bool:
    """Stop the gateway (it must exit 0 on SIGTERM), the simulator and the webhook
    receiver; True if the gateway stopped cleanly."""
    clean = True
    try:
        if gw is not None and gw.proc is not None:
            already = gw.proc.poll() is not None
            rc = gw.stop()
            if already:
                clean = False
            elif rc == 0:
                _say("\nGateway stopped cleanly on SIGTERM (exit 0).")
            elif rc == -signal.SIGTERM:
                _say("\nThe gateway was killed by SIGTERM before it had set up its signal "
                     f"handlers; see {gw.log_path}")
                clean = False
            else:
                _say(f"\nThe gateway exited with {rc} on SIGTERM; see {gw.log_path}")
                clean = False
    finally:
        sim.stop()
        hooks.stop()
    return clean


def _next_steps(workdir: Path, keep: bool) -> None:
    cfg = workdir / "gateway.toml"
    _say("Try next:")
    if keep:
        _say(f"  vmn-gateway logs -c {cfg}")
        _say(f"  vmn-gateway logs -c {cfg} --json --msisdn {CUSTOMER}")
        _say(f"  vmn-gateway check -c {cfg}")
        _say(f"Files kept in {workdir}: gateway.toml, gateway.db, gateway.log, simulator.log")
    else:
        _say("  vmn-gateway demo --keep    # keeps the config, database and logs to explore")
        _say("  less config/gateway.example.toml    # every option, explained")
