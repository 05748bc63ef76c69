"""Tests for gateway.smpp.text: GSM 03.38, UCS-2, data_coding, UDH and MT splitting."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.smpp.pdu import ESM_UDHI
from gateway.smpp.text import (
    GSM_BASIC,
    GSM_EXTENSION,
    Concat,
    MtEncoding,
    decode_text,
    encode_mt,
    gsm_decode,
    gsm_encode,
    gsm_fits,
    gsm_septets,
    join_parts,
    split_udh,
    ucs2_decode,
    ucs2_encode,
)

ESC = 0x1B
GSM_CHARS = [ch for i, ch in enumerate(GSM_BASIC) if i != ESC] + list(GSM_EXTENSION)
EMOJI = ["😀", "👍🏽", "🇪🇺", "👨‍👩‍👧", "𝄞", "𠜎", "€", "ж", "中", "é"]

gsm_texts = st.text(alphabet=st.sampled_from(GSM_CHARS), max_size=1500)
# Pieces of text: any code point of any plane except surrogates (the utf-8 codec has
# none), multi-code-point emoji, and GSM characters so mixed texts are common.
unicode_pieces = st.one_of(
    st.characters(codec="utf-8"),
    st.sampled_from(EMOJI),
    st.sampled_from(GSM_CHARS),
)
unicode_texts = st.lists(unicode_pieces, max_size=1000).map(lambda xs: "".join(xs)[:1500])


def _long(pieces: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Texts of up to 1500 characters, built by repeating a random chunk."""
    chunk = st.lists(pieces, min_size=1, max_size=60).map("".join)
    return st.tuples(chunk, st.integers(1, 60)).map(lambda pair: (pair[0] * pair[1])[:1500])


long_gsm_texts = st.one_of(gsm_texts, _long(st.sampled_from(GSM_CHARS)))
long_unicode_texts = st.one_of(unicode_texts, _long(unicode_pieces))


# --- 1. tables -------------------------------------------------------------------------


def test_tables_shape() -> None:
    assert len(GSM_BASIC) == 128
    assert len(set(GSM_BASIC)) == 128
    assert GSM_BASIC[0x00] == "@"
    assert GSM_BASIC[0x02] == "$"
    assert GSM_BASIC[0x11] == "_"
    assert GSM_BASIC[0x24] == "¤"
    assert GSM_BASIC[0x40] == "¡"
    assert GSM_BASIC[0x60] == "¿"
    assert GSM_BASIC[0x7F] == "à"
    assert GSM_EXTENSION == {
        "\x0c": 0x0A,
        "^": 0x14,
        "{": 0x28,
        "}": 0x29,
        "\\": 0x2F,
        "[": 0x3C,
        "~": 0x3D,
        "]": 0x3E,
        "|": 0x40,
        "€": 0x65,
    }


@pytest.mark.parametrize("code", [c for c in range(128) if c != ESC])
def test_basic_char_round_trips(code: int) -> None:
    ch = GSM_BASIC[code]
    assert gsm_encode(ch) == bytes([code])
    assert gsm_decode(bytes([code])) == ch
    assert gsm_fits(ch)
    assert gsm_septets(ch) == 1


@pytest.mark.parametrize(("ch", "code"), sorted(GSM_EXTENSION.items()))
def test_extension_char_round_trips(ch: str, code: int) -> None:
    assert gsm_encode(ch) == bytes([ESC, code])
    assert gsm_decode(bytes([ESC, code])) == ch
    assert gsm_fits(ch)
    assert gsm_septets(ch) == 2


def test_whole_tables_round_trip() -> None:
    text = "".join(GSM_CHARS)
    assert gsm_decode(gsm_encode(text)) == text
    assert gsm_septets(text) == 127 + 2 * len(GSM_EXTENSION)
    assert len(gsm_encode(text)) == gsm_septets(text)


@pytest.mark.parametrize("text", ["щ", "😀", "`", "\x1b", "\t", "abc ç", "ÀÈ"])
def test_not_gsm(text: str) -> None:
    assert not gsm_fits(text)
    with pytest.raises(UnicodeEncodeError):
        gsm_encode(text)
    with pytest.raises(ValueError):
        gsm_septets(text)


def test_encode_error_position() -> None:
    with pytest.raises(UnicodeEncodeError) as info:
        gsm_encode("ab€cщd")
    assert (info.value.start, info.value.end) == (4, 5)


def test_ascii_fast_path_matches_general_path() -> None:
    text = "Hi @you $5 _x_ {a} [b] ^~|\\ ok\r\n"
    assert gsm_encode(text) == gsm_encode(text + "é")[:-1]
    assert gsm_decode(gsm_encode(text)) == text


@pytest.mark.parametrize(
    ("data", "text"),
    [
        (b"\x1b\x41", "A"),  # unknown escape -> basic char
        (b"\x1b\x0d", "\r"),  # CR2 (page break) -> CR
        (b"a\x1b", "a"),  # trailing lone ESC dropped
        (b"\x1b", ""),
        (b"\x1b\x1bA", " A"),  # ESC ESC -> space
        (b"\x1b\x1b\x1b\x65", " €"),
        (b"A\x80\xff", "A\ufffd\ufffd"),  # not a septet
        (b"\x1b\x80", "\ufffd"),
        (b"\x1b\x0a", "\x0c"),
        (b"\x00\x1b\x3c\x1b\x3e\x7f", "@[]à"),
    ],
)
def test_gsm_decode_tolerant(data: bytes, text: str) -> None:
    assert gsm_decode(data) == text


# --- 2. round-trip properties ----------------------------------------------------------


@given(gsm_texts)
def test_gsm_round_trip(text: str) -> None:
    assert gsm_fits(text)
    data = gsm_encode(text)
    assert len(data) == gsm_septets(text)
    assert gsm_decode(data) == text


@given(st.binary(max_size=400))
def test_gsm_decode_never_raises(data: bytes) -> None:
    assert isinstance(gsm_decode(data), str)


@given(unicode_texts)
def test_ucs2_round_trip(text: str) -> None:
    data = ucs2_encode(text)
    assert len(data) == 2 * sum(2 if ord(ch) > 0xFFFF else 1 for ch in text)
    assert ucs2_decode(data) == text


def test_ucs2_astral_is_surrogate_pair() -> None:
    assert ucs2_encode("😀") == bytes.fromhex("d83dde00")
    assert ucs2_decode(bytes.fromhex("d83dde00")) == "😀"


@pytest.mark.parametrize(
    ("hex_data", "text"),
    [
        ("d83d", "\ufffd"),  # lone high surrogate at the end
        ("d83d0041", "\ufffdA"),  # high surrogate not followed by a low one
        ("de000041", "\ufffdA"),  # lone low surrogate
        ("004100", "A\ufffd"),  # odd trailing octet
        ("d83dd83dde00", "\ufffd😀"),
        ("", ""),
    ],
)
def test_ucs2_decode_tolerant(hex_data: str, text: str) -> None:
    assert ucs2_decode(bytes.fromhex(hex_data)) == text


@given(st.binary(max_size=400))
def test_ucs2_decode_never_raises(data: bytes) -> None:
    assert isinstance(ucs2_decode(data), str)


# --- 3. encode_mt + join_parts ---------------------------------------------------------


def _check_mt(text: str, ref: int, enc: MtEncoding) -> None:
    gsm = gsm_fits(text)
    assert enc.data_coding == (0 if gsm else 8)
    parts = enc.parts
    assert 1 <= len(parts) <= 255
    if len(parts) == 1:
        (part,) = parts
        assert part.esm_class == 0
        assert len(part.short_message) <= (160 if gsm else 140)
        bodies = [part.short_message]
    else:
        bodies = []
        for seq, part in enumerate(parts, start=1):
            assert part.esm_class == ESM_UDHI
            assert part.short_message[:6] == bytes([5, 0, 3, ref & 0xFF, len(parts), seq])
            concat, body = split_udh(part.short_message)
            assert concat == Concat(ref=ref & 0xFF, total=len(parts), seq=seq, ref_bits=8)
            assert body == part.short_message[6:]
            assert body
            assert len(body) <= (153 if gsm else 134)
            bodies.append(body)
    for body in bodies:
        if gsm:
            assert not body.endswith(b"\x1b")
        else:
            assert len(body) % 2 == 0
            assert not (len(body) >= 2 and 0xD8 <= body[-2] <= 0xDB)
    assert join_parts(bodies, enc.data_coding) == text
    # each part decodes on its own too, since nothing is cut mid-character
    assert "".join(decode_text(body, enc.data_coding) for body in bodies) == text


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(long_gsm_texts, st.integers(0, 0xFFFF))
def test_encode_mt_gsm(text: str, ref: int) -> None:
    _check_mt(text, ref, encode_mt(text, ref))


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(long_unicode_texts, st.integers(0, 0xFFFF))
def test_encode_mt_unicode(text: str, ref: int) -> None:
    _check_mt(text, ref, encode_mt(text, ref))


# --- 4. boundaries ---------------------------------------------------------------------


def _bodies(enc: MtEncoding) -> list[bytes]:
    if len(enc.parts) == 1:
        return [enc.parts[0].short_message]
    return [split_udh(part.short_message)[1] for part in enc.parts]


@pytest.mark.parametrize(
    ("text", "data_coding", "body_lengths"),
    [
        ("", 0, [0]),
        ("a" * 160, 0, [160]),
        ("a" * 161, 0, [153, 8]),
        ("a" * 158 + "€", 0, [160]),  # 160 septets
        ("a" * 159 + "€", 0, [153, 8]),  # 161 septets
        ("€" * 80, 0, [160]),
        ("€" * 81, 0, [152, 10]),  # 153 is odd: the 77th € moves on
        ("a" * 152 + "€" + "b" * 10, 0, [152, 12]),  # escape straddles 153
        ("a" * 151 + "€" + "b" * 10, 0, [153, 10]),  # escape ends exactly at 153
        ("a" * 153 * 2, 0, [153, 153]),
        ("ж" * 70, 8, [140]),
        ("ж" * 71, 8, [134, 8]),
        ("ж" * 68 + "😀", 8, [140]),  # 70 units
        ("ж" * 69 + "😀", 8, [134, 8]),  # 71 units
        ("ж" * 66 + "😀" + "ж" * 10, 8, [132, 24]),  # emoji straddles 67 -> next part
        ("ж" * 65 + "😀" + "ж" * 10, 8, [134, 20]),  # emoji ends exactly at 67
        ("😀" * 35, 8, [140]),
        ("😀" * 36, 8, [132, 12]),
        ("a" * 159 + "ж", 8, [134, 134, 52]),
    ],
)
def test_boundaries(text: str, data_coding: int, body_lengths: list[int]) -> None:
    enc = encode_mt(text, 7)
    assert enc.data_coding == data_coding
    bodies = _bodies(enc)
    assert [len(body) for body in bodies] == body_lengths
    assert join_parts(bodies, data_coding) == text


def test_straddling_escape_moves_whole() -> None:
    bodies = _bodies(encode_mt("a" * 152 + "€" + "b" * 10, 1))
    assert bodies[0] == b"a" * 152
    assert bodies[1].startswith(b"\x1b\x65")


def test_straddling_emoji_moves_whole() -> None:
    bodies = _bodies(encode_mt("ж" * 66 + "😀" + "ж" * 10, 1))
    assert bodies[1].startswith(bytes.fromhex("d83dde00"))


def test_ref_is_eight_bit() -> None:
    enc = encode_mt("x" * 200, 0x1234)
    assert [p.short_message[3] for p in enc.parts] == [0x34, 0x34]


def test_max_parts() -> None:
    assert len(encode_mt("a" * 153 * 255, 0).parts) == 255
    with pytest.raises(ValueError):
        encode_mt("a" * (153 * 255 + 1), 0)
    assert len(encode_mt("ж" * 67 * 255, 0).parts) == 255
    with pytest.raises(ValueError):
        encode_mt("ж" * (67 * 255 + 1), 0)


def test_join_parts_rejoins_split_pair_and_escape() -> None:
    pair = ucs2_encode("a😀b")
    assert join_parts([pair[:4], pair[4:]], 8) == "a😀b"
    esc = gsm_encode("a€b")
    assert join_parts([esc[:2], esc[2:]], 0) == "a€b"
    assert join_parts([], 0) == ""


# --- 5. split_udh ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "concat", "body"),
    [
        (
            bytes.fromhex("050003ab0302") + b"body",
            Concat(ref=0xAB, total=3, seq=2, ref_bits=8),
            b"body",
        ),
        (
            bytes.fromhex("0608041234ff01") + b"x",
            Concat(ref=0x1234, total=255, seq=1, ref_bits=16),
            b"x",
        ),
        # port addressing (IEI 0x05) before the concat IE is skipped
        (
            bytes.fromhex("0b05040b8423f00003070201") + b"hi",
            Concat(ref=7, total=2, seq=1, ref_bits=8),
            b"hi",
        ),
        # concat after a zero-length IE
        (bytes.fromhex("07700000030a0101"), Concat(ref=10, total=1, seq=1, ref_bits=8), b""),
        # no concat IE
        (bytes.fromhex("0605040b8423f0") + b"p", None, b"p"),
        (bytes.fromhex("00") + b"plain", None, b"plain"),
        # invalid concat values: UDH is well formed, concat rejected
        (bytes.fromhex("0500030a0300") + b"b", None, b"b"),  # seq 0
        (bytes.fromhex("0500030a0304") + b"b", None, b"b"),  # seq > total
        (bytes.fromhex("0500030a0000") + b"b", None, b"b"),  # total 0
        (bytes.fromhex("0400020a01") + b"b", None, b"b"),  # wrong IE length
        # the last valid concat IE wins
        (
            bytes.fromhex("0a00030102010003050202"),
            Concat(ref=5, total=2, seq=2, ref_bits=8),
            b"",
        ),
    ],
)
def test_split_udh(message: bytes, concat: Concat | None, body: bytes) -> None:
    assert split_udh(message) == (concat, body)


@pytest.mark.parametrize(
    "message",
    [
        b"",
        bytes.fromhex("05"),  # UDHL past end
        bytes.fromhex("0600030a0201"),  # UDHL past end by one
        bytes.fromhex("050004") + b"abc",  # IE length past UDH end
        bytes.fromhex("0100"),  # IE header truncated
        bytes.fromhex("03000301020304"),  # concat IE longer than the UDH
    ],
)
def test_split_udh_malformed(message: bytes) -> None:
    assert split_udh(message) == (None, message)


@given(st.binary(max_size=300))
def test_split_udh_never_raises(message: bytes) -> None:
    concat, body = split_udh(message)
    assert message.endswith(body)
    if concat is not None:
        assert 1 <= concat.seq <= concat.total
        assert concat.ref_bits in (8, 16)
        assert concat.ref < (1 << concat.ref_bits)
        assert len(body) < len(message)


@given(st.binary(min_size=1, max_size=140), st.integers(0, 255), st.integers(1, 255), st.data())
def test_split_udh_finds_concat_after_other_ies(
    body: bytes, ref: int, total: int, data: st.DataObject
) -> None:
    seq = data.draw(st.integers(1, total))
    other = data.draw(st.lists(st.binary(max_size=8), max_size=3))
    ies = b"".join(bytes([0x70 + i, len(v)]) + v for i, v in enumerate(other))
    udh = ies + bytes([0x00, 3, ref, total, seq])
    concat, rest = split_udh(bytes([len(udh)]) + udh + body)
    assert concat == Concat(ref=ref, total=total, seq=seq, ref_bits=8)
    assert rest == body


# --- 6. decode_text --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "data_coding", "text"),
    [
        (gsm_encode("@£ {€}"), 0x00, "@£ {€}"),
        (b"hi\xff", 0x01, "hi\ufffd"),
        (b"\x00\xff", 0x02, "\x00\xff"),
        (b"caf\xe9", 0x03, "café"),
        (b"\x00\xff", 0x04, "\x00\xff"),
        (ucs2_encode("ж😀"), 0x08, "ж😀"),
        (gsm_encode("@x"), 0xF0, "@x"),
        (gsm_encode("@x"), 0xF1, "@x"),
        (b"\x00\xe9", 0xF4, "\x00é"),
        (b"\x00\xe9", 0xF6, "\x00é"),
        (gsm_encode("@x"), 0x10, "@x"),
        (b"\x00\xe9", 0x14, "\x00é"),
        (ucs2_encode("ж😀"), 0x18, "ж😀"),
        (ucs2_encode("ж"), 0x19, "ж"),
        (b"\x00\xe9", 0x09, "\x00é"),  # other SMPP codings: Latin-1, lossless
        (b"\x00\xe9", 0x80, "\x00é"),
    ],
)
def test_decode_text(data: bytes, data_coding: int, text: str) -> None:
    assert decode_text(data, data_coding) == text


@given(st.binary(max_size=300), st.integers(0, 255))
def test_decode_text_never_raises(data: bytes, data_coding: int) -> None:
    assert isinstance(decode_text(data, data_coding), str)


@given(st.binary(max_size=200))
def test_binary_codings_lossless(data: bytes) -> None:
    for data_coding in (0x02, 0x03, 0x04, 0xF4):
        assert decode_text(data, data_coding).encode("latin-1") == data
