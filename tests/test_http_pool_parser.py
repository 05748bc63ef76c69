"""Property tests for gateway.http.response.ResponseParser (the httptools wrapper)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.http.response import ProtocolError, Response, ResponseParser

TOKEN = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-",
    min_size=1,
    max_size=12,
)
VALUE = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=30)
RESERVED = {"content-length", "transfer-encoding", "connection", "keep-alive", "upgrade"}
# Header names are case-insensitive: no two generated names may differ only in case.
HEADERS = st.dictionaries(TOKEN.filter(lambda n: n.lower() not in RESERVED), VALUE,
                          max_size=5).filter(lambda d: len({k.lower() for k in d}) == len(d))
STATUS = st.integers(200, 599).filter(lambda s: s not in (204, 304))
FRAMING = st.sampled_from(["length", "chunked", "close"])


def encode(
    status: int, headers: dict[str, str], body: bytes, framing: str, chunks: list[int]
) -> bytes:
    lines = [f"HTTP/1.1 {status} Whatever"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    if framing == "length":
        lines.append(f"Content-Length: {len(body)}")
    elif framing == "chunked":
        lines.append("Transfer-Encoding: chunked")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode()
    if framing != "chunked":
        return head + body
    out, pos = [head], 0
    for size in [*chunks, len(body)]:
        piece = body[pos : pos + size]
        if piece:
            out.append(b"%x\r\n%b\r\n" % (len(piece), piece))
        pos += len(piece)
    out.append(b"0\r\n\r\n")
    return b"".join(out)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    parts, last = [], 0
    for p in [*points, len(data)]:
        parts.append(data[last:p])
        last = p
    return [p for p in parts if p]


def parse(parts: list[bytes], *, eof: bool, body_limit: int = 1 << 20) -> Response | None:
    parser = ResponseParser(body_limit)
    for part in parts:
        if parser.feed(part):
            return parser.response()
    if eof and parser.feed_eof():
        return parser.response()
    return None


@settings(max_examples=300, deadline=None)
@given(
    status=STATUS,
    headers=HEADERS,
    body=st.binary(max_size=3000),
    framing=FRAMING,
    chunks=st.lists(st.integers(1, 700), max_size=6),
    cuts=st.lists(st.integers(0, 10_000), max_size=8),
    interim=st.booleans(),
)
def test_any_split_gives_the_same_response(
    status: int,
    headers: dict[str, str],
    body: bytes,
    framing: str,
    chunks: list[int],
    cuts: list[int],
    interim: bool,
) -> None:
    data = encode(status, headers, body, framing, chunks)
    if interim:
        data = b"HTTP/1.1 100 Continue\r\n\r\n" + data
    response = parse(split(data, cuts), eof=framing == "close")
    assert response is not None
    assert response.status == status and response.body == body and not response.truncated
    for name, value in headers.items():
        assert response.headers[name.lower()] == value
    assert response.keep_alive is (framing != "close")


@settings(max_examples=200, deadline=None)
@given(
    body=st.binary(max_size=2000),
    framing=FRAMING,
    limit=st.integers(0, 2500),
    cuts=st.lists(st.integers(0, 10_000), max_size=5),
)
def test_body_cap(body: bytes, framing: str, limit: int, cuts: list[int]) -> None:
    data = encode(200, {}, body, framing, [100])
    response = parse(split(data, cuts), eof=True, body_limit=limit)
    assert response is not None
    assert response.body == body[:limit]
    assert response.truncated is (len(body) > limit)
    if response.truncated:
        assert not response.keep_alive


@settings(max_examples=200, deadline=None)
@given(
    body=st.binary(min_size=1, max_size=500),
    framing=st.sampled_from(["length", "chunked"]),
    cut=st.integers(0, 10_000),
)
def test_eof_before_the_end_is_incomplete(body: bytes, framing: str, cut: int) -> None:
    data = encode(200, {}, body, framing, [7])
    truncated = data[: cut % len(data)]  # never the whole response
    assert parse([truncated] if truncated else [], eof=True) is None


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=300), cuts=st.lists(st.integers(0, 1000), max_size=4))
def test_garbage_raises_only_protocol_error(data: bytes, cuts: list[int]) -> None:
    parser = ResponseParser(1000)
    try:
        for part in split(data, cuts):
            if parser.feed(part):
                parser.response()
                break
        parser.feed_eof()
    except ProtocolError:
        pass


@given(extra=st.binary(min_size=1, max_size=100).filter(lambda b: b.strip(b"\r\n")))
def test_bytes_after_the_response_forbid_reuse(extra: bytes) -> None:
    # (stray CR/LF between messages are allowed by HTTP/1.1 and harmless)
    parser = ResponseParser(1000)
    assert parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" + extra)
    assert not parser.response().keep_alive


def test_reset_parses_the_next_response_on_the_same_connection() -> None:
    parser = ResponseParser(100)
    assert parser.feed(b"HTTP/1.1 404 Not Found\r\nContent-Length: 1\r\n\r\nx")
    first = parser.response()
    parser.reset()
    assert not parser.started and not parser.complete
    assert parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\ny")
    assert (first.status, first.body) == (404, b"x")
    assert (parser.response().status, parser.response().body) == (200, b"y")


def test_no_body_statuses_and_upgrade() -> None:
    for status in (204, 304):
        parser = ResponseParser(100)
        assert parser.feed(b"HTTP/1.1 %d X\r\n\r\n" % status)
        assert parser.response().body == b"" and parser.response().keep_alive
    parser = ResponseParser(100)
    with pytest.raises(ProtocolError):
        parser.feed(b"HTTP/1.1 101 Switching\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n")
    with pytest.raises(RuntimeError):
        ResponseParser(100).response()
    with pytest.raises(ValueError):
        ResponseParser(-1)


@settings(max_examples=30, deadline=None)
@given(piece=st.integers(500, 70_000))
def test_endless_head_is_refused_but_a_big_body_is_not(piece: int) -> None:
    parser = ResponseParser(10)
    filler = b"X-Filler: " + b"a" * 100 + b"\r\n"
    data = b"HTTP/1.1 200 OK\r\n" + filler * 2000  # ~220 KiB of headers, no blank line
    with pytest.raises(ProtocolError, match="head larger"):
        for i in range(0, len(data), piece):
            parser.feed(data[i : i + piece])
    body = b"y" * 300_000  # head + body in one read, much larger than HEAD_LIMIT
    big = ResponseParser(10)
    assert big.feed(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body))
    assert big.response().truncated and big.response().body == b"y" * 10
