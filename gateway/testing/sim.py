"""Driver for the SMSC simulator (sim/smsc.js: node-smpp 0.5.1 + an HTTP JSON API).

The one driver of the simulator: ``vmn-gateway demo`` and the test suite both use it
(stdlib only, blocking). Typical use::

    with Simulator.start() as sim:
        ...  # point the gateway at 127.0.0.1:sim.smpp_port, system_id "test" / "secret"
        sim.wait_bound()
        sim.mo(text="hello", source="15551234567", destination="5551000100")
        sim.wait_for(lambda: sim.submits() or None)

From async code call the blocking methods through ``await asyncio.to_thread(sim.mo, ...)``.
The simulator is found in ``$VMN_SIM_DIR``, else in the ``sim/`` directory beside the
gateway package (a checkout of the repository); sim/ is not in the wheel.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import gateway

T = TypeVar("T")

SIM_SCRIPT = "smsc.js"  # the entry point inside the simulator's directory


def sim_dir() -> Path:
    """`$VMN_SIM_DIR`, else the repository's sim/ next to the gateway package."""
    env = os.environ.get("VMN_SIM_DIR")
    if env:
        return Path(env).expanduser().resolve()
    return Path(gateway.__file__).resolve().parent.parent / "sim"


class SimulatorError(RuntimeError):
    """The simulator could not be started, exited, or answered with an HTTP error."""

    def __init__(self, message: str, status: int | None = None, body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class Simulator:
    """A running ``node sim/smsc.js`` process plus a client for its control API."""

    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        smpp_port: int,
        control_port: int,
        log_path: Path,
        system_id: str,
        password: str,
        *,
        own_log: bool = True,
    ) -> None:
        self.proc = proc
        self.smpp_port = smpp_port
        self.control_port = control_port
        self.log_path = log_path
        self.system_id = system_id
        self.password = password
        self.host = "127.0.0.1"
        self.base_url = f"http://127.0.0.1:{control_port}"
        self._own_log = own_log  # a temporary file of ours: removed by stop()

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    def start(
        cls,
        *,
        system_id: str = "test",
        password: str = "secret",
        smpp_port: int = 0,
        control_port: int = 0,
        quiet: bool = False,
        timeout: float = 15.0,
        node: str | None = None,
        directory: Path | None = None,
        log_path: Path | None = None,
        new_session: bool = False,
    ) -> Simulator:
        """Start the simulator and wait for its ready line.

        ``directory`` defaults to :func:`sim_dir`. ``log_path`` receives its stderr and
        is kept (default: a temporary file removed by :meth:`stop` unless
        ``$VMN_SIM_KEEP_LOGS`` is set). ``new_session`` keeps a terminal's Ctrl-C from
        reaching it (the demo stops it in order)."""
        directory = directory or sim_dir()
        script = directory / SIM_SCRIPT
        if not script.is_file():
            raise SimulatorError(
                f"the SMSC simulator is not at {script}: run from a checkout of the "
                f"repository, or set VMN_SIM_DIR to the directory that holds {SIM_SCRIPT}"
            )
        if not (directory / "node_modules" / "smpp").is_dir():
            raise SimulatorError(
                f"the simulator's dependencies are missing ({directory / 'node_modules'}).\n"
                f"  Install them once with:  npm ci --prefix {_prefix(directory)}"
            )
        node_bin = node or shutil.which("node")
        if node_bin is None:
            raise SimulatorError("node (Node.js >= 18) is not on PATH; the SMSC simulator needs it")
        cmd = [
            node_bin, str(script),
            "--smpp-port", str(smpp_port),
            "--control-port", str(control_port),
            "--system-id", system_id,
            "--password", password,
            "--parent-watch",
        ]  # fmt: skip
        if quiet:
            cmd.append("--quiet")
        own_log = log_path is None
        if log_path is None:
            fd, log_name = tempfile.mkstemp(prefix="smsc-sim-", suffix=".log")
            os.close(fd)
            log_path = Path(log_name)
        # stderr goes to a file: a pipe nobody drains would block node once it fills up.
        with open(log_path, "wb") as log_file:
            proc = subprocess.Popen(
                cmd,
                cwd=directory,
                stdin=subprocess.PIPE,  # closed by stop() / when we die -> sim exits
                stdout=subprocess.PIPE,
                stderr=log_file,
                start_new_session=new_session,
            )
        line = _read_line(proc, timeout)
        try:
            ready = json.loads(line) if line else None
        except ValueError:
            ready = None
        if not isinstance(ready, dict) or not ready.get("ready"):
            _terminate(proc)
            _close_pipes(proc)
            tail = _tail(log_path)
            if own_log:
                log_path.unlink(missing_ok=True)
            raise SimulatorError(
                f"the SMSC simulator did not start (rc={proc.returncode}, stdout={line!r}):\n"
                f"{tail}"
            )
        return cls(
            proc,
            int(ready["smpp_port"]),
            int(ready["control_port"]),
            log_path,
            system_id,
            password,
            own_log=own_log,
        )

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; returns the exit code."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        _close_pipes(self.proc)
        if self._own_log and not os.environ.get("VMN_SIM_KEEP_LOGS"):
            with contextlib.suppress(OSError):
                self.log_path.unlink()
        return self.proc.returncode

    def __enter__(self) -> Simulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def check_running(self) -> None:
        """Raise SimulatorError (with its log's tail) if the simulator has exited."""
        if not self.running:
            raise SimulatorError(f"the SMSC simulator exited:\n{_tail(self.log_path, 15)}")

    def log_text(self) -> str:
        """Everything the simulator logged to stderr so far."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    # ------------------------------------------------------------------ HTTP

    def request(self, method: str, path: str, body: Any = None, timeout: float = 30.0) -> Any:
        """One control-API call; an HTTP error status raises SimulatorError."""
        data = None
        headers = {}
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(
            self.base_url + path, data=data, method=method, headers=headers
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                payload = json.loads(raw)
            except ValueError:
                payload = raw.decode(errors="replace")
            msg = payload.get("error") if isinstance(payload, dict) else payload
            raise SimulatorError(f"{method} {path} -> {e.code}: {msg}", e.code, payload) from None

    def health(self) -> dict[str, Any]:
        return self.request("GET", "/health")  # type: ignore[no-any-return]

    def state(self) -> dict[str, Any]:
        return self.request("GET", "/state")  # type: ignore[no-any-return]

    def configure(self, **kw: Any) -> dict[str, Any]:
        """password, system_id, throttle_next, throttle_status, ack_delay_ms, submit_status,
        invalid_system_id_status, enquire_link_reply, mo_timeout_ms; the carrier dialects:
        default_alphabet (gsm/ascii/latin1), message_id_format (sim/hex/decimal/empty),
        receipt_id_format (same/hex/decimal), no_response_next, unbind_resp_delay_ms."""
        return self.request("POST", "/config", kw)  # type: ignore[no-any-return]

    def mo(self, **kw: Any) -> dict[str, Any]:
        """Inject an MO; returns {"parts", "sent", "ref", "statuses", ...}.

        Raises SimulatorError(status=409) when no client is bound."""
        timeout = kw.get("timeout_ms", 10000) / 1000.0 * max(1, len(kw.get("order") or [1])) + 10
        return self.request("POST", "/mo", kw, timeout=timeout)  # type: ignore[no-any-return]

    def receipt(self, **kw: Any) -> dict[str, Any]:
        return self.request("POST", "/receipt", kw)  # type: ignore[no-any-return]

    def submits(self, accepted_only: bool = False) -> list[dict[str, Any]]:
        path = "/submits?accepted=1" if accepted_only else "/submits"
        return self.request("GET", path)  # type: ignore[no-any-return]

    def clear_submits(self) -> dict[str, Any]:
        return self.request("DELETE", "/submits")  # type: ignore[no-any-return]

    def drop(self, **kw: Any) -> dict[str, Any]:
        return self.request("POST", "/drop", kw)  # type: ignore[no-any-return]

    def unbind(self, **kw: Any) -> dict[str, Any]:
        return self.request("POST", "/unbind", kw)  # type: ignore[no-any-return]

    def enquire_link(self, **kw: Any) -> dict[str, Any]:
        return self.request("POST", "/enquire_link", kw)  # type: ignore[no-any-return]

    def raw(self, data: str | bytes, **kw: Any) -> dict[str, Any]:
        hex_str = data.hex() if isinstance(data, bytes | bytearray) else data
        return self.request("POST", "/raw", {"hex": hex_str, **kw})  # type: ignore[no-any-return]

    def received(self, since: int = 0) -> list[dict[str, Any]]:
        """PDUs the client sent to the SMSC (index, command, command_status, sequence_number)."""
        q = urllib.parse.urlencode({"since": since})
        return self.request("GET", f"/received?{q}")  # type: ignore[no-any-return]

    def burst(self, **kw: Any) -> dict[str, Any]:
        return self.request("POST", "/burst", kw)  # type: ignore[no-any-return]

    def burst_status(self) -> dict[str, Any]:
        return self.request("GET", "/burst")  # type: ignore[no-any-return]

    def cancel_burst(self) -> dict[str, Any]:
        return self.request("DELETE", "/burst")  # type: ignore[no-any-return]

    def reset(self) -> dict[str, Any]:
        return self.request("POST", "/reset")  # type: ignore[no-any-return]

    # ------------------------------------------------------------------ waiting

    def wait_for(
        self,
        predicate: Callable[[], T | None],
        timeout: float = 10.0,
        interval: float = 0.05,
        message: str | None = None,
    ) -> T:
        """Poll ``predicate`` until it returns a truthy value, and return that value."""
        deadline = time.monotonic() + timeout
        last: T | None = None
        last_exc: BaseException | None = None
        while True:
            try:
                value = predicate()
                last, last_exc = value, None
                if value:
                    return value
            except SimulatorError as e:
                last_exc = e
            if time.monotonic() >= deadline:
                break
            if not self.running:
                raise SimulatorError("simulator exited while waiting:\n" + _tail(self.log_path))
            time.sleep(interval)
        what = message or getattr(predicate, "__name__", repr(predicate))
        detail = f"last value {last!r}" if last_exc is None else f"last error {last_exc}"
        raise TimeoutError(
            f"timed out after {timeout}s waiting for {what} ({detail}); "
            f"simulator log tail:\n{_tail(self.log_path, 15)}"
        )

    def wait_bound(self, timeout: float = 10.0, count: int = 1) -> list[dict[str, Any]]:
        """Wait until at least ``count`` sessions are bound; returns state()["binds"]."""

        def bound() -> list[dict[str, Any]] | None:
            binds: list[dict[str, Any]] = self.state()["binds"]
            return binds if len(binds) >= count else None

        return self.wait_for(bound, timeout, message=f"{count} bound session(s)")

    def wait_unbound(self, timeout: float = 10.0) -> None:
        self.wait_for(lambda: not self.state()["binds"], timeout, message="no bound session")

    def wait_submits(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        def enough() -> list[dict[str, Any]] | None:
            subs = self.submits()
            return subs if len(subs) >= count else None

        return self.wait_for(enough, timeout, message=f"{count} submit_sm")

    def wait_burst_done(self, timeout: float = 60.0) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            st = self.burst_status()
            return st if st["done"] else None

        return self.wait_for(done, timeout, interval=0.1, message="burst done")


def ucs2_parts(text: str, part_octets: int = 134) -> int:
    """How many parts the simulator makes of ``text`` in UCS-2 with a UDH (134 octets a
    part by default; it never splits a code point)."""
    parts, used = 1, 0
    for ch in text:
        size = len(ch.encode("utf-16-be"))
        if used and used + size > part_octets:
            parts, used = parts + 1, 0
        used += size
    return parts


def _prefix(directory: Path) -> str:
    """The directory as `npm ci --prefix` wants it: relative to the working directory."""
    with contextlib.suppress(ValueError):
        return str(directory.relative_to(Path.cwd())) or "."
    return str(directory)


def _read_line(proc: subprocess.Popen[bytes], timeout: float) -> str:
    result: list[bytes] = []
    assert proc.stdout is not None
    stdout = proc.stdout

    def reader() -> None:
        with contextlib.suppress(OSError, ValueError):
            result.append(stdout.readline())

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive() or not result:
        return ""
    return result[0].decode(errors="replace").strip()


def _terminate(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(3)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(3)


def _close_pipes(proc: subprocess.Popen[bytes]) -> None:
    for stream in (proc.stdin, proc.stdout):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])
