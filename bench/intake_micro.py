#!/usr/bin/env python3
"""The MO intake's main-thread pieces, CPU per MO, without a socket or a database.

At the SMSC's window of 50 the ack rate is bound by one serial cycle (the window
decoded and routed on the main thread, committed on the writer, acked), so the main
thread's work per MO is a direct share of it (docs/PERFORMANCE.md). This times that work
apart, on the generator's own deliver_sm (bench/loadgen.py: each from a new sender):

* ``decode``   framing + `decode` of each PDU (`Connection.next_event`);
* ``on_mo``    `Intake.on_mo` (classify, route, dedup key, sender, row) with a default
               configuration and the dedup window on, as the daemon runs it;
* ``storable`` `storable_row` over each row (what `Store.write_intake` runs first);
* ``mo_lines`` the `mo.received` log lines of each batch of 50 (`write_mo_lines`).

CPU time (``time.process_time_ns``), median of ``--rounds``. For a before/after, run it
against both trees with ``python -P`` (``PYTHONPATH=<tree>``), alternating:

    .venv/bin/python -P bench/intake_micro.py --count 20000 --rounds 5
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

import loadgen

from gateway import daemon
from gateway.config.load import load_config
from gateway.pipeline import Intake
from gateway.routing.router import Router
from gateway.smpp.connection import Connection
from gateway.smpp.state import BindState
from gateway.storage.repo import _MSG_LIMITS
from gateway.storage.values import storable_row

CONFIG = """
[gateway]
database = "sqlite+aiosqlite:///{tmp}/x.db"
[[smsc]]
name = "bench"
host = "127.0.0.1"
port = 2775
system_id = "bench"
password = "bench"
[[number]]
vmn = "{vmn}"
[number.default]
"""


class _Conn:
    def ack(self, *_: Any) -> bytes:
        return b""


class _Link:
    """What `on_mo` reads of a link."""

    name = "bench"
    conn = _Conn()

    def write(self, data: bytes) -> None:
        pass


def one_round(blob: bytes, count: int, router: Router) -> dict[str, float]:
    out: dict[str, float] = {}
    conn: Connection[Any] = Connection("gsm")
    conn._set(BindState.BOUND_TRX)
    conn.receive_data(blob)
    events = []
    t = time.process_time_ns()
    while (e := conn.next_event()) is not None:
        events.append(e)
    out["decode"] = (time.process_time_ns() - t) / count / 1000
    intake = Intake(None, dedup_window=600, reassembly_timeout=60)  # type: ignore[arg-type]
    intake.set_router(router, events=False)
    link = _Link()
    t = time.process_time_ns()
    for e in events:
        intake.on_mo(link, e.pdu, e.raw)  # type: ignore[arg-type, attr-defined]
    out["on_mo"] = (time.process_time_ns() - t) / count / 1000
    rows = intake._batch.messages
    t = time.process_time_ns()
    for row in rows:
        storable_row(row, _MSG_LIMITS)
    out["storable"] = (time.process_time_ns() - t) / count / 1000
    t = time.process_time_ns()
    with contextlib.redirect_stdout(io.StringIO()):
        for k in range(0, count, 50):
            daemon.write_mo_lines(rows[k:k + 50], debug=False)
    out["mo_lines"] = (time.process_time_ns() - t) / count / 1000
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--count", type=int, default=20_000, help="MOs a round")
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.toml"
        path.write_text(CONFIG.format(tmp=tmp, vmn=loadgen.DESTINATION_ADDR), encoding="utf-8")
        router = Router(load_config(path))
        blob, _ = loadgen.encode_batch(1, args.count)
        rounds = [one_round(blob, args.count, router) for _ in range(args.rounds)]
    for key in rounds[0]:
        values = [r[key] for r in rounds]
        print(f"{key:9s} {statistics.median(values):6.2f} us/MO  "
              f"(rounds: {', '.join(f'{v:.2f}' for v in values)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
