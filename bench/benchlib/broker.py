"""A Mosquitto of the bench's own (or the pid of the machine's, for its CPU time)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from pathlib import Path

_BROKER: subprocess.Popen[bytes] | None = None  # the bench's own broker, if started


def start_broker(tmpdir: Path) -> int:
    """A Mosquitto of the bench's own on a free port, with no limit on the messages it
    queues for a subscriber: the packaged default (max_queued_messages 1000) drops
    QoS 1 messages for a subscriber that falls 1,000 behind, which a Python subscriber
    does under a 30k burst. Returns its port."""
    global _BROKER
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    conf = tmpdir / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                    "max_queued_messages 0\nmax_inflight_messages 0\n", encoding="utf-8")
    _BROKER = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return port
        time.sleep(0.05)
    raise RuntimeError("the bench's mosquitto did not start")


def stop_broker() -> None:
    if _BROKER is not None:
        _BROKER.terminate()
        _BROKER.wait(10)


def find_mosquitto() -> int | None:
    """The broker's pid (read-only use: its CPU time), if it runs on this machine."""
    if _BROKER is not None:
        return _BROKER.pid
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError), open(f"/proc/{entry}/comm") as f:
                if f.read().strip() == "mosquitto":
                    return int(entry)
    return None
