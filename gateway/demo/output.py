"""The demo's output: what it prints, and the table of what became of each MO."""

from __future__ import annotations

import sys
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Any

from gateway.demo.scenario import CUSTOMER, Outcome


def say(text: str = "") -> None:
    """print() that never fails on a terminal that cannot show Cyrillic or emoji."""
    encoding = getattr(sys.stdout, "encoding", None) or "utf-8"
    print(text.encode(encoding, "replace").decode(encoding, "replace"), flush=True)


def short(text: str, width: int = 34) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def pad(text: str, width: int) -> str:
    """ljust by terminal columns: wide characters (emoji, CJK) take two."""
    columns = sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)
    return text + " " * max(0, width - columns)


def wire_text(mt: dict[str, Any], submits: dict[str, dict[str, Any]]) -> str:
    """The MT's text as the simulator received it (its submit_sm parts), else as logged."""
    ids = mt.get("smsc_message_id")
    ids = ids if isinstance(ids, list) else [ids]
    parts = [submits[i].get("text") for i in ids if i in submits]
    if parts and all(isinstance(p, str) for p in parts):
        return "".join(str(p) for p in parts)
    return str(mt.get("text") or "")


def report(outcomes: list[Outcome], events: list[dict[str, Any]], mt: dict[str, Any] | None,
           state: dict[str, Any], submit_list: list[dict[str, Any]],
           api_line: str | None = None) -> None:
    submits = {s["message_id"]: s for s in submit_list if s.get("message_id")}
    say("\nWhat happened to each (`vmn-gateway logs --json`, the simulator's submits, "
        "the webhook):")
    say(f"  {'MO':<24} {'route':<8} {'keyword':<8} {'segs/dc':<7}  webhook calls")
    for o in outcomes:
        if o.row is None:
            say(f"  {pad(o.mo.label, 24)} MISSING from the log")
            continue
        statuses = [e for e in o.hooks if e.get("type") == "mt_status"]
        hooked = (f"mo + {len(statuses)} mt_status" if any(e.get("type") == "mo"
                                                           for e in o.hooks)
                  else f"{len(statuses)} mt_status" if statuses else "-")
        seg = f"{o.row['segments']}/{o.row['data_coding']}"
        if o.row["status"] != "received":
            seg += f" {o.row['status']}"
        say(f"  {pad(o.mo.label, 24)} {o.row.get('route') or '-':<8} "
            f"{o.row.get('keyword') or '-':<8} {seg:<7}  {hooked}")
        for r in o.replies or [{}]:
            if not r:
                say("      (no reply)")
                continue
            state_note = "" if r["status"] in ("submitted", "delivered") else f" [{r['status']}]"
            say(f"      reply{state_note}: {short(wire_text(r, submits), 66)}")
    if mt is None:
        say(f"  MT to {CUSTOMER}: MISSING from the log")
    else:
        say(f"  MT `vmn-gateway send` to {mt['to']}: {mt['text']!r} -> "
            f"{mt['smsc_message_id']}, {mt['status']}")
    if api_line is not None:
        say(api_line + "  (GET /v1/messages/{id})")
    counts = state.get("deliver_sm_resp") or {}
    shown = ", ".join(f"status {k}: {v}" for k, v in sorted(counts.items())) or "none"
    say(f"Simulator: deliver_sm_resp {shown} (0 = ESME_ROK: every part acknowledged), "
        f"{state.get('submits_accepted', 0)} submit_sm accepted")
    kinds = Counter(str(e.get("type")) for e in events)
    detail = ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items()))
    say(f"Webhook receiver: {len(events)} POSTs" + (f" ({detail})" if detail else ""))
    say("Routes: keyword = a keyword or alias matched, default = none did, optout = STOP,")
    say("        expired = the keyword's campaign is over (only its expiry_reply is sent).")


def next_steps(workdir: Path, keep: bool) -> None:
    cfg = workdir / "gateway.toml"
    say("Try next:")
    if keep:
        say(f"  vmn-gateway logs -c {cfg}")
        say(f"  vmn-gateway logs -c {cfg} --json --msisdn {CUSTOMER}")
        say(f"  vmn-gateway check -c {cfg}")
        say(f"Files kept in {workdir}: gateway.toml, gateway.db, gateway.log, simulator.log")
    else:
        say("  vmn-gateway demo --keep    # keeps the config, database and logs to explore")
        say("  less config/gateway.example.toml    # every option, explained")
