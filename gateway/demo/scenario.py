"""What the demo does, as data: the MOs it sends, and what each must come to (its log
record, its replies, its webhook calls) before the demo calls it done."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

VMN = "5551000100"
CUSTOMER = "15551234567"
# STOP comes from a second phone: it opts that sender out, and the customer above
# still gets the replies to its other messages and the MT.
OTHER_PHONE = "15559876543"
MT_TEXT = "Your table is ready"
API_TEXT = "Your order has shipped"
LONG_TEXT = (
    "Привет! 👋 This long message mixes Cyrillic, Latin and emoji, so it travels as "
    "UCS-2 and does not fit one SMS: the simulator splits it with an 8-bit "
    "concatenation UDH and sends the parts in reverse order. 😀"
)


@dataclass(frozen=True)
class DemoMo:
    label: str  # how the table names it
    text: str
    sender: str = CUSTOMER
    extra: dict[str, Any] = field(default_factory=dict)  # more /mo fields
    webhook: bool = False  # its configuration (gateway/demo.toml) has a webhook


MOS: list[DemoMo] = [
    DemoMo("HELLO there", "HELLO there", webhook=True),
    DemoMo("What time do you open?", "What time do you open?", webhook=True),
    DemoMo("STOP (2nd phone)", "STOP", sender=OTHER_PHONE),
    DemoMo("Привет! 👋 (long UCS-2)", LONG_TEXT, extra={"encoding": "ucs2", "mode": "udh8"},
           webhook=True),
    DemoMo("SALE", "SALE"),
    DemoMo("PRICE?", "PRICE?"),
]
FINAL_MT = ("submitted", "delivered", "failed", "blocked")


@dataclass
class Outcome:
    """What became of one of the demo's MOs."""

    mo: DemoMo
    row: dict[str, Any] | None  # its `vmn-gateway logs --json` record
    replies: list[dict[str, Any]]  # the MT records with in_reply_to = its id
    hooks: list[dict[str, Any]]  # webhook bodies: its mo event, its replies' mt_status

    def problem(self) -> str | None:
        """Why it is not finished yet (None: it is)."""
        if self.row is None:
            return "not in `vmn-gateway logs`"
        if self.row["status"] != "received":
            return f"logged as {self.row['status']}"
        if not self.replies:
            return "no reply queued"
        if any(r["status"] not in FINAL_MT for r in self.replies):
            return "its reply is not submitted yet"
        if self.mo.webhook:
            if not any(e.get("type") == "mo" for e in self.hooks):
                return "the webhook did not get its mo event"
            heard = {(e.get("id"), e.get("status")) for e in self.hooks
                     if e.get("type") == "mt_status"}
            if any((r["id"], r["status"]) not in heard for r in self.replies):
                return "the webhook did not get its reply's mt_status"
        return None


def outcomes(logs: list[dict[str, Any]], events: list[dict[str, Any]]) -> list[Outcome]:
    rows = {(r["from"], r["text"]): r for r in logs if r["direction"] == "mo"}
    result = []
    for mo in MOS:
        row = rows.get((mo.sender, mo.text))
        mo_id = None if row is None else row["id"]
        replies = [r for r in logs if r["direction"] == "mt" and mo_id is not None
                   and r.get("in_reply_to") == mo_id]
        hooks = [e for e in events if mo_id is not None and (
            (e.get("type") == "mo" and e.get("id") == mo_id)
            or (e.get("type") == "mt_status" and e.get("in_reply_to") == mo_id))]
        result.append(Outcome(mo, row, replies, hooks))
    return result
