"""The processes a bench runs: a target (the gateway, a baseline ESME, Kannel) in a
process group of its own, started from a command template, waited for until it binds to
the load generator, and stopped (SIGTERM, then SIGKILL)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from loadgen import LoadServer

BENCH_DIR = Path(__file__).resolve().parent.parent
REPO_DIR = BENCH_DIR.parent


class TargetError(RuntimeError):
    """A run could not be measured (never bound, exited, stalled...)."""


def free_port() -> int:
    """A free TCP port on loopback (for a listener the target opens itself)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def log_tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    tail = text.splitlines()[-lines:]
    return "\n".join(f"    | {line}" for line in tail) if tail else "    | (empty log)"


async def stop(proc: asyncio.subprocess.Process, timeout: float) -> int | None:
    """SIGTERM the target's process group (we made it with start_new_session), then
    SIGKILL it if it does not exit in time."""
    if proc.returncode is not None:
        return proc.returncode
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            return await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            continue
    return proc.returncode


async def wait_bound(
    srv: LoadServer, proc: asyncio.subprocess.Process, timeout: float, log: Path
) -> float:
    t0 = time.monotonic()
    bound = asyncio.ensure_future(srv.wait_bound())
    exited = asyncio.ensure_future(proc.wait())
    try:
        await asyncio.wait({bound, exited}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for fut in (bound, exited):
            if not fut.done():
                fut.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await fut
    if bound.done() and not bound.cancelled() and bound.exception() is None:
        return time.monotonic() - t0
    if exited.done() and not exited.cancelled():
        raise TargetError(
            f"target exited with code {proc.returncode} before binding; log {log}:\n"
            + log_tail(log)
        )
    raise TargetError(
        f"target did not bind to 127.0.0.1:{srv.port} within {timeout:.0f} s; log {log}:\n"
        + log_tail(log)
    )


def command(template: str, **values: str) -> list[str]:
    try:
        return shlex.split(template.format(**values))
    except (KeyError, IndexError, ValueError) as exc:
        raise TargetError(f"bad command template {template!r}: {exc!r}") from exc


async def spawn(cmd: list[str], log: Path) -> asyncio.subprocess.Process:
    """Start `cmd` from the repository, its output appended to `log`, in a session of
    its own (so `stop` can signal its whole tree); TargetError if it cannot start."""
    with log.open("ab") as out:
        try:
            return await asyncio.create_subprocess_exec(
                *cmd,
                cwd=REPO_DIR,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,
            )
        except OSError as exc:
            raise TargetError(f"cannot start {shlex.join(cmd)}: {exc}") from exc


async def run_setup(cmd: list[str], log: Path, timeout: float) -> None:
    proc = await spawn(cmd, log)
    try:
        rc = await asyncio.wait_for(proc.wait(), timeout)
    except TimeoutError:
        await stop(proc, 5.0)
        raise TargetError(f"setup command timed out: {shlex.join(cmd)}") from None
    if rc != 0:
        raise TargetError(
            f"setup command failed ({rc}): {shlex.join(cmd)}; log {log}:\n" + log_tail(log)
        )
