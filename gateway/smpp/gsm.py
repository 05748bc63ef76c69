"""GSM 03.38 (3GPP TS 23.038 §6.2.1), unpacked: one septet per octet, as SMPP carries
it (nothing in the gateway packs septets).

The alphabet is the pinned `gsm0338` library's (its basic and extension character
sets, by Unicode name). Its `Codec` codes one character at a time in Python: a 30
character ASCII MO decodes in 8.2 us there against 0.5 us through `codecs.charmap_decode`
over the same table (encodes in 24 us against 0.6), and the MO hot path decodes every
deliver_sm. So the tables come from the library and the coding runs through the C
charmap codec (README: do not hand-write what a library does unless a benchmark shows
it is the bottleneck); tests/test_gsm.py checks both agree on every text in the
alphabet.

Decoding is tolerant and never raises (where the library's raises or replaces, see
`gsm_decode`); encoding raises `UnicodeEncodeError` for text outside the alphabet.
"""

from __future__ import annotations

import codecs
import re
import unicodedata
from collections.abc import Callable, Mapping
from typing import cast

from gsm0338.charset import BASIC_CHARACTER_SET, BASIC_CHARACTER_SET_EXTENSION

__all__ = [
    "GSM_BASIC",
    "GSM_ESCAPE",
    "GSM_EXTENSION",
    "gsm_decode",
    "gsm_encode",
    "gsm_fits",
    "gsm_septets",
]

GSM_ESCAPE = 0x1B

#: The default alphabet indexed by septet. Position 0x1B is ESC ('\x1b'): it
#: introduces the extension table and is not itself an encodable character.
GSM_BASIC: str = "".join(unicodedata.lookup(BASIC_CHARACTER_SET[code]) for code in range(128))

#: The extension table: character -> code; each encodes as 0x1B followed by the code.
GSM_EXTENSION: dict[str, int] = {
    unicodedata.lookup(name): code for code, name in BASIC_CHARACTER_SET_EXTENSION.items()
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
    character X, 0x1B 0x1B as a space, and a trailing lone 0x1B is dropped (the
    library's codec refuses the escapes: an MO is never lost for them)."""
    text = _charmap_decode(data, "replace", _GSM_DECODING_TABLE)[0]
    if GSM_ESCAPE in data:
        text = _ESCAPE_RE.sub(_unescape, text)
    return text
