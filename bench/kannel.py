"""Kannel as a benchmark target: find (or install) it, write a config for one run, start
and stop bearerbox (and smsbox) as our own processes.

Kannel is the reference the gateway's intake is compared with: the same SMSC-side
generator (bench/loadgen.py) pushes the same deliver_sm to Kannel's bearerbox, which binds
to it as an SMPP transceiver like the gateway does. Two set-ups:

* ``acks``    bearerbox alone: it acks every deliver_sm (queued in memory, no store
              file, so nothing is durable when it acks);
* ``webhook`` bearerbox + smsbox with a default ``sms-service`` whose ``post-url`` (or
              ``get-url``) is a local HTTP sink (bench/sink.py), ``max-messages = 0``
              (no reply SMS).

Everything runs from a temp dir on free ports; the packaged system service is never
used (``ensure_kannel`` stops and disables it after installing the Debian package).

    from kannel import ensure_kannel, KannelRun
    binaries = ensure_kannel()                 # KannelError with the reason if unusable
    async with KannelRun(binaries, tmpdir, smsc_port, sink_url=None) as kannel:
        ...  # kannel.bearerbox is the asyncio Process that binds to smsc_port

Stdlib only; it does not import the gateway package.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

SEARCH_PATH = ("/usr/sbin", "/usr/local/sbin", "/usr/bin", "/usr/local/bin")


class KannelError(RuntimeError):
    """Kannel is missing and cannot be installed, or a box did not start."""


@dataclass(frozen=True)
class KannelBinaries:
    bearerbox: str
    smsbox: str


def find_kannel() -> KannelBinaries | None:
    path = os.pathsep.join([os.environ.get("PATH", ""), *SEARCH_PATH])
    bearerbox = shutil.which("bearerbox", path=path)
    smsbox = shutil.which("smsbox", path=path)
    if bearerbox and smsbox:
        return KannelBinaries(bearerbox, smsbox)
    return None


def _quiet(*cmd: str) -> None:
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)


def stop_system_service() -> None:
    """The Debian package starts its own bearerbox/wapbox from /etc/kannel/kannel.conf;
    we run ours, so stop that service and keep it from starting at boot."""
    if shutil.which("service"):
        _quiet("service", "kannel", "stop")
    if shutil.which("update-rc.d"):
        _quiet("update-rc.d", "kannel", "disable")
    if shutil.which("systemctl"):
        _quiet("systemctl", "disable", "--now", "kannel")


def ensure_kannel(install: bool = True) -> KannelBinaries:
    """bearerbox and smsbox, installing the Debian package ``kannel`` first when they are
    missing, ``install`` is true and we are root (then the system service is stopped and
    disabled). KannelError says why not otherwise."""
    found = find_kannel()
    if found is not None:
        return found
    if not install:
        raise KannelError("Kannel (bearerbox, smsbox) not found; apt-get install kannel")
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise KannelError(
            "Kannel (bearerbox, smsbox) not found and cannot install it here "
            "(needs root and apt-get): run `apt-get install -y kannel` as root"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    proc = subprocess.run(
        ["apt-get", "install", "-y", "kannel"], env=env, capture_output=True, text=True
    )
    stop_system_service()
    found = find_kannel()
    if proc.returncode != 0 or found is None:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-10:])
        raise KannelError(f"apt-get install -y kannel failed ({proc.returncode}):\n{tail}")
    return found


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free right now (the kernel's choice; Kannel needs fixed numbers)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def kannel_conf(
    tmpdir: Path,
    smsc_host: str,
    smsc_port: int,
    admin_port: int,
    smsbox_port: int,
    sendsms_port: int,
    sink_url: str | None = None,
    http_method: str = "post",
) -> str:
    """One kannel.conf: core + one SMPP transceiver to the generator, and, with
    ``sink_url``, an smsbox whose default service forwards every MO to it."""
    text = f"""\
group = core
admin-port = {admin_port}
admin-password = bench
admin-interface = 127.0.0.1
smsbox-port = {smsbox_port}
box-allow-ip = 127.0.0.1
log-file = "{tmpdir}/bearerbox.log"
log-level = 1

group = smsc
smsc = smpp
smsc-id = bench
host = {smsc_host}
port = {smsc_port}
receive-port = 0
transceiver-mode = true
smsc-username = bench
smsc-password = bench
system-type = ""
enquire-link-interval = 30
reconnect-delay = 1
"""
    # The smsbox group is there in both set-ups (bearerbox refuses smsbox-port without
    # it); in acks mode no smsbox is started, so bearerbox queues the MOs in memory.
    text += f"""
group = smsbox
bearerbox-host = 127.0.0.1
bearerbox-port = {smsbox_port}
sendsms-port = {sendsms_port}
sendsms-interface = 127.0.0.1
log-file = "{tmpdir}/smsbox.log"
log-level = 1
"""
    if sink_url is not None:
        if http_method == "post":
            target = f'post-url = "{sink_url}"'
        elif http_method == "get":
            target = f'get-url = "{sink_url}?from=%p&to=%P&text=%a"'
        else:
            raise ValueError(f"http_method must be post or get, not {http_method!r}")
        text += f"""
group = sms-service
keyword = default
catch-all = true
{target}
max-messages = 0
omit-empty = true
"""
    return text


class KannelRun:
    """bearerbox (and, with ``sink_url``, smsbox) started from ``tmpdir/kannel.conf`` in
    their own process groups, stderr into ``tmpdir/kannel.log``; stopped with SIGTERM,
    then SIGKILL after ``stop_timeout`` seconds."""

    def __init__(
        self,
        binaries: KannelBinaries,
        tmpdir: Path,
        smsc_port: int,
        sink_url: str | None = None,
        smsc_host: str = "127.0.0.1",
        http_method: str = "post",
        stop_timeout: float = 10.0,
    ) -> None:
        self.binaries = binaries
        self.tmpdir = tmpdir
        self.conf = tmpdir / "kannel.conf"
        self.log = tmpdir / "kannel.log"
        self.smsc_host = smsc_host
        self.smsc_port = smsc_port
        self.sink_url = sink_url
        self.http_method = http_method
        self.stop_timeout = stop_timeout
        self.bearerbox: asyncio.subprocess.Process | None = None
        self.smsbox: asyncio.subprocess.Process | None = None

    @property
    def processes(self) -> list[asyncio.subprocess.Process]:
        return [p for p in (self.bearerbox, self.smsbox) if p is not None]

    async def _spawn(self, binary: str) -> asyncio.subprocess.Process:
        # -v 2: stderr at warning level (the default, debug, dumps every PDU).
        with self.log.open("ab") as out:
            try:
                return await asyncio.create_subprocess_exec(
                    binary,
                    "-v",
                    "2",
                    str(self.conf),
                    cwd=self.tmpdir,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=out,
                    stderr=out,
                    start_new_session=True,
                )
            except OSError as exc:
                raise KannelError(f"cannot start {binary}: {exc}") from exc

    async def start(self) -> None:
        smsbox_port = free_port()
        self.conf.write_text(
            kannel_conf(
                self.tmpdir,
                self.smsc_host,
                self.smsc_port,
                admin_port=free_port(),
                smsbox_port=smsbox_port,
                sendsms_port=free_port(),
                sink_url=self.sink_url,
                http_method=self.http_method,
            ),
            encoding="utf-8",
        )
        self.bearerbox = await self._spawn(self.binaries.bearerbox)
        if self.sink_url is not None:
            await self._wait_listening(smsbox_port)
            self.smsbox = await self._spawn(self.binaries.smsbox)

    async def _wait_listening(self, port: int, timeout: float = 15.0) -> None:
        """Until bearerbox accepts box connections on ``port`` (smsbox would otherwise
        retry on its own schedule)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if self.bearerbox is not None and self.bearerbox.returncode is not None:
                raise KannelError(
                    f"bearerbox exited ({self.bearerbox.returncode}); see {self.log} and "
                    f"{self.tmpdir}/bearerbox.log"
                )
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                if loop.time() >= deadline:
                    raise KannelError(
                        f"bearerbox not listening on smsbox-port {port} after {timeout:.0f} s"
                    ) from None
                await asyncio.sleep(0.1)
                continue
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return

    async def stop(self) -> None:
        # smsbox first, so that bearerbox is not left waiting for it.
        for proc in reversed(self.processes):
            await _terminate(proc, self.stop_timeout)

    async def __aenter__(self) -> KannelRun:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


async def _terminate(proc: asyncio.subprocess.Process, timeout: float) -> None:
    if proc.returncode is not None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            await asyncio.wait_for(proc.wait(), timeout)
            return
        except TimeoutError:
            continue
