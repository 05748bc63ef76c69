"""gateway.msisdn: one canonical spelling of every phone number (issue 9 point 2)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.msisdn import InvalidNumber, canonical, canonical_or_raw

SAME = [
    ("+15559876543", "1", None, "15559876543"),
    ("15559876543", "1", None, "15559876543"),
    ("5559876545", "1", None, "15559876545"),
    ("(555) 987-6545", "1", None, "15559876545"),
    ("555.987.6545", "1", None, "15559876545"),
    ("+1 555 987 6545", "1", None, "15559876545"),
    ("447700900123", "1", None, "447700900123"),   # international, written without +
    ("447700900123", "44", 1, "447700900123"),
    ("07700900123", "44", None, "447700900123"),   # national in the UK
    ("7700900123", "44", 0, "447700900123"),
    ("15559876543", "1", 1, "15559876543"),
]


@pytest.mark.parametrize(("raw", "cc", "ton", "want"), SAME)
def test_canonical(raw: str, cc: str, ton: int | None, want: str) -> None:
    assert canonical(raw, cc, ton=ton) == want


BAD = [
    "15551234567\n",          # `$` matched before the newline in the old regex
    "1555123456\u0037",       # fine: ASCII 7 (control case for the next one)
    "\uff11\uff15\uff15\uff15\uff11\uff12\uff13\uff14\uff15\uff16\uff17",  # fullwidth
    "\u0661\u0665\u0665\u0665\u0661\u0662\u0663\u0664\u0665\u0666\u0667",  # Arabic-Indic
    "",
    "+",
    "ACMEBANK",
    "1555|5551000200",
    "1555",
    "12\x0034",
]


@pytest.mark.parametrize("raw", BAD)
def test_refused(raw: str) -> None:
    if raw == "1555123456\u0037":
        assert canonical(raw) == "15551234567"
        return
    with pytest.raises(InvalidNumber):
        canonical(raw)


def test_or_raw_keeps_what_is_not_a_number() -> None:
    assert canonical_or_raw("ACMEBANK", "1", ton=5) == "ACMEBANK"
    assert canonical_or_raw("12345", "1") == "12345"
    assert canonical_or_raw("+15559876543", "1", ton=1) == "15559876543"
    assert canonical_or_raw("5559876543", "1", ton=0) == "15559876543"


@given(st.text(max_size=30))
def test_any_text_is_canonical_or_refused(raw: str) -> None:
    try:
        out = canonical(raw)
    except InvalidNumber:
        return
    assert out.isascii() and out.isdigit() and 3 <= len(out) <= 17
    assert canonical(out, ton=1) == out  # idempotent
    assert canonical("+" + out) == out
