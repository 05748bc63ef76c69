"""One spelling of a phone number (SPEC §3, issue 9 point 2).

Every MSISDN that enters the gateway (MO intake, CLI, MQTT commands, the HTTP API, email
replies, `forward_sms` in the configuration) is turned into its canonical form here,
once, at the edge: **E.164 digits without the leading `+`** (`15559876543`), the form
SMPP carries with TON 1 (international). Everything inside (opt-out state, the message
log, leads, MT destinations) compares canonical strings only, so `+15559876543`,
`15559876543`, `(555) 987-6543` and the national `5559876543` (with `[gateway]
country_code = "1"`) are one person.

Parsing is `phonenumbers` (Google's libphonenumber metadata): national numbers take the
country of `[gateway] country_code`; a number written with `+`, or received with TON 1,
is international. Only ASCII digits count: fullwidth or Arabic-Indic digits, control
characters (a trailing newline included) and letters are refused, never translated.

One shape is not handed to phonenumbers (issue 12): a full NANP number, `1` + NXX NXX
XXXX with a `+` or TON 1 (any gateway country), or NXX NXX XXXX / 1 NXX NXX XXXX read
nationally in country 1. The MO intake canonicalises every sender, and a burst from
many people misses the cache every time: `phonenumbers.parse` +
`is_possible_number_with_reason` cost ~35-49 us a call on the 2-core bench machine and
was 36% of the daemon's main thread (py-spy, 10k-sender no-action burst); the fast path
answers the same senders in ~2-3 us, and adds ~0.3 us to the numbers it does not take.
Its answer is phonenumbers' own ("1" + the 10 digits: the US metadata of phonenumbers
9.0.43 takes every `[2-9]\\d{9}` as a national number of length 10), which the tests
check against `_canonical_by_library` (property test, 70,000-case sweep).

Pure: no IO, imports nothing of the gateway.
"""

from __future__ import annotations

import functools
import re

import phonenumbers

__all__ = ["CACHED", "InvalidNumber", "canonical", "canonical_or_raw", "shown"]

# What a person may type around the digits: spaces, dashes, dots, brackets, one
# leading plus. Anything else (a newline, a letter, a non-ASCII digit) is an error.
_MAX_CHARS = 40
_ALLOWED = re.compile(rf"\+?[0-9 ().\-]{{1,{_MAX_CHARS}}}")
_FORMATTING = str.maketrans("", "", " ().-")
_POSSIBLE = phonenumbers.ValidationResult.IS_POSSIBLE
_NANP_FIRST = "23456789"  # first digit of a NANP area code (and of a 10-digit number)
TON_INTERNATIONAL = 1
TON_ALPHANUMERIC = 5
_SHOWN = 40  # characters of a refused value quoted back in an error
# Spellings kept by each cache below (~300 B each, the caller's string included): a
# sender who writes again, the parts of a long MO. Every new sender adds one, so this
# is memory the daemon keeps: 65,536 in two caches held ~40 MB once that many people
# had written (issue 12's RSS target is 100 MB); 4,096 is ~1.2 MB and still covers the
# parts of a long MO (seconds apart) at 4,500 MO/s from as many senders.
CACHED = 4096


class InvalidNumber(ValueError):
    """Not a phone number; the message says why, in words an operator can act on."""


def shown(raw: str) -> str:
    """`raw` quoted for an error message, cut short: a refused value can be megabytes."""
    return repr(raw) if len(raw) <= _SHOWN else f"{raw[:_SHOWN]!r}... ({len(raw)} characters)"


@functools.lru_cache(maxsize=CACHED)
def canonical(raw: str, country_code: str = "1", *, ton: int | None = None) -> str:
    """The canonical E.164 digits (no `+`) of `raw`, or InvalidNumber.

    `country_code` (`[gateway] country_code`) is the country of national numbers.
    `ton` is the SMPP type of number when the number came from an SMSC: 1
    (international) means the digits already carry their country code."""
    digits, international = _checked(raw, ton)
    return _nanp(digits, international, country_code) or _by_library(
        raw, digits, international, country_code)


def _canonical_by_library(raw: str, country_code: str = "1", *, ton: int | None = None) -> str:
    """`canonical` without the NANP fast path: phonenumbers' answer for every number (the
    tests compare the two)."""
    digits, international = _checked(raw, ton)
    return _by_library(raw, digits, international, country_code)


def _checked(raw: str, ton: int | None) -> tuple[str, bool]:
    """The ASCII digits of `raw` (formatting and the plus removed) and whether they are
    international, or InvalidNumber when `raw` is not written as a phone number."""
    if not isinstance(raw, str):
        raise InvalidNumber(f"expected a phone number as a string (got {type(raw).__name__})")
    if _plain_digits(raw):
        # What an SMSC sends, which `_ALLOWED` takes as it is (the regex was ~1 us a MO
        # of a burst from many senders, each a cache miss).
        return raw, ton == TON_INTERNATIONAL
    if not _ALLOWED.fullmatch(raw):
        raise InvalidNumber(
            f"not a phone number (got {shown(raw)}; only ASCII digits, an optional leading +"
            " and spaces, dashes, dots or brackets)")
    digits = raw.translate(_FORMATTING)
    international = digits.startswith("+") or ton == TON_INTERNATIONAL
    digits = digits.lstrip("+")
    if not digits:
        raise InvalidNumber(f"not a phone number (got {shown(raw)}: no digits)")
    return digits, international


def _plain_digits(raw: str) -> bool:
    """ASCII digits only, no more than `_ALLOWED` takes: its own answer, without it."""
    return raw.isascii() and raw.isdigit() and len(raw) <= _MAX_CHARS


def _nanp(digits: str, international: bool, country_code: str) -> str | None:
    """The canonical form of a full NANP number without phonenumbers, or None for any
    other shape (phonenumbers decides those). Only the shapes where phonenumbers' answer
    is "1" + the 10 national digits whatever they are: the US metadata's national number
    pattern is `[2-9]\\d{9}` (every such number matches, so parse neither strips a
    national prefix nor a country code differently) and its one possible length is 10."""
    if len(digits) == 11 and digits[0] == "1" and digits[1] in _NANP_FIRST and (
            international or country_code == "1"):  # 1 NXX NXX XXXX
        return digits
    if len(digits) == 10 and digits[0] in _NANP_FIRST and (
            not international and country_code == "1"):  # NXX NXX XXXX, national
        return "1" + digits
    return None


def _by_library(raw: str, digits: str, international: bool, country_code: str) -> str:
    """phonenumbers' canonical form of `digits` (checked by `_checked`), or InvalidNumber."""
    candidates: list[tuple[str, str | None]] = []
    if international:
        candidates.append(("+" + digits, None))
    else:
        region: str | None = phonenumbers.region_code_for_country_code(int(country_code))
        candidates.append((digits, region))
        # Digits written with their country code but without the plus (`447700900123`
        # on a gateway in country 1) are international when they are not national.
        candidates.append(("+" + digits, None))
    for text, region in candidates:
        try:
            number = phonenumbers.parse(text, region)
        except phonenumbers.NumberParseException:
            continue
        # IS_POSSIBLE only: a "local only" number (7 digits in country 1) has no E.164 form.
        if phonenumbers.is_possible_number_with_reason(number) == _POSSIBLE:
            return f"{number.country_code}{number.national_number}" if not (
                number.italian_leading_zero) else phonenumbers.format_number(
                    number, phonenumbers.PhoneNumberFormat.E164).lstrip("+")
    raise InvalidNumber(
        f"not a possible phone number (got {shown(raw)}; national numbers are read in country"
        f" code {country_code}, international ones need their country code)")


def canonical_or_raw(raw: str, country_code: str = "1", *, ton: int | None = None) -> str:
    """For addresses a person sent from (MO intake): the canonical form when `raw` is a
    phone number, else `raw` unchanged (an alphanumeric sender ID, a short code, an
    address the SMSC mangled). A person's message is never dropped for its address.

    A full NANP number in plain digits is answered without the cache (~0.3 us, less
    than a cache miss, and a burst from many senders misses it every time); any other
    spelling goes through `_canonical_or_raw`, cached."""
    if ton != TON_ALPHANUMERIC and _plain_digits(raw):
        nanp = _nanp(raw, ton == TON_INTERNATIONAL, country_code)
        if nanp is not None:
            return nanp
    return _canonical_or_raw(raw, country_code, ton)


@functools.lru_cache(maxsize=CACHED)
def _canonical_or_raw(raw: str, country_code: str, ton: int | None) -> str:
    if ton == TON_ALPHANUMERIC:
        return raw
    try:
        # canonical's own function: a sender is cached once (here), not in both caches
        result: str = canonical.__wrapped__(raw, country_code, ton=ton)
        return result
    except InvalidNumber:
        return raw
