"""The source address of an MT: TON, NPI and the digits, by the kind of sender (issue 10
point 5, issue 16 point 2).

An SMSC that honours TON reads the address by it: a bare 10-digit long code sent as
TON 1 (international) is read as +41… for `4155550100`. So each kind of sender goes
out in the form its TON says:

- a long code (or any number of 9+ digits): TON 1 / NPI 1 (international, E.164),
  with the country code: `4155550100` -> `14155550100` (`[gateway] country_code`);
- a short code (at most 8 digits): TON 3 / NPI 0 (network specific), as is;
- an alphanumeric sender ID: TON 5 / NPI 0, as is.

`source_ton`/`source_npi` of the `[[number]]` win over those of the `[[smsc]]`, which
win over the automatic value (each key on its own). An explicit TON 1 still puts the
country code in front of a national long code; any other TON sends the digits as
configured. A national TON (2) sends the national significant number: an
international sender loses its country code.

The destination of an MT follows the form of its recipient (issue 16 point 1): every
number that enters the gateway, the sender of an MO included, is normalised once to E.164
digits without `+` (gateway/msisdn.py), so a long number goes out 1/1 international, a
short code (kept as received) 3/0, each unless `[[smsc]] dest_ton/npi` say otherwise;
an alphanumeric sender ID (TON 5) cannot receive an SMS: a reply to one (letters, or
digits the MO carried with TON 5) is recorded `skipped` and never queued
(storage/mts.py `insert_mt`). Pure: no IO.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import phonenumbers

from gateway.config import Config, NumberConfig, SmscConfig
from gateway.msisdn import InvalidNumber, canonical

TON_INTERNATIONAL = 1
TON_NATIONAL = 2
TON_NETWORK_SPECIFIC = 3
TON_ALPHANUMERIC = 5
NPI_UNKNOWN = 0
NPI_ISDN = 1
SHORT_CODE_MAX = 8  # digits: short codes are 3-8 digits the world over; numbers longer


class SourceAddress(NamedTuple):
    ton: int
    npi: int
    addr: str


Address = SourceAddress  # a destination has the same three fields


# (sender, the bind it goes out on) -> the source address of its submit_sm
Addressing = Callable[[str, SmscConfig], SourceAddress]


def automatic(sender: str) -> tuple[int, int]:
    """(TON, NPI) by the kind of sender: alphanumeric, short code or long number."""
    digits = sender.removeprefix("+")
    if not (digits.isascii() and digits.isdigit()):
        return TON_ALPHANUMERIC, NPI_UNKNOWN
    if len(digits) <= SHORT_CODE_MAX and not sender.startswith("+"):
        return TON_NETWORK_SPECIFIC, NPI_UNKNOWN
    return TON_INTERNATIONAL, NPI_ISDN


def international(sender: str, country_code: str) -> str:
    """E.164 digits of a numeric sender: a national long code gets the country code."""
    try:
        return canonical(sender, country_code)
    except InvalidNumber:
        # Not a number phonenumbers knows (a test range): the rule it would apply.
        digits = sender.removeprefix("+")
        return digits if sender.startswith("+") or len(digits) > 10 else country_code + digits


def source_address(sender: str, smsc: SmscConfig, number: NumberConfig | None = None,
                   country_code: str = "1") -> SourceAddress:
    """The submit_sm source of an MT from `sender` (a VMN or sender ID) on `smsc`."""
    auto_ton, auto_npi = automatic(sender)
    ton = _first(None if number is None else number.source_ton, smsc.source_ton, auto_ton)
    npi = _first(None if number is None else number.source_npi, smsc.source_npi, auto_npi)
    addr = sender
    if auto_ton != TON_ALPHANUMERIC:
        if ton == TON_INTERNATIONAL:
            addr = international(sender, country_code)
        elif ton == TON_NATIONAL:
            addr = national(sender, country_code)
        else:
            addr = sender.removeprefix("+")
    return SourceAddress(ton, npi, addr)


def national(sender: str, country_code: str) -> str:
    """The national significant number of a numeric sender (no country code)."""
    digits = sender.removeprefix("+")
    if sender.startswith("+") or len(digits) > 10:
        e164 = international(sender, country_code)
        try:
            return str(phonenumbers.parse("+" + e164).national_number)
        except phonenumbers.NumberParseException:
            return digits
    return digits


def destination_address(recipient: str, smsc: SmscConfig) -> Address:
    """The submit_sm destination of an MT to `recipient` (its canonical form) on `smsc`.
    (A reply to an alphanumeric sender is never queued: storage/mts.py `insert_mt`.)"""
    auto_ton, auto_npi = automatic(recipient)
    ton = auto_ton if smsc.dest_ton is None else smsc.dest_ton
    npi = auto_npi if smsc.dest_npi is None else smsc.dest_npi
    return Address(ton, npi, recipient.removeprefix("+"))


def _first(*values: int | None) -> int:
    return next(v for v in values if v is not None)


def number_for(cfg: Config, sender: str) -> NumberConfig | None:
    """The `[[number]]` an MT's sender belongs to (its sender ID, else its VMN)."""
    return next((n for n in cfg.numbers if n.sender_id == sender),
                next((n for n in cfg.numbers if n.vmn == sender), None))


def addressing(config: Callable[[], Config]) -> Addressing:
    """Source addressing by the configuration of the moment (a reload applies to the
    next submit_sm)."""
    def address(sender: str, smsc: SmscConfig) -> SourceAddress:
        cfg = config()
        return source_address(sender, smsc, number_for(cfg, sender), cfg.gateway.country_code)
    return address


__all__ = ["Address", "Addressing", "SourceAddress", "addressing",
           "automatic", "destination_address", "national", "number_for", "source_address"]
