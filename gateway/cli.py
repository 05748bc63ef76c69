"""Command line: argument parsing only; the work is done by the package."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from gateway.config import (
    DEFAULT_DATABASE,
    Config,
    ConfigError,
    load_config,
    sqlite_relative_to,
    summary,
)
from gateway.events import receipt
from gateway.log import redact_urls
from gateway.model import JobKind, iso, parse_instant
from gateway.routing.router import Route
from gateway.tally import tallies


def parse_since(value: str, now: float | None = None) -> float:
    """ISO-8601 (naive = UTC) or a relative age like 15m, 2h, 7d -> UNIX seconds."""
    try:
        return parse_instant(value, now)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--since: {exc}") from None


def _limit(value: str) -> int:
    if not value.isdigit():
        raise argparse.ArgumentTypeError(f"expected a number >= 0 (got {value!r})")
    return int(value)


_DESCRIPTION = """\
vmn-gateway: an SMPP 3.4 gateway for two-way SMS on virtual mobile numbers.

`run` starts the daemon; `check` validates a configuration. The read-only commands
(logs, optins, polls, leads) and `redrive` need only the database: `-c FILE` reads its
[gateway] database key (a relative SQLite path is relative to FILE's directory), or
give `--database URL`. They never create a database."""

_ROUTES = [r.value for r in Route]
_JOB_KINDS = [k.value for k in JobKind]


def _version() -> str:
    try:
        return version("vmn-gateway")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vmn-gateway", description=_DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str | None, description: str) -> argparse.ArgumentParser:
        if help is None:  # not listed: an internal command
            return sub.add_parser(name, description=description)
        return sub.add_parser(name, help=help, description=description)

    def with_config(name: str, help: str | None, description: str) -> argparse.ArgumentParser:
        sp = command(name, help, description)
        sp.add_argument("-c", "--config", required=True, metavar="FILE",
                        help="the TOML configuration file")
        return sp

    def with_database(name: str, help: str, description: str) -> argparse.ArgumentParser:
        sp = command(name, help, description)
        sp.add_argument("-c", "--config", metavar="FILE",
                        help="the TOML configuration file: only [gateway] database (and "
                             "country_code) are read from it")
        sp.add_argument("--database", metavar="URL",
                        help="the database URL, instead of -c (e.g. "
                             "sqlite+aiosqlite:////var/lib/vmn-gateway/vmn-gateway.db)")
        return sp

    with_config("run", "run the daemon in the foreground",
                "Run the gateway daemon in the foreground (systemd: Type=notify). SIGHUP "
                "reloads the configuration; SIGTERM stops it cleanly.")
    aw = with_config("action-worker", None,
                     "Internal: the action worker process, started by `run` itself.")
    aw.add_argument("--fd", type=int, required=True, help="the socket inherited from `run`")
    with_config("check", "validate the configuration and print a summary",
                "Validate the configuration file (every *_env secret must be set) and print "
                "a summary; exit 1 with the key path of the first error.")
    s = with_config("send", "queue an MT (sent by the running daemon)",
                    "Queue an MT in the database; the running daemon sends it. Prints the "
                    "message id.")
    s.add_argument("--from", dest="sender", required=True, metavar="VMN",
                   help="a configured VMN or sender ID")
    s.add_argument("--to", dest="to", required=True, metavar="MSISDN",
                   help="the recipient, any spelling (+1 555..., national)")
    s.add_argument("text", help="the message text")
    lg = with_database("logs", "the message log, MO and MT, newest last",
                       "The message log, MO and MT, oldest first: for each MO its route, "
                       "keyword, poll vote, lead and every attempt of its actions; for each "
                       "MT its status and why it failed or was blocked.")
    lg.add_argument("--id", dest="ids", action="append", default=[], metavar="ID",
                    help="one message by its id; repeatable")
    lg.add_argument("--vmn", help="only messages of this VMN or sender ID")
    lg.add_argument("--msisdn", help="any spelling of the number (+1 555..., national)")
    lg.add_argument("--since", type=parse_since, metavar="T",
                    help="ISO-8601 or an age like 15m, 2h, 7d")
    lg.add_argument("--route", dest="routes", action="append", default=[], choices=_ROUTES,
                    metavar="ROUTE",
                    help=f"only MOs routed so: one of {', '.join(_ROUTES)}; repeatable "
                         "(any of them)")
    lg.add_argument("--limit", type=_limit, default=100,
                    help="the newest N messages (default 100; 0 = all)")
    lg.add_argument("--json", action="store_true", help="one JSON object per line")
    rd = with_database("redrive", "re-queue dead-lettered actions",
                       f"Re-queue dead-lettered actions ({', '.join(_JOB_KINDS)}) with a "
                       "fresh retry budget; the running daemon picks them up. Attempts keep "
                       "their numbers across redrives in `logs`.")
    rd.add_argument("--kind", choices=_JOB_KINDS,
                    help=f"only actions of this kind: {', '.join(_JOB_KINDS[:-1])} or "
                         f"{_JOB_KINDS[-1]}")
    rd.add_argument("--id", dest="ids", type=int, action="append", default=[],
                    metavar="JOB",
                    help="a job id (as `logs` shows it; also re-queues a failed one); "
                         "repeatable")
    op = with_database("optins", "the opt-in / opt-out database",
                       "The current opt-in / opt-out state per number and VMN, or with "
                       "--history every opt keyword received.")
    op.add_argument("--vmn", help="only this VMN or sender ID (and the \"*\" entries)")
    op.add_argument("--state", choices=["in", "out"], help="only numbers opted in or out")
    op.add_argument("--msisdn", help="any spelling of the number (+1 555..., national)")
    op.add_argument("--history", action="store_true",
                    help="every opt keyword received (who, when, keyword, VMN)")
    op.add_argument("--since", type=parse_since, metavar="T",
                    help="with --history: ISO-8601 or an age like 15m, 2h, 7d")
    op.add_argument("--csv", action="store_true", help="RFC 4180, spreadsheet-safe")
    pl = with_database("polls", "poll tallies",
                       "Poll tallies: every option of every configured poll (when -c names "
                       "a valid configuration) and whatever was counted.")
    pl.add_argument("name", nargs="?", help="one poll (exit 1 if there is no such poll)")
    pl.add_argument("--json", action="store_true",
                    help="one JSON object per poll: poll, tally, votes")
    ld = with_database("leads", "recorded leads",
                       "Recorded leads: one row per VMN, number and keyword, with when it "
                       "was first and last seen.")
    ld.add_argument("--vmn", help="only leads of this VMN")
    ld.add_argument("--since", type=parse_since, metavar="T",
                    help="last seen at or after: ISO-8601 or an age like 15m, 2h, 7d")
    ld.add_argument("--csv", action="store_true", help="RFC 4180, spreadsheet-safe")
    with_config("status", "binds, rates, queues and the oldest pending action",
                "Like Kannel's status page: each bind's state, uptime and last error, MO/MT "
                "per minute over the last minute, the MT and action queues with their "
                "oldest age and the oldest pending action of a running gateway (from its "
                "admin listener and the database).")
    ak = command("apikey", "make, list and revoke HTTP API keys",
                 "HTTP API keys ([api]): a key is printed once by `create` and only its "
                 "hash is stored; `revoke` stops it on every instance within 2 s.")
    aks = ak.add_subparsers(dest="apikey_command", required=True, metavar="ACTION",
                            help="create, list or revoke")

    def apikey_action(name: str, help: str) -> argparse.ArgumentParser:
        sp = aks.add_parser(name, help=help, description=help)
        sp.add_argument("-c", "--config", required=True, metavar="FILE",
                        help="the TOML configuration file (its database)")
        return sp

    akc = apikey_action("create", "make a key and print it (once)")
    akc.add_argument("name", help="a name for the key: letters, digits, '_', '.', '-'")
    akc.add_argument("--scope", required=True, metavar="SCOPES",
                     help="comma-separated: send, read, manage")
    akc.add_argument("--vmn", dest="vmns", action="append", default=[], metavar="V",
                     help="a VMN or sender ID the key may use; repeatable (default: all)")
    akc.add_argument("--rate", type=float, metavar="N",
                     help="at most N requests per second per instance (default: no limit)")
    apikey_action("list", "the keys: name, scopes, VMNs, rate, created, revoked")
    akr = apikey_action("revoke", "revoke a key")
    akr.add_argument("name", help="the key's name")
    d = command("demo", "run the simulator and the gateway and show a few MOs",
                "Start the SMSC simulator and a gateway in a temporary directory, send a "
                "few MOs and show what happened.")
    d.add_argument("--keep", action="store_true", help="keep the demo's temporary files")
    return p


class CliError(Exception):
    """A one-line error for the operator (exit 1)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """What the database commands need: the URL and, for --msisdn, the country code;
    the full configuration when -c names a valid one (poll options)."""

    database: str
    country_code: str = "1"
    config: Config | None = None


def database_target(args: argparse.Namespace) -> Target:
    """The database of a read-only command, read from --database or only from the
    [gateway] table of -c (the rest of the file may be invalid, its secrets unset)."""
    if args.database:
        if args.config:
            raise CliError("give either --database or -c, not both")
        return Target(database=args.database)
    if not args.config:
        raise CliError("give -c FILE (its [gateway] database) or --database URL")
    file = args.config
    try:
        with open(file, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise CliError(f"{file}: cannot read file ({e.strerror or e})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise CliError(f"{file}: invalid TOML ({e})") from None
    gw = data.get("gateway", {})
    gw = gw if isinstance(gw, dict) else {}
    url = gw.get("database", DEFAULT_DATABASE)
    var = gw.get("database_env")
    if "database" not in gw and isinstance(var, str):
        if var not in os.environ:
            raise CliError(f"{file}: gateway.database_env: environment variable {var} is "
                           "not set (or give --database URL)")
        url = os.environ[var]
    if not isinstance(url, str):
        raise CliError(f"{file}: gateway.database: expected a string")
    cc = gw.get("country_code", "1")
    try:
        config: Config | None = load_config(file)
    except ConfigError:
        config = None  # only the poll options are missed
    return Target(database=sqlite_relative_to(url, Path(file).parent),
                  country_code=cc if isinstance(cc, str) and cc.isdigit() else "1",
                  config=config)


# The commands that need only the database (see `database_target`).
_DATABASE_COMMANDS = ("logs", "redrive", "optins", "polls", "leads")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        from gateway.demo import run_demo

        return run_demo(keep=args.keep)
    if args.command in _DATABASE_COMMANDS:
        try:
            target = database_target(args)
            if getattr(args, "msisdn", None) is not None:
                from gateway.msisdn import canonical_or_raw

                # Spelled as the intake stores it: canonical, or as is (a short code).
                args.msisdn = canonical_or_raw(args.msisdn, target.country_code)
            return asyncio.run(_database_command(target, args))
        except CliError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
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
    if args.command == "send":
        from gateway.commands import InvalidSend, validate_send

        try:
            cmd = validate_send(cfg, to=args.to, sender=args.sender, text=args.text)
        except InvalidSend as exc:
            field = exc.field if exc.field == "text" else f"--{exc.field}"
            print(f"error: {field}: {exc.reason}; nothing was queued", file=sys.stderr)
            return 2
        return asyncio.run(_send(cfg, cmd.sender, cmd.to, cmd.text))
    if args.command == "apikey":
        from gateway.apikey import apikey_command

        return asyncio.run(apikey_command(cfg, args))
    if args.command == "status":
        from gateway.status import StatusError, status

        try:
            return asyncio.run(status(cfg))
        except StatusError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    raise AssertionError(args.command)


async def _database_command(target: Target, args: argparse.Namespace) -> int:
    store = await _open_existing(target.database)
    try:
        if args.command == "logs":
            return await _logs(store, target, args)
        return await _tables(store, target, args)
    finally:
        await store.close()
        await store.engine.dispose()


async def _open_existing(url: str) -> Any:
    """A Store on an existing database at the schema this version expects; never
    creates nor migrates one (CliError otherwise)."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    from gateway.storage.db import MIGRATIONS, create_engine, is_sqlite
    from gateway.storage.repo import Store

    shown = redact_urls(url)
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise CliError(f"not a database URL: {shown}") from None
    if is_sqlite(url):
        path = parsed.database
        if not path or path == ":memory:":
            raise CliError(f"no database file in {shown}")
        if not Path(path).is_file():
            raise CliError(f"no database at {path} (nothing created; is this the daemon's "
                           "[gateway] database?)")
    engine = create_engine(url)
    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    try:
        async with engine.connect() as conn:
            current = await conn.run_sync(
                lambda c: MigrationContext.configure(c).get_current_revision())
    except (SQLAlchemyError, OSError) as exc:
        await engine.dispose()
        first = (str(getattr(exc, "orig", None) or exc).splitlines() or ["?"])[0]
        raise CliError(f"cannot open the database {shown}: {first}") from None
    if current != head:
        await engine.dispose()
        if current is None:
            raise CliError(f"{shown} is not a vmn-gateway database (no schema version): "
                           "start the daemon on it once to create the tables")
        raise CliError(f"the database {shown} is at schema revision {current}, this "
                       f"vmn-gateway expects {head}: run `vmn-gateway run` (the daemon "
                       "migrates it on start), then try again")
    return Store(engine)


async def _open(cfg: Config) -> Any:
    from gateway.storage.db import create_engine, migrate
    from gateway.storage.repo import Store

    engine = create_engine(cfg.gateway.database, durability=cfg.gateway.durability.value)
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


async def _tables(store: Any, target: Target, args: argparse.Namespace) -> int:
    if args.command == "redrive":
        if args.ids:
            known = await store.job_statuses(args.ids)
            missing = [str(i) for i in args.ids if i not in known]
            if missing:
                raise CliError(f"no such job: {', '.join(missing)} (nothing re-queued)")
            stuck = [f"{i} is {st}" for i, st in known.items() if st not in ("dead", "failed")]
            if stuck:
                raise CliError(f"only dead or failed jobs are re-queued: {'; '.join(stuck)} "
                               "(nothing re-queued)")
        n = await store.redrive(kind=args.kind, ids=args.ids)
        print(f"re-queued {n} action(s); the running daemon picks them up")
        return 0
    if args.command == "optins" and args.history:
        rows = await store.opt_history(vmn=args.vmn, state=args.state,
                                       msisdn=args.msisdn, since=args.since)
        _table(["at", "msisdn", "vmn", "received_on", "state", "keyword", "changed",
                "message_id", "source"],
               [[iso(r["at"]), r["msisdn"], r["vmn"], r["received_on"] or "", r["state"],
                 r["keyword"] or "", "yes" if r["changed"] else "no",
                 r["message_id"] or "", r["source"]] for r in rows], csv_out=args.csv)
        return 0
    if args.command == "optins":
        rows = await store.optins(vmn=args.vmn, state=args.state, msisdn=args.msisdn)
        _table(["msisdn", "vmn", "state", "keyword", "updated_at"],
               [[r["msisdn"], r["vmn"], r["state"], r["keyword"] or "", iso(r["updated_at"])]
                for r in rows], csv_out=args.csv)
        return 0
    if args.command == "polls":
        tallies = _tallies(target.config, await store.polls(args.name), args.name)
        if args.name and args.name not in tallies:
            known = sorted(_tallies(target.config, await store.polls(None), None))
            raise CliError(f"no such poll: {args.name!r} (polls: "
                           f"{', '.join(known) or 'none configured or voted in'})")
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
    raise AssertionError(args.command)


def _tallies(cfg: Config | None, counted: dict[str, dict[str, int]],
             name: str | None) -> dict[str, dict[str, int]]:
    return tallies(cfg.numbers if cfg is not None else (), counted, name)


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
            "vote": row.get("vote"), "lead": row.get("lead", False),
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


def _poll_of(cfg: Config | None, vmn: str, keyword: str | None) -> str | None:
    """The poll the MO's configuration counts votes for, when the configuration is known."""
    for number in cfg.numbers if cfg is not None else ():
        if number.vmn == vmn:
            for action in number.keywords:
                if keyword is not None and action.keyword == keyword:
                    return action.poll.name if action.poll else None
            if keyword is None:
                return number.default.poll.name if number.default.poll else None
    return None


def _story(rec: dict[str, Any], cfg: Config | None) -> list[str]:
    """The human lines of one log record: the message, then what came of it."""
    p = printable
    when = rec.get("received_at") or rec.get("created_at")
    arrow = f"{p(rec['from'])} -> {p(rec['to'])}"
    if rec["direction"] == "mo":
        state = f"{p(rec['status'])} route={p(rec['route'])}"
        if rec["keyword"]:
            state += f" keyword={p(rec['keyword'])}"
    else:
        state = p(rec["status"]) + receipt_note(rec)
    lines = [f"{when} {rec['direction'].upper()} {rec['id']} {arrow} [{state}] "
             f"{p(repr(rec['text']))}"]
    if rec["direction"] == "mo":
        vote = rec.get("vote")
        poll = _poll_of(cfg, rec["vmn"], rec["keyword"])
        if vote:
            lines.append(f"    vote: {p(vote['poll'])} = {p(vote['option'])} (valid, counted)")
        elif poll is not None and rec["route"] in ("keyword", "default"):
            lines.append(f"    vote: {p(poll)}: not an option (invalid, not counted)")
        if rec.get("lead"):
            lines.append("    lead: recorded (see `vmn-gateway leads`)")
    elif rec["error"]:
        why = "blocked" if rec["status"] == "blocked" else "error"
        lines.append(f"    {why}: {p(rec['error'])}")
    for a in rec["actions"]:
        tries = a["attempts_log"]
        count = len(tries) or a["attempts"]
        last = f"; last: {p(a['last_error'])}" if a["last_error"] else ""
        lines.append(f"    {p(a['kind'])} -> {p(a['target'])} (job {a['job']}): "
                     f"{p(a['status'])} after {count} attempt(s){last}")
        for t in tries:
            status = f" {t['status']}" if t["status"] is not None else ""
            detail = f" {p(t['detail'])}" if t["detail"] else ""
            lines.append(f"      attempt {t['attempt']} {t['at']} {p(t['outcome'])}"
                         f"{status}{detail}")
    return lines


async def _logs(store: Any, target: Target, args: argparse.Namespace) -> int:
    rows = await store.list_messages(vmn=args.vmn, msisdn=args.msisdn, since=args.since,
                                     routes=args.routes, ids=args.ids, limit=args.limit)
    if args.ids and not rows:
        raise CliError(f"no such message: {', '.join(args.ids)}")
    for row in rows:
        rec = log_record(row)
        if args.json:
            print(json.dumps(rec, ensure_ascii=False))
        else:
            print("\n".join(_story(rec, target.config)))
    return 0
