"""The email action: forward an MO to an address (`forward_email`, SPEC §2 ``[smtp]``).

`job.target` is the recipient address; `job.payload` holds ``vmn``, ``from`` (the
customer's number), ``text``, ``received_at`` (ISO-8601), ``id`` (the MO id),
``keyword`` (or None) and ``reply_token`` (or None without ``[email_replies]``).

The message (UTF-8 plain text)
    ``From``: ``[smtp] from``; ``To``: the target; ``Subject``:
    ``SMS from +15551234567 to 5551000100`` (plus `` (keyword JOIN)`` when a keyword
    matched); ``Date``; ``Message-ID`` (`email.utils.make_msgid`, in the domain of
    ``[smtp] from``); ``X-VMN-Message-Id: <MO id>``; ``Auto-Submitted:
    auto-generated`` (RFC 3834: vacation responders do not answer it);
    ``Reply-To: reply+<token>@<[email_replies] domain>`` when the job has a token and
    a reply domain is configured. The body is a short header block (from, to, received
    time in UTC, keyword), a blank line and the SMS text; with a Reply-To, a
    signature-delimited line says that a reply goes back by SMS (quoted history and
    signatures are stripped from replies, see `gateway.mailtext`).

Sending
    One connection per message (`aiosmtplib.send`): ``[smtp] host``/``port``, implicit
    TLS (``tls``) or a required STARTTLS upgrade (``starttls``; never opportunistic, so
    a plain relay with a self-signed certificate works with ``starttls = false``),
    certificates verified against the system trust store, AUTH when ``username`` is
    set, ``timeout`` per SMTP step.

Outcome (the outbox does retries, backoff and dead-lettering)
    Accepted -> OK (detail: the server's answer). A 4xx answer at any step (e.g.
    greylisting at RCPT), timeouts, refused or dropped connections and TLS handshake
    failures -> RETRY. A 5xx answer (recipient refused, message refused,
    authentication failed) -> FAIL. A server that lacks a required extension
    (STARTTLS, AUTH) -> FAIL, as does no ``[smtp]`` section or a payload/address that
    cannot make a message. `run` never raises (cancellation excepted).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any, ClassVar, Final

import aiosmtplib
import structlog

from gateway.actions.base import Job, Outcome, Result
from gateway.config import SmtpConfig
from gateway.mailtext import MAX_REPLY_CHARS
from gateway.model import JobKind

__all__ = ["EmailAction", "build_message", "reply_address"]

log = structlog.get_logger("gateway.actions.email")

DETAIL_MAX: Final = 200
_CONTROL_RE: Final = re.compile(r"[\x00-\x1f\x7f]+")


def reply_address(token: str, domain: str) -> str:
    """The address a reply to a forwarded SMS is sent to: ``reply+<token>@<domain>``."""
    return f"reply+{token}@{domain}"


def _one_line(text: str, limit: int = DETAIL_MAX) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _header_value(value: object) -> str:
    """A payload value made safe for a header: no line breaks or control characters."""
    return _CONTROL_RE.sub(" ", "" if value is None else str(value)).strip()


def _received_utc(value: object) -> str:
    if isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value.strip())
        except ValueError:
            return _header_value(value)
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        return dt.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return _header_value(value)


def build_message(
    smtp: SmtpConfig, target: str, payload: Mapping[str, Any], reply_domain: str | None
) -> EmailMessage:
    """The email for one forwarded MO (see the module docstring). ValueError (or an
    `email.errors` exception) when the target or a value cannot go in a header."""
    vmn = _header_value(payload.get("vmn"))
    sender = _header_value(payload.get("from"))
    keyword = _header_value(payload.get("keyword"))
    mo_id = _header_value(payload.get("id"))
    token = _header_value(payload.get("reply_token"))
    text = payload.get("text")
    text = "" if text is None else str(text)

    msg = EmailMessage()
    msg["From"] = smtp.from_
    msg["To"] = target
    if not msg["To"].addresses or any(not a.domain for a in msg["To"].addresses):
        raise ValueError(f"not an email address: {target!r}")
    subject = f"SMS from {sender} to {vmn}"
    if keyword:
        subject += f" (keyword {keyword})"
    msg["Subject"] = subject
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = make_msgid(domain=Address(addr_spec=smtp.from_).domain)
    if mo_id:
        msg["X-VMN-Message-Id"] = mo_id
    msg["Auto-Submitted"] = "auto-generated"
    if token and reply_domain:
        msg["Reply-To"] = reply_address(token, reply_domain)

    lines = [
        f"From:     {sender}",
        f"To:       {vmn}",
        f"Received: {_received_utc(payload.get('received_at'))}",
    ]
    if keyword:
        lines.append(f"Keyword:  {keyword}")
    body = "\n".join(lines) + "\n\n" + text.rstrip() + "\n"
    if "Reply-To" in msg:
        body += (
            "\n-- \n"
            f"Reply to this email to answer {sender} by SMS from {vmn}"
            f" (text only, at most {MAX_REPLY_CHARS} characters).\n"
        )
    msg.set_content(body, charset="utf-8")
    return msg


class EmailAction:
    """Forward MOs by email (see the module docstring)."""

    kind: ClassVar[str] = JobKind.EMAIL

    def __init__(
        self,
        smtp: Callable[[], SmtpConfig | None],
        *,
        reply_domain: Callable[[], str | None],
        concurrency: int = 8,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        self.concurrency = concurrency
        self._smtp = smtp
        self._reply_domain = reply_domain

    async def close(self) -> None:
        """Nothing to release: every message uses its own connection."""

    async def run(self, job: Job) -> Result:
        try:
            smtp = self._smtp()
            if smtp is None:
                return Result(outcome=Outcome.FAIL, detail="no [smtp] section")
            msg = build_message(smtp, job.target, job.payload, self._reply_domain())
        except Exception as exc:  # a bad address or payload: retrying cannot help
            return Result(
                outcome=Outcome.FAIL, detail=_one_line(f"cannot build the message: {exc}")
            )
        return await self._send(smtp, msg)

    async def _send(self, smtp: SmtpConfig, msg: EmailMessage) -> Result:
        start = time.perf_counter()

        def result(outcome: Outcome, detail: str, status: int | None = None) -> Result:
            return Result(
                outcome=outcome,
                detail=_one_line(detail),
                status=status,
                latency_ms=(time.perf_counter() - start) * 1000.0,
            )

        try:
            _errors, response = await aiosmtplib.send(
                msg,
                hostname=smtp.host,
                port=smtp.port,
                username=smtp.username,
                password=smtp.password_value() if smtp.username else None,
                start_tls=smtp.starttls,
                use_tls=smtp.tls,
                timeout=smtp.timeout,
            )
        except asyncio.CancelledError:
            raise
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            transient = bool(codes) and all(400 <= c < 500 for c in codes)  # greylisting
            outcome = Outcome.RETRY if transient else Outcome.FAIL
            code = max(codes, default=550)
            text = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
            return result(outcome, f"recipient refused: {text}", code)
        except aiosmtplib.SMTPResponseException as exc:
            outcome = Outcome.FAIL if 500 <= exc.code < 600 else Outcome.RETRY
            return result(outcome, f"{_step(exc)}{exc.code} {exc.message}", exc.code)
        except TimeoutError as exc:  # aiosmtplib.SMTPTimeoutError and subclasses
            return result(Outcome.RETRY, f"timeout after {smtp.timeout}s: {exc}")
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPConnectError) as exc:
            return result(Outcome.RETRY, str(exc) or type(exc).__name__)
        except aiosmtplib.SMTPException as exc:  # STARTTLS/AUTH/SMTPUTF8 not supported
            return result(Outcome.FAIL, str(exc) or type(exc).__name__)
        except OSError as exc:  # TLS handshake (certificate) failures, resets
            return result(Outcome.RETRY, f"{type(exc).__name__}: {exc}")
        except Exception as exc:
            log.warning("email_send_error", error=f"{type(exc).__name__}: {exc}")
            return result(Outcome.RETRY, f"{type(exc).__name__}: {exc}")
        return result(Outcome.OK, f"250 {response}", 250)


def _step(exc: aiosmtplib.SMTPResponseException) -> str:
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        return "authentication failed: "
    if isinstance(exc, aiosmtplib.SMTPSenderRefused):
        return "sender refused: "
    if isinstance(exc, aiosmtplib.SMTPDataError):
        return "message refused: "
    if isinstance(exc, aiosmtplib.SMTPConnectResponseError):
        return "server not ready: "
    return ""
