"""Short-message text: GSM 03.38 (unpacked), UCS-2/UTF-16BE, data_coding and UDH concat.

Pure functions, no IO. SMPP carries GSM 03.38 one septet per octet, so nothing here
packs septets. Decoders are tolerant and never raise; encoders raise
`UnicodeEncodeError` for text the alphabet cannot represent.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import cast

from gateway.smpp.pdu import ESM_UDHI

__all__ = [
    "GSM_BASIC",
    "GSM_EXTENSION",
    "Concat",
    "MtEncoding",
    "MtPart",
    "decode_text",
    "encode_mt",
    "gsm_decode",
    "gsm_encode",
    "gsm_fits",
    "gsm_septets",
    "join_parts",
    "split_udh",
    "ucs2_decode",
    "ucs2_encode",
]

# --- GSM 03.38 tables (3GPP TS 23.038 §6.2.1) -------------------------------------

GSM_ESCAPE = 0x1B

#: The default alphabet indexed by septet. Position 0x1B is ESC (shown here as
#: '\x1b'): it introduces the extension table and is not itself an encodable character.
GSM_BASIC: str = (
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)

#: The extension table: character -> code; each encodes as 0x1B followed by the code.
GSM_EXTENSION: dict[str, int] = {
    "\x0c": 0x0A,  # form feed
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

assert len(GSM_BASIC) == 128 and len(set(GSM_BASIC)) == 128

_UNDEFINED = "\ufffe"  # marks an unmapped byte in a charmap decoding table

# bytes -> str: 0x00-0x7F per GSM_BASIC, 0x80-0xFF undefined (decoded as U+FFFD).
_GSM_DECODING_TABLE = GSM_BASIC + _UNDEFINED * 128

# str -> bytes for codecs.charmap_encode; ESC is deliberately not encodable.
_GSM_ENCODING_MAP: dict[int, int | bytes] = {
    ord(ch): code for code, ch in enumerate(GSM_BASIC) if code != GSM_ESCAPE
}
_GSM_ENCODING_MAP.update({ord(ch): bytes((GSM_ESCAPE, code)) for ch, code in GSM_EXTENSION.items()})

# After basic decoding, ESC + X reads as '\x1b' + GSM_BASIC[X]; map that X-char to
# the extension char. Unknown escapes fall back to the basic char (TS 23.038 note).
_ESCAPED: dict[str, str] = {GSM_BASIC[code]: ch for ch, code in GSM_EXTENSION.items()}
_ESCAPED["\x1b"] = " "  # ESC ESC: reserved "another extension table" -> space
_ESCAPE_RE = re.compile(r"\x1b[\s\S]?")

_GSM_FITS_RE = re.compile("[" + re.escape("".join(map(chr, _GSM_ENCODING_MAP))) + "]*")
_GSM_EXTENSION_CHARS = tuple(GSM_EXTENSION)

# ASCII fast path for gsm_encode: ASCII octet -> GSM septet for the ASCII characters
# of the basic table. Text with any other ASCII octet (controls, backquote, extension
# characters) is not wholly in _ASCII_BASIC and takes the general charmap path.
_ASCII_TO_GSM = bytearray(range(256))
for _code, _ch in enumerate(GSM_BASIC):
    if _ch.isascii() and _code != GSM_ESCAPE:
        _ASCII_TO_GSM[ord(_ch)] = _code
_ASCII_TO_GSM_TABLE = bytes(_ASCII_TO_GSM)
_ASCII_BASIC = bytes(ord(ch) for ch in GSM_BASIC if ch.isascii() and ch != "\x1b")
del _ASCII_TO_GSM, _code, _ch

# typeshed types charmap tables as dict[int, int] only; both calls accept these at runtime.
_charmap_encode = cast(
    Callable[[str, str, Mapping[int, int | bytes]], tuple[bytes, int]], codecs.charmap_encode
)
_charmap_decode = cast(Callable[[bytes, str, str], tuple[str, int]], codecs.charmap_decode)


def _unescape(match: re.Match[str]) -> str:
    seq = match.group()
    if len(seq) == 1:  # trailing lone ESC
        return ""
    return _ESCAPED.get(seq[1], seq[1])


def gsm_encode(text: str) -> bytes:
    """Encode text as unpacked GSM 03.38; raises UnicodeEncodeError if it does not fit."""
    if text.isascii():
        raw = text.encode("ascii")
        if not raw.translate(None, _ASCII_BASIC):
            return raw.translate(_ASCII_TO_GSM_TABLE)
    try:
        return _charmap_encode(text, "strict", _GSM_ENCODING_MAP)[0]
    except UnicodeEncodeError as exc:
        raise UnicodeEncodeError(
            "gsm03.38", text, exc.start, exc.end, "character not in the GSM 03.38 alphabet"
        ) from None


def gsm_fits(text: str) -> bool:
    """True when every character of text is in the GSM 03.38 basic or extension table."""
    return _GSM_FITS_RE.fullmatch(text) is not None


def gsm_septets(text: str) -> int:
    """Septets text takes in GSM 03.38 (extension characters count 2).

    Raises UnicodeEncodeError if text does not fit."""
    if not gsm_fits(text):
        gsm_encode(text)  # raises with the offending position
    return len(text) + sum(text.count(ch) for ch in _GSM_EXTENSION_CHARS)


def gsm_decode(data: bytes) -> str:
    """Decode unpacked GSM 03.38; never raises.

    Octets >= 0x80 become U+FFFD, an unknown escape 0x1B X decodes as the basic
    character X, 0x1B 0x1B as a space, and a trailing lone 0x1B is dropped."""
    text = _charmap_decode(data, "replace", _GSM_DECODING_TABLE)[0]
    if GSM_ESCAPE in data:
        text = _ESCAPE_RE.sub(_unescape, text)
    return text


# --- UCS-2 / UTF-16BE ----------------------------------------------------------------


def ucs2_encode(text: str) -> bytes:
    """Encode text as UTF-16BE (astral characters as surrogate pairs)."""
    return text.encode("utf-16-be")


def ucs2_decode(data: bytes) -> str:
    """Decode UTF-16BE; never raises. Valid surrogate pairs join into one code point,
    a lone surrogate or an odd trailing octet becomes U+FFFD."""
    return data.decode("utf-16-be", "replace")


# --- data_coding ---------------------------------------------------------------------


def _latin1(data: bytes) -> str:
    return data.decode("latin-1")


def _ascii(data: bytes) -> str:
    return data.decode("ascii", "replace")


def _cyrillic(data: bytes) -> str:
    return data.decode("iso8859-5", "replace")


def _hebrew(data: bytes) -> str:
    return data.decode("iso8859-8", "replace")


def _by_alphabet(bits: int) -> str:
    """Decoder name for the TS 23.038 alphabet bits (bits 3-2 of the DCS)."""
    return ("gsm", "latin1", "ucs2", "latin1")[(bits >> 2) & 0x03]


_DECODERS = {
    "gsm": gsm_decode,
    "latin1": _latin1,
    "ucs2": ucs2_decode,
    "ascii": _ascii,
    "cyrillic": _cyrillic,
    "hebrew": _hebrew,
}

_SMPP_CODINGS = {
    0x00: "gsm",  # SMSC default alphabet; taken as GSM 03.38 unpacked
    0x01: "ascii",  # IA5 (CCITT T.50) / ASCII
    0x02: "latin1",  # 8-bit binary
    0x03: "latin1",  # Latin-1 (ISO-8859-1)
    0x04: "latin1",  # 8-bit binary
    0x06: "cyrillic",  # ISO-8859-5
    0x07: "hebrew",  # ISO-8859-8
    0x08: "ucs2",  # UCS-2 (sent as UTF-16BE in practice)
}


def _decoder_name(data_coding: int) -> str:
    """Which decoder a data_coding value selects (SMPP 3.4 §5.2.19, TS 23.038 §4)."""
    dc = data_coding & 0xFF
    if dc in _SMPP_CODINGS:
        return _SMPP_CODINGS[dc]
    if 0x10 <= dc <= 0x7F:
        # General data coding (0x10-0x3F) and automatic deletion (0x40-0x7F) groups.
        return _by_alphabet(dc)
    if 0xC0 <= dc <= 0xDF:  # message waiting indication, GSM 7-bit
        return "gsm"
    if 0xE0 <= dc <= 0xEF:  # message waiting indication, UCS-2
        return "ucs2"
    if dc >= 0xF0:  # data coding / message class: bit 2 set = 8-bit data
        return "latin1" if dc & 0x04 else "gsm"
    return "latin1"


_DECODER_BY_DC = tuple(_DECODERS[_decoder_name(dc)] for dc in range(256))


def decode_text(data: bytes, data_coding: int) -> str:
    """Decode a short_message (or message_payload) by its data_coding; never raises.

    8-bit binary and unknown codings decode as Latin-1, so no octet is lost."""
    return _DECODER_BY_DC[data_coding & 0xFF](data)


# --- User data header / concatenation (TS 23.040 §9.2.3.24) --------------------------

IEI_CONCAT_8 = 0x00
IEI_CONCAT_16 = 0x08


@dataclass(frozen=True, slots=True, kw_only=True)
class Concat:
    """A concatenated-SMS information element."""

    ref: int
    total: int
    seq: int
    ref_bits: int  # 8 or 16


def _concat_from_ie(iei: int, value: bytes) -> Concat | None:
    if iei == IEI_CONCAT_8 and len(value) == 3:
        ref, total, seq, bits = value[0], value[1], value[2], 8
    elif iei == IEI_CONCAT_16 and len(value) == 4:
        ref, total, seq, bits = (value[0] << 8) | value[1], value[2], value[3], 16
    else:
        return None
    if total < 1 or not 1 <= seq <= total:
        return None
    return Concat(ref=ref, total=total, seq=seq, ref_bits=bits)


def split_udh(short_message: bytes) -> tuple[Concat | None, bytes]:
    """Split a UDHI short_message into (concat IE or None, body after the UDH).

    A malformed UDH gives (None, short_message) unchanged; never raises. When the
    concat IE repeats, the last valid one wins."""
    if not short_message:
        return None, short_message
    end = 1 + short_message[0]
    if end > len(short_message):
        return None, short_message
    concat: Concat | None = None
    pos = 1
    while pos < end:
        if pos + 2 > end:
            return None, short_message
        iei, length = short_message[pos], short_message[pos + 1]
        start = pos + 2
        pos = start + length
        if pos > end:
            return None, short_message
        if iei in (IEI_CONCAT_8, IEI_CONCAT_16):
            found = _concat_from_ie(iei, short_message[start:pos])
            if found is not None:
                concat = found
    return concat, short_message[end:]


# --- Mobile-terminated encoding ------------------------------------------------------

GSM_SINGLE_SEPTETS = 160
GSM_PART_SEPTETS = 153
UCS2_SINGLE_OCTETS = 140
UCS2_PART_OCTETS = 134
MAX_PARTS = 255


@dataclass(frozen=True, slots=True, kw_only=True)
class MtPart:
    """One submit_sm worth of short_message."""

    short_message: bytes
    esm_class: int  # ESM_UDHI (0x40) when it carries a UDH, else 0


@dataclass(frozen=True, slots=True, kw_only=True)
class MtEncoding:
    """Text encoded for submit_sm: one data_coding, one or more parts."""

    data_coding: int
    parts: tuple[MtPart, ...]


def _gsm_chunks(data: bytes) -> list[bytes]:
    """Cut encoded GSM into <= 153-octet chunks without splitting an escape pair."""
    chunks: list[bytes] = []
    pos, n = 0, len(data)
    while pos < n:
        end = min(pos + GSM_PART_SEPTETS, n)
        # 0x1B only ever appears as an escape lead (codes are never 0x1B).
        if end < n and data[end - 1] == GSM_ESCAPE:
            end -= 1
        chunks.append(data[pos:end])
        pos = end
    return chunks


def _ucs2_chunks(data: bytes) -> list[bytes]:
    """Cut UTF-16BE into <= 134-octet chunks without splitting a surrogate pair."""
    chunks: list[bytes] = []
    pos, n = 0, len(data)
    while pos < n:
        end = min(pos + UCS2_PART_OCTETS, n)
        if end < n and 0xD8 <= data[end - 2] <= 0xDB:  # high surrogate last
            end -= 2
        chunks.append(data[pos:end])
        pos = end
    return chunks


def encode_mt(text: str, ref: int, coding: str | None = None) -> MtEncoding:
    """Encode text for submit_sm: GSM 03.38 (data_coding 0) when it fits, else UCS-2 (8);
    `coding` "gsm" or "ucs2" forces one (the HTTP API's `coding`).

    Long text is split into parts with a `05 00 03 ref total seq` UDH (ref & 0xFF).
    Raises ValueError past 255 parts, or when `coding` is "gsm" and the text does not
    fit GSM 03.38."""
    if coding == "gsm" and not gsm_fits(text):
        raise ValueError("the text does not fit GSM 03.38 (use coding ucs2 or auto)")
    if coding != "ucs2" and gsm_fits(text):
        data_coding, data = 0, gsm_encode(text)
        single, chunker = GSM_SINGLE_SEPTETS, _gsm_chunks
    else:
        data_coding, data = 8, ucs2_encode(text)
        single, chunker = UCS2_SINGLE_OCTETS, _ucs2_chunks
    if len(data) <= single:
        return MtEncoding(data_coding=data_coding, parts=(MtPart(short_message=data, esm_class=0),))
    chunks = chunker(data)
    total = len(chunks)
    if total > MAX_PARTS:
        raise ValueError(f"text needs {total} parts, more than {MAX_PARTS}")
    ref8 = ref & 0xFF
    parts = tuple(
        MtPart(
            short_message=bytes((0x05, IEI_CONCAT_8, 0x03, ref8, total, seq)) + chunk,
            esm_class=ESM_UDHI,
        )
        for seq, chunk in enumerate(chunks, start=1)
    )
    return MtEncoding(data_coding=data_coding, parts=parts)


def join_parts(parts: list[bytes], data_coding: int) -> str:
    """Decode the concatenated bodies (UDH already removed) of a multipart message.

    Raw octets are joined before decoding, so an escape or surrogate pair a sender
    split across parts still decodes as one character."""
    return decode_text(b"".join(parts), data_coding)
