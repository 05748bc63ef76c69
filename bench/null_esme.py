#!/usr/bin/env python3
"""A do-nothing SMPP 3.4 ESME: the baseline the gateway is measured against (stdlib only).

Connects to host:port, binds as a transceiver, and answers every deliver_sm with a
deliver_sm_resp (status 0) at once. It does nothing else with the message, so what it
measures is the cost of the loopback TCP path, the load generator and a lean Python
asyncio receive loop: the ceiling for any Python ESME on this machine.

Lean receive loop: an ``asyncio.Protocol`` (no StreamReader); on each ``data_received``
every complete PDU in the buffer is parsed with one ``struct.unpack_from`` of its
16-octet header (the body of a deliver_sm is never decoded), and all the resulting
responses go out in one ``transport.write``.

    python bench/null_esme.py --host 127.0.0.1 --port 2775

It exits when the SMSC unbinds or closes the connection, or on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import struct
import sys

GENERIC_NACK = 0x80000000
RESP_BIT = 0x80000000
BIND_TRANSCEIVER = 0x00000009
BIND_TRANSCEIVER_RESP = 0x80000009
DELIVER_SM = 0x00000005
DELIVER_SM_RESP = 0x80000005
UNBIND = 0x00000006
UNBIND_RESP = 0x80000006
ENQUIRE_LINK = 0x00000015
ENQUIRE_LINK_RESP = 0x80000015
ESME_ROK = 0x00
ESME_RINVCMDID = 0x03

HEADER = struct.Struct(">IIII")
HEADER_LEN = 16
MAX_PDU_LEN = 64 * 1024
# deliver_sm_resp: header + message_id "" (one NUL octet) = 17 octets
DELIVER_SM_RESP_PDU = struct.Struct(">IIIIB")
DELIVER_SM_RESP_LEN = DELIVER_SM_RESP_PDU.size


def encode_pdu(command_id: int, status: int, sequence: int, body: bytes = b"") -> bytes:
    return HEADER.pack(HEADER_LEN + len(body), command_id, status, sequence) + body


def c_string(value: str) -> bytes:
    return value.encode("ascii") + b"\x00"


class NullEsme(asyncio.Protocol):
    def __init__(
        self, system_id: str, password: str, done: asyncio.Future[int], verbose: bool
    ) -> None:
        self._system_id = system_id
        self._password = password
        self._done = done
        self._verbose = verbose
        self._buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.bound = False
        self.delivered = 0
        self._seq = 0
        self._closing = False

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        body = b"".join(
            (
                c_string(self._system_id),
                c_string(self._password),
                c_string(""),  # system_type
                bytes((0x34, 0, 0)),  # interface_version, addr_ton, addr_npi
                c_string(""),  # address_range
            )
        )
        transport.write(encode_pdu(BIND_TRANSCEIVER, ESME_ROK, self._next_seq(), body))

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if not self._done.done():
            self._done.set_result(0 if exc is None else 1)

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
        unpack = HEADER.unpack_from
        pack_resp = DELIVER_SM_RESP_PDU.pack
        out: list[bytes] = []
        append = out.append
        while end - off >= HEADER_LEN:
            length, command_id, status, seq = unpack(view, off)
            if length < HEADER_LEN or length > MAX_PDU_LEN:
                print(f"null_esme: bad command_length {length}", file=sys.stderr)
                if self.transport is not None:
                    self.transport.close()
                return
            if end - off < length:
                break
            if command_id == DELIVER_SM:
                append(pack_resp(DELIVER_SM_RESP_LEN, DELIVER_SM_RESP, ESME_ROK, seq, 0))
            else:
                resp = self._control_pdu(command_id, status, seq)
                if resp:
                    append(resp)
            off += length
        if view is buf:
            del buf[:off]
        elif off < end:
            buf += data[off:]
        transport = self.transport
        if out and transport is not None:
            self.delivered += len(out)  # near enough: control resps are rare
            transport.write(b"".join(out))
            if self._closing:
                transport.close()

    def _control_pdu(self, command_id: int, status: int, seq: int) -> bytes | None:
        if command_id == BIND_TRANSCEIVER_RESP:
            if status != ESME_ROK:
                print(f"null_esme: bind refused, status 0x{status:08X}", file=sys.stderr)
                if self.transport is not None:
                    self.transport.close()
                return None
            self.bound = True
            if self._verbose:
                print("null_esme: bound", file=sys.stderr)
            return None
        if command_id == ENQUIRE_LINK:
            return encode_pdu(ENQUIRE_LINK_RESP, ESME_ROK, seq)
        if command_id == UNBIND:
            self._closing = True
            return encode_pdu(UNBIND_RESP, ESME_ROK, seq)
        if command_id & RESP_BIT:
            return None  # enquire_link_resp, generic_nack...: nothing to do
        return encode_pdu(GENERIC_NACK, ESME_RINVCMDID, seq)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def _main(args: argparse.Namespace) -> int:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[int] = loop.create_future()
    _, esme = await loop.create_connection(
        lambda: NullEsme(args.system_id, args.password, done, args.verbose),
        args.host,
        args.port,
    )
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, esme.close)
    rc = await done
    if args.verbose:
        print(f"null_esme: answered {esme.delivered} PDUs", file=sys.stderr)
    return rc


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Do-nothing SMPP ESME (bench baseline).")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=2775)
    p.add_argument("--system-id", default="bench")
    p.add_argument("--password", default="bench")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    try:
        return asyncio.run(_main(args))
    except ConnectionError as exc:
        print(f"null_esme: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
