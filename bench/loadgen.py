#!/usr/bin/env python3
"""SMSC-side MO load generator for an SMPP 3.4 ESME (stdlib only).

The generator is the *server*: it listens on host:port, waits for one ESME to bind as a
transceiver (any credentials are accepted; the answer is bind_transceiver_resp ROK with
system_id "bench"), answers enquire_link, and then pushes N deliver_sm with at most W
outstanding, either as fast as possible or paced at R per second.

It deliberately does not import the gateway package, so that it measures the gateway
from outside with its own, independent SMPP code.

Speed notes (the hot path must stay far above what the gateway can do):

* every deliver_sm of a push is encoded before the clock starts, into one contiguous
  ``bytes`` blob plus an offset table, so sending the next k PDUs is a single
  ``transport.write`` of a zero-copy memoryview slice of that blob;
* responses are parsed in ``Protocol.data_received`` (no StreamReader) with one
  ``struct.unpack_from`` of the 16-octet header per PDU, matched to their deliver_sm by
  sequence number through an index into preallocated lists;
* one ``perf_counter_ns()`` per write batch and per received chunk: a PDU's latency is
  (time of the data_received that carried its resp) - (time of the write that sent it).

Importable API::

    async with LoadServer(port=0) as srv:
        ...start the ESME against srv.port...
        await srv.wait_bound(timeout=30)
        result = await srv.push(count=50_000, window=1000, rate=None)

or ``await run_load(host, port, count, window, rate=None, warmup=0)``.

CLI::

    python bench/loadgen.py --port 2775 --count 50000 --window 1000 [--rate 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import struct
import sys
import time
from collections import Counter
from types import TracebackType
from typing import Any

from benchlib import percentile  # bench/ is on sys.path when run as a script

# --- SMPP 3.4 constants (kept local: this module must not depend on the gateway) ------
GENERIC_NACK = 0x80000000
RESP_BIT = 0x80000000
BIND_RECEIVER = 0x00000001
BIND_TRANSMITTER = 0x00000002
BIND_TRANSCEIVER = 0x00000009
SUBMIT_SM = 0x00000004
SUBMIT_SM_RESP = 0x80000004
DELIVER_SM = 0x00000005
DELIVER_SM_RESP = 0x80000005
UNBIND = 0x00000006
UNBIND_RESP = 0x80000006
ENQUIRE_LINK = 0x00000015
ENQUIRE_LINK_RESP = 0x80000015

ESME_ROK = 0x00
ESME_RINVCMDID = 0x03
ESME_RINVBNDSTS = 0x04
ESME_RALYBND = 0x05
ESME_RBINDFAIL = 0x0D

HEADER = struct.Struct(">IIII")
HEADER_LEN = 16
MAX_PDU_LEN = 64 * 1024  # anything longer is a framing error, not a PDU

# --- What the pushed deliver_sm look like -------------------------------------------
SOURCE_PREFIX = "1555"  # + 7 digits
SOURCE_TON, SOURCE_NPI = 1, 1  # international / ISDN
DESTINATION_ADDR = "5551000100"
DEST_TON, DEST_NPI = 0, 1  # unknown / ISDN: the VMN is matched as written
SHORT_MESSAGE_LEN = 40
SMSC_SYSTEM_ID = "bench"


def encode_pdu(command_id: int, status: int, sequence: int, body: bytes = b"") -> bytes:
    return HEADER.pack(HEADER_LEN + len(body), command_id, status, sequence) + body


def encode_deliver_sm(sequence: int, index: int) -> bytes:
    """One MO deliver_sm: source "1555" + 7 digits, data_coding 0, a 40-octet text."""
    source = f"{SOURCE_PREFIX}{index % 10_000_000:07d}".encode("ascii")
    text = f"HELLO {index} MO from the bench ".encode("ascii").ljust(SHORT_MESSAGE_LEN, b".")
    body = b"".join(
        (
            b"\x00",  # service_type ""
            bytes((SOURCE_TON, SOURCE_NPI)),
            source,
            b"\x00",
            bytes((DEST_TON, DEST_NPI)),
            DESTINATION_ADDR.encode("ascii"),
            b"\x00",
            # esm_class, protocol_id, priority_flag, schedule_delivery_time "",
            # validity_period "", registered_delivery, replace_if_present_flag,
            # data_coding (0 = SMSC default alphabet), sm_default_msg_id
            b"\x00\x00\x00\x00\x00\x00\x00\x00\x00",
            bytes((len(text),)),
            text,
        )
    )
    return encode_pdu(DELIVER_SM, ESME_ROK, sequence, body)


def encode_batch(first_sequence: int, count: int) -> tuple[bytes, list[int]]:
    """``count`` deliver_sm with sequence numbers first_sequence.., as one blob and the
    offsets of each PDU in it (``count + 1`` entries, the last being ``len(blob)``)."""
    pdus = [encode_deliver_sm(first_sequence + i, first_sequence + i) for i in range(count)]
    offsets = [0, *itertools.accumulate(len(p) for p in pdus)]
    return b"".join(pdus), offsets


def _c_string(body: bytes, start: int) -> tuple[str, int]:
    end = body.find(b"\x00", start)
    if end < 0:
        return body[start:].decode("latin-1"), len(body)
    return body[start:end].decode("latin-1"), end + 1


class PushError(RuntimeError):
    pass


class _Run:
    """State of one push: the pre-encoded PDUs and what came back for each."""

    __slots__ = (
        "ack_ns",
        "acked",
        "blob",
        "closed_reason",
        "count",
        "done",
        "error_statuses",
        "errors",
        "first_seq",
        "last_progress",
        "offsets",
        "rate",
        "sent",
        "sent_ns",
        "status",
        "window",
    )

    def __init__(
        self,
        first_seq: int,
        count: int,
        window: int,
        rate: float | None,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.first_seq = first_seq
        self.count = count
        self.window = window
        self.rate = rate
        blob, offsets = encode_batch(first_seq, count)
        self.blob = memoryview(blob)
        self.offsets = offsets
        self.sent = 0
        self.acked = 0
        self.errors = 0
        self.sent_ns = [0] * count
        self.ack_ns = [0] * count
        self.status = [0] * count
        self.error_statuses: Counter[int] = Counter()
        self.done: asyncio.Future[None] = loop.create_future()
        self.closed_reason: str | None = None
        self.last_progress = time.monotonic()


class _SmscSession(asyncio.Protocol):
    """One ESME connection, seen from the SMSC side."""

    def __init__(self, server: LoadServer) -> None:
        self._server = server
        self.transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self.bound = False
        self.esme_system_id = ""
        self.run: _Run | None = None
        self.stray_resps = 0
        self.enquire_links = 0
        self.submit_sms = 0
        self.unbind_resp: asyncio.Future[None] | None = None

    # -- asyncio.Protocol ---------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        run = self.run
        if run is not None and not run.done.done():
            run.closed_reason = f"connection lost ({exc or 'closed by peer'})"
            run.done.set_result(None)
        if self.unbind_resp is not None and not self.unbind_resp.done():
            self.unbind_resp.set_result(None)
        self._server._session_lost(self)
        self.transport = None

    def data_received(self, data: bytes) -> None:  # the hot path
        buf = self._buf
        view: bytes | bytearray
        if buf:
            buf += data
            view = buf
        else:
            view = data
        end = len(view)
        off = 0
        now = time.perf_counter_ns()
        run = self.run
        unpack = HEADER.unpack_from
        acks = 0
        if run is not None:
            first = run.first_seq
            count = run.count
            ack_ns = run.ack_ns
            statuses = run.status
        else:
            first = count = 0
            ack_ns = statuses = []
        while end - off >= HEADER_LEN:
            length, command_id, status, seq = unpack(view, off)
            if length < HEADER_LEN or length > MAX_PDU_LEN:
                self._framing_error(length)
                return
            if end - off < length:
                break
            if command_id == DELIVER_SM_RESP:
                i = seq - first
                if 0 <= i < count and not ack_ns[i]:
                    ack_ns[i] = now
                    statuses[i] = status
                    acks += 1
                else:
                    self.stray_resps += 1
            else:
                body = bytes(view[off + HEADER_LEN : off + length])
                self._control_pdu(command_id, status, seq, body)
            off += length
        if view is buf:
            del buf[:off]
        elif off < end:
            buf += data[off:]
        if acks and run is not None:
            self._on_acks(run, acks, now)

    # -- pushing ------------------------------------------------------------------
    def _on_acks(self, run: _Run, acks: int, now: int) -> None:
        run.acked += acks
        run.last_progress = time.monotonic()
        if run.acked >= run.count:
            if not run.done.done():
                run.done.set_result(None)
            return
        if run.rate is None:
            k = min(run.count - run.sent, run.window - (run.sent - run.acked))
            if k > 0:
                self.send(run, k)

    def send(self, run: _Run, k: int) -> None:
        """Write the next k pre-encoded deliver_sm of ``run`` in one write."""
        transport = self.transport
        if transport is None or k <= 0:
            return
        a = run.sent
        b = a + k
        offsets = run.offsets
        run.sent = b
        now = time.perf_counter_ns()
        run.sent_ns[a:b] = itertools.repeat(now, k)
        transport.write(run.blob[offsets[a] : offsets[b]])

    # -- everything that is not a deliver_sm_resp ------------------------------------
    def _write(self, pdu: bytes) -> None:
        if self.transport is not None:
            self.transport.write(pdu)

    def _framing_error(self, length: int) -> None:
        print(f"loadgen: bad command_length {length}, closing", file=sys.stderr)
        if self.transport is not None:
            self.transport.close()

    def _control_pdu(self, command_id: int, status: int, seq: int, body: bytes) -> None:
        if command_id in (BIND_TRANSCEIVER, BIND_RECEIVER):
            resp_id = command_id | RESP_BIT
            system_id, _ = _c_string(body, 0)
            if self.bound:
                self._write(encode_pdu(resp_id, ESME_RALYBND, seq, b"bench\x00"))
            elif not self._server._claim(self):
                # Only one ESME at a time: a second one is refused and dropped.
                self._write(encode_pdu(resp_id, ESME_RBINDFAIL, seq, b"bench\x00"))
                if self.transport is not None:
                    self.transport.close()
            else:
                self.bound = True
                self.esme_system_id = system_id
                self._write(
                    encode_pdu(resp_id, ESME_ROK, seq, SMSC_SYSTEM_ID.encode("ascii") + b"\x00")
                )
                self._server._bound(self)
        elif command_id == BIND_TRANSMITTER:
            # A transmitter cannot receive deliver_sm: useless for an MO bench.
            self._write(encode_pdu(command_id | RESP_BIT, ESME_RBINDFAIL, seq, b"bench\x00"))
        elif command_id == ENQUIRE_LINK:
            self.enquire_links += 1
            self._write(encode_pdu(ENQUIRE_LINK_RESP, ESME_ROK, seq))
        elif command_id == UNBIND:
            self._write(encode_pdu(UNBIND_RESP, ESME_ROK, seq))
            if self.transport is not None:
                self.transport.close()
        elif command_id == UNBIND_RESP:
            if self.unbind_resp is not None and not self.unbind_resp.done():
                self.unbind_resp.set_result(None)
        elif command_id == SUBMIT_SM:
            # Not part of the MO bench, but a gateway that replies must not stall.
            self.submit_sms += 1
            status_out = ESME_ROK if self.bound else ESME_RINVBNDSTS
            msg_id = f"b{self.submit_sms:x}".encode("ascii") + b"\x00"
            self._write(encode_pdu(SUBMIT_SM_RESP, status_out, seq, msg_id))
        elif command_id == GENERIC_NACK:
            self._generic_nack(status, seq)
        elif command_id & RESP_BIT:
            pass  # a response to nothing we asked: ignore
        else:
            self._write(encode_pdu(GENERIC_NACK, ESME_RINVCMDID, seq))

    def _generic_nack(self, status: int, seq: int) -> None:
        """A generic_nack for one of our deliver_sm counts as an error response."""
        run = self.run
        if run is None:
            return
        i = seq - run.first_seq
        if 0 <= i < run.count and not run.ack_ns[i]:
            now = time.perf_counter_ns()
            run.ack_ns[i] = now
            run.status[i] = status or GENERIC_NACK
            self._on_acks(run, 1, now)


class LoadServer:
    """The SMSC side of the bench: accepts one ESME bind, then pushes deliver_sm."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self._requested_port = port
        self._server: asyncio.Server | None = None
        self._session: _SmscSession | None = None
        self._bound_event = asyncio.Event()
        self._next_seq = 1

    async def __aenter__(self) -> LoadServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _SmscSession(self), self.host, self._requested_port, backlog=8
        )

    @property
    def port(self) -> int:
        if self._server is None or not self._server.sockets:
            raise RuntimeError("LoadServer not started")
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def esme_system_id(self) -> str | None:
        return self._session.esme_system_id if self._session is not None else None

    @property
    def is_bound(self) -> bool:
        return self._session is not None and self._session.bound

    # -- session bookkeeping (called by _SmscSession) -------------------------------
    def _claim(self, session: _SmscSession) -> bool:
        return self._session is None or self._session is session

    def _bound(self, session: _SmscSession) -> None:
        self._session = session
        self._bound_event.set()

    def _session_lost(self, session: _SmscSession) -> None:
        if self._session is session:
            self._session = None
            self._bound_event.clear()

    # -- API ------------------------------------------------------------------------
    async def wait_bound(self, timeout: float | None = None) -> str:
        """Wait until an ESME is bound; returns its system_id. TimeoutError on timeout."""
        await asyncio.wait_for(self._bound_event.wait(), timeout)
        assert self._session is not None
        return self._session.esme_system_id

    async def push(
        self,
        count: int,
        window: int,
        rate: float | None = None,
        warmup: int = 0,
        stall_timeout: float = 30.0,
    ) -> dict[str, Any]:
        """Push ``warmup`` (unmeasured) then ``count`` deliver_sm, at most ``window``
        outstanding, as fast as possible (``rate=None``) or paced at ``rate`` per second.

        Returns the report of the measured part. A push that loses the connection or
        sees no response for ``stall_timeout`` seconds returns what it got, with
        ``complete`` false and ``error`` set."""
        if count <= 0 or window <= 0:
            raise ValueError("count and window must be positive")
        if rate is not None and rate <= 0:
            raise ValueError("rate must be positive")
        if warmup > 0:
            warm = await self._push_once(warmup, window, rate, stall_timeout)
            if not warm["complete"]:
                warm["error"] = f"warmup failed: {warm['error']}"
                return warm
        return await self._push_once(count, window, rate, stall_timeout)

    async def _push_once(
        self, count: int, window: int, rate: float | None, stall_timeout: float
    ) -> dict[str, Any]:
        session = self._session
        if session is None or not session.bound:
            raise PushError("no ESME bound")
        if session.run is not None:
            raise PushError("a push is already running")
        loop = asyncio.get_running_loop()
        run = _Run(self._next_seq, count, window, rate, loop)
        self._next_seq += count
        session.run = run
        pacer: asyncio.Task[None] | None = None
        error: str | None = None
        try:
            if rate is None:
                session.send(run, min(window, count))
            else:
                pacer = asyncio.create_task(self._pace(session, run, rate))
            while not run.done.done():
                await asyncio.wait([run.done], timeout=min(1.0, stall_timeout))
                if run.done.done():
                    break
                idle = time.monotonic() - run.last_progress
                if run.sent > run.acked and idle >= stall_timeout:
                    error = f"stalled: no response for {idle:.1f} s"
                    break
            if error is None and run.closed_reason is not None:
                error = run.closed_reason
        finally:
            if pacer is not None:
                pacer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pacer
            session.run = None
        return self._report(run, error)

    @staticmethod
    async def _pace(session: _SmscSession, run: _Run, rate: float) -> None:
        """Paced mode: PDU j (0-based) is due at t0 + j/rate; each tick sends all due
        PDUs the window allows, then sleeps until the next one is due."""
        t0 = time.perf_counter()
        while run.sent < run.count and not run.done.done():
            elapsed = time.perf_counter() - t0
            due = min(run.count, int(elapsed * rate) + 1)
            k = min(due - run.sent, run.window - (run.sent - run.acked))
            if k > 0:
                session.send(run, k)
            if run.sent >= run.count:
                return
            if run.sent - run.acked >= run.window:
                await asyncio.sleep(0.001)  # window full: wait for acks
            else:
                await asyncio.sleep(max(0.0, run.sent / rate - (time.perf_counter() - t0)))

    @staticmethod
    def _report(run: _Run, error: str | None) -> dict[str, Any]:
        acked_ok = 0
        acked_error = 0
        latencies: list[int] = []
        error_statuses: Counter[str] = Counter()
        first_send = min((t for t in run.sent_ns if t), default=0)
        last_ack = 0
        for sent, acked, status in zip(run.sent_ns, run.ack_ns, run.status, strict=True):
            if not acked:
                continue
            last_ack = max(last_ack, acked)
            if status == ESME_ROK:
                acked_ok += 1
                latencies.append(acked - sent)
            else:
                acked_error += 1
                error_statuses[f"0x{status:08X}"] += 1
        latencies.sort()
        duration = (last_ack - first_send) / 1e9 if last_ack and first_send else 0.0
        ms = 1e6
        return {
            "count": run.count,
            "window": run.window,
            "target_rate": run.rate,
            "sent": run.sent,
            "acked_ok": acked_ok,
            "acked_error": acked_error,
            "unacked": run.count - acked_ok - acked_error,
            "error_statuses": dict(error_statuses),
            "duration": round(duration, 6),
            "rate": round(acked_ok / duration, 1) if duration > 0 else 0.0,
            "resp_rate": round((acked_ok + acked_error) / duration, 1) if duration > 0 else 0.0,
            "p50_ms": round(percentile(latencies, 50, 0) / ms, 3),
            "p99_ms": round(percentile(latencies, 99, 0) / ms, 3),
            "max_ms": round((latencies[-1] if latencies else 0) / ms, 3),
            "complete": error is None and acked_ok + acked_error == run.count,
            "error": error,
        }

    async def unbind(self, timeout: float = 2.0) -> bool:
        """Send unbind and wait for unbind_resp (or the connection closing)."""
        session = self._session
        if session is None or session.transport is None:
            return False
        loop = asyncio.get_running_loop()
        session.unbind_resp = loop.create_future()
        seq = self._next_seq
        self._next_seq += 1
        session.transport.write(encode_pdu(UNBIND, ESME_ROK, seq))
        try:
            await asyncio.wait_for(session.unbind_resp, timeout)
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        if self._session is not None and self._session.transport is not None:
            self._session.transport.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None


async def run_load(
    host: str,
    port: int,
    count: int,
    window: int,
    rate: float | None = None,
    warmup: int = 0,
    *,
    bind_timeout: float | None = None,
    stall_timeout: float = 30.0,
) -> dict[str, Any]:
    """Listen on host:port, wait for an ESME to bind, push, unbind, report."""
    async with LoadServer(host, port) as srv:
        system_id = await srv.wait_bound(bind_timeout)
        result = await srv.push(count, window, rate, warmup, stall_timeout)
        result["esme_system_id"] = system_id
        await srv.unbind()
        return result


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=2775)
    p.add_argument("--count", type=int, default=50_000, help="deliver_sm per push")
    p.add_argument("--window", type=int, default=1000, help="max outstanding deliver_sm")
    p.add_argument("--rate", type=float, default=None, help="paced MO/s (default: unlimited)")
    p.add_argument("--warmup", type=int, default=0, help="unmeasured deliver_sm first")
    p.add_argument("--repeat", type=int, default=1, help="pushes on the same bind")
    p.add_argument("--bind-timeout", type=float, default=None, help="seconds (default: wait)")
    p.add_argument("--stall-timeout", type=float, default=30.0)
    p.add_argument("--json-out", default=None, help="also write the results here")
    return p.parse_args(argv)


async def _main(args: argparse.Namespace) -> int:
    async with LoadServer(args.host, args.port) as srv:
        print(f"loadgen: listening on {args.host}:{srv.port}", file=sys.stderr)
        system_id = await srv.wait_bound(args.bind_timeout)
        print(f"loadgen: ESME {system_id!r} bound", file=sys.stderr)
        results: list[dict[str, Any]] = []
        for i in range(args.repeat):
            result = await srv.push(
                args.count,
                args.window,
                args.rate,
                args.warmup if i == 0 else 0,
                args.stall_timeout,
            )
            results.append(result)
            print(json.dumps(result), flush=True)
            if not result["complete"]:
                break
        await srv.unbind()
    if args.json_out:
        with open(args.json_out, "w", encoding="utf-8") as f:
            json.dump(results if args.repeat > 1 else results[0], f, indent=2)
    return 0 if all(r["complete"] for r in results) else 1


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    try:
        return asyncio.run(_main(args))
    except TimeoutError:
        print("loadgen: no ESME bound in time", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
