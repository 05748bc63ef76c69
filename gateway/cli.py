"""Command line: argument parsing only; the work is done by the package."""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from gateway.config import Config, ConfigError, load_config, summary
from gateway.events import receipt
from gateway.log import redact_urls
from gateway.model import iso

_AGE = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(value: str, now: float | None = None) -> float:
    """ISO-8601 (naive = UTC) or a relative age like 15m, 2h, 7d -> UNIX seconds."""
    now = time.time() if now is None else now
    m = _AGE.match(value.strip())
    if m:
        return now - float(m.group(1)) * _AGE_UNITS[m.group(2)]
    try:
        dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--since: expected an ISO-8601 date-time or an age like 15m, 2h, 7d "
            f"(got {value!r})"
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def _limit(value: str) -> int:
    if not value.isdigit():
        raise argparse.ArgumentTypeError(f"expected a number >= 0 (got {value!r})")
    return int(value)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vmn-gateway", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_config(name: str, help: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help)
        sp.add_argument("-c", "--config", required=True, metavar="FILE",
                        help="the TOML configuration")
        return sp

    with_config("run", "run the daemon in the foreground")
    aw = with_config("action-worker", argparse.SUPPRESS)  # started by `run` itself
    aw.add_argument("--fd", type=int, required=True, help=argparse.SUPPRESS)
    with_config("check", "validate the configuration and print a summary")
    s = with_config("send", "queue an MT (sent by the running daemon)")
    # Checked once the configuration is read (commands.validate_send): `--from` against
    # the configured VMNs and sender IDs, `--to` read with [gateway] country_code.
    s.add_argument("--from", dest="sender", required=True, metavar="VMN",
                   help="a configured VMN or sender ID")
    s.add_argument("--to", dest="to", required=True, metavar="MSISDN")
    s.add_argument("text", help="the message text")
    lg = with_config("logs", "the message log, MO and MT, newest last")
    lg.add_argument("--vmn")
    lg.add_argument("--msisdn", help="any spelling of the number (+1 555..., national)")
    lg.add_argument("--since", type=parse_since, metavar="T",
                    help="ISO-8601 or an age like 15m, 2h, 7d")
    lg.add_argument("--route")
    lg.add_argument("--limit", type=_limit, default=100, help="default 100; 0 = all")
    lg.add_argument("--json", action="store_true", help="one JSON object per line")
    rd = with_config("redrive", "re-queue dead-lettered actions")
    rd.add_argument("--kind", choices=["webhook", "email", "mqtt"])
    rd.add_argument("--id", dest="ids", type=int, action="append", default=[],
                    metavar="JOB", help="a job id (also re-queues a failed one); repeatable")
    op = with_config("optins", "the opt-in / opt-out database")
    op.add_argument("--vmn")
    op.add_argument("--state", choices=["in", "out"])
    op.add_argument("--msisdn", help="any spelling of the number (+1 555..., national)")
    op.add_argument("--history", action="store_true",
                    help="every opt keyword received (who, when, keyword, VMN)")
    op.add_argument("--since", type=parse_since, metavar="T",
                    help="with --history: ISO-8601 or an age like 15m, 2h, 7d")
    op.add_argument("--csv", action="store_true", help="RFC 4180, spreadsheet-safe")
    pl = with_config("polls", "poll tallies")
    pl.add_argument("name", nargs="?")
    pl.add_argument("--json", action="store_true",
                    help="one JSON object per poll: poll, tally, votes")
    ld = with_config("leads", "recorded leads")
    ld.add_argument("--vmn")
    ld.add_argument("--since", type=parse_since, metavar="T",
                    help="last seen at or after: ISO-8601 or an age like 15m, 2h, 7d")
    ld.add_argument("--csv", action="store_true", help="RFC 4180, spreadsheet-safe")
    with_config("status", "binds, rates over the last minute, queue depths and the oldest "
                "pending action of a running gateway (admin listener and database)")
    d = sub.add_parser("demo", help="run the simulator and the gateway and show a few MOs")
    d.add_argument("--keep", action="store_true", help="keep the demo's temporary files")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        from gateway.demo import run_demo

        return run_demo(keep=args.keep)
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.command in ("check", "run"):
        from gateway.preflight import AddressInUse, preflight

        problems = preflight(cfg)
        if args.command == "check":
            # A check beside the running daemon sees the daemon's own ports taken: a
            # warning here, while `run` refuses to start on it.
            for problem in problems:
                if isinstance(problem, AddressInUse):
                    print(f"warning: {problem} (expected if this gateway is running; "
                          "a second `run` would not start)", file=sys.stderr)
            problems = [p for p in problems if not isinstance(p, AddressInUse)]
        if problems:
            # One line, like a config error: the first thing that stops the start.
            print(f"error: {problems[0]}", file=sys.stderr)
            return 1
    if args.command == "check":
        print(summary(cfg))
        return 0
    if args.command == "run":
        from gateway import daemon, log

        log.configure(cfg.gateway.log_level.value)
        return daemon.main(cfg)
    if args.command == "action-worker":
        from gateway import log, worker

        log.configure(cfg.gateway.log_level.value)
        return asyncio.run(worker.run(cfg, args.fd))
    if getattr(args, "msisdn", None) is not None:
        from gateway.msisdn import canonical_or_raw

        # Spelled as the intake stores it: canonical, or as is (a short code, a name).
        args.msisdn = canonical_or_raw(args.msisdn, cfg.gateway.country_code)
    if args.command == "send":
        from gateway.commands import InvalidSend, validate_send

        try:
            cmd = validate_send(cfg, to=args.to, sender=args.sender, text=args.text)
        except InvalidSend as exc:
            field = exc.field if exc.field == "text" else f"--{exc.field}"
            print(f"error: {field}: {exc.reason}; nothing was queued", file=sys.stderr)
            return 2
        return asyncio.run(_send(cfg, cmd.sender, cmd.to, cmd.text))
    if args.command == "logs":
        return asyncio.run(_logs(cfg, args))
    if args.command == "status":
        from gateway.status import StatusError, status

        try:
            return asyncio.run(status(cfg))
        except StatusError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    return asyncio.run(_tables(cfg, args))


async def _open(cfg: Config) -> Any:
    from gateway.storage.db import create_engine, migrate
    from gateway.storage.repo import Store

    engine = create_engine(cfg.gateway.database,
                           synchronous=cfg.gateway.sqlite_synchronous.value)
    await migrate(engine, country_code=cfg.gateway.country_code)
    return Store(engine)


async def _send(cfg: Config, sender: str, to: str, text: str) -> int:
    store = await _open(cfg)
    try:
        msg_id = await store.queue_mt(sender=sender, recipient=to, text=text)
    finally:
        await store.close()
        await store.engine.dispose()
    print(msg_id)
    return 0


async def _tables(cfg: Config, args: argparse.Namespace) -> int:
    store = await _open(cfg)
    try:
        if args.command == "redrive":
            n = await store.redrive(kind=args.kind, ids=args.ids)
            print(f"re-queued {n} action(s); the running daemon picks them up")
            return 0
        if args.command == "optins" and args.history:
            rows = await store.opt_history(vmn=args.vmn, state=args.state,
                                           msisdn=args.msisdn, since=args.since)
            _table(["at", "msisdn", "vmn", "received_on", "state", "keyword", "changed",
                    "message_id"],
                   [[iso(r["at"]), r["msisdn"], r["vmn"], r["received_on"] or "", r["state"],
                     r["keyword"] or "", "yes" if r["changed"] else "no",
                     r["message_id"] or ""] for r in rows], csv_out=args.csv)
            return 0
        if args.command == "optins":
            rows = await store.optins(vmn=args.vmn, state=args.state, msisdn=args.msisdn)
            _table(["msisdn", "vmn", "state", "keyword", "updated_at"],
                   [[r["msisdn"], r["vmn"], r["state"], r["keyword"] or "", iso(r["updated_at"])]
                    for r in rows], csv_out=args.csv)
            return 0
        if args.command == "polls":
            tallies = _tallies(cfg, await store.polls(args.name), args.name)
            for poll, tally in tallies.items():
                total = sum(tally.values())
                if args.json:
                    print(json.dumps({"poll": poll, "tally": tally, "votes": total},
                                     ensure_ascii=False))
                    continue
                print(f"{poll}: {total} vote(s)")
                for option, n in sorted(tally.items(), key=lambda kv: -kv[1]):
                    print(f"  {option:<20} {n}")
            if not tallies and not args.json:
                print("no votes yet")
            return 0
        if args.command == "leads":
            rows = await store.leads(vmn=args.vmn, since=args.since)
            _table(["first_seen", "last_seen", "count", "vmn", "msisdn", "keyword", "text"],
                   [[iso(r["at"]), iso(r["last_at"]), r["count"], r["vmn"], r["msisdn"],
                     r["keyword"] or "", r["text"]] for r in rows], csv_out=args.csv)
            return 0
    finally:
        await store.close()
        await store.engine.dispose()
    raise AssertionError(args.command)


def _tallies(cfg: Config, counted: dict[str, dict[str, int]],
             name: str | None) -> dict[str, dict[str, int]]:
    """Every configured poll (or `name`) with every option, 0 when nobody chose it, in
    the configured order (the `tally` of a `poll` event); polls no longer configured
    keep what they counted."""
    out: dict[str, dict[str, int]] = {}
    for number in cfg.numbers:
        for action in (number.default, *number.keywords):
            poll = action.poll
            if poll is not None and (name is None or poll.name == name):
                tally = out.setdefault(poll.name, {})
                for option in poll.options:
                    tally.setdefault(option, 0)
    for poll_name, tally in counted.items():
        merged = out.setdefault(poll_name, {})
        for option, n in tally.items():
            merged[option] = n
    return out


# A spreadsheet runs a cell starting with one of these as a formula (CSV injection):
# such a cell gets a leading apostrophe, which spreadsheets show as text.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


# Characters that a terminal acts on rather than shows (C0 controls such as ESC and BEL,
# DEL, C1 controls, among them the 8-bit CSI 0x9b) and the bidirectional overrides
# that reorder what is shown: customer text goes to the operator's terminal escaped
# (\x1b, \u202e); printable Unicode, emoji included, is left as it is.
_TERMINAL_ESCAPES: dict[int, str] = {
    c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))
} | {ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"} | {
    c: f"\\u{c:04x}" for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))
}


def printable(value: Any) -> str:
    """`value` as text that is safe to print to a terminal (human output only)."""
    return ("" if value is None else str(value)).translate(_TERMINAL_ESCAPES)


def csv_cell(value: Any) -> str:
    """`value` as a CSV cell that a spreadsheet will not evaluate."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def _table(header: list[str], rows: list[list[Any]], *, csv_out: bool) -> None:
    if csv_out:
        import csv

        # RFC 4180: CRLF line ends, fields quoted when they hold a comma, quote or
        # line break, quotes doubled (the csv module's "excel" dialect).
        w = csv.writer(sys.stdout, lineterminator="\r\n")
        w.writerow(header)
        w.writerows([csv_cell(v) for v in row] for row in rows)
        return
    rows = [[printable(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(header)]
    for line in [header, *rows]:
        print("  ".join(str(v).ljust(w) for v, w in zip(line, widths, strict=True)).rstrip())


def log_record(row: dict[str, Any]) -> dict[str, Any]:
    """A message-log row as the JSON of `logs --json`: SPEC §4 fields + direction/status."""
    if row["direction"] == "mo":
        return {
            "type": "mo", "direction": "mo", "id": row["id"], "vmn": row["vmn"],
            "from": row["sender"], "to": row["recipient"], "text": row["text"],
            "keyword": row["keyword"], "route": row["route"], "status": row["status"],
            "received_at": iso(row["created_at"]), "smsc": row["smsc"],
            "segments": row["segments"], "data_coding": row["data_coding"],
            "actions": [_action(a) for a in row.get("actions", [])],
        }
    ids = row.get("smsc_message_ids") or []
    return {
        "type": "mt_status", "direction": "mt", "id": row["id"], "vmn": row["vmn"],
        "to": row["recipient"], "from": row["sender"], "text": row["text"],
        "status": row["status"], "smsc_message_id": ids[0] if len(ids) == 1 else (ids or None),
        "error": row["error"], "in_reply_to": row["in_reply_to"],
        "client_ref": row["client_ref"], "smsc": row["smsc"], "segments": row["segments"],
        "data_coding": row["data_coding"], "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
        "actions": [_action(a) for a in row.get("actions", [])],
        "history": row.get("history", []),
        "receipt": receipt(row.get("receipt_stat"), row.get("receipt_err")),
    }


def receipt_note(rec: dict[str, Any]) -> str:
    """` stat=UNDELIV err=001` for an MT whose status a receipt decided, else ""."""
    r = rec.get("receipt")
    if not r:
        return ""
    err = f" err={printable(r['err'])}" if r["err"] else ""
    return f" stat={printable(r['stat'])}{err}"


def _action(a: dict[str, Any]) -> dict[str, Any]:
    # A webhook target may carry credentials or a token: shown redacted, like its
    # errors (which may quote the URL).
    def shown(value: str | None) -> str | None:
        return None if value is None else redact_urls(value)

    return {"job": a["id"], "kind": a["kind"], "target": shown(a["target"]),
            "status": a["status"], "attempts": a["attempts"],
            "max_attempts": a["max_attempts"], "last_status": a["last_status"],
            "last_error": shown(a["last_error"]),
            "attempts_log": [t | {"detail": shown(t.get("detail"))}
                             for t in a["attempts_log"]]}


async def _logs(cfg: Config, args: argparse.Namespace) -> int:
    store = await _open(cfg)
    try:
        rows = await store.list_messages(vmn=args.vmn, msisdn=args.msisdn, since=args.since,
                                         route=args.route, limit=args.limit)
    finally:
        await store.close()
        await store.engine.dispose()
    for row in rows:
        rec = log_record(row)
        if args.json:
            print(json.dumps(rec, ensure_ascii=False))
        else:
            p = printable
            when = rec.get("received_at") or rec.get("created_at")
            arrow = f"{p(rec['from'])} -> {p(rec['to'])}"
            extra = f" route={p(rec['route'])}" if rec["direction"] == "mo" else ""
            print(f"{when} {rec['direction'].upper()} {arrow} [{p(rec['status'])}{extra}"
                  f"{receipt_note(rec)}] {rec['text']!r}")
            for a in rec["actions"]:
                last = f" last: {p(a['last_error'])}" if a["last_error"] else ""
                print(f"    {p(a['kind'])} -> {p(a['target'])}: {p(a['status'])} after "
                      f"{a['attempts']} attempt(s){last}")
    return 0
