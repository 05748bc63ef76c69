"""The events of SPEC §4, as plain dicts. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.model import MessageRow, MtStatusChange, iso


def mo_event(mo: MessageRow) -> dict[str, Any]:
    """From a stored MO."""
    return {
        "type": "mo",
        "id": mo.id,
        "vmn": mo.vmn,
        "from": mo.sender,
        "to": mo.recipient,
        "text": mo.text,
        "keyword": mo.keyword,
        "route": mo.route,
        "received_at": iso(mo.created_at),
        "smsc": mo.smsc,
        "segments": mo.segments,
        "data_coding": mo.data_coding,
        "status": mo.status,
    }


def mt_status_event(*, id: str, to: str, sender: str, status: str,
                    smsc_message_id: str | list[str | None] | None, error: str | None,
                    in_reply_to: str | None, client_ref: str | None, at: float,
                    text: str | None = None, receipt_stat: str | None = None,
                    receipt_err: str | None = None) -> dict[str, Any]:
    ev: dict[str, Any] = {
        "type": "mt_status",
        "id": id,
        "to": to,
        "from": sender,
        "status": status,
        "smsc_message_id": smsc_message_id,
        "error": error,
        "in_reply_to": in_reply_to,
        "at": iso(at),
        "receipt": receipt(receipt_stat, receipt_err),
    }
    if client_ref is not None:
        ev["client_id"] = client_ref
    if text is not None:
        ev["text"] = text
    return ev


def mt_status_of(change: MtStatusChange) -> dict[str, Any]:
    """The `mt_status` event of a recorded change: `smsc_message_id` is the one id of a
    single-part MT, the list of a long one's (None for a part without), None before
    submission."""
    ids = change.smsc_message_ids
    return mt_status_event(
        id=change.id, to=change.to, sender=change.sender, status=change.status,
        smsc_message_id=ids[0] if len(ids) == 1 else (list(ids) or None),
        error=change.error, in_reply_to=change.in_reply_to, client_ref=change.client_ref,
        at=change.at, receipt_stat=change.receipt_stat, receipt_err=change.receipt_err)


def receipt(stat: str | None, err: str | None) -> dict[str, str | None] | None:
    """The delivery receipt that decided an MT's status, as received (`stat` e.g.
    `UNDELIV`, `err` e.g. `001`), or None before any receipt."""
    return None if stat is None else {"stat": stat, "err": err}


def opt_event(*, msisdn: str, vmn: str, state: str, keyword: str | None,
              at: float, received_on: str | None = None,
              source: str = "keyword") -> dict[str, Any]:
    """`vmn` is the scope (a VMN, or "*" for every sender ID); `received_on` the VMN the
    keyword was sent to; `source` `keyword` (an MO) or `api` (a manual change, with no
    keyword and no `received_on`)."""
    return {"type": "opt", "msisdn": msisdn, "vmn": vmn, "state": state, "keyword": keyword,
            "at": iso(at), "received_on": received_on, "source": source}


def poll_event(*, poll: str, option: str, msisdn: str, tally: Mapping[str, int],
               at: float) -> dict[str, Any]:
    return {"type": "poll", "poll": poll, "option": option, "msisdn": msisdn,
            "tally": dict(tally), "at": iso(at)}
