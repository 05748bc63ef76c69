"""Short-message text: UCS-2/UTF-16BE, data_coding, UDH concat and MT splitting; GSM
03.38 (unpacked) is `gateway/smpp/gsm.py`'s, re-exported here.

Pure functions, no IO. Decoders are tolerant and never raise; encoders raise
`UnicodeEncodeError` for text the alphabet cannot represent.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.smpp.gsm import (
    GSM_BASIC,
    GSM_ESCAPE,
    GSM_EXTENSION,
    gsm_decode,
    gsm_encode,
    gsm_fits,
    gsm_septets,
)
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


def _default_alphabet(text: str, alphabet: str) -> bytes | None:
    """`text` in the bind's default alphabet (data_coding 0), or None if it does not fit."""
    if alphabet == "gsm":
        return gsm_encode(text) if gsm_fits(text) else None
    try:
        return text.encode("ascii" if alphabet == "ascii" else "latin-1")
    except UnicodeEncodeError:
        return None


def encode_mt(text: str, ref: int, alphabet: str = "gsm", coding: str | None = None) -> MtEncoding:
    """Encode text for submit_sm: the bind's default alphabet (data_coding 0: GSM 03.38,
    or ASCII / Latin-1 on an SMSC that uses those, Kannel's alt-charset) when it fits,
    else UCS-2 (8). One octet a character in all three: 160 in one part, 153 a part.
    `coding` "gsm" or "ucs2" forces one (the HTTP API's `coding`; "gsm" means the
    default alphabet, data_coding 0).

    Long text is split into parts with a `05 00 03 ref total seq` UDH (ref & 0xFF).
    Raises ValueError past 255 parts, or when `coding` is "gsm" and the text does not
    fit the default alphabet."""
    default = None if coding == "ucs2" else _default_alphabet(text, alphabet)
    if coding == "gsm" and default is None:
        raise ValueError("the text does not fit the default alphabet (use coding ucs2 or auto)")
    if default is not None:
        data_coding, data = 0, default
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
