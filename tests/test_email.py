"""Email: reply stripping (pure), the forward_email action against a real in-process
SMTP server (aiosmtpd), and the inbound reply listener driven by a real SMTP client."""

from __future__ import annotations

import asyncio
import email
import email.policy
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from gateway import email_replies
from gateway.actions.base import Job, Outcome
from gateway.actions.email import EmailAction
from gateway.config import AcceptFrom, SmtpConfig
from gateway.email_replies import EmailReplyServer, ReplyTarget, parse_reply_address
from gateway.mailtext import (
    MAX_DASH_LINES,
    MAX_FIELD_CHARS,
    MAX_HTML_DEPTH,
    MAX_PARTS,
    MAX_REPLY_CHARS,
    MessageTooComplex,
    extract_text,
    html_to_text,
    strip_reply,
)

# =========================================================================== strip_reply

GMAIL = """\
Sure, 3pm works.
See you there.

On Tue, Jan 2, 2024 at 3:04 PM VMN Gateway <gw@example.com> wrote:

> From:     +15551234567
> To:       5551000100
>
> Can we meet at 3?
"""

GMAIL_WRAPPED = """\
Yes please

On Tue, Jan 2, 2024 at 3:04 PM Very Long Display Name Of The Gateway <
gw@example.com> wrote:

> Can we meet at 3?
"""

APPLE = """\
OK thanks

Sent from my iPhone

> On Jan 2, 2024, at 15:04, VMN Gateway <gw@example.com> wrote:
>
> Can we meet at 3?
"""

APPLE_NO_FOOTER = """\
Sounds good

> On 2 Jan 2024, at 15:04, VMN Gateway <gw@example.com> wrote:
>
> Can we meet at 3?
"""

OUTLOOK = """\
Confirmed.

________________________________
From: VMN Gateway <gw@example.com>
Sent: Tuesday, January 2, 2024 3:04 PM
To: Alice <alice@example.com>
Subject: SMS from +15551234567 to 5551000100

Can we meet at 3?
"""

OUTLOOK_BARE = """\
Confirmed, thanks!

From: VMN Gateway <gw@example.com>
Sent: Tuesday, January 2, 2024 3:04 PM
To: Alice <alice@example.com>

Can we meet at 3?
"""

ORIGINAL_MESSAGE = """\
Noted.
-----Original Message-----
From: VMN Gateway [mailto:gw@example.com]
Can we meet at 3?
"""

SIGNATURE = """\
Call me at 5.

-- \nAlice Smith
ACME Corp | +1 555 000 0000
"""

SIGNATURE_TRIMMED = "Call me at 5.\n--\nAlice\n"

ANDROID = "On my way\n\nSent from my Android phone\n"
GET_OUTLOOK = "On my way\n\nGet Outlook for iOS\n________________________________\nFrom: x\n"

GERMAN = "Ja, gerne\n\nAm 02.01.2024 um 15:04 schrieb VMN Gateway <gw@example.com>:\n> Hallo\n"
FRENCH = "Oui\n\nLe mar. 2 janv. 2024 à 15:04, VMN Gateway <gw@example.com> a écrit :\n> Salut\n"

BOTTOM_POSTED = """\
On Tue, Jan 2, 2024 at 3:04 PM VMN Gateway <gw@example.com> wrote:
> Can we meet at 3?

Yes, 3 is fine.

-- \nAlice
"""

INLINE = """\
VMN Gateway wrote:
> Can we meet at 3?
Yes.
> Where?
At the office.
"""

ONLY_QUOTE = """\

On Tue, Jan 2, 2024 at 3:04 PM VMN Gateway <gw@example.com> wrote:
> Can we meet at 3?
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(GMAIL, "Sure, 3pm works.\nSee you there.", id="gmail"),
        pytest.param(GMAIL_WRAPPED, "Yes please", id="gmail-wrapped-attribution"),
        pytest.param(APPLE, "OK thanks", id="apple-iphone-footer"),
        pytest.param(APPLE_NO_FOOTER, "Sounds good", id="apple-quoted-attribution"),
        pytest.param(OUTLOOK, "Confirmed.", id="outlook-separator"),
        pytest.param(OUTLOOK_BARE, "Confirmed, thanks!", id="outlook-from-sent"),
        pytest.param(ORIGINAL_MESSAGE, "Noted.", id="original-message"),
        pytest.param(SIGNATURE, "Call me at 5.", id="signature"),
        pytest.param(SIGNATURE_TRIMMED, "Call me at 5.", id="signature-trimmed-space"),
        pytest.param(ANDROID, "On my way", id="android-footer"),
        pytest.param(GET_OUTLOOK, "On my way", id="get-outlook-footer"),
        pytest.param(GERMAN, "Ja, gerne", id="german"),
        pytest.param(FRENCH, "Oui", id="french"),
        pytest.param(BOTTOM_POSTED, "Yes, 3 is fine.", id="bottom-posted"),
        pytest.param(INLINE, "Yes.\nAt the office.", id="inline"),
        pytest.param(ONLY_QUOTE, "", id="only-quote"),
        pytest.param("", "", id="empty"),
        pytest.param("   \n\n \t\n", "", id="blank"),
        pytest.param(
            "Line one   \nLine two\n\n\n\nLine three\t\n\n\n",
            "Line one\nLine two\n\nLine three",
            id="whitespace",
        ),
        pytest.param("Yes\r\nNo\r\n\r\n> quoted\r\n", "Yes\nNo", id="crlf"),
        pytest.param("Yes\u00a0please\u200b", "Yes please", id="nbsp-zero-width"),
        pytest.param(
            "On Monday I can come.\nFrom: the office, not home.",
            "On Monday I can come.\nFrom: the office, not home.",
            id="not-markers",
        ),
        pytest.param("a > b, surely\n> quoted", "a > b, surely", id="inner-gt-kept"),
    ],
)
def test_strip_reply(text: str, expected: str) -> None:
    assert strip_reply(text) == expected


def test_max_reply_chars() -> None:
    assert MAX_REPLY_CHARS == 1000


# =========================================================================== extract_text


def _parse(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def test_extract_text_prefers_plain() -> None:
    msg = EmailMessage()
    msg.set_content("plain answer\n")
    msg.add_alternative("<p>html answer</p>", subtype="html")
    assert extract_text(_parse(msg.as_bytes())).strip() == "plain answer"


GMAIL_HTML = """\
<html><head><style>p { color: red }</style><title>x</title></head><body>
<div dir="ltr">Yes, <b>3pm</b> &amp; the&nbsp;usual place<br>Bob &lt;3</div>
<br><div class="gmail_quote"><div dir="ltr" class="gmail_attr">On Tue, Jan 2, 2024 at
3:04 PM VMN Gateway &lt;<a href="mailto:gw@example.com">gw@example.com</a>&gt;
wrote:<br></div><blockquote class="gmail_quote" style="margin:0">Can we
<blockquote>nested</blockquote> meet at 3?</blockquote></div>
<script>alert(1)</script></body></html>
"""

OUTLOOK_HTML = """\
<html><body><div>Confirmed.</div><div><br></div>
<hr style="display:inline-block;width:98%" tabindex="-1">
<div id="divRplyFwdMsg"><b>From:</b> VMN Gateway &lt;gw@example.com&gt;<br>
<b>Sent:</b> Tuesday, January 2, 2024 3:04 PM<br><b>To:</b> Alice</div>
<div>Can we meet at 3?</div></body></html>
"""


def test_extract_text_html_only_gmail() -> None:
    msg = EmailMessage()
    msg.set_content(GMAIL_HTML, subtype="html")
    text = extract_text(_parse(msg.as_bytes()))
    assert "alert" not in text and "color" not in text and "nested" not in text
    assert strip_reply(text) == "Yes, 3pm & the usual place\nBob <3"


def test_extract_text_html_only_outlook() -> None:
    msg = EmailMessage()
    msg.set_content(OUTLOOK_HTML, subtype="html")
    assert strip_reply(extract_text(_parse(msg.as_bytes()))) == "Confirmed."


def test_html_to_text_pre_and_paragraphs() -> None:
    html = "<p>one\n  two</p><p>three</p><pre>a\n  b</pre>"
    assert html_to_text(html) == "one two\n\nthree\n\na\n  b"


def test_extract_text_charset_and_transfer_encoding() -> None:
    raw = (
        b"From: a@example.com\r\nTo: b@example.com\r\nSubject: x\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=iso-8859-1\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\nD=E9j=E0 vu\r\n"
    )
    assert extract_text(_parse(raw)).strip() == "Déjà vu"


def test_extract_text_unknown_charset_is_lenient() -> None:
    raw = b"From: a@example.com\r\nContent-Type: text/plain; charset=x-unknown-42\r\n\r\nhello\r\n"
    assert extract_text(_parse(raw)).strip() == "hello"


def test_extract_text_ignores_attachments() -> None:
    msg = EmailMessage()
    msg.set_content(b"\x89PNG...", maintype="image", subtype="png", filename="a.png")
    assert extract_text(_parse(msg.as_bytes())) == ""
    mixed = EmailMessage()
    mixed.set_content("see attached\n")
    mixed.add_attachment(b"data", maintype="application", subtype="octet-stream")
    assert extract_text(_parse(mixed.as_bytes())).strip() == "see attached"


# =========================================================================== SMTP sink


class Sink:
    """An aiosmtpd handler that records accepted messages; replies can be forced."""

    def __init__(self, *, rcpt_reply: str | None = None, data_reply: str | None = None) -> None:
        self.rcpt_reply = rcpt_reply
        self.data_reply = data_reply
        self.received: list[dict[str, Any]] = []

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.rcpt_reply:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.data_reply:
            return self.data_reply
        assert isinstance(envelope.original_content, bytes)
        self.received.append(
            {
                "mail_from": envelope.mail_from,
                "rcpt_tos": list(envelope.rcpt_tos),
                "message": _parse(envelope.original_content),
                "auth": session.auth_data,
                "tls": session.ssl is not None,
            }
        )
        return "250 2.0.0 queued as 42"


@asynccontextmanager
async def smtp_server(
    handler: Any, *, server_ssl: ssl.SSLContext | None = None, **smtp_kwargs: Any
) -> AsyncIterator[int]:
    """An aiosmtpd server on 127.0.0.1 (any free port) on the test's loop; yields the port."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="sink.test", loop=loop, **smtp_kwargs),
        "127.0.0.1",
        0,
        ssl=server_ssl,
    )
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


def smtp_config(port: int, **kw: Any) -> SmtpConfig:
    data = {"host": "127.0.0.1", "port": port, "from": "gw@example.com", "timeout": 5.0}
    return SmtpConfig.model_validate(data | kw)


def make_job(**payload: Any) -> Job:
    base: dict[str, Any] = {
        "vmn": "5551000100",
        "from": "+15551234567",
        "text": "Can we meet at 3? 👍",
        "received_at": "2024-01-02T10:04:05-05:00",
        "id": "mo-7f3a",
        "keyword": None,
        "reply_token": "tok_ABC-123",
    }
    return Job(
        id=1,
        kind="email",
        target="alice@example.com",
        event_id="ev-1",
        payload=base | payload,
        attempts=0,
    )


def action(port: int | None, domain: str | None = "replies.example.com", **kw: Any) -> EmailAction:
    cfg = None if port is None else smtp_config(port, **kw)
    return EmailAction(lambda: cfg, reply_domain=lambda: domain)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# =========================================================================== EmailAction


async def test_forward_email_message() -> None:
    sink = Sink()
    async with smtp_server(sink) as port:
        result = await action(port).run(make_job(keyword="MEET"))
    assert result.outcome is Outcome.OK, result
    assert result.status == 250 and result.detail == "250 2.0.0 queued as 42"
    (got,) = sink.received
    assert got["mail_from"] == "gw@example.com"
    assert got["rcpt_tos"] == ["alice@example.com"]
    msg: EmailMessage = got["message"]
    assert msg["From"] == "gw@example.com"
    assert msg["To"] == "alice@example.com"
    assert msg["Subject"] == "SMS from +15551234567 to 5551000100 (keyword MEET)"
    assert msg["Reply-To"] == "reply+tok_ABC-123@replies.example.com"
    assert msg["X-VMN-Message-Id"] == "mo-7f3a"
    assert msg["Message-ID"].startswith("<") and msg["Message-ID"].endswith("@example.com>")
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["Date"]
    body = extract_text(msg).replace("\r\n", "\n")
    assert "From:     +15551234567\n" in body
    assert "To:       5551000100\n" in body
    assert "Received: 2024-01-02 15:04:05 UTC\n" in body
    assert "Keyword:  MEET\n" in body
    assert "\n\nCan we meet at 3? 👍\n" in body
    assert "\n-- \nReply to this email" in body


async def test_forward_email_without_reply_address() -> None:
    sink = Sink()
    async with smtp_server(sink) as port:
        no_token = await action(port).run(make_job(reply_token=None))
        no_domain = await action(port, domain=None).run(make_job())
    assert no_token.outcome is Outcome.OK and no_domain.outcome is Outcome.OK
    for got in sink.received:
        msg = got["message"]
        assert "Reply-To" not in msg
        assert msg["Subject"] == "SMS from +15551234567 to 5551000100"
        body = extract_text(msg)
        assert "Keyword" not in body and "Reply to this email" not in body


async def test_forward_email_header_injection_is_neutralised() -> None:
    sink = Sink()
    async with smtp_server(sink) as port:
        result = await action(port).run(
            make_job(**{"from": "+1555\r\nBcc: evil@example.com", "keyword": "A\nB"})
        )
    assert result.outcome is Outcome.OK
    msg = sink.received[0]["message"]
    assert "Bcc" not in msg
    assert sink.received[0]["rcpt_tos"] == ["alice@example.com"]
    assert msg["Subject"] == "SMS from +1555 Bcc: evil@example.com to 5551000100 (keyword A B)"


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
async def test_forward_email_auth() -> None:
    seen: list[tuple[str, bytes, bytes]] = []

    def authenticator(
        server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        seen.append((mechanism, data.login, data.password))
        ok = data.login == b"gateway" and data.password == b"s3cret"
        return AuthResult(success=ok, handled=False, auth_data=data if ok else None)

    sink = Sink()
    async with smtp_server(
        sink, authenticator=authenticator, auth_required=True, auth_require_tls=False
    ) as port:
        good = await action(port, username="gateway", password="s3cret").run(make_job())
        bad = await action(port, username="gateway", password="wrong").run(make_job())
        anonymous = await action(port).run(make_job())
    assert good.outcome is Outcome.OK, good
    assert sink.received[0]["auth"].login == b"gateway"
    assert seen[0][1:] == (b"gateway", b"s3cret")
    assert bad.outcome is Outcome.FAIL and bad.status == 535
    assert bad.detail.startswith("authentication failed: 535")
    assert anonymous.outcome is Outcome.FAIL and anonymous.status == 530
    assert len(sink.received) == 1


async def test_forward_email_server_down_is_retry() -> None:
    result = await action(free_port()).run(make_job())
    assert result.outcome is Outcome.RETRY
    assert "connecting" in result.detail.lower()


async def test_forward_email_timeout_is_retry() -> None:
    writers: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)  # accepts the connection, never sends a greeting

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        result = await action(port, timeout=0.3).run(make_job())
    finally:
        server.close()
        for writer in writers:
            writer.close()
        await server.wait_closed()
    assert result.outcome is Outcome.RETRY
    assert result.detail.startswith("timeout after 0.3s")


@pytest.mark.parametrize(
    ("rcpt_reply", "data_reply", "outcome", "status"),
    [
        ("550 5.1.1 no such user", None, Outcome.FAIL, 550),
        ("450 4.2.0 greylisted, try again", None, Outcome.RETRY, 450),
        (None, "554 5.7.1 rejected as spam", Outcome.FAIL, 554),
        (None, "451 4.3.0 local error", Outcome.RETRY, 451),
    ],
)
async def test_forward_email_refusals(
    rcpt_reply: str | None, data_reply: str | None, outcome: Outcome, status: int
) -> None:
    sink = Sink(rcpt_reply=rcpt_reply, data_reply=data_reply)
    async with smtp_server(sink) as port:
        result = await action(port).run(make_job())
    assert result.outcome is outcome, result
    assert result.status == status
    assert str(status) in result.detail


async def test_forward_email_no_smtp_section() -> None:
    result = await action(None).run(make_job())
    assert result.outcome is Outcome.FAIL and result.detail == "no [smtp] section"


async def test_forward_email_bad_target_is_fail() -> None:
    job = make_job()
    bad = Job(
        id=job.id,
        kind=job.kind,
        target="not an address",
        event_id=job.event_id,
        payload=job.payload,
        attempts=0,
    )
    result = await action(free_port()).run(bad)
    assert result.outcome is Outcome.FAIL
    assert result.detail.startswith("cannot build the message")


async def test_forward_email_starttls_required_but_missing_is_fail() -> None:
    async with smtp_server(Sink()) as port:
        result = await action(port, starttls=True).run(make_job())
    assert result.outcome is Outcome.FAIL
    assert "STARTTLS" in result.detail


# --------------------------------------------------------------------------- TLS


@pytest.fixture
def tls_files(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A self-signed certificate for 127.0.0.1/localhost, made with the openssl CLI."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-days", "2", "-subj", "/CN=localhost", "-keyout", str(key),
            "-out", str(cert), "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    yield cert, key


def server_context(tls_files: tuple[Path, Path]) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(*tls_files)
    return ctx


async def test_forward_email_starttls(
    tls_files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_files[0]))  # trust the test certificate
    sink = Sink()
    async with smtp_server(
        sink, tls_context=server_context(tls_files), require_starttls=True
    ) as port:
        result = await action(port, starttls=True).run(make_job())
        plain = await action(port).run(make_job())
    assert result.outcome is Outcome.OK, result
    assert len(sink.received) == 1 and sink.received[0]["tls"]
    assert plain.outcome is Outcome.FAIL and plain.status == 530  # must issue STARTTLS


async def test_forward_email_implicit_tls(
    tls_files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_files[0]))
    sink = Sink()
    async with smtp_server(sink, server_ssl=server_context(tls_files)) as port:
        result = await action(port, tls=True).run(make_job())
    assert result.outcome is Outcome.OK, result
    assert len(sink.received) == 1


async def test_forward_email_untrusted_certificate_is_retry(
    tls_files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "empty.pem"))  # trusts nothing
    (tmp_path / "empty.pem").write_text("")
    monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path))
    sink = Sink()
    async with smtp_server(sink, tls_context=server_context(tls_files)) as port:
        result = await action(port, starttls=True).run(make_job())
    assert result.outcome is Outcome.RETRY
    assert "certificate" in result.detail.lower()
    assert sink.received == []


# =========================================================================== reply listener

DOMAIN = "replies.example.com"
TARGET = ReplyTarget(
    vmn="5551000100", msisdn="+15551234567", mo_id="mo-7f3a", recipient="alice@example.com"
)


class DictTokens:
    def __init__(self, tokens: dict[str, ReplyTarget]) -> None:
        self.tokens = tokens
        self.fail = False
        self.lookups: list[str] = []

    async def lookup(self, token: str) -> ReplyTarget | None:
        self.lookups.append(token)
        if self.fail:
            raise ConnectionError("database is down")
        return self.tokens.get(token)

    async def count_reply(self, token: str, *, limit: int, window: float) -> bool:
        return True  # the database's counting is tested on both backends (DbReplyTokens)


class Replies:
    def __init__(self) -> None:
        self.calls: list[tuple[ReplyTarget, str, str]] = []
        self.fail = False

    async def __call__(self, target: ReplyTarget, text: str, from_address: str) -> None:
        if self.fail:
            raise ConnectionError("database is down")
        self.calls.append((target, text, from_address))


class LogRecorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def info(self, event: str, **kw: Any) -> None:
        self.events.append((event, kw))

    warning = info

    def named(self, event: str) -> list[dict[str, Any]]:
        return [kw for name, kw in self.events if name == event]


@pytest.fixture
def logs(monkeypatch: pytest.MonkeyPatch) -> LogRecorder:
    recorder = LogRecorder()
    monkeypatch.setattr(email_replies, "log", recorder)
    return recorder


@pytest.fixture
async def listener() -> AsyncIterator[tuple[EmailReplyServer, DictTokens, Replies]]:
    tokens = DictTokens({"tok_ABC-123": TARGET})
    replies = Replies()
    server = EmailReplyServer(listen="127.0.0.1:0", domain=DOMAIN, tokens=tokens, on_reply=replies)
    await server.start()
    try:
        yield server, tokens, replies
    finally:
        await server.stop()


def reply_mail(
    body: str, *, to: str = f"reply+tok_ABC-123@{DOMAIN}", **headers: str
) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "Alice <alice@example.com>"
    msg["To"] = to
    msg["Subject"] = "Re: SMS from +15551234567 to 5551000100"
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(body)
    return msg


async def send_reply(
    server: EmailReplyServer,
    msg: EmailMessage,
    *,
    sender: str = "alice@example.com",
    recipients: list[str] | None = None,
) -> tuple[dict[str, Any], str]:
    return await aiosmtplib.send(
        msg,
        hostname="127.0.0.1",
        port=server.port,
        sender=sender,
        recipients=recipients or [str(msg["To"])],
        timeout=5,
    )


def test_parse_reply_address() -> None:
    assert parse_reply_address(f"reply+tok_ABC-123@{DOMAIN}", DOMAIN) == "tok_ABC-123"
    assert parse_reply_address("Reply+tok@REPLIES.Example.com", DOMAIN) == "tok"
    assert parse_reply_address(f"reply+@{DOMAIN}", DOMAIN) is None
    assert parse_reply_address(f"reply@{DOMAIN}", DOMAIN) is None
    assert parse_reply_address(f"other+tok@{DOMAIN}", DOMAIN) is None
    assert parse_reply_address("reply+tok@example.com", DOMAIN) is None
    assert parse_reply_address(f"reply+tok@x.{DOMAIN}", DOMAIN) is None
    assert parse_reply_address(f"reply+t/k@{DOMAIN}", DOMAIN) is None
    assert parse_reply_address("victim@example.com", DOMAIN) is None


async def test_reply_becomes_mt(
    listener: tuple[EmailReplyServer, DictTokens, Replies], logs: LogRecorder
) -> None:
    server, _tokens, replies = listener
    _errors, response = await send_reply(server, reply_mail(GMAIL))
    assert response == "OK"
    assert replies.calls == [(TARGET, "Sure, 3pm works.\nSee you there.", "alice@example.com")]
    (accepted,) = logs.named("email_reply.accepted")
    assert accepted["mo_id"] == "mo-7f3a"
    for _event, kw in logs.events:  # bodies are never logged
        assert "3pm" not in repr(kw)


async def test_reply_domain_is_case_insensitive(
    listener: tuple[EmailReplyServer, DictTokens, Replies],
) -> None:
    server, _tokens, replies = listener
    await send_reply(server, reply_mail("Yes", to="REPLY+tok_ABC-123@Replies.Example.COM"))
    assert replies.calls == [(TARGET, "Yes", "alice@example.com")]


async def test_reply_html_only(listener: tuple[EmailReplyServer, DictTokens, Replies]) -> None:
    server, _tokens, replies = listener
    msg = reply_mail("")
    msg.set_content(GMAIL_HTML, subtype="html")
    await send_reply(server, msg)
    assert replies.calls == [(TARGET, "Yes, 3pm & the usual place\nBob <3", "alice@example.com")]


async def test_reply_unknown_token_is_refused(
    listener: tuple[EmailReplyServer, DictTokens, Replies], logs: LogRecorder
) -> None:
    server, tokens, replies = listener
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as info:
        await send_reply(server, reply_mail("Yes", to=f"reply+expired@{DOMAIN}"))
    (refused,) = info.value.recipients
    assert refused.code == 550 and "unknown or expired" in refused.message
    assert tokens.lookups == ["expired"]
    assert replies.calls == []
    (event,) = logs.named("email_reply.refused")
    assert event["address"] == f"reply+expired@{DOMAIN}"


@pytest.mark.parametrize(
    "rcpt",
    [
        "victim@example.com",
        "reply+tok_ABC-123@example.com",
        f"postmaster@{DOMAIN}",
        f"reply+tok_ABC-123@{DOMAIN}@evil.example",
    ],
)
async def test_reply_listener_is_not_an_open_relay(
    listener: tuple[EmailReplyServer, DictTokens, Replies], logs: LogRecorder, rcpt: str
) -> None:
    server, tokens, replies = listener
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as info:
        await send_reply(server, reply_mail("relay me"), recipients=[rcpt])
    code = info.value.recipients[0].code
    assert tokens.lookups == [] and replies.calls == []
    if code == 553:  # aiosmtpd refuses a malformed address before our hook
        return
    assert code == 550
    assert logs.named("email_reply.refused")[0]["address"] == rcpt


async def test_reply_mixed_recipients_only_valid_one_used(
    listener: tuple[EmailReplyServer, DictTokens, Replies],
) -> None:
    server, _tokens, replies = listener
    errors, _response = await send_reply(
        server,
        reply_mail("Yes"),
        recipients=["victim@example.com", f"reply+tok_ABC-123@{DOMAIN}"],
    )
    assert errors["victim@example.com"].code == 550
    assert replies.calls == [(TARGET, "Yes", "alice@example.com")]


async def test_reply_empty_after_stripping_is_refused(
    listener: tuple[EmailReplyServer, DictTokens, Replies], logs: LogRecorder
) -> None:
    server, _tokens, replies = listener
    with pytest.raises(aiosmtplib.SMTPDataError) as info:
        await send_reply(server, reply_mail(ONLY_QUOTE))
    assert info.value.code == 550 and "no text left" in info.value.message
    assert replies.calls == []
    assert logs.named("email_reply.refused")[0]["reason"] == "empty"


async def test_reply_too_long_is_refused(
    listener: tuple[EmailReplyServer, DictTokens, Replies],
) -> None:
    server, _tokens, replies = listener
    ok_text = "x" * MAX_REPLY_CHARS
    await send_reply(server, reply_mail(ok_text))
    with pytest.raises(aiosmtplib.SMTPDataError) as info:
        await send_reply(server, reply_mail("y" * (MAX_REPLY_CHARS + 1)))
    assert info.value.code == 550
    assert f"{MAX_REPLY_CHARS + 1} characters" in info.value.message
    assert [text for _t, text, _f in replies.calls] == [ok_text]


async def test_reply_too_big_is_refused(
    listener: tuple[EmailReplyServer, DictTokens, Replies],
) -> None:
    server, _tokens, replies = listener
    msg = reply_mail("Yes")
    msg.add_attachment(b"\0" * (1024 * 1024), maintype="application", subtype="octet-stream")
    with pytest.raises(aiosmtplib.SMTPResponseException) as info:
        await send_reply(server, msg)
    assert info.value.code == 552
    assert replies.calls == []


async def test_reply_queue_failure_is_451_then_retry_works(
    listener: tuple[EmailReplyServer, DictTokens, Replies], logs: LogRecorder
) -> None:
    server, _tokens, replies = listener
    replies.fail = True
    with pytest.raises(aiosmtplib.SMTPDataError) as info:
        await send_reply(server, reply_mail("Yes"))
    assert info.value.code == 451
    assert logs.named("email_reply.queue_failed")
    replies.fail = False
    await send_reply(server, reply_mail("Yes"))
    assert replies.calls == [(TARGET, "Yes", "alice@example.com")]


async def test_reply_lookup_failure_is_451(
    listener: tuple[EmailReplyServer, DictTokens, Replies],
) -> None:
    server, tokens, replies = listener
    tokens.fail = True
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as info:
        await send_reply(server, reply_mail("Yes"))
    assert info.value.recipients[0].code == 451
    assert replies.calls == []


@pytest.mark.parametrize(
    ("sender", "headers"),
    [
        ("", {}),  # a bounce (null reverse-path)
        ("alice@example.com", {"Auto_Submitted": "auto-replied"}),
        ("alice@example.com", {"X_Autoreply": "yes"}),
        ("alice@example.com", {"Precedence": "bulk"}),
    ],
)
async def test_reply_automatic_mail_is_dropped(
    listener: tuple[EmailReplyServer, DictTokens, Replies],
    logs: LogRecorder,
    sender: str,
    headers: dict[str, str],
) -> None:
    server, _tokens, replies = listener
    _errors, response = await send_reply(
        server, reply_mail("I am out of office", **headers), sender=sender
    )
    assert response.startswith("OK")
    assert replies.calls == []
    assert logs.named("email_reply.ignored")


async def test_reply_listener_stop_closes_open_sessions() -> None:
    server = EmailReplyServer(
        listen="127.0.0.1:0", domain=DOMAIN, tokens=DictTokens({}), on_reply=Replies()
    )
    await server.start()
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=server.port, timeout=5)
    await client.connect()
    await client.ehlo()
    await asyncio.wait_for(server.stop(), 2)
    with pytest.raises(aiosmtplib.SMTPServerDisconnected):
        await client.noop()
    client.close()
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", server.port)


# =========================================================================== round trip


async def test_forward_then_reply_round_trip(
    listener: tuple[EmailReplyServer, DictTokens, Replies],
) -> None:
    """Forward an MO, answer the forwarded email the way a mail client quotes it."""
    server, _tokens, replies = listener
    sink = Sink()
    async with smtp_server(sink) as port:
        result = await action(port, domain=DOMAIN).run(make_job())
    assert result.outcome is Outcome.OK
    forwarded: EmailMessage = sink.received[0]["message"]
    quoted = "\n".join("> " + line for line in extract_text(forwarded).splitlines())
    answer = reply_mail(
        f"See you at 3!\n\nOn Tue, Jan 2, 2024 at 3:04 PM <gw@example.com> wrote:\n{quoted}\n",
        to=str(forwarded["Reply-To"]),
    )
    await send_reply(server, answer)
    assert replies.calls == [(TARGET, "See you at 3!", "alice@example.com")]


# =========================================================================== parsing limits


def test_html_to_text_pathological_markup() -> None:
    """Inputs that html.parser needs seconds for (quadratic) are read in one pass (Lexbor)
    or refused before parsing when they may nest deeper than MAX_HTML_DEPTH (an HTML5
    parser's work grows with the square of the depth); nesting costs no recursion."""
    html = "<div>Yes, Tuesday works.</div><blockquote>" + "<!--" * 11_000  # 44 KiB
    assert html_to_text(html) == "Yes, Tuesday works."
    assert html_to_text("<p>x" * 20_000) == "\n\n".join(["x"] * 20_000)  # p closes p
    assert html_to_text("<div>" * (MAX_HTML_DEPTH - 1) + "deep") == "deep"
    for deep in ["<div " * (58 * 1024 // 5), "<div>" * 30_000, "<b><i>" * 20_000,
                 "<div></x>" * 2_000]:  # a stray end tag closes nothing
        with pytest.raises(MessageTooComplex, match=f"more than {MAX_HTML_DEPTH}"):
            html_to_text(deep)


def many_parts(n: int) -> EmailMessage:
    msg = reply_mail("Yes")
    for i in range(n):
        msg.add_attachment(f"{i}".encode(), maintype="application", subtype="octet-stream")
    return msg


async def test_reply_with_too_many_parts_is_refused(
    listener: tuple[EmailReplyServer, DictTokens, Replies], logs: LogRecorder
) -> None:
    server, _tokens, replies = listener
    await send_reply(server, many_parts(MAX_PARTS - 2))  # container + text + attachments
    with pytest.raises(aiosmtplib.SMTPDataError) as info:
        await send_reply(server, many_parts(MAX_PARTS - 1))
    assert info.value.code == 552 and f"more than {MAX_PARTS} MIME parts" in info.value.message
    assert [text for _t, text, _f in replies.calls] == ["Yes"]
    assert "too complex" in logs.named("email_reply.refused")[0]["reason"]


async def test_reply_with_thousands_of_parts_is_refused_before_parsing(
    listener: tuple[EmailReplyServer, DictTokens, Replies],
) -> None:
    """40,000 empty parts in 400 KB: the email package needs seconds for them, so the
    boundary lines are counted before it runs."""
    server, _tokens, replies = listener
    raw = (f"From: alice@example.com\r\nTo: reply+tok_ABC-123@{DOMAIN}\r\n"
           "Content-Type: multipart/mixed; boundary=b\r\n\r\n").encode()
    raw += b"--b\r\n\r\nx\r\n" * 40_000 + b"--b--\r\n"
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=server.port, timeout=30) as client:
        await client.mail("alice@example.com")
        await client.rcpt(f"reply+tok_ABC-123@{DOMAIN}")
        with pytest.raises(aiosmtplib.SMTPDataError) as info:
            await client.data(raw)
    assert info.value.code == 552 and f"more than {MAX_DASH_LINES} lines" in info.value.message
    assert replies.calls == []


def rfc2231_mail(continuations: int) -> bytes:
    params = "".join(f";\r\n name*{i}*=utf-8''x%41{i}" if i == 0 else f";\r\n name*{i}*=x%41{i}"
                     for i in range(continuations))
    return (
        f"From: alice@example.com\r\nTo: reply+tok_ABC-123@{DOMAIN}\r\nSubject: Re: x\r\n"
        f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8{params}\r\n\r\n"
        "Yes\r\n"
    ).encode()


@pytest.mark.parametrize("where", ["header", "part"])
async def test_reply_with_many_rfc2231_continuations_is_refused(
    listener: tuple[EmailReplyServer, DictTokens, Replies], where: str
) -> None:
    """RFC 2231 parameters cost the email package quadratic time in a field's length: a
    field longer than MAX_FIELD_CHARS is refused before anything parses it."""
    server, _tokens, replies = listener
    raw = rfc2231_mail(1000)
    if where == "part":  # the same field in a MIME part's header
        head, _, body = raw.partition(b"\r\nMIME-Version: 1.0\r\n")
        raw = (head + b"\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b"
               b"\r\n\r\n--b\r\n" + body.replace(b"\r\n\r\nYes", b"\r\n\r\nYes", 1)
               + b"\r\n--b--\r\n")
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=server.port, timeout=30) as client:
        await client.mail("alice@example.com")
        await client.rcpt(f"reply+tok_ABC-123@{DOMAIN}")
        with pytest.raises(aiosmtplib.SMTPDataError) as info:
            await client.data(raw)
    assert info.value.code == 552
    assert "Content-Type is" in info.value.message and f"{MAX_FIELD_CHARS}" in info.value.message
    assert replies.calls == []
    # A short RFC 2231 field is read as usual.
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=server.port, timeout=30) as client:
        await client.mail("alice@example.com")
        await client.rcpt(f"reply+tok_ABC-123@{DOMAIN}")
        await client.data(rfc2231_mail(20))
    assert [text for _t, text, _f in replies.calls] == ["Yes"]


async def test_reply_is_read_off_the_event_loop(
    listener: tuple[EmailReplyServer, DictTokens, Replies], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, _tokens, replies = listener
    threads: list[str] = []
    real = email_replies.read_message

    def recording(raw: bytes) -> EmailMessage:
        threads.append(threading.current_thread().name)
        return real(raw)

    monkeypatch.setattr(email_replies, "read_message", recording)
    await send_reply(server, reply_mail("Yes"))
    assert threads and threads[0] != threading.main_thread().name
    assert replies.calls == [(TARGET, "Yes", "alice@example.com")]


async def test_reply_sender_must_be_the_recipient(
    listener: tuple[EmailReplyServer, DictTokens, Replies], logs: LogRecorder
) -> None:
    server, tokens, replies = listener
    legacy = ReplyTarget(vmn="5551000100", msisdn="+15551234567", mo_id="mo-old")
    tokens.tokens["legacy"] = legacy  # made before recipients were recorded
    forged = reply_mail("Yes")
    forged.replace_header("From", "mallory@example.com")
    with pytest.raises(aiosmtplib.SMTPDataError) as info:
        await send_reply(server, forged, sender="mallory@example.com")
    assert info.value.code == 550 and "forwarded to" in info.value.message
    with pytest.raises(aiosmtplib.SMTPDataError):
        await send_reply(server, reply_mail("Yes", to=f"reply+legacy@{DOMAIN}"))
    assert replies.calls == []
    assert [e["reason"] for e in logs.named("email_reply.refused")] == [
        "sender not a recipient"] * 2
    server.accept_from = AcceptFrom.ANY
    await send_reply(server, reply_mail("Yes", to=f"reply+legacy@{DOMAIN}"),
                     sender="mallory@example.com")
    assert replies.calls == [(legacy, "Yes", "mallory@example.com")]


async def test_reply_that_cannot_be_sent_is_refused_not_retried(
    listener: tuple[EmailReplyServer, DictTokens, Replies], logs: LogRecorder
) -> None:
    """A reply whose VMN is no longer configured has no sender (issue 9 point 17): the
    daemon's on_reply raises ReplyRefused, which is a 550 (not a 451 retried for days)."""
    from gateway.email_replies import ReplyRefused

    server, _tokens, _replies = listener

    async def refuse(target: ReplyTarget, text: str, from_address: str) -> None:
        raise ReplyRefused("the number 5551000100 no longer takes replies")

    server._on_reply = refuse
    with pytest.raises(aiosmtplib.SMTPDataError) as info:
        await send_reply(server, reply_mail("Yes"))
    assert info.value.code == 550 and "no longer takes replies" in info.value.message
    assert [e["reason"] for e in logs.named("email_reply.refused")] == [
        "the number 5551000100 no longer takes replies"]
