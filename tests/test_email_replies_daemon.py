"""Email replies through the daemon's own SMTP listener, with a real SMTP client, the
simulator as SMSC, aiosmtpd as the outbound relay, on SQLite and PostgreSQL.

* Reading a mail never holds the event loop: while a reply is being read, an
  unrelated MO is acknowledged (issue 9 point 9).
* A reply is taken only from the address the forward went to, and only so many per
  reply address and hour (issue 9 point 16)."""

from __future__ import annotations

import asyncio
import smtplib
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default as default_policy
from pathlib import Path

import aiosmtplib
import pytest
from conftest import Gateway, gateway_config, wait_for
from peers import SmtpSink, free_port
from simctl import Simulator

from gateway import email_replies
from gateway.config import load_config
from gateway.daemon import Daemon

VMN = "5551000100"
CUSTOMER = "15551234567"
AGENT = "support@vmn.test"

NUMBERS = f"""
[[number]]
vmn = "{VMN}"
[number.default]

[[number.keyword]]
keyword = "SUPPORT"
forward_email = ["{AGENT}"]
"""


def config(*, db: str, sim: Simulator, smtp_port: int, reply_port: int,
           email_replies: str = "") -> str:
    extra = f"""
[smtp]
host = "127.0.0.1"
port = {smtp_port}
from = "gateway@vmn.test"
timeout = 5

[email_replies]
listen = "127.0.0.1:{reply_port}"
domain = "replies.test"
{email_replies}
"""
    return gateway_config(db=db, sim=sim, extra_gateway=extra, numbers=NUMBERS)


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    with SmtpSink() as s:
        yield s


def forward(sim: Simulator, smtp: SmtpSink, text: str) -> EmailMessage:
    """Send an MO that is forwarded by email; the forwarded email."""
    seen = len(smtp.messages)
    assert sim.mo(source=CUSTOMER, destination=VMN, text=text)["statuses"] == [0]
    wait_for(lambda: len(smtp.messages) > seen, what="the forwarded email")
    msg = BytesParser(policy=default_policy).parsebytes(smtp.messages[seen][2])
    assert isinstance(msg, EmailMessage)
    return msg


def answer(forwarded: EmailMessage, body: str, *, sender: str = AGENT,
           html: bool = False) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = str(forwarded["Reply-To"])
    msg["Subject"] = "Re: " + str(forwarded["Subject"])
    msg.set_content(body, subtype="html" if html else "plain")
    return msg


def sms_to_customer(sim: Simulator) -> list[str]:
    return [s["text"] for s in sim.submits() if s["destination_addr"] == CUSTOMER]


# =========================================================================== point 9

# A reply above 44 KiB of broken quoted markup (comments that never end): seconds for
# html.parser (quadratic), a single pass for Lexbor.
HTML_REPLY = "<div>Yes, Tuesday works.</div><blockquote>" + "<!--" * 11_000
UNCLOSED_TAGS = "<div " * (58 * 1024 // 5)  # 58 KiB of tags that never close


@pytest.fixture
async def daemon(sim: Simulator, db_url: str, smtp: SmtpSink,
                 tmp_path: Path) -> AsyncIterator[int]:
    """The daemon on this test's event loop (so that a stalled loop shows); yields the
    port of its reply listener."""
    port = free_port()
    path = tmp_path / "gateway.toml"
    path.write_text(config(db=db_url, sim=sim, smtp_port=smtp.port, reply_port=port))
    d = Daemon(load_config(path))
    task = asyncio.create_task(d.run())
    try:
        await asyncio.to_thread(sim.wait_bound, 20)
        yield port
    finally:
        d.request_stop()
        await asyncio.wait_for(task, 30)


async def test_reading_a_mail_never_stalls_mo_acks(
    daemon: int, sim: Simulator, smtp: SmtpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a pathological reply is being read, an unrelated MO is acknowledged: the
    reading is held at a gate until the MO's ack is seen. Read on the event loop, the
    gate would hold the loop and the MO could only be acked after it opened."""
    order: list[str] = []
    started = threading.Event()
    release = threading.Event()
    real = email_replies.extract_text

    def gated(msg: EmailMessage) -> str:
        order.append("reading")
        started.set()
        if not release.wait(30):  # only reached when the loop itself is held
            order.append("gate timed out")
        try:
            return real(msg)
        finally:
            order.append("read")

    monkeypatch.setattr(email_replies, "extract_text", gated)
    forwarded = await asyncio.to_thread(forward, sim, smtp, "SUPPORT when can you come?")
    for n, (body, expected) in enumerate([(HTML_REPLY, "Yes, Tuesday works."),
                                          (UNCLOSED_TAGS, None)]):
        order.clear()
        started.clear()
        release.clear()
        sending = asyncio.create_task(aiosmtplib.send(
            answer(forwarded, body, html=True), hostname="127.0.0.1", port=daemon,
            timeout=60))
        await asyncio.to_thread(started.wait, 30)
        mo = await asyncio.to_thread(sim.mo, source=f"1555000900{n}", destination=VMN,
                                     text="an unrelated MO")
        order.append("mo acked" if mo["statuses"] == [0] else f"mo {mo['statuses']}")
        release.set()
        try:
            await sending
            order.append("250")
        except aiosmtplib.SMTPDataError as exc:
            order.append(str(exc.code))
        answered = "250" if expected else "552"  # 58 KiB of tags: too deep to read
        assert order == ["reading", "mo acked", "read", answered]
        if expected:
            texts = await asyncio.to_thread(
                wait_for, lambda: sms_to_customer(sim), what="the SMS of the reply")
            assert texts == [expected]


# =========================================================================== point 16


@pytest.fixture
def gateway_for(sim: Simulator, db_url: str, smtp: SmtpSink,
                make_gateway: Callable[..., Gateway]) -> Callable[[str], tuple[Gateway, int]]:
    def start(email_replies: str = "") -> tuple[Gateway, int]:
        port = free_port()
        gw = make_gateway(config(db=db_url, sim=sim, smtp_port=smtp.port, reply_port=port,
                                 email_replies=email_replies))
        sim.wait_bound(timeout=20)
        wait_for(lambda: gw.log_events("email_reply.listening"), what="the reply listener")
        return gw, port

    return start


def send(port: int, msg: EmailMessage, *, mail_from: str | None = None) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
        s.send_message(msg, from_addr=mail_from)


def test_only_the_recipient_of_the_forward_may_reply(
    gateway_for: Callable[[str], tuple[Gateway, int]], sim: Simulator, smtp: SmtpSink
) -> None:
    gw, port = gateway_for("")
    forwarded = forward(sim, smtp, "SUPPORT my order is late")
    for sender, envelope in [("someone@else.test", None),  # a stranger with the address
                             ("someone@else.test", "other@else.test")]:
        with pytest.raises(smtplib.SMTPDataError) as info:
            send(port, answer(forwarded, "Refund granted!", sender=sender),
                 mail_from=envelope)
        assert info.value.smtp_code == 550
        assert b"only from the address the message was forwarded to" in info.value.smtp_error
    refused = gw.log_events("email_reply.refused")
    assert [e["reason"] for e in refused] == ["sender not a recipient"] * 2
    # The recipient may, whatever the case of the address; by its From or its envelope.
    send(port, answer(forwarded, "It ships today.", sender="Support@VMN.test"))
    send(port, answer(forwarded, "Tracking follows.", sender="Alias <x@vmn.test>"),
         mail_from=AGENT)
    wait_for(lambda: len(sms_to_customer(sim)) == 2, what="two SMS")
    assert sorted(sms_to_customer(sim)) == ["It ships today.", "Tracking follows."]


def test_accept_from_any(gateway_for: Callable[[str], tuple[Gateway, int]],
                         sim: Simulator, smtp: SmtpSink) -> None:
    _gw, port = gateway_for('accept_from = "any"')
    forwarded = forward(sim, smtp, "SUPPORT hello")
    send(port, answer(forwarded, "Answered by a colleague.", sender="colleague@vmn.test"))
    wait_for(lambda: sms_to_customer(sim) == ["Answered by a colleague."], what="the SMS")


def test_replies_per_token_are_rate_limited(
    gateway_for: Callable[[str], tuple[Gateway, int]], sim: Simulator, smtp: SmtpSink
) -> None:
    gw, port = gateway_for("max_replies_per_token = 2")
    first = forward(sim, smtp, "SUPPORT one")
    second = forward(sim, smtp, "SUPPORT two")
    send(port, answer(first, "Reply 1"))
    send(port, answer(first, "Reply 2"))
    with pytest.raises(smtplib.SMTPDataError) as info:
        send(port, answer(first, "Reply 3"))
    assert info.value.smtp_code == 451
    assert b"at most 2 per hour" in info.value.smtp_error
    (limited,) = gw.log_events("email_reply.rate_limited")
    assert limited["limit"] == 2
    send(port, answer(second, "Another conversation"))  # the limit is per reply address
    wait_for(lambda: len(sms_to_customer(sim)) == 3, what="three SMS")
    assert sorted(sms_to_customer(sim)) == ["Another conversation", "Reply 1", "Reply 2"]


def test_reply_limits_in_the_config() -> None:
    from gateway.config import AcceptFrom, EmailRepliesConfig

    defaults = EmailRepliesConfig.model_validate({"domain": "replies.test"})
    assert defaults.accept_from is AcceptFrom.RECIPIENTS
    assert defaults.max_replies_per_token == 10
    with pytest.raises(ValueError, match="accept_from"):
        EmailRepliesConfig.model_validate({"domain": "r.test", "accept_from": "anyone"})
