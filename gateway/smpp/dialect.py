"""Carrier dialects: where SMSCs differ and Kannel has a per-SMSC setting (issue 16).

- **Default alphabet** (Kannel `alt-charset`): what `data_coding` 0 means on a bind.
  GSM 03.38 by the book; some SMSCs use ASCII or Latin-1. An MO in the bind's default
  alphabet is handed on with the data_coding that names that alphabet explicitly (1
  IA5/ASCII, 3 Latin-1), so everything after the connection decodes it right.
- **Message ids** (Kannel `msg-id-type`): the id in `submit_sm_resp` and the one in
  the receipt may be one number written in two bases (hex in one, decimal in the
  other). Each submitted segment keeps a match key, `<form>:<decimal value>`; a
  receipt's id gives the keys it would match under each form (`receipt_keys`), so one
  indexed `IN` finds the segment whatever the bind said. Ids are compared as strings
  first, always.

Pure: no IO, no clock.
"""

from __future__ import annotations

import re

__all__ = [
    "ALPHABETS",
    "ID_FORMS",
    "mo_data_coding",
    "receipt_keys",
    "receipt_spellings",
    "resp_key",
]

ALPHABETS = ("gsm", "ascii", "latin1")
ID_FORMS = ("auto", "hex", "decimal", "string")

# data_coding that names each default alphabet explicitly (SMPP 3.4 §5.2.19).
_EXPLICIT_DC = {"gsm": 0x00, "ascii": 0x01, "latin1": 0x03}

_DECIMAL = re.compile(r"[0-9]{1,64}")
_HEX = re.compile(r"[0-9A-Fa-f]{1,64}")


def mo_data_coding(data_coding: int, alphabet: str) -> int:
    """The data_coding an MO is decoded (and recorded) with on a bind whose default
    alphabet is `alphabet`: 0 becomes the explicit code of that alphabet."""
    return _EXPLICIT_DC[alphabet] if data_coding == 0 else data_coding


def _decimal(text: str) -> int | None:
    return int(text, 10) if _DECIMAL.fullmatch(text) else None


def _hex(text: str) -> int | None:
    return int(text, 16) if _HEX.fullmatch(text) else None


def resp_key(message_id: str, form: str) -> str | None:
    """The match key of a submit_sm_resp `message_id` on a bind of id `form`, or None
    when only the string itself can match (form "string", or not a number)."""
    if form == "hex":
        value = _hex(message_id)
    elif form == "decimal":
        value = _decimal(message_id)
    elif form == "auto":
        # Digits only: read as decimal (the receipt side also tries them as hex).
        value = _decimal(message_id)
        if value is None:
            value = _hex(message_id)
    else:
        return None
    return None if value is None else f"{form}:{value}"


def receipt_keys(receipt_id: str) -> list[str]:
    """Every segment match key a receipt's id may stand for, one form after another.

    hex: the receipt is decimal; decimal: the receipt is hex; auto: either, and a
    digits-only submit_sm_resp id (keyed as decimal) may really have been hex."""
    keys: list[str] = []
    dec, hx = _decimal(receipt_id), _hex(receipt_id)
    if dec is not None:
        keys.append(f"hex:{dec}")
    if hx is not None:
        keys.append(f"decimal:{hx}")
    auto = {v for v in (dec, hx) if v is not None}
    if dec is not None:
        as_hex = format(dec, "x")  # the response wrote this number in hex, digits only
        if as_hex.isdigit():
            auto.add(int(as_hex, 10))
    keys.extend(f"auto:{v}" for v in sorted(auto))
    return keys


def receipt_spellings(message_id: str, form: str) -> list[str]:
    """How a receipt for the segment `message_id` may spell its id: to find receipts
    that arrived before their submit_sm_resp was recorded (an exact, indexed lookup).
    Unpadded hex in either case; a receipt that zero-pads it is matched only when it
    arrives after the response."""
    out = {message_id, message_id.lower(), message_id.upper()}
    key = resp_key(message_id, form)
    if key is not None:
        value = int(key.split(":", 1)[1])
        out |= {str(value), format(value, "x"), format(value, "X")}
        if form == "auto" and _DECIMAL.fullmatch(message_id):
            out.add(str(int(message_id, 16)))
    return sorted(out)
