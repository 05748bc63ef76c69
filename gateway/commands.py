"""MT commands from MQTT (`P/mt/send`): validate, then queue durably. A malformed
command is not dropped silently: it is recorded as a `failed` MT with a clear error,
which publishes an `mt_status` event."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Connection

from gateway.config import Config
from gateway.model import MtStatus
from gateway.msisdn import InvalidNumber, canonical, shown
from gateway.storage import mts
from gateway.storage.jobs import EventJobs
from gateway.storage.schema import messages
from gateway.storage.values import fit, length

MAX_TEXT = 1600
MAX_PAYLOAD = 65536  # octets of one command; a valid one is far smaller
MAX_ID = length(messages.c.client_ref) or 64


@dataclass(frozen=True, slots=True)
class Command:
    to: str
    sender: str
    text: str
    client_id: str | None


class InvalidSend(ValueError):
    """A send refused before anything is queued: which field, and what was expected."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def validate_send(cfg: Config, *, to: object, sender: object, text: object,
                  client_id: str | None = None) -> Command:
    """The one check of every MT that enters from outside (CLI `send`, MQTT `P/mt/send`,
    the HTTP API): `from` is a configured VMN or sender ID, `to` a phone number (returned
    in its canonical E.164 form, gateway.msisdn), `text` non-empty and at most MAX_TEXT
    characters. Raises InvalidSend naming the field."""
    if not isinstance(to, str) or not to:
        raise InvalidSend("to", "missing or not a non-empty string")
    if not isinstance(sender, str) or not sender:
        raise InvalidSend("from", "missing or not a non-empty string")
    if not isinstance(text, str) or not text:
        raise InvalidSend("text", "missing or not a non-empty string")
    try:
        number = canonical(to, cfg.gateway.country_code)
    except InvalidNumber as exc:
        raise InvalidSend("to", str(exc)) from None
    if not any(sender in (n.vmn, n.sender_id) for n in cfg.numbers):
        raise InvalidSend("from", f"{shown(sender)} is not a configured VMN or sender ID")
    if len(text) > MAX_TEXT:
        raise InvalidSend("text", f"{len(text)} characters, at most {MAX_TEXT}")
    if fit(text, None) != text:
        raise InvalidSend("text", "holds U+0000 (NUL) or an unpaired surrogate")
    return Command(number, sender, text, client_id)


def parse(payload: bytes, cfg: Config) -> tuple[Command | None, str | None, dict[str, Any]]:
    """(command, None, raw) when valid; (None, error, raw) otherwise."""
    if len(payload) > MAX_PAYLOAD:
        return None, f"payload: {len(payload)} octets, at most {MAX_PAYLOAD}", {}
    try:
        raw = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        return None, f"not JSON: {exc}", {}
    except RecursionError:
        return None, "not JSON: nested too deeply", {}
    if not isinstance(raw, dict):
        return None, "expected a JSON object with to, from, text", {}
    client_id = raw.get("id")
    if client_id is not None and (isinstance(client_id, bool)
                                  or not isinstance(client_id, str | int)):
        return None, "id: expected a string", raw
    if client_id is not None and len(str(client_id)) > MAX_ID:
        return None, f"id: {len(str(client_id))} characters, at most {MAX_ID}", raw
    try:
        cmd = validate_send(cfg, to=raw.get("to"), sender=raw.get("from"),
                            text=raw.get("text"),
                            client_id=None if client_id is None else str(client_id))
    except InvalidSend as exc:
        return None, str(exc), raw
    return cmd, None, raw


def record(conn: Connection, emitter: EventJobs, payload: bytes, cfg: Config, *,
           error: str | None = None) -> tuple[str, bool]:
    """Queue the MT, or record the refusal as a `failed` MT (with its `mt_status`
    event): (message id, accepted). `error` given: record the command as failed with
    that error whatever it holds (the daemon's fallback when storing it failed).

    A refused command is stored whatever it holds: each value in its safe form and cut
    to its column (storage/values.py), so that the sender always hears of it."""
    cmd, refusal, raw = parse(payload, cfg)
    now = time.time()
    if cmd is None or error is not None:
        def s(key: str) -> str:
            v = raw.get(key)
            return v if isinstance(v, str) else ""
        c = messages.c
        cid = raw.get("id")
        msg_id = mts.insert_mt(
            conn, emitter, sender=fit(s("from"), length(c.sender)) or "",
            recipient=fit(s("to"), length(c.recipient)) or "",
            text=fit(s("text"), None) or "", now=now,
            error=fit((error or refusal or "")[:1000], None),
            client_ref=None if cid is None else fit(str(cid), MAX_ID),
            status=MtStatus.FAILED)
        return msg_id, False
    return mts.insert_mt(conn, emitter, sender=cmd.sender, recipient=cmd.to, text=cmd.text,
                         now=now, client_ref=cmd.client_id), True
