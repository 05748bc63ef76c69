"""gateway.msisdn: one canonical spelling of every phone number (issue 9 point 2)."""

from __future__ import annotations

import json
from collections.abc import Callable

import phonenumbers
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.commands import MAX_TEXT, Command, InvalidSend, parse, validate_send
from gateway.config import Config, ConfigError, parse_config
from gateway.msisdn import (
    CACHED,
    InvalidNumber,
    _canonical_by_library,
    _canonical_or_raw,
    canonical,
    canonical_or_raw,
)

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


def test_the_spellings_cached_stay_bounded() -> None:
    """Issue 12: every MO from a new sender added an entry to two caches of 65,536 each,
    ~40 MB of the daemon's memory once that many people had written. The intake's call
    caches a sender once, and at most CACHED of them."""
    canonical.cache_clear()
    _canonical_or_raw.cache_clear()

    def cached() -> int:
        return canonical.cache_info().currsize + _canonical_or_raw.cache_info().currsize

    for i in range(100):  # as the intake calls it: one entry per sender
        assert canonical_or_raw(f"4477009{i:05d}", "1", ton=1) == f"4477009{i:05d}"
    assert cached() == 100
    for i in range(100, 2 * CACHED):
        canonical_or_raw(f"4477009{i:05d}", "1", ton=1)
    assert cached() <= CACHED <= 4096
    for i in range(2 * CACHED):
        canonical(f"1666{i:07d}", "1")
    assert canonical.cache_info().currsize <= CACHED
    # a repeat sender is still a cache hit
    hits = _canonical_or_raw.cache_info().hits
    assert canonical_or_raw(f"4477009{2 * CACHED - 1:05d}", "1", ton=1) == (
        f"4477009{2 * CACHED - 1:05d}")
    assert _canonical_or_raw.cache_info().hits == hits + 1
    # a full NANP number in plain digits (most senders here) takes no entry at all
    before = cached()
    for i in range(1000):
        assert canonical_or_raw(f"1555{i:07d}", "1", ton=1) == f"1555{i:07d}"
    assert cached() == before


def test_local_only_numbers_have_no_e164_form() -> None:
    # 7 digits are "possible" in country 1 only as a local number: no country, no route.
    with pytest.raises(InvalidNumber):
        canonical("5551234", "1")


def test_error_quotes_a_huge_value_briefly() -> None:
    with pytest.raises(InvalidNumber) as err:
        canonical("1" * 100_000 + "x")
    assert len(str(err.value)) < 300 and "100001 characters" in str(err.value)


# ------------------------------------------------- NANP fast path (issue 12, MO hot path)


def _outcome(fn: Callable[..., str], raw: str, cc: str, ton: int | None) -> str:
    try:
        return fn(raw, cc, ton=ton)
    except InvalidNumber:
        return "InvalidNumber"


_NATIONAL = st.from_regex(r"[2-9][0-9]{9}", fullmatch=True)


@st.composite
def _spellings(draw: st.DrawFn) -> str:
    """Digits in the fast path's shapes and around them, maybe with a plus, formatted."""
    digits = draw(st.one_of(
        st.text("0123456789", min_size=9, max_size=12),
        _NATIONAL,
        _NATIONAL.map(lambda n: "1" + n),
        st.from_regex(r"[0-9][2-9][0-9]{9}", fullmatch=True),
    ))
    text = ("+" if draw(st.booleans()) else "") + digits
    for _ in range(draw(st.integers(0, 4))):
        at = draw(st.integers(1 if text.startswith("+") else 0, len(text)))
        text = text[:at] + draw(st.sampled_from(" ().-")) + text[at:]
    return text


@given(_spellings(), st.sampled_from(["1", "44", "86"]), st.sampled_from([None, 0, 1, 2]))
def test_nanp_fast_path_answers_as_phonenumbers(raw: str, cc: str, ton: int | None) -> None:
    assert _outcome(canonical.__wrapped__, raw, cc, ton) == _outcome(
        _canonical_by_library, raw, cc, ton)


@given(st.one_of(_spellings(), st.text(max_size=24)), st.sampled_from(["1", "44", "86"]),
       st.sampled_from([None, 0, 1, 2, 5]))
def test_the_intakes_uncached_path_answers_as_the_cached_one(
        raw: str, cc: str, ton: int | None) -> None:
    """`canonical_or_raw` answers plain NANP digits before its cache: the same answer."""
    assert canonical_or_raw(raw, cc, ton=ton) == _canonical_or_raw.__wrapped__(raw, cc, ton)


def test_nanp_sweep_answers_as_phonenumbers() -> None:
    """Every area code 000-999, ten exchanges each (first digit 0-9: N11, 555, 800 and
    unassigned codes among them), in the spellings the fast path takes and beside them
    (11 digits after a plus that are not 1 + NXX NXX XXXX, often no country code):
    70,000 cases. 000-199 are not NANP area codes (`011...` read nationally is an
    international call prefix, refused); China (86) reads many `1` + 10 digits nationally
    (mobiles, `13...`-`19...`), so those are not the NANP number the fast path would say."""
    cases = 0
    for area in range(1000):
        for first in "0123456789":
            national = f"{area:03d}{first}{area % 100:02d}{area * 7 % 10_000:04d}"
            nanp = area >= 200  # phonenumbers' own answer is "1" + national
            for raw, cc, ton, is_nanp in [
                    (national, "1", 0, nanp), (f"+{national}{first}", "1", None, False),
                    ("1" + national, "1", None, nanp), (national, "1", 1, False),
                    ("+1" + national, "44", None, nanp), ("1" + national, "44", 1, nanp),
                    ("1" + national, "86", None, False)]:
                want = _outcome(_canonical_by_library, raw, cc, ton)
                assert not is_nanp or want == "1" + national, raw
                assert _outcome(canonical.__wrapped__, raw, cc, ton) == want, (raw, cc, ton)
                cases += 1
    assert cases == 70_000


def test_nanp_senders_skip_phonenumbers(monkeypatch: pytest.MonkeyPatch) -> None:
    """The MO intake's NANP senders are answered without phonenumbers (~2 us instead of
    ~35 us a call); everything else still goes to it."""
    def refused(*args: object) -> None:
        raise AssertionError("phonenumbers.parse called")

    monkeypatch.setattr(phonenumbers, "parse", refused)
    f = canonical.__wrapped__
    assert f("15551234567", "1", ton=1) == "15551234567"
    assert f("+1 (555) 123-4567", "44") == "15551234567"
    assert f("555.123.4567", "1", ton=0) == "15551234567"
    assert f("1-555-123-4567", "1") == "15551234567"
    assert canonical_or_raw("15551234567", "1", ton=1) == "15551234567"
    for other, cc, ton in [("5551234567", "44", None), ("1555123456", "1", None),
                           ("10551234567", "1", 1), ("447700900123", "44", 1),
                           ("5551234567", "1", 1)]:
        with pytest.raises(AssertionError, match=r"phonenumbers\.parse called"):
            f(other, cc, ton=ton)


# ------------------------------------------------------------------ config: forward_sms


def _config(forward: list[str], country_code: str = "1") -> Config:
    return parse_config({
        "gateway": {"country_code": country_code},
        "smsc": [{"name": "sim", "system_id": "test"}],
        "number": [{"vmn": "5551000100", "sender_id": "ACME",
                    "default": {"forward_sms": forward}}],
    }, file="mem.toml", env={})


def test_forward_sms_is_canonical_in_the_gateway_country() -> None:
    cfg = _config(["+1 555 987 6543", "5559876545", "(555) 987-6546"])
    assert cfg.numbers[0].default.forward_sms == ("15559876543", "15559876545", "15559876546")
    uk = _config(["07700 900123", "+15559876543"], country_code="44")
    assert uk.numbers[0].default.forward_sms == ("447700900123", "15559876543")


@pytest.mark.parametrize("bad", ["15551234567\n", "\uff11" * 11, "ACME", "5551234"])
def test_forward_sms_not_a_number_names_the_key(bad: str) -> None:
    with pytest.raises(ConfigError) as err:
        _config(["15559876543", bad])
    assert err.value.path == "number[0].default.forward_sms[1]"
    assert "expected a phone number" in str(err.value)


# ------------------------------------------------------- one validation of every send

CFG = _config([])


@pytest.mark.parametrize(("to", "sender", "text", "want"), [
    ("+1 555 987 6543", "5551000100", "hi", Command("15559876543", "5551000100", "hi", None)),
    ("5559876545", "ACME", "hi", Command("15559876545", "ACME", "hi", None)),
    ("447700900123", "ACME", "x" * MAX_TEXT, Command("447700900123", "ACME", "x" * MAX_TEXT,
                                                     None)),
])
def test_validate_send_returns_the_canonical_command(
        to: str, sender: str, text: str, want: Command) -> None:
    assert validate_send(CFG, to=to, sender=sender, text=text) == want


@pytest.mark.parametrize(("to", "sender", "text", "field"), [
    ("15551234567\n", "ACME", "hi", "to"),
    ("\uff11\uff15\uff15\uff15\uff19\uff18\uff17\uff16\uff15\uff14\uff13", "ACME", "hi", "to"),
    ("\u0661\u0665\u0665\u0665\u0669\u0668\u0667\u0666\u0665\u0664\u0663", "ACME", "hi", "to"),
    ("", "ACME", "hi", "to"),
    (15559876543, "ACME", "hi", "to"),
    ("15559876543", "9999999999", "hi", "from"),
    ("15559876543", "acme", "hi", "from"),
    ("15559876543", None, "hi", "from"),
    ("15559876543", "ACME", "", "text"),
    ("15559876543", "ACME", "x" * (MAX_TEXT + 1), "text"),
    ("15559876543", "ACME", ["hi"], "text"),
])
def test_validate_send_refuses(to: object, sender: object, text: object, field: str) -> None:
    with pytest.raises(InvalidSend) as err:
        validate_send(CFG, to=to, sender=sender, text=text)
    assert err.value.field == field and str(err.value).startswith(f"{field}: ")


def test_mqtt_parse_uses_the_same_validation() -> None:
    cmd, error, _ = parse(json.dumps({"to": "+1 (555) 987-6543", "from": "ACME",
                                      "text": "hi", "id": 7}).encode(), CFG)
    assert error is None and cmd == Command("15559876543", "ACME", "hi", "7")
    cmd, error, raw = parse(json.dumps({"to": "15551234567\n", "from": "ACME",
                                        "text": "hi"}).encode(), CFG)
    assert cmd is None and error is not None and error.startswith("to: not a phone number")
    assert raw["to"] == "15551234567\n"
