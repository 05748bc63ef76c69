"""End to end for keyword routing and actions: the daemon in a subprocess, the node-smpp
simulator, a real HTTP server for webhooks, aiosmtpd for email, Mosquitto for MQTT."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import smtplib
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default as default_policy
from typing import Any

import pytest
from conftest import Gateway, gateway_config, wait_for
from peers import HttpRecorder, MqttWatcher, PrivateBroker, SmtpSink, free_port
from simctl import Simulator

VMN = "5551000100"
CUSTOMER = "15551234567"


def numbers(hook: str) -> str:
    return f"""
[callback_profiles.crm]
url = "{hook}/crm"
secret = "s3cret"
headers = {{ "X-Tenant" = "acme" }}
max_attempts = 3

[[number]]
vmn = "{VMN}"
[number.default]
reply = "Thanks {{from}}, we got: {{text}}"
webhook = "{hook}/default"

[[number.keyword]]
keyword = "HELLO"
aliases = ["HI"]
callback_profile = "crm"
reply = "Hello {{from}}! You said {{args}}"
forward_sms = ["15550009999"]

[[number.keyword]]
keyword = "SALE"
expires = "2020-01-01T00:00:00Z"
expiry_reply = "The SALE has ended"
webhook = "{hook}/sale"

[[number.keyword]]
keyword = "SUPPORT"
forward_email = ["support@vmn.test"]

[[number.keyword]]
keyword = "VOTE"
poll = {{ name = "color", options = ["RED", "BLUE"], invalid_reply = "Vote RED or BLUE" }}

[[number.keyword]]
keyword = "JOIN"
lead = true
reply = "Welcome aboard"
"""


@pytest.fixture
def hooks() -> Iterator[HttpRecorder]:
    with HttpRecorder() as h:
        yield h


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    with SmtpSink() as s:
        yield s


@pytest.fixture
def watcher() -> Iterator[MqttWatcher]:
    with MqttWatcher() as w:
        yield w


def action_config(*, db: str, sim: Simulator, hooks: HttpRecorder, smtp_port: int,
                  mqtt_port: int = 1883, prefix: str = "vmn", reply_port: int = 0) -> str:
    extra = f"""retry_base = 0.05
retry_max = 0.3
max_attempts = 6

[mqtt]
url = "mqtt://127.0.0.1:{mqtt_port}"
topic_prefix = "{prefix}"
# one client id per test: two test runs at once on one broker must not take over each
# other's persistent session
client_id = "vmn-gateway-{prefix}"

[smtp]
host = "127.0.0.1"
port = {smtp_port}
from = "gateway@vmn.test"
timeout = 5

[email_replies]
listen = "127.0.0.1:{reply_port or free_port()}"
domain = "replies.test"
"""
    return gateway_config(db=db, sim=sim, extra_gateway=extra, numbers=numbers(hooks.url("")))


def requests_to(hooks: HttpRecorder, path: str) -> list[Any]:
    return [r for r in hooks.requests if r.path == path]


def mts_to(sim: Simulator, to: str) -> list[dict[str, Any]]:
    return [s for s in sim.submits() if s["destination_addr"] == to]


@pytest.fixture
def gw(sim: Simulator, db_url: str, hooks: HttpRecorder, smtp: SmtpSink,
       watcher: MqttWatcher, make_gateway: Callable[..., Gateway]) -> Gateway:
    """The daemon with every action configured, on SQLite and on PostgreSQL."""
    g = make_gateway(action_config(db=db_url, sim=sim, hooks=hooks, smtp_port=smtp.port,
                                   prefix=watcher.prefix))
    sim.wait_bound(timeout=20)
    return g


def test_keyword_fires_its_signed_webhook_reply_and_forward(
        gw: Gateway, sim: Simulator, hooks: HttpRecorder) -> None:
    assert sim.mo(source=CUSTOMER, destination=VMN, text="hi there!")["statuses"] == [0]
    req = wait_for(lambda: requests_to(hooks, "/crm"), what="the crm webhook")[0]
    body = req.json()
    mo_id = body["id"]
    assert body["type"] == "mo" and body["keyword"] == "HELLO" and body["route"] == "keyword"
    assert body["text"] == "hi there!" and body["from"] == CUSTOMER and body["vmn"] == VMN
    assert body["received_at"].endswith("Z") and body["smsc"] == "sim"
    expected = hmac.new(b"s3cret", req.body, hashlib.sha256).hexdigest()
    assert req.headers["X-VMN-Signature"] == f"sha256={expected}"
    assert req.headers["X-Tenant"] == "acme" and req.headers["X-VMN-Event-Id"]
    assert req.headers["Content-Type"].startswith("application/json")
    reply = wait_for(lambda: mts_to(sim, CUSTOMER), what="the auto-reply")
    assert reply[0]["text"] == f"Hello {CUSTOMER}! You said there!"
    assert reply[0]["source_addr"] == "1" + VMN  # international: with the country code
    fwd = wait_for(lambda: mts_to(sim, "15550009999"), what="the forward")
    assert fwd[0]["text"] == f"From {CUSTOMER} to {VMN}: hi there!"
    # The same trigger URL then hears the status of the responses it caused.
    statuses = wait_for(lambda: (lambda s: s if len(s) >= 2 else None)(
        [r.json() for r in requests_to(hooks, "/crm") if r.json()["type"] == "mt_status"
         and r.json()["status"] == "submitted"]), what="mt_status webhooks")
    assert {s["in_reply_to"] for s in statuses} == {mo_id}
    assert {s["to"] for s in statuses} == {CUSTOMER, "15550009999"}
    # default route
    sim.mo(source="15550000002", destination=VMN, text="What time do you open?")
    req = wait_for(lambda: requests_to(hooks, "/default"), what="the default webhook")[0]
    assert req.json()["route"] == "default" and req.json()["keyword"] is None
    assert "X-VMN-Signature" not in req.headers
    reply = wait_for(lambda: mts_to(sim, "15550000002"), what="the default reply")
    assert reply[0]["text"] == "Thanks 15550000002, we got: What time do you open?"
    mo = next(r for r in gw.logs() if r["id"] == mo_id)
    assert {a["kind"] for a in mo["actions"]} >= {"webhook", "mqtt"}
    assert all(a["status"] == "done" for a in mo["actions"] if a["kind"] == "webhook")


def test_expired_keyword_gets_only_its_expiry_reply(gw: Gateway, sim: Simulator,
                                                    hooks: HttpRecorder) -> None:
    sim.mo(source=CUSTOMER, destination=VMN, text="SALE please")
    reply = wait_for(lambda: mts_to(sim, CUSTOMER), what="the expiry reply")
    assert [r["text"] for r in reply] == ["The SALE has ended"]
    mo = wait_for(lambda: gw.mos(), what="MO")[0]
    assert mo["route"] == "expired" and mo["keyword"] == "SALE"
    assert not requests_to(hooks, "/sale") and not requests_to(hooks, "/default")
    assert len(sim.submits()) == 1


def test_forward_email_and_the_reply_comes_back_as_sms(gw: Gateway, sim: Simulator,
                                                       smtp: SmtpSink) -> None:
    sim.mo(source=CUSTOMER, destination=VMN, text="SUPPORT my order 42 is late")
    _mail_from, rcpts, raw = wait_for(lambda: smtp.messages, what="the email")[0]
    msg = BytesParser(policy=default_policy).parsebytes(raw)
    assert rcpts == ["support@vmn.test"] and msg["From"] == "gateway@vmn.test"
    assert CUSTOMER in msg["Subject"] and VMN in msg["Subject"]
    body = msg.get_body(preferencelist=("plain",))
    assert body is not None and "my order 42 is late" in body.get_content()
    reply_to = str(msg["Reply-To"])
    assert reply_to.startswith("reply+") and reply_to.endswith("@replies.test")
    listen = next(line for line in gw.config_path.read_text().splitlines()
                  if line.startswith("listen"))
    port = int(listen.split(":")[-1].strip('"'))
    answer = EmailMessage()
    answer["From"] = "support@vmn.test"  # the address the forward went to
    answer["To"] = reply_to
    answer["Subject"] = "Re: " + str(msg["Subject"])
    answer.set_content("It ships tomorrow.\n\n-- \nAgent Smith\n\nOn Mon, someone wrote:\n"
                       "> SUPPORT my order 42 is late\n")
    with smtplib.SMTP("127.0.0.1", port) as s:
        s.send_message(answer)
        with pytest.raises(smtplib.SMTPRecipientsRefused):  # not an open relay
            s.sendmail("x@vmn.test", ["victim@example.com"], b"Subject: x\r\n\r\nspam")
        with pytest.raises(smtplib.SMTPRecipientsRefused):  # unknown token
            s.sendmail("x@vmn.test", ["reply+deadbeef@replies.test"], b"Subject: x\r\n\r\nx")
    sms = wait_for(lambda: mts_to(sim, CUSTOMER), what="the SMS made of the reply")
    assert sms[0]["text"] == "It ships tomorrow." and sms[0]["source_addr"] == "1" + VMN


def test_mqtt_sees_every_event_and_commands_send_mts(gw: Gateway, sim: Simulator,
                                                     watcher: MqttWatcher) -> None:
    p = watcher.prefix
    wait_for(lambda: "online" in watcher.on("gateway/test/status"), what="online status")
    sim.mo(source=CUSTOMER, destination=VMN, text="VOTE red")
    sim.mo(source="15550000003", destination=VMN, text="VOTE blue")
    sim.mo(source="15550000004", destination=VMN, text="VOTE red")
    sim.mo(source="15550000005", destination=VMN, text="STOP")
    sim.mo(source="15550000006", destination="19995550000", text="nobody home")
    polls = wait_for(lambda: (lambda e: e if len(e) == 3 else None)(watcher.events("poll")),
                     what="3 poll events")
    assert polls[-1]["tally"] == {"RED": 2, "BLUE": 1} and polls[-1]["poll"] == "color"
    opt = wait_for(lambda: watcher.events("opt"), what="opt event")[0]
    assert opt == {**opt, "msisdn": "15550000005", "vmn": VMN, "state": "out",
                   "keyword": "STOP"}
    mos = wait_for(lambda: (lambda e: e if len(e) == 5 else None)(watcher.events("mo")),
                   what="5 mo events")
    assert {m["route"] for m in mos} == {"keyword", "optout", "unrouted"}
    assert watcher.on(f"mo/{VMN}") and watcher.on("mo/19995550000")
    # a command on P/mt/send
    watcher.publish(f"{p}/mt/send", {"to": "15550000007", "from": VMN, "text": "cmd hello",
                                     "id": "client-1"})
    sub = wait_for(lambda: mts_to(sim, "15550000007"), what="the commanded MT")[0]
    assert sub["text"] == "cmd hello"
    sim.receipt(message_id=sub["message_id"], source="15550000007", destination=VMN)

    def statuses() -> list[str]:
        return [e["status"] for e in watcher.events("mt_status")
                if e.get("client_id") == "client-1"]

    wait_for(lambda: "delivered" in statuses(), what="delivered status")
    assert statuses()[:2] == ["queued", "submitted"]
    watcher.publish(f"{p}/mt/send", b"{not json")
    watcher.publish(f"{p}/mt/send", {"to": "15550000008", "from": "12345", "text": "x",
                                     "id": "client-2"})
    failed = wait_for(lambda: (lambda e: e if len(e) == 2 else None)(
        [e for e in watcher.events("mt_status") if e["status"] == "failed"]),
        what="2 failed commands")
    assert "not JSON" in failed[0]["error"] and "not a configured VMN" in failed[1]["error"]
    assert not mts_to(sim, "15550000008")
    assert f"{p}/poll/color" in {t for t, _, _ in watcher.messages}


def test_mqtt_command_sent_while_the_gateway_is_down_is_sent_after_restart(
        sim: Simulator, sqlite_url: str, hooks: HttpRecorder, smtp: SmtpSink,
        watcher: MqttWatcher, make_gateway: Callable[..., Gateway]) -> None:
    """The command subscription is a persistent session: the broker keeps what arrives
    while the gateway is away."""
    gw = make_gateway(action_config(db=sqlite_url, sim=sim, hooks=hooks, smtp_port=smtp.port,
                                    prefix=watcher.prefix))
    wait_for(lambda: watcher.on("gateway/test/status")[-1:] == ["online"], what="online")
    assert gw.terminate() == 0
    wait_for(lambda: watcher.on("gateway/test/status")[-1:] == ["offline"], what="offline")
    watcher.publish(f"{watcher.prefix}/mt/send",
                    {"to": "15550000031", "from": VMN, "text": "sent while you were away"})
    gw.start()
    sub = wait_for(lambda: mts_to(sim, "15550000031"), what="the command kept by the broker")
    assert sub[0]["text"] == "sent while you were away"


def test_stop_blocks_later_mts_but_not_help(gw: Gateway, sim: Simulator) -> None:
    sim.mo(source=CUSTOMER, destination=VMN, text="STOP")
    stop_reply = wait_for(lambda: mts_to(sim, CUSTOMER), what="the STOP confirmation")
    assert "unsubscribed" in stop_reply[0]["text"].lower()
    mt_id = gw.send(VMN, CUSTOMER, "promo you should not get")
    wait_for(lambda: any(r["id"] == mt_id and r["status"] == "blocked" for r in gw.logs()),
             what="blocked MT")
    sim.mo(source=CUSTOMER, destination=VMN, text="help")
    wait_for(lambda: len(mts_to(sim, CUSTOMER)) == 2, what="the HELP reply")
    assert all("promo" not in s["text"] for s in mts_to(sim, CUSTOMER))
    out = gw.cli("optins", "--state", "out").stdout
    assert CUSTOMER in out
    sim.mo(source=CUSTOMER, destination=VMN, text="START")
    wait_for(lambda: len(mts_to(sim, CUSTOMER)) == 3, what="the START reply")
    gw.send(VMN, CUSTOMER, "welcome back")
    wait_for(lambda: any(s["text"] == "welcome back" for s in mts_to(sim, CUSTOMER)),
             what="MT after opt-in")
    sim.mo(source="15550000011", destination=VMN, text="JOIN me")
    wait_for(lambda: "15550000011" in gw.cli("leads").stdout, what="the lead")
    assert "JOIN" in gw.cli("leads", "--csv").stdout


def test_webhook_outage_retries_dead_letters_and_redrive(
        sim: Simulator, sqlite_url: str, hooks: HttpRecorder, smtp: SmtpSink,
        watcher: MqttWatcher, make_gateway: Callable[..., Gateway]) -> None:
    # URL webhooks keep trying (20 attempts, backoff capped at 0.3 s); the crm profile
    # gives up after 3.
    gw = make_gateway(action_config(db=sqlite_url, sim=sim, hooks=hooks, smtp_port=smtp.port,
                                    prefix=watcher.prefix).replace("max_attempts = 6",
                                                                   "max_attempts = 20"))
    sim.wait_bound()
    hooks.status = 500
    sim.mo(source=CUSTOMER, destination=VMN, text="HELLO 1")  # crm: max_attempts 3
    sim.mo(source="15550000012", destination=VMN, text="plain default")  # max 6
    wait_for(lambda: len(requests_to(hooks, "/crm")) >= 3, what="3 crm attempts")

    def crm_job() -> dict[str, Any] | None:
        for r in gw.mos():
            for a in r["actions"]:
                if a["target"] == "profile:crm" and a["status"] == "dead":
                    return dict(a)
        return None

    job = wait_for(crm_job, what="the dead-lettered webhook")
    assert job["attempts"] == 3 and job["last_status"] == 500
    assert [t["outcome"] for t in job["attempts_log"]] == ["retry"] * 3
    assert gw.log_events("action.attempt_failed")
    hooks.status = 200  # the server recovers
    wait_for(lambda: any(a["status"] == "done" and a["attempts"] > 1
                         for m in gw.mos() if m["text"] == "plain default"
                         for a in m["actions"] if a["kind"] == "webhook"),
             what="default webhook delivered after recovery")
    before = len([r for r in requests_to(hooks, "/crm") if r.json()["type"] == "mo"])
    out = gw.cli("redrive", "--kind", "webhook").stdout
    # the MO event and the status events of its reply and forward, all dead
    assert int(out.split()[1]) >= 1, out
    wait_for(lambda: len([r for r in requests_to(hooks, "/crm")
                          if r.json()["type"] == "mo"]) == before + 1, what="redriven call")
    wait_for(lambda: crm_job() is None, what="no more dead jobs")


def test_webhook_timeout_is_retried(sim: Simulator, sqlite_url: str, hooks: HttpRecorder,
                                    smtp: SmtpSink, watcher: MqttWatcher,
                                    make_gateway: Callable[..., Gateway]) -> None:
    cfg = action_config(db=sqlite_url, sim=sim, hooks=hooks, smtp_port=smtp.port,
                        prefix=watcher.prefix).replace('max_attempts = 3\n',
                                                       'max_attempts = 3\ntimeout = 0.3\n')
    gw = make_gateway(cfg)
    sim.wait_bound()
    hooks.delay = 1.0
    sim.mo(source=CUSTOMER, destination=VMN, text="HELLO slow")
    wait_for(lambda: len(requests_to(hooks, "/crm")) >= 2, what="a retried slow webhook")
    hooks.delay = 0
    wait_for(lambda: any(a["target"] == "profile:crm" and a["status"] == "done"
                         and "timeout" in (a["attempts_log"][0]["detail"] or "")
                         for m in gw.mos() for a in m["actions"]),
             what="done after a timeout")


def test_mqtt_broker_outage_loses_no_event(sim: Simulator, sqlite_url: str,
                                           hooks: HttpRecorder, smtp: SmtpSink,
                                           make_gateway: Callable[..., Gateway]) -> None:
    # The subscriber's session is set up (and kept by the broker) before the outage, so
    # it gets every event published after the broker is back, whether the gateway or
    # the subscriber reconnects first.
    broker = PrivateBroker(persistent=True)
    watcher = dict(prefix="out", port=broker.port, client_id=f"w-{broker.port}",
                   clean_session=False)
    broker.start()
    with MqttWatcher(**watcher):  # type: ignore[arg-type]
        pass
    broker.stop()
    gw = make_gateway(action_config(db=sqlite_url, sim=sim, hooks=hooks, smtp_port=smtp.port,
                                    mqtt_port=broker.port, prefix="out"))
    sim.wait_bound()
    for i in range(20):
        assert sim.mo(source=f"1555001{i:04d}", destination=VMN,
                      text=f"outage {i}")["statuses"] == [0]
    wait_for(lambda: len(gw.mos()) == 20, what="20 MOs stored while the broker is down")
    broker.start()
    try:
        with MqttWatcher(**watcher) as w:  # type: ignore[arg-type]
            wait_for(lambda: len({e["text"] for e in w.events("mo")}) == 20, timeout=90,
                     what="every MO event after the broker came back")
    finally:
        broker.stop()


def test_smtp_outage_loses_no_email(sim: Simulator, sqlite_url: str, hooks: HttpRecorder,
                                    watcher: MqttWatcher,
                                    make_gateway: Callable[..., Gateway]) -> None:
    sink = SmtpSink()  # not started: the SMTP server is down
    gw = make_gateway(action_config(db=sqlite_url, sim=sim, hooks=hooks, smtp_port=sink.port,
                                    prefix=watcher.prefix).replace("max_attempts = 6",
                                                                   "max_attempts = 40"))
    sim.wait_bound()
    sim.mo(source=CUSTOMER, destination=VMN, text="SUPPORT while smtp is down")
    wait_for(lambda: any(a["kind"] == "email" and a["attempts"] >= 2 for m in gw.mos()
                         for a in m["actions"]), what="failed email attempts")
    sink.start()
    try:
        wait_for(lambda: sink.messages, timeout=30, what="the email after recovery")
        assert b"while smtp is down" in sink.messages[0][2]
    finally:
        sink.stop()


def test_sighup_swaps_routing_without_dropping_the_bind(
        sim: Simulator, sqlite_url: str, make_gateway: Callable[..., Gateway]) -> None:
    def cfg(keyword: str) -> str:
        return gateway_config(db=sqlite_url, sim=sim, numbers=f"""
[[number]]
vmn = "{VMN}"
[number.default]
reply = "default"
[[number.keyword]]
keyword = "{keyword}"
reply = "matched {keyword}"
""")

    gw = make_gateway(cfg("ALPHA"))
    sim.wait_bound()
    # (distinct texts: the same PDU again would be taken for a redelivery)
    sim.mo(source=CUSTOMER, destination=VMN, text="BETA 1")
    wait_for(lambda: [s["text"] for s in mts_to(sim, CUSTOMER)] == ["default"], what="reply")
    gw.config_path.write_text(cfg("BETA"))
    assert gw.proc is not None
    gw.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: gw.log_events("config.reloaded"), what="reload")
    sim.mo(source=CUSTOMER, destination=VMN, text="BETA 2")
    wait_for(lambda: "matched BETA" in [s["text"] for s in mts_to(sim, CUSTOMER)],
             what="new routing")
    gw.config_path.write_text(cfg("BETA").replace('vmn = "5551000100"', 'vmn = "12"'))
    gw.proc.send_signal(signal.SIGHUP)
    rejected = wait_for(lambda: gw.log_events("config.reload_rejected"), what="rejection")
    assert "number[0].vmn" in rejected[0]["error"]
    gw.config_path.write_text(cfg("BETA"))  # for the CLI below (the daemon was not told)
    sim.mo(source=CUSTOMER, destination=VMN, text="BETA 3")
    wait_for(lambda: [s["text"] for s in mts_to(sim, CUSTOMER)].count("matched BETA") == 2,
             what="old routing kept")
    assert sim.state()["bind_count"] == 1 and gw.running
    assert json.loads(json.dumps(gw.mos()))[-1]["keyword"] == "BETA"


@pytest.mark.parametrize("workers", [1, 2])
def test_actions_in_a_worker_process(sim: Simulator, sqlite_url: str, hooks: HttpRecorder,
                                     smtp: SmtpSink, watcher: MqttWatcher,
                                     make_gateway: Callable[..., Gateway],
                                     workers: int) -> None:
    """`action_workers = N`: webhooks, emails and MQTT events run in N more processes;
    the daemon keeps the status topic and the commands. It binds once they are up: an
    SMSC's backlog is not acknowledged while they start."""
    gw = make_gateway(action_config(db=sqlite_url, sim=sim, hooks=hooks, smtp_port=smtp.port,
                                    prefix=watcher.prefix).replace(
        "retry_base = 0.05", f"retry_base = 0.05\naction_workers = {workers}"))
    sim.wait_bound()
    # logged by each worker before it says it is ready, so before the bind
    assert len(gw.log_events("worker.started")) == workers
    sim.mo(source=CUSTOMER, destination=VMN, text="hi from a worker")
    sim.mo(source="15550000021", destination=VMN, text="SUPPORT via worker")
    req = wait_for(lambda: requests_to(hooks, "/crm"), what="the webhook")[0]
    assert req.json()["text"] == "hi from a worker"
    wait_for(lambda: watcher.events("mo"), what="the MQTT event")
    wait_for(lambda: smtp.messages, what="the email")
    assert "online" in watcher.on("gateway/test/status")
    # The worker dies: the daemon starts another, and the queue it kept loses nothing.
    os.kill(gw.log_events("worker.spawned")[-1]["pid"], signal.SIGKILL)
    sim.mo(source=CUSTOMER, destination=VMN, text="hi after the worker died")
    wait_for(lambda: any(r.json().get("text") == "hi after the worker died"
                         for r in requests_to(hooks, "/crm")),
             what="the webhook through a new worker")
    wait_for(lambda: len(gw.log_events("worker.spawned")) == workers + 1,
             what="the dead worker restarted")
    # A worker stopped before it has set up its signal handlers ends without a word.
    wait_for(lambda: len(gw.log_events("worker.started")) == workers + 1,
             what="the new worker ready")
    assert gw.log_events("worker.died")
    assert gw.terminate() == 0
    assert len(gw.log_events("worker.stopped")) == workers
