"""End to end for opt-in/opt-out, HELP, polls and leads (issue 4): the daemon in a
subprocess, the node-smpp simulator, Mosquitto, a real HTTP server for the opt
callback, SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from conftest import REPO, Gateway, gateway_config, wait_for
from peers import HttpRecorder, MqttWatcher
from simctl import Simulator

A = "5551000100"  # scope "sender" (the [optout] default)
B = "5551000200"
C = "5551000300"  # [number.optout] scope = "all", its own words and replies
SECRET = "opt-s3cret"
STOP_REPLY = "You have been unsubscribed and will receive no more messages. Reply START " \
             "to resubscribe."
START_REPLY = "You have been resubscribed and will receive messages again. Reply STOP to " \
              "unsubscribe."
DEFAULT_STOP_WORDS = ["STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE",
                      "OPTOUT"]


def numbers(*, vote_expires: str | None = None) -> str:
    expires = f'expires = "{vote_expires}"\nexpiry_reply = "The poll is closed"\n' \
        if vote_expires else ""
    return f"""
[[number]]
vmn = "{A}"
[number.default]
reply = "A got: {{text}}"

[[number.keyword]]
keyword = "JOIN"
opt_in = true
lead = true
reply = "Welcome {{from}}"

[[number.keyword]]
keyword = "BYE"
opt_out = true
reply = "Goodbye from {{vmn}}"

[[number.keyword]]
keyword = "VOTE"
{expires}reply = "Thanks for voting {{args}}"
[number.keyword.poll]
name = "colour"
options = ["RED", "BLUE", "GREEN"]
aliases = {{ RED = ["R", "ROUGE"], BLUE = ["B"] }}
invalid_reply = "Sorry, {{args}} is not an option"

[[number.keyword]]
keyword = "BROCHURE"
lead = true
reply = "Brochure on its way"

[[number]]
vmn = "{B}"
[number.default]
lead = true
reply = "B got: {{text}}"

[[number.keyword]]
keyword = "BROCHURE"
lead = true

[[number]]
vmn = "{C}"
[number.optout]
scope = "all"
stop_keywords = ["STOP", "STOPALL", "ARRET"]
stop_reply = "C: you will get nothing from us any more"
[number.default]
reply = "C got: {{text}}"
"""


def opt_config(*, db: str, sim: Simulator, hooks: HttpRecorder, prefix: str,
               name: str = "test", smsc_name: str = "sim", vote_expires: str | None = None,
               ) -> str:
    extra = f"""retry_base = 0.05
retry_max = 0.3

[mqtt]
url = "mqtt://127.0.0.1:1883"
topic_prefix = "{prefix}"
# unique: a broker drops a client when another connects with the same id
client_id = "opt-{name}-{prefix}"

[callback_profiles.crm]
url = "{hooks.url('/opt')}"
secret = "{SECRET}"

[optout]
callback_profile = "crm"
"""
    cfg = gateway_config(db=db, sim=sim, extra_gateway=extra, name=name,
                         numbers=numbers(vote_expires=vote_expires))
    return cfg.replace('name = "sim"', f'name = "{smsc_name}"')


@pytest.fixture
def hooks() -> Iterator[HttpRecorder]:
    with HttpRecorder() as h:
        yield h


@pytest.fixture
def watcher() -> Iterator[MqttWatcher]:
    with MqttWatcher() as w:
        yield w


@pytest.fixture
def gw(sim: Simulator, db_url: str, hooks: HttpRecorder, watcher: MqttWatcher,
       make_gateway: Callable[..., Gateway]) -> Gateway:
    g = make_gateway(opt_config(db=db_url, sim=sim, hooks=hooks, prefix=watcher.prefix))
    sim.wait_bound(timeout=20)
    return g


def mts_to(sim: Simulator, to: str) -> list[dict[str, Any]]:
    return [s for s in sim.submits() if s["destination_addr"] == to]


def texts_to(sim: Simulator, to: str) -> list[str]:
    return [s["text"] for s in mts_to(sim, to)]


def mo(sim: Simulator, source: str, destination: str, text: str) -> None:
    assert sim.mo(source=source, destination=destination, text=text)["statuses"] == [0]


def mt_record(gw: Gateway, mt_id: str) -> dict[str, Any] | None:
    return next((r for r in gw.logs() if r["id"] == mt_id), None)


def wait_mt(gw: Gateway, *, to: str, text: str, status: str) -> dict[str, Any]:
    """The MT to `to` with `text` once it reached `status` (a final one)."""
    def find() -> dict[str, Any] | None:
        for r in gw.logs():
            if r["direction"] == "mt" and r["to"] == to and r["text"] == text:
                return r if r["status"] == status else None
        return None
    return wait_for(find, what=f"MT {text!r} to {to} {status}")  # type: ignore[no-any-return]


def wait_sent(sim: Simulator, to: str, text: str) -> None:
    wait_for(lambda: text in texts_to(sim, to), what=f"{text!r} at the simulator for {to}")


def blocked_send(gw: Gateway, sim: Simulator, sender: str, to: str, text: str) -> None:
    """`send` an MT that must end `blocked` and never reach the simulator."""
    mt_id = gw.send(sender, to, text)
    wait_for(lambda: (mt_record(gw, mt_id) or {}).get("status") == "blocked",
             what=f"MT {text!r} blocked")
    rec = mt_record(gw, mt_id)
    assert rec is not None and rec["error"] == "recipient opted out"
    assert [h["status"] for h in rec["history"]] == ["queued", "blocked"]
    assert text not in texts_to(sim, to)


def csv_rows(out: str) -> list[dict[str, str]]:
    """(`Gateway.cli` reads text mode, which turns CRLF into LF: see `raw_csv`.)"""
    return list(csv.DictReader(io.StringIO(out, newline="")))


def raw_csv(gw: Gateway, *args: str) -> list[dict[str, str]]:
    """The CLI's CSV as bytes, checked for RFC 4180 line ends, then parsed."""
    out = subprocess.run([sys.executable, "-m", "gateway", *args, "--csv", "-c",
                          str(gw.config_path)], cwd=REPO, capture_output=True, timeout=60,
                         check=True).stdout
    rows = list(csv.DictReader(io.StringIO(out.decode(), newline="")))
    # every record (the header too) ends with CRLF; no field here holds a CRLF itself
    assert out.endswith(b"\r\n") and out.count(b"\r\n") == len(rows) + 1, out
    return rows


def opt_events(watcher: MqttWatcher) -> list[tuple[str, dict[str, Any]]]:
    return [(t, p) for t, p, _ in watcher.messages
            if isinstance(p, dict) and p.get("type") == "opt"]


def signed_opt_calls(hooks: HttpRecorder) -> list[dict[str, Any]]:
    """The opt events the callback received, each checked against its signature."""
    out = []
    for r in hooks.requests:
        if r.path != "/opt":
            continue
        expected = hmac.new(SECRET.encode(), r.body, hashlib.sha256).hexdigest()
        assert r.headers["X-VMN-Signature"] == f"sha256={expected}"
        assert r.headers["X-VMN-Event-Id"]
        out.append(r.json())
    return out


# ------------------------------------------------------------------------- STOP / START


def test_every_stop_word_opts_out_and_later_mts_are_blocked(
        gw: Gateway, sim: Simulator, hooks: HttpRecorder, watcher: MqttWatcher) -> None:
    variants = [*DEFAULT_STOP_WORDS, "stop", " Stop ", "  quit \r\n", "OptOut"]
    customers = {f"1555200{i:04d}": word for i, word in enumerate(variants)}
    for customer, word in customers.items():
        mo(sim, customer, A, word)
    mo(sim, "15552009999", A, "STOP PLEASE")  # not an opt-out: routed normally
    for customer in customers:
        wait_sent(sim, customer, STOP_REPLY)
    wait_sent(sim, "15552009999", "A got: STOP PLEASE")
    by_sender = {m["from"]: m for m in wait_for(
        lambda: (lambda ms: ms if len(ms) == len(customers) + 1 else None)(gw.mos()),
        what="every MO in the log")}
    for customer, word in customers.items():
        assert by_sender[customer]["route"] == "optout"
        assert by_sender[customer]["keyword"] == word.strip().upper()
    assert by_sender["15552009999"]["route"] == "default"
    assert by_sender["15552009999"]["keyword"] is None

    rows = raw_csv(gw, "optins", "--state", "out")
    assert {r["msisdn"] for r in rows} == set(customers)
    # STOPALL is always "all"; the others follow scope "sender" (the VMN).
    stopall = next(c for c, w in customers.items() if w == "STOPALL")
    assert {(r["msisdn"], r["vmn"]) for r in rows if r["msisdn"] == stopall} == {(stopall, "*")}
    assert all(r["vmn"] == A for r in rows if r["msisdn"] != stopall)
    assert "15552009999" not in gw.cli("optins").stdout

    # One event per change on MQTT (P/opt/{vmn}, "*" for all) and at the signed callback.
    events = wait_for(lambda: (lambda e: e if len(e) == len(customers) else None)(
        opt_events(watcher)), what="an opt event per customer")
    for topic, ev in events:
        assert topic == f"{watcher.prefix}/opt/{ev['vmn']}"
        assert ev["state"] == "out" and ev["received_on"] == A and ev["at"].endswith("Z")
        assert ev["keyword"] == customers[ev["msisdn"]].strip().upper()
        assert ev["vmn"] == ("*" if ev["msisdn"] == stopall else A)
    calls = wait_for(lambda: (lambda c: c if len(c) == len(customers) else None)(
        signed_opt_calls(hooks)), what="an opt callback per customer")
    assert sorted(json.dumps(c, sort_keys=True) for c in calls) == \
        sorted(json.dumps(e, sort_keys=True) for _, e in events)

    # A later auto-reply to an opted-out number is blocked and never sent; HELP is
    # answered anyway; START lifts the block.
    first = next(iter(customers))
    mo(sim, first, A, "hello after stop")
    wait_mt(gw, to=first, text="A got: hello after stop", status="blocked")
    mo(sim, first, A, "help")
    help_text = "Reply STOP to unsubscribe, START to resubscribe. Msg&data rates may apply."
    wait_sent(sim, first, help_text)
    blocked_send(gw, sim, A, first, "promo while opted out")
    mo(sim, first, A, "START")
    wait_sent(sim, first, START_REPLY)
    mo(sim, first, A, "hello after start")
    wait_sent(sim, first, "A got: hello after start")
    gw.send(A, first, "promo after start")
    wait_sent(sim, first, "promo after start")
    assert "A got: hello after stop" not in texts_to(sim, first)
    assert texts_to(sim, first).count(STOP_REPLY) == 1
    back_in = wait_for(lambda: [e for _, e in opt_events(watcher)
                                if e["msisdn"] == first and e["state"] == "in"],
                       what="the opt-in event")
    assert [(e["vmn"], e["keyword"]) for e in back_in] == [(A, "START")]
    wait_for(lambda: any(c["msisdn"] == first and c["state"] == "in"
                         for c in signed_opt_calls(hooks)), what="the opt-in callback")


def test_scope_sender_all_stopall_and_custom_opt_keywords(
        gw: Gateway, sim: Simulator, watcher: MqttWatcher) -> None:
    x, y, z, w = "15553000001", "15553000002", "15553000003", "15553000004"
    # scope "sender": STOP at A blocks A only
    mo(sim, x, A, "STOP")
    wait_sent(sim, x, STOP_REPLY)
    blocked_send(gw, sim, A, x, "from A to x")
    gw.send(B, x, "from B to x")
    wait_sent(sim, x, "from B to x")
    # STOPALL at A blocks every VMN; START at B then lifts B only (the later, more
    # specific word), A and C stay blocked
    mo(sim, y, A, "STOPALL")
    wait_sent(sim, y, STOP_REPLY)
    for vmn in (A, B, C):
        blocked_send(gw, sim, vmn, y, f"from {vmn} to y")
    mo(sim, y, B, "START")
    wait_sent(sim, y, START_REPLY)
    gw.send(B, y, "from B to y again")
    wait_sent(sim, y, "from B to y again")
    blocked_send(gw, sim, A, y, "from A to y again")
    # C has scope "all" and its own stop words and reply: ARRET blocks every VMN
    mo(sim, z, C, "arret")
    wait_sent(sim, z, "C: you will get nothing from us any more")
    for vmn in (A, B, C):
        blocked_send(gw, sim, vmn, z, f"from {vmn} to z")
    # ... and is an ordinary word at A
    mo(sim, z, A, "ARRET")
    wait_mt(gw, to=z, text="A got: ARRET", status="blocked")
    # an MQTT command to an opted-out number is blocked too
    watcher.publish(f"{watcher.prefix}/mt/send", {"to": z, "from": B, "text": "cmd to z",
                                                  "id": "cmd-z"})
    wait_for(lambda: any(e.get("client_id") == "cmd-z" and e["status"] == "blocked"
                         for e in watcher.events("mt_status")), what="blocked command")
    assert "cmd to z" not in texts_to(sim, z)

    # keywords with opt_out / opt_in = true: BYE opts out (its reply is the
    # confirmation, sent), JOIN opts back in
    mo(sim, w, A, "BYE for now")
    wait_sent(sim, w, f"Goodbye from {A}")
    blocked_send(gw, sim, A, w, "after BYE")
    mo(sim, w, A, "JOIN")
    wait_sent(sim, w, f"Welcome {w}")
    gw.send(A, w, "after JOIN")
    wait_sent(sim, w, "after JOIN")
    evs = wait_for(lambda: (lambda e: e if len(e) == 2 else None)(
        [e for _, e in opt_events(watcher) if e["msisdn"] == w]), what="BYE/JOIN events")
    assert [(e["state"], e["keyword"], e["vmn"]) for e in evs] == \
        [("out", "BYE", A), ("in", "JOIN", A)]

    # the history: who, when, which keyword, which VMN (scope and where it was sent)
    hist = csv_rows(gw.cli("optins", "--history", "--csv").stdout)
    got = [(r["msisdn"], r["vmn"], r["received_on"], r["state"], r["keyword"])
           for r in hist]
    assert got == [
        (x, A, A, "out", "STOP"),
        (y, "*", A, "out", "STOPALL"),
        (y, B, B, "in", "START"),
        (z, "*", C, "out", "ARRET"),
        (w, A, A, "out", "BYE"),
        (w, A, A, "in", "JOIN"),
    ]
    times = [datetime.fromisoformat(r["at"].replace("Z", "+00:00")) for r in hist]
    assert times == sorted(times) and all(t.tzinfo == UTC for t in times)
    assert all(r["message_id"] and r["changed"] == "yes" for r in hist)
    only_y = csv_rows(gw.cli("optins", "--history", "--msisdn", y, "--csv").stdout)
    assert [r["keyword"] for r in only_y] == ["STOPALL", "START"]
    current = {(r["msisdn"], r["vmn"]): r["state"]
               for r in csv_rows(gw.cli("optins", "--csv").stdout)}
    assert current == {(x, A): "out", (y, "*"): "out", (y, B): "in", (z, "*"): "out",
                       (w, A): "in"}
    assert {(r["msisdn"], r["vmn"]) for r in csv_rows(
        gw.cli("optins", "--vmn", B, "--state", "out", "--csv").stdout)} == \
        {(y, "*"), (z, "*")}


def test_opt_states_survive_a_restart(
        sim: Simulator, db_url: str, hooks: HttpRecorder, watcher: MqttWatcher,
        make_gateway: Callable[..., Gateway]) -> None:
    cfg = opt_config(db=db_url, sim=sim, hooks=hooks, prefix=watcher.prefix)
    gw = make_gateway(cfg)
    sim.wait_bound(timeout=20)
    out, back = "15554000001", "15554000002"
    mo(sim, out, A, "STOP")
    mo(sim, back, A, "QUIT")
    wait_sent(sim, out, STOP_REPLY)
    wait_sent(sim, back, STOP_REPLY)
    mo(sim, back, A, "UNSTOP")
    wait_sent(sim, back, START_REPLY)
    before = gw.cli("optins", "--csv").stdout
    assert gw.terminate() == 0
    wait_for(lambda: not sim.state()["binds"], what="the unbind")
    gw2 = make_gateway(cfg)
    sim.wait_bound(timeout=20)
    assert gw2.cli("optins", "--csv").stdout == before
    blocked_send(gw2, sim, A, out, "after restart")
    gw2.send(A, back, "after restart, opted in")
    wait_sent(sim, back, "after restart, opted in")


def test_help_is_answered_and_stop_reply_sent_to_an_opted_out_number(
        gw: Gateway, sim: Simulator) -> None:
    who = "15554100001"
    mo(sim, who, A, "STOP")
    wait_sent(sim, who, STOP_REPLY)
    mo(sim, who, A, "INFO")
    wait_for(lambda: len(texts_to(sim, who)) == 2, what="the HELP reply")
    assert "Msg&data rates may apply" in texts_to(sim, who)[1]
    mo(sim, who, A, "stop")  # again: confirmed again, no new change announced
    wait_for(lambda: texts_to(sim, who).count(STOP_REPLY) == 2, what="2nd confirmation")
    hist = csv_rows(gw.cli("optins", "--history", "--msisdn", who, "--csv").stdout)
    assert [(r["keyword"], r["changed"]) for r in hist] == [("STOP", "yes"), ("STOP", "no")]


# ------------------------------------------------------------------------------- polls


def test_polls_votes_aliases_invalid_and_closing(
        sim: Simulator, sqlite_url: str, hooks: HttpRecorder, watcher: MqttWatcher,
        make_gateway: Callable[..., Gateway]) -> None:
    gw = make_gateway(opt_config(db=sqlite_url, sim=sim, hooks=hooks, prefix=watcher.prefix))
    sim.wait_bound(timeout=20)
    votes = [("15555000001", "VOTE red"), ("15555000002", "vote  Blue"),
             ("15555000003", "VOTE rouge"), ("15555000004", "VOTE b"),
             ("15555000005", "VOTE R"), ("15555000001", "VOTE green")]  # changed vote
    for n, (who, text) in enumerate(votes, 1):
        mo(sim, who, A, text)
        # one at a time: the tallies of the events are then in a known order
        wait_for(lambda n=n: len(watcher.events("poll")) == n,  # type: ignore[misc]
                 what=f"poll event for {text}")
    mo(sim, "15555000006", A, "VOTE purple")  # invalid: answered, not counted
    wait_sent(sim, "15555000006", "Sorry, purple is not an option")
    events = watcher.events("poll")
    assert len(events) == 6
    assert [(e["msisdn"], e["option"]) for e in events] == [
        ("15555000001", "RED"), ("15555000002", "BLUE"), ("15555000003", "RED"),
        ("15555000004", "BLUE"), ("15555000005", "RED"), ("15555000001", "GREEN")]
    assert events[0]["tally"] == {"RED": 1, "BLUE": 0, "GREEN": 0}
    final = {"RED": 2, "BLUE": 2, "GREEN": 1}
    assert events[-1]["tally"] == final and events[-1]["poll"] == "colour"
    assert {t for t, p, _ in watcher.messages if isinstance(p, dict)
            and p.get("type") == "poll"} == {f"{watcher.prefix}/poll/colour"}
    assert "Thanks for voting red" in texts_to(sim, "15555000001")

    as_json = [json.loads(line) for line in gw.cli("polls", "--json").stdout.splitlines()]
    assert as_json == [{"poll": "colour", "tally": final, "votes": 5}]
    table = gw.cli("polls", "colour").stdout.splitlines()
    assert table[0] == "colour: 5 vote(s)"
    assert {tuple(line.split()) for line in table[1:]} == {("RED", "2"), ("BLUE", "2"),
                                                           ("GREEN", "1")}
    res = gw.cli("polls", "nosuchpoll", check=False)  # issue 10: an error, not "no votes"
    assert res.returncode == 1 and "no such poll" in res.stderr

    # the keyword expires (the operator closes the poll): votes no longer count
    past = "2020-01-01T00:00:00Z"
    gw.config_path.write_text(opt_config(db=sqlite_url, sim=sim, hooks=hooks,
                                         prefix=watcher.prefix, vote_expires=past))
    assert gw.proc is not None
    gw.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: gw.log_events("config.reloaded"), what="reload")
    mo(sim, "15555000007", A, "VOTE blue")
    mo(sim, "15555000002", A, "VOTE red")
    wait_sent(sim, "15555000007", "The poll is closed")
    wait_for(lambda: texts_to(sim, "15555000002").count("The poll is closed") == 1,
             what="closed-poll reply to a voter")
    assert len(watcher.events("poll")) == 6
    assert [json.loads(line) for line in gw.cli("polls", "--json").stdout.splitlines()] == \
        [{"poll": "colour", "tally": final, "votes": 5}]


def test_an_invalid_vote_gets_only_its_invalid_reply(gw: Gateway, sim: Simulator,
                                                       watcher: MqttWatcher) -> None:
    voter = "15555000031"
    mo(sim, voter, A, "VOTE pineapple")
    wait_sent(sim, voter, "Sorry, pineapple is not an option")
    # A valid vote after it: its MTs are queued only after every MT of the invalid one
    # (the MOs are expanded in order), so once its reply is out the count is final.
    mo(sim, voter, A, "VOTE red")
    wait_sent(sim, voter, "Thanks for voting red")
    assert texts_to(sim, voter) == ["Sorry, pineapple is not an option",
                                    "Thanks for voting red"]
    assert [r["text"] for r in gw.logs() if r["direction"] == "mt" and r["to"] == voter] \
        == ["Sorry, pineapple is not an option", "Thanks for voting red"]
    assert [(e["msisdn"], e["option"]) for e in watcher.events("poll")] == [(voter, "RED")]


# ------------------------------------------------------------------------------- leads


def test_leads_are_deduplicated_filtered_and_csv_is_safe(
        gw: Gateway, sim: Simulator) -> None:
    c1, c2 = "15556000001", "15556000002"
    mo(sim, c1, A, "JOIN")
    mo(sim, c2, A, "BROCHURE please")
    wait_sent(sim, c1, f"Welcome {c1}")
    wait_sent(sim, c2, "Brochure on its way")
    first = {r["msisdn"]: r for r in csv_rows(gw.cli("leads", "--csv").stdout)}
    assert set(first) == {c1, c2}
    time.sleep(0.01)  # (so that the last-seen time of the next MO is later)
    between = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    mo(sim, c1, A, "join again")  # same msisdn + keyword: counted, not a new lead
    mo(sim, c1, B, "BROCHURE for B")  # another VMN
    injections = {"15556000010": '=HYPERLINK("http://evil.test","click")',
                  "15556000011": "+1+cmd|' /C calc'!A0",
                  "15556000012": "-2+3",
                  "15556000013": "@SUM(1+1)",
                  "15556000014": 'Hi, I said "yes"\nsecond line'}
    for who, text in injections.items():
        mo(sim, who, B, text)  # B's default records a lead
    wait_for(lambda: len(csv_rows(gw.cli("leads", "--csv").stdout)) == 8, what="8 leads")
    rows = raw_csv(gw, "leads")
    assert list(rows[0]) == ["first_seen", "last_seen", "count", "vmn", "msisdn", "keyword",
                             "text"]
    by_key = {(r["vmn"], r["msisdn"], r["keyword"]): r for r in rows}
    joined = by_key[(A, c1, "JOIN")]
    assert joined["count"] == "2" and joined["text"] == "join again"
    assert joined["first_seen"] == first[c1]["first_seen"]
    assert joined["last_seen"] > between > joined["first_seen"]
    assert by_key[(A, c2, "BROCHURE")]["count"] == "1"
    assert by_key[(B, c1, "BROCHURE")]["text"] == "BROCHURE for B"
    for who, text in injections.items():
        cell = by_key[(B, who, "")]["text"]
        assert cell == ("'" + text if text[0] in "=+-@" else text), cell
    # filters
    assert {r["msisdn"] for r in csv_rows(gw.cli("leads", "--vmn", A, "--csv").stdout)} == \
        {c1, c2}
    recent = csv_rows(gw.cli("leads", "--since", between, "--csv").stdout)
    assert (A, c2, "BROCHURE") not in {(r["vmn"], r["msisdn"], r["keyword"]) for r in recent}
    assert (A, c1, "JOIN") in {(r["vmn"], r["msisdn"], r["keyword"]) for r in recent}
    assert len(recent) == 7
    assert len(csv_rows(gw.cli("leads", "--since", "1h", "--csv").stdout)) == 8
    assert csv_rows(gw.cli("leads", "--since", "2999-01-01T00:00:00Z", "--csv").stdout) == []
    # the table form lists them too; the leads' MOs went through their actions
    assert "JOIN" in gw.cli("leads").stdout and "2" in gw.cli("leads").stdout
    assert f"B got: {injections['15556000013']}" in texts_to(sim, "15556000013")

    # optins --csv: the msisdn is the only cell an outsider chooses (the MO's source)
    mo(sim, "=1+2", A, "STOP")
    mo(sim, "@SUM(A1)", A, "STOP")
    wait_for(lambda: len(csv_rows(gw.cli("optins", "--state", "out", "--csv").stdout)) == 2,
             what="2 opt-outs")
    assert {r["msisdn"] for r in raw_csv(gw, "optins")} == {c1, "'=1+2", "'@SUM(A1)"}
    assert {r["msisdn"] for r in raw_csv(gw, "optins", "--history")} == \
        {c1, "'=1+2", "'@SUM(A1)"}  # (c1's JOIN has opt_in = true)


# ------------------------------------------------------------- two instances, one database


@pytest.mark.postgres
def test_two_gateways_on_one_postgres_share_opt_state(
        sim: Simulator, hooks: HttpRecorder, watcher: MqttWatcher,
        make_gateway: Callable[..., Gateway], request: pytest.FixtureRequest) -> None:
    db = pg_database(request)
    one = make_gateway(opt_config(db=db, sim=sim, hooks=hooks, prefix=watcher.prefix,
                                  name="one", smsc_name="sim-one"))
    sim.wait_bound(count=1, timeout=20)  # "one" binds first: the simulator's MOs go to it
    two = make_gateway(opt_config(db=db, sim=sim, hooks=hooks, prefix=watcher.prefix,
                                  name="two", smsc_name="sim-two"))
    sim.wait_bound(count=2, timeout=20)
    customer, other = "15557000001", "15557000002"
    mo(sim, customer, A, "STOP")
    wait_sent(sim, customer, STOP_REPLY)
    stop = wait_for(lambda: two.mos(), what="the STOP in the shared log")[0]
    assert stop["smsc"] == "sim-one" and stop["route"] == "optout"
    # "one" goes away; what "two" sends is checked by "two"
    assert one.terminate() == 0
    wait_for(lambda: len(sim.state()["binds"]) == 1, what="only two bound")
    blocked_send(two, sim, A, customer, "sent by two")
    assert two.log_events("mt.blocked") and not one.log_events("mt.blocked")
    two.send(A, other, "control from two")
    wait_sent(sim, other, "control from two")
    assert next(r for r in two.logs() if r["text"] == "control from two")["smsc"] == "sim-two"
    # and the other way round: an opt-in received by "two" lifts it for everyone
    mo(sim, customer, A, "START")
    wait_sent(sim, customer, START_REPLY)
    two.send(A, customer, "welcome back from two")
    wait_sent(sim, customer, "welcome back from two")


def pg_database(request: pytest.FixtureRequest) -> str:
    """A fresh PostgreSQL database for this test (conftest's `db_url` mechanism)."""
    import uuid

    from conftest import PG_URL, _pg_admin

    name = f"vmn_t_{uuid.uuid4().hex[:12]}"
    _pg_admin(f"CREATE DATABASE {name}")
    request.addfinalizer(lambda: _pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    return f"{PG_URL.rsplit('/', 1)[0]}/{name}"


# ------------------------------------------------------------------ configuration (pure)


@pytest.mark.parametrize(("aliases", "error"), [
    ('{ PINK = ["P"] }', 'poll.aliases: "PINK" is not one of the options'),
    ('{ RED = ["blue"] }', 'poll.aliases: alias "blue" clashes with option "BLUE"'),
    ('{ RED = ["X"], BLUE = ["x"] }', 'poll.aliases: alias "x" clashes with alias "X"'),
])
def test_poll_alias_errors_name_the_key(tmp_path: Any, aliases: str, error: str) -> None:
    from gateway.config import ConfigError, load_config

    path = tmp_path / "bad.toml"
    path.write_text(f"""
[[smsc]]
name = "s"
system_id = "x"
[[number]]
vmn = "{A}"
[number.default]
[[number.keyword]]
keyword = "VOTE"
poll = {{ name = "p", options = ["RED", "BLUE"], aliases = {aliases} }}
""")
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert str(exc.value) == f"{path}: number[0].keyword[0].{error}"


def test_poll_option_for_aliases_and_case() -> None:
    from gateway.config import PollConfig

    poll = PollConfig(name="p", options=("RED", "BLUE"), aliases={"red": ("R", "Rouge")})
    assert [poll.option_for(v) for v in ("red", " Rouge ", "r", "BLUE", "b", "")] == \
        ["RED", "RED", "RED", "BLUE", None, None]
