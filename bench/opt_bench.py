#!/usr/bin/env python3
"""What the opt-out check costs an MT, with 1M stored opt records (issue 4).

One database per backend gets `--records` opt_state rows (bulk: one executemany on
SQLite, COPY on PostgreSQL). Then, in the same process and the same run, the gateway's
own MT path (`gateway.mt.MtSender` + `SmppSession` + `Store`: claim, the opted_out
lookup, submit_sm over TCP, the submitted record) sends `--mts` MTs to a do-nothing
SMSC (a child process: binds, answers every submit_sm at once), in two variants:

- `check`: ordinary MTs, each checked against opt_state (the recipients are numbers
  with a stored opt-in row for that sender, so the lookup finds rows and lets them go);
- `baseline`: the same MTs marked exempt (as STOP/HELP replies are), so MtSender skips
  the lookup and nothing else changes.

The variants alternate (check, baseline, baseline, check, ...) for `--runs` rounds; the
figures are medians. Cost per MT = wall time from the first claim to the last
`submitted` record / MTs, and the process CPU time (every thread) / MTs. Also the
lookup alone (`mts.opted_out` on a blocking connection) and the query plan.

    .venv/bin/python bench/opt_bench.py --json-out bench/results-opt.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import select, text

from gateway.actions.emitter import Emitter
from gateway.config import SmscConfig
from gateway.mt import MtSender
from gateway.storage import mts
from gateway.storage.db import create_engine, create_sync_engine, migrate
from gateway.storage.repo import Store
from gateway.storage.schema import messages

SENDERS = ["5551000100", "5551000200", "5551000300", "5551000400"]
PG_URL = os.environ.get("VMN_TEST_PG", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")

# ----------------------------------------------------------------- do-nothing SMSC

HEADER = struct.Struct(">IIII")


def serve_smsc(port_file: str) -> None:
    """Child process: accept binds, answer bind/submit_sm/enquire_link/unbind at once."""

    class Smsc(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.t: Any = transport
            self.buf = b""
            self.n = 0

        def data_received(self, data: bytes) -> None:
            self.buf += data
            out = []
            while len(self.buf) >= 16:
                length, cid, _status, seq = HEADER.unpack_from(self.buf)
                if len(self.buf) < length:
                    break
                self.buf = self.buf[length:]
                if cid in (0x09, 0x02, 0x01):  # bind_*: resp with system_id
                    body = b"nullsmsc\x00"
                    out.append(HEADER.pack(16 + len(body), cid | 0x80000000, 0, seq) + body)
                elif cid == 0x04:  # submit_sm
                    self.n += 1
                    body = f"m{self.n}".encode() + b"\x00"
                    out.append(HEADER.pack(16 + len(body), 0x80000004, 0, seq) + body)
                elif cid in (0x15, 0x06):  # enquire_link, unbind
                    out.append(HEADER.pack(16, cid | 0x80000000, 0, seq))
            if out:
                self.t.write(b"".join(out))

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(Smsc, "127.0.0.1", 0)
        Path(port_file).write_text(str(server.sockets[0].getsockname()[1]))
        await asyncio.Event().wait()

    asyncio.run(main())


class _NoMo:
    """MoHandler: the null SMSC sends no deliver_sm."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"unexpected MO callback {name}")


# ----------------------------------------------------------------------- seeding


def numbers(count: int, seed: int) -> list[str]:
    rnd = random.Random(seed)
    out: set[str] = set()
    while len(out) < count:
        out.add(f"1{rnd.randrange(2_000_000_000, 9_999_999_999)}")
    return sorted(out)


def opt_rows(count: int) -> list[tuple[str, str, str, str, float]]:
    """`count` rows: msisdns spread over the senders and "*", a third of them out."""
    now = time.time()
    rows = []
    for i, msisdn in enumerate(numbers(count, 4)):
        vmn = "*" if i % 10 == 0 else SENDERS[i % len(SENDERS)]
        rows.append((msisdn, vmn, "out" if i % 3 == 0 else "in", "STOP", now - i))
    return rows


async def seed(url: str, rows: list[tuple[str, str, str, str, float]]) -> float:
    t0 = time.perf_counter()
    if url.startswith("sqlite"):
        engine = create_sync_engine(url, synchronous="NORMAL")
        with engine.connect() as conn:
            raw: Any = conn.connection.driver_connection
            raw.execute("BEGIN")
            raw.executemany("INSERT INTO opt_state (msisdn, vmn, state, keyword, updated_at) "
                            "VALUES (?, ?, ?, ?, ?)", rows)
            raw.execute("COMMIT")
            raw.execute("ANALYZE")
        engine.dispose()
    else:
        import asyncpg

        conn = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
        try:
            await conn.copy_records_to_table(
                "opt_state", records=rows,
                columns=["msisdn", "vmn", "state", "keyword", "updated_at"])
            await conn.execute("ANALYZE opt_state")
        finally:
            await conn.close()
    return time.perf_counter() - t0


# ----------------------------------------------------------------------- one run


async def queue(store: Store, recipients: list[tuple[str, str]], exempt: bool) -> None:
    def insert(conn: Any) -> None:
        now = time.time()
        for sender, to in recipients:
            mts.insert_mt(conn, Emitter(), sender=sender, recipient=to, text="bench MT",
                          now=now, exempt=exempt)
    await store.transaction(insert)


async def one_run(store: Store, smsc: SmscConfig, recipients: list[tuple[str, str]],
                  exempt: bool) -> dict[str, float]:
    await queue(store, recipients, exempt)
    session = _session(smsc)
    sender = MtSender(store, [session], smscs=[smsc], poll_interval=0.05)
    done = asyncio.Event()
    count = 0
    submitted = store.mt_submitted

    async def counting(*a: Any, **kw: Any) -> None:
        nonlocal count
        await submitted(*a, **kw)
        count += 1
        if count == len(recipients):
            done.set()

    store.mt_submitted = counting  # type: ignore[method-assign]
    run_session = asyncio.create_task(session.run())
    await session.bound.wait()
    t0, c0 = time.perf_counter(), time.process_time()
    run_sender = asyncio.create_task(sender.run())
    await asyncio.wait_for(done.wait(), 300)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    await sender.stop(5)
    await run_sender
    await session.stop()
    run_session.cancel()
    store.mt_submitted = submitted  # type: ignore[method-assign]
    n = len(recipients)
    return {"wall_us_per_mt": wall / n * 1e6, "cpu_us_per_mt": cpu / n * 1e6}


def _session(smsc: SmscConfig) -> Any:
    from gateway.binds import session_settings
    from gateway.smpp.session import SmppSession

    return SmppSession(session_settings(smsc), _NoMo())


async def lookup_cost(url: str, pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """The lookup alone, on the kind of connection `mts.claim` runs on (SQLite: the
    writer's blocking connection; PostgreSQL: asyncpg under `run_sync`): one MT at a
    time (`mts.opted_out`) and per claimed batch of 32 and of 1 (`mts.opted_out_many`)."""
    def timings(conn: Any) -> dict[str, float]:
        for sender, to in pairs[:200]:  # warm
            mts.opted_out(conn, sender, to)
        t0 = time.perf_counter()
        for sender, to in pairs:
            mts.opted_out(conn, sender, to)
        one = (time.perf_counter() - t0) / len(pairs) * 1e6
        t0 = time.perf_counter()
        for i in range(0, len(pairs), 32):
            mts.opted_out_many(conn, pairs[i:i + 32])
        batched = (time.perf_counter() - t0) / len(pairs) * 1e6
        t0 = time.perf_counter()
        for pair in pairs:  # what a claim of a single MT runs
            mts.opted_out_many(conn, [pair])
        single = (time.perf_counter() - t0) / len(pairs) * 1e6
        return {"us_per_lookup_one_by_one": round(one, 1),
                "us_per_mt_in_batches_of_32": round(batched, 1),
                "us_per_mt_in_batches_of_1": round(single, 1)}

    out: dict[str, Any] = {}
    q = "SELECT vmn, state FROM opt_state WHERE msisdn = '{m}' AND vmn IN ('{s}', '*')"
    q = q.format(m=pairs[0][1], s=pairs[0][0])
    if url.startswith("sqlite"):
        engine = create_sync_engine(url)
        with engine.connect() as sconn:
            out.update(timings(sconn))
            out["plan"] = [str(r[-1]) for r in sconn.exec_driver_sql(
                "EXPLAIN QUERY PLAN " + q)]
            out["rows"] = sconn.execute(text("SELECT COUNT(*) FROM opt_state")).scalar()
        engine.dispose()
        return out
    aengine = create_engine(url)
    async with aengine.connect() as conn:
        out.update(await conn.run_sync(timings))
        out["plan"] = [str(r[0]) for r in await conn.exec_driver_sql("EXPLAIN " + q)]
        out["rows"] = (await conn.execute(text("SELECT COUNT(*) FROM opt_state"))).scalar()
    await aengine.dispose()
    return out


async def backend(name: str, url: str, args: argparse.Namespace, smsc_port: int,
                  rows: list[tuple[str, str, str, str, float]]) -> dict[str, Any]:
    engine = create_engine(url)
    await migrate(engine)
    seeded = await seed(url, rows)
    print(f"[{name}] seeded {len(rows):,} opt records in {seeded:.1f} s", flush=True)
    store = Store(engine)
    # recipients with an "in" row for the MT's sender: the lookup finds it, lets it go
    ins = [(r[1], r[0]) for r in rows if r[2] == "in" and r[1] != "*"]
    rnd = random.Random(7)
    smsc = SmscConfig(name="null", port=smsc_port, system_id="bench", window=10,
                      enquire_link_interval=60.0)
    results: dict[str, list[dict[str, float]]] = {"check": [], "baseline": []}
    for i in range(args.runs):
        for variant in ("check", "baseline") if i % 2 == 0 else ("baseline", "check"):
            recips = rnd.sample(ins, args.mts)
            r = await one_run(store, smsc, recips, exempt=variant == "baseline")
            results[variant].append(r)
            print(f"[{name}] run {i + 1} {variant:8} wall {r['wall_us_per_mt']:7.0f} us/MT"
                  f"  cpu {r['cpu_us_per_mt']:7.0f} us/MT", flush=True)
    async with store.reader.connect() as conn:
        blocked = (await conn.execute(select(messages.c.id).where(
            messages.c.status == "blocked").limit(1))).first()
    assert blocked is None, "an opted-in recipient was blocked"
    await store.close()
    await engine.dispose()
    lookup = await lookup_cost(url, rnd.sample(ins, 2000))
    summary: dict[str, Any] = {"records": len(rows), "seed_seconds": round(seeded, 2),
                               "mts_per_run": args.mts, "runs": args.runs,
                               "lookup": lookup}
    for key in ("wall_us_per_mt", "cpu_us_per_mt"):
        base = statistics.median(r[key] for r in results["baseline"])
        chk = statistics.median(r[key] for r in results["check"])
        summary[key] = {"baseline": round(base, 1), "check": round(chk, 1),
                        "overhead_pct": round((chk / base - 1) * 100, 1),
                        "per_run": {v: [round(r[key], 1) for r in results[v]]
                                    for v in results}}
    return summary


async def amain(args: argparse.Namespace) -> int:
    from gateway import log

    # Warnings only: a log line per MT (as the daemon writes) would dilute the ratio.
    log.configure("warning", json=True)
    tmp = Path(tempfile.mkdtemp(prefix="opt-bench-"))
    port_file = tmp / "port"
    smsc = subprocess.Popen([sys.executable, __file__, "--serve-smsc", str(port_file)])
    try:
        while not port_file.exists() or not port_file.read_text():
            await asyncio.sleep(0.05)
        port = int(port_file.read_text())
        rows = opt_rows(args.records)
        out: dict[str, Any] = {
            "command": "bench/opt_bench.py " + " ".join(sys.argv[1:]),
            "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                        "platform": platform.platform()},
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        if "sqlite" in args.backends:
            out["sqlite"] = await backend(
                "sqlite", f"sqlite+aiosqlite:///{tmp}/opt.db", args, port, rows)
        if "postgres" in args.backends:
            from sqlalchemy.ext.asyncio import create_async_engine

            name = f"vmn_bench_{uuid.uuid4().hex[:8]}"
            admin = create_async_engine(PG_URL, isolation_level="AUTOCOMMIT")
            async with admin.connect() as c:
                await c.execute(text(f"CREATE DATABASE {name}"))
            try:
                out["postgres"] = await backend(
                    "postgres", f"{PG_URL.rsplit('/', 1)[0]}/{name}", args, port, rows)
            finally:
                async with admin.connect() as c:
                    await c.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                await admin.dispose()
    finally:
        smsc.terminate()
        smsc.wait(10)
    for b in ("sqlite", "postgres"):
        if b in out:
            s = out[b]
            wall, cpu = s["wall_us_per_mt"], s["cpu_us_per_mt"]
            print(f"{b}: {s['records']:,} records; per MT wall {wall['baseline']} -> "
                  f"{wall['check']} us ({wall['overhead_pct']:+}%), cpu {cpu['baseline']} -> "
                  f"{cpu['check']} us ({cpu['overhead_pct']:+}%); lookup alone "
                  f"{s['lookup']['us_per_lookup_one_by_one']} us, "
                  f"{s['lookup']['us_per_mt_in_batches_of_32']} us/MT in batches; "
                  f"plan {s['lookup']['plan']}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(out, indent=2) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--records", type=int, default=1_000_000)
    p.add_argument("--mts", type=int, default=1000, help="MTs per run")
    p.add_argument("--runs", type=int, default=5, help="rounds (each variant once a round)")
    p.add_argument("--backends", default="sqlite,postgres")
    p.add_argument("--json-out")
    p.add_argument("--serve-smsc", metavar="PORT_FILE", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve_smsc:
        serve_smsc(args.serve_smsc)
        return 0
    return asyncio.run(amain(args))


if __name__ == "__main__":
    raise SystemExit(main())
