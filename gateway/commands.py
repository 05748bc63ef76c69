"""MT commands from MQTT (`P/mt/send`): validate, then queue durably. A malformed
command is not dropped silently: it is recorded as a `failed` MT with a clear error,
which publishes an `mt_status` event."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Connection

from gateway.config import Config
from gateway.model import MtStatus
from gateway.storage import mts
from gateway.storage.jobs import Emitter

_MSISDN = re.compile(r"^\+?\d{3,20}$")
MAX_TEXT = 1600


@dataclass(frozen=True, slots=True)
class Command:
    to: str
    sender: str
    text: str
    client_id: str | None


def parse(payload: bytes, cfg: Config) -> tuple[Command | None, str | None, dict[str, Any]]:
    """(command, None, raw) when valid; (None, error, raw) otherwise."""
    try:
        raw = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        return None, f"not JSON: {exc}", {}
    if not isinstance(raw, dict):
        return None, "expected a JSON object with to, from, text", {}
    client_id = raw.get("id")
    if client_id is not None and not isinstance(client_id, str | int):
        return None, "id: expected a string", raw
    for key in ("to", "from", "text"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            return None, f"{key}: missing or not a non-empty string", raw
    to, sender, text = raw["to"], raw["from"], raw["text"]
    if not _MSISDN.match(to):
        return None, f"to: expected a phone number of digits (got {to!r})", raw
    known = {n.vmn: n for n in cfg.numbers} | {n.sender_id: n for n in cfg.numbers}
    if sender not in known:
        return None, f"from: {sender!r} is not a configured VMN or sender ID", raw
    if len(text) > MAX_TEXT:
        return None, f"text: {len(text)} characters, at most {MAX_TEXT}", raw
    return Command(to.lstrip("+"), sender, text, None if client_id is None else str(client_id)),\
        None, raw


def record(conn: Connection, emitter: Emitter, payload: bytes, cfg: Config) -> tuple[str, bool]:
    """Queue the MT, or record the refusal. (message id, accepted)."""
    cmd, error, raw = parse(payload, cfg)
    now = time.time()
    if cmd is None:
        def s(key: str) -> str:
            v = raw.get(key)
            return v if isinstance(v, str) else ""
        cid = raw.get("id")
        msg_id = mts.insert_mt(conn, emitter, sender=s("from"), recipient=s("to"),
                               text=s("text"), now=now, error=error,
                               client_ref=None if cid is None else str(cid)[:64],
                               status=MtStatus.FAILED)
        return msg_id, False
    return mts.insert_mt(conn, emitter, sender=cmd.sender, recipient=cmd.to, text=cmd.text,
                         now=now, client_ref=cmd.client_id), True
