"""The broker's side of MQTT 3.1.1, written for the tests from the specification and
independent of `gateway.mqttproto`: encoders of what a broker sends, and a decoder of
what a client sends. Used by the codec's property tests and the hostile brokers."""

from __future__ import annotations

from dataclasses import dataclass, field


def varint(n: int) -> bytes:
    """§2.2.3's algorithm, as the specification writes it."""
    out = bytearray()
    while True:
        digit = n % 128
        n //= 128
        if n > 0:
            digit |= 128
        out.append(digit)
        if n == 0:
            return bytes(out)


def packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + varint(len(body)) + body


def utf8(text: str) -> bytes:
    raw = text.encode()
    return len(raw).to_bytes(2, "big") + raw


# --------------------------------------------------------------------------- broker -> client


def connack(return_code: int = 0, session_present: bool = False) -> bytes:
    return packet(0x20, bytes([int(session_present), return_code]))


def publish(topic: bytes | str, payload: bytes, qos: int = 0, mid: int = 0,
            retain: bool = False, dup: bool = False) -> bytes:
    raw = topic.encode() if isinstance(topic, str) else topic
    body = len(raw).to_bytes(2, "big") + raw + (mid.to_bytes(2, "big") if qos else b"")
    return packet(0x30 | (8 if dup else 0) | qos << 1 | int(retain), body + payload)


def puback(mid: int) -> bytes:
    return packet(0x40, mid.to_bytes(2, "big"))


def pubrec(mid: int) -> bytes:
    return packet(0x50, mid.to_bytes(2, "big"))


def pubrel(mid: int) -> bytes:
    return packet(0x62, mid.to_bytes(2, "big"))


def pubcomp(mid: int) -> bytes:
    return packet(0x70, mid.to_bytes(2, "big"))


def suback(mid: int, codes: list[int]) -> bytes:
    return packet(0x90, mid.to_bytes(2, "big") + bytes(codes))


def pingresp() -> bytes:
    return b"\xd0\x00"


# --------------------------------------------------------------------------- client -> broker


@dataclass
class Packet:
    """One decoded client packet: `kind` and the fields that kind has."""

    kind: str
    mid: int = 0
    fields: dict[str, object] = field(default_factory=dict)


class WireError(Exception):
    pass


class ClientDecoder:
    """Decodes a client's byte stream (fed in any fragments) into `Packet`s."""

    def __init__(self) -> None:
        self.buf = b""

    def feed(self, data: bytes) -> list[Packet]:
        self.buf += data
        out = []
        while True:
            if len(self.buf) < 2:
                return out
            mult, length, i = 1, 0, 1
            while True:
                if i >= len(self.buf):
                    return out
                b = self.buf[i]
                length += (b & 127) * mult
                mult *= 128
                i += 1
                if b < 128:
                    break
                if i > 4:
                    raise WireError("remaining length too long")
            if len(self.buf) < i + length:
                return out
            first, body = self.buf[0], self.buf[i:i + length]
            self.buf = self.buf[i + length:]
            out.append(self._decode(first, body))

    @staticmethod
    def _str(body: bytes, at: int) -> tuple[bytes, int]:
        n = int.from_bytes(body[at:at + 2], "big")
        if at + 2 + n > len(body):
            raise WireError("string runs past the packet")
        return body[at + 2:at + 2 + n], at + 2 + n

    def _decode(self, first: int, body: bytes) -> Packet:
        kind, flags = first >> 4, first & 15
        if kind == 1:
            assert flags == 0
            name, at = self._str(body, 0)
            assert name == b"MQTT" and body[at] == 4, body
            cflags = body[at + 1]
            keepalive = int.from_bytes(body[at + 2:at + 4], "big")
            at += 4
            client_id, at = self._str(body, at)
            f: dict[str, object] = {"client_id": client_id.decode(), "keepalive": keepalive,
                                    "clean_session": bool(cflags & 2)}
            assert not cflags & 1, "reserved flag"
            if cflags & 4:
                wt, at = self._str(body, at)
                wp, at = self._str(body, at)
                f["will"] = (wt.decode(), wp, (cflags >> 3) & 3, bool(cflags & 0x20))
            else:
                assert not cflags & 0x38
            if cflags & 0x80:
                user, at = self._str(body, at)
                f["username"] = user.decode()
            if cflags & 0x40:
                pw, at = self._str(body, at)
                f["password"] = pw
            assert at == len(body), "bytes after the CONNECT payload"
            return Packet("CONNECT", fields=f)
        if kind == 3:
            qos = (flags >> 1) & 3
            topic, at = self._str(body, 0)
            mid = 0
            if qos:
                mid = int.from_bytes(body[at:at + 2], "big")
                at += 2
            return Packet("PUBLISH", mid, {"topic": topic.decode(), "payload": body[at:],
                                           "qos": qos, "retain": bool(flags & 1),
                                           "dup": bool(flags & 8)})
        if kind in (4, 5, 6, 7):
            assert flags == (2 if kind == 6 else 0) and len(body) == 2
            return Packet({4: "PUBACK", 5: "PUBREC", 6: "PUBREL", 7: "PUBCOMP"}[kind],
                          int.from_bytes(body, "big"))
        if kind == 8:
            assert flags == 2
            mid = int.from_bytes(body[:2], "big")
            at, filters = 2, []
            while at < len(body):
                t, at = self._str(body, at)
                filters.append((t.decode(), body[at]))
                at += 1
            return Packet("SUBSCRIBE", mid, {"filters": filters})
        if kind in (12, 14):
            assert flags == 0 and not body
            return Packet("PINGREQ" if kind == 12 else "DISCONNECT")
        raise WireError(f"a client does not send type {kind}")
