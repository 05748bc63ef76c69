"""gateway/smpp/gsm.py against the `gsm0338` library it takes the alphabet from: the
fast charmap codec must code every text exactly as the library's own `Codec` does."""

from __future__ import annotations

from gsm0338 import Codec
from hypothesis import example, given
from hypothesis import strategies as st

from gateway.smpp.gsm import (
    GSM_BASIC,
    GSM_ESCAPE,
    GSM_EXTENSION,
    gsm_decode,
    gsm_encode,
    gsm_fits,
    gsm_septets,
)

LIBRARY = Codec()
GSM_CHARS = [ch for i, ch in enumerate(GSM_BASIC) if i != GSM_ESCAPE] + list(GSM_EXTENSION)
gsm_texts = st.text(alphabet=st.sampled_from(GSM_CHARS), max_size=400)
# mostly GSM, some not: what an MT's text looks like before the alphabet is chosen
any_texts = st.text(alphabet=st.one_of(st.sampled_from(GSM_CHARS), st.characters()),
                    max_size=200)


@given(gsm_texts)
def test_encode_and_decode_agree_with_the_library(text: str) -> None:
    data = gsm_encode(text)
    assert data == LIBRARY.encode(text)[0]
    assert gsm_decode(data) == LIBRARY.decode(data)[0] == text
    assert gsm_septets(text) == len(data)


@given(any_texts)
@example("\x1b")  # found by hypothesis in CI
def test_what_fits_is_what_the_library_encodes(text: str) -> None:
    """One deliberate difference: the library encodes a bare ESC (U+001B) as the 0x1B
    that starts an extension sequence, which a handset would read with the next septet;
    ours refuses it (gateway/smpp/gsm.py: ESC is deliberately not encodable)."""
    try:
        LIBRARY.encode(text)
    except UnicodeEncodeError:
        fits = False
    else:
        fits = "\x1b" not in text
    assert gsm_fits(text) is fits


def test_a_bare_escape_does_not_fit() -> None:
    assert LIBRARY.encode("\x1b")[0] == bytes([GSM_ESCAPE])  # what we refuse to send
    assert not gsm_fits("\x1b") and not gsm_fits("A\x1bB")


@given(st.binary(max_size=300).map(lambda b: b.replace(bytes([GSM_ESCAPE]), b"")))
def test_any_octets_decode_as_the_library_replaces_them(data: bytes) -> None:
    """Octets >= 0x80 (not GSM) become U+FFFD in both. Escapes the library refuses
    (0x1B then a code not in the extension table, 0x1B 0x1B) are ours alone: see
    tests/test_text.py."""
    assert gsm_decode(data) == LIBRARY.decode(data, "replace")[0]
