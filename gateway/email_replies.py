"""Email replies (SPEC §2 ``[email_replies]``): an inbound SMTP listener so that a reply
to a forwarded SMS goes back to the customer as an SMS.

A forwarded email carries ``Reply-To: reply+<token>@<domain>``; the token stands for
(VMN, customer number, MO id). The listener runs aiosmtpd's `SMTP` protocol on the
gateway's own event loop (no extra thread) on ``[email_replies] listen``.

RCPT TO
    Only ``reply+<token>@<domain>`` is accepted (``reply`` and the domain
    case-insensitive; the token is 1-128 of ``A-Z a-z 0-9 _ -`` and case-sensitive),
    and only when `ReplyTokens.lookup` finds the token (known and not expired).
    Anything else is refused with 550 and logged (``email_reply.refused``, with the
    address and the reason): no other recipient is ever accepted, so this is not an
    open relay. A failing lookup (database down) answers 451 so the sending MTA retries.
    At most `MAX_RECIPIENTS` recipients per message (452 beyond).

DATA
    At most `DATA_SIZE_LIMIT` bytes (552 beyond). The message is parsed and its text
    taken and stripped by `gateway.mailtext` (text/plain preferred, else text/html;
    quoted history and signature removed) on a thread of its own, never on the event
    loop that acknowledges MOs, within the limits of `gateway.mailtext.read_message`
    (header field lengths, `MAX_PARTS` MIME parts: 552 beyond) and `parse_timeout`
    seconds (554 beyond). Empty after stripping, or longer than `MAX_REPLY_CHARS`: 550
    with the reason (the sender gets a bounce that says why). Automatic mail (null
    sender ``<>``, ``Auto-Submitted`` other than ``no``, ``X-Autoreply``,
    ``X-Autorespond``, ``Precedence: auto_reply/bulk/junk/list``) is accepted and
    dropped (250, logged as ``email_reply.ignored``) so that bounces and vacation
    notices never become SMS and never loop.
    With ``accept_from = "recipients"`` (the default) a reply is taken only when its
    envelope sender (MAIL FROM) or its ``From`` address is the address the forward
    was sent to (550 5.7.1 otherwise, logged with reason ``sender not a recipient``).
    At most ``max_replies_per_token`` replies per reply address and hour (451 4.7.1
    beyond, logged as ``email_reply.rate_limited``: the sending MTA retries later, so
    nothing is lost; 0 = no limit).
    Otherwise ``on_reply(target, text, mail_from)`` is awaited once per distinct
    accepted target, then 250. If it raises: 451 (the sending MTA retries; nothing is
    lost). Message bodies are never logged.

Authentication of the sender is the token plus the sender address (an address can be
forged; SPF/DKIM/DMARC checks belong to the MTA in front, if any).
"""

from __future__ import annotations

import asyncio
import re
import weakref
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Final, Protocol

import structlog
from aiosmtpd.smtp import SMTP, Envelope, Session

from gateway.config import AcceptFrom, split_host_port
from gateway.mailtext import (
    MAX_REPLY_CHARS,
    MessageTooComplex,
    extract_text,
    read_message,
    strip_reply,
)

__all__ = [
    "DATA_SIZE_LIMIT",
    "MAX_RECIPIENTS",
    "EmailReplyServer",
    "OnReply",
    "ReplyTarget",
    "ReplyTokens",
    "parse_reply_address",
]

log = structlog.get_logger("gateway.email_replies")

DATA_SIZE_LIMIT: Final = 1024 * 1024  # bytes of message data (headers, attachments...)
MAX_RECIPIENTS: Final = 10
IDLE_TIMEOUT: Final = 120.0  # seconds without a command before the session is closed
PARSE_TIMEOUT: Final = 10.0  # seconds to read one message (the limits keep it far below)
PARSE_THREADS: Final = 2  # messages read at once; more wait for a thread
RATE_WINDOW: Final = 3600.0  # seconds of max_replies_per_token
STOP_GRACE: Final = 5.0  # seconds stop() waits for replies being queued

_TOKEN_RE: Final = re.compile(r"[A-Za-z0-9_-]{1,128}")
_AUTOMATIC_PRECEDENCE: Final = frozenset({"auto_reply", "bulk", "junk", "list"})

class ReplyRefused(Exception):
    """Raised by ``on_reply`` for a reply that must never be sent (550, not retried):
    e.g. its VMN is no longer configured, so it has no sender (issue 9 point 17)."""


REFUSED_UNKNOWN: Final = "550 5.1.1 unknown or expired reply address"
REFUSED_SENDER: Final = (
    "550 5.7.1 this reply address takes replies only from the address the message"
    " was forwarded to"
)
REFUSED_RELAY: Final = "550 5.7.1 relay access denied"
TRY_LATER: Final = "451 4.3.0 try again later"


@dataclass(frozen=True, slots=True)
class ReplyTarget:
    """Where a reply goes: the customer (`msisdn`), from `vmn`; `mo_id` is the MO
    that was forwarded; `recipient` the address it was forwarded to (None for a token
    made before it was recorded)."""

    vmn: str
    msisdn: str
    mo_id: str
    recipient: str | None = None


class ReplyTokens(Protocol):
    async def lookup(self, token: str) -> ReplyTarget | None:
        """The target of a known, unexpired token; None otherwise."""
        ...

    async def count_reply(self, token: str, *, limit: int, window: float) -> bool:
        """Count one reply under `token`; False (nothing counted) when `limit` replies
        were already counted in its current window of `window` seconds."""
        ...


OnReply = Callable[[ReplyTarget, str, str], Awaitable[None]]
"""``on_reply(target, text, from_address)``: queue the MT durably; raise if it cannot."""


def parse_reply_address(address: str, domain: str) -> str | None:
    """The token of ``reply+<token>@<domain>``; None for any other address."""
    local, sep, addr_domain = address.strip().rpartition("@")
    if not sep or addr_domain.casefold().rstrip(".") != domain.casefold().rstrip("."):
        return None
    prefix, plus, token = local.partition("+")
    if not plus or prefix.casefold() != "reply" or not _TOKEN_RE.fullmatch(token):
        return None
    return token


@dataclass(frozen=True, slots=True)
class _Read:
    """What DATA needs from a message, taken off the event loop."""

    automatic: str | None  # why it is an automatic message
    text: str  # the stripped reply ("" for an automatic message)
    senders: frozenset[str]  # the From addresses, case-folded


def _read(content: bytes, null_sender: bool) -> _Read:
    """Parse a message and take its reply text (runs on a parser thread: every header
    the email package parses into structure is read here, none on the loop)."""
    msg = read_message(content)
    automatic = "null sender" if null_sender else _automatic(msg)
    text = strip_reply(extract_text(msg)) if automatic is None else ""
    senders: set[str] = set()
    header = msg.get("From")
    for address in getattr(header, "addresses", ()):
        if address.addr_spec:
            senders.add(address.addr_spec.casefold())
    return _Read(automatic=automatic, text=text, senders=frozenset(senders))


def _automatic(msg: EmailMessage) -> str | None:
    """Why a message is an automatic one (bounce, vacation notice, list mail), or None."""
    auto = str(msg.get("Auto-Submitted", "")).strip().lower()
    if auto and not auto.startswith("no"):
        return f"Auto-Submitted: {auto}"
    for name in ("X-Autoreply", "X-Autorespond"):
        if name in msg:
            return name
    precedence = str(msg.get("Precedence", "")).strip().lower()
    if precedence in _AUTOMATIC_PRECEDENCE:
        return f"Precedence: {precedence}"
    return None


class _Handler:
    """aiosmtpd hooks (called as ``handle_<VERB>(server, session, envelope, ...)``)."""

    def __init__(self, owner: EmailReplyServer) -> None:
        self._owner = owner
        # Accepted (token, target) per address and transaction (the envelope is
        # replaced after DATA/RSET).
        self._targets: weakref.WeakKeyDictionary[
            Envelope, dict[str, tuple[str, ReplyTarget]]
        ] = weakref.WeakKeyDictionary()

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        owner = self._owner
        token = parse_reply_address(address, owner.domain)
        if token is None:
            log.info(
                "email_reply.refused",
                address=address,
                reason="not a reply address",
                peer=_peer(session),
            )
            return REFUSED_RELAY
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return "452 4.5.3 too many recipients"
        try:
            target = await owner.tokens.lookup(token)
        except Exception as exc:
            log.warning(
                "email_reply.lookup_failed", address=address, error=f"{type(exc).__name__}: {exc}"
            )
            return TRY_LATER
        if target is None:
            log.info(
                "email_reply.refused",
                address=address,
                reason="unknown or expired token",
                peer=_peer(session),
            )
            return REFUSED_UNKNOWN
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        self._targets.setdefault(envelope, {})[address] = (token, target)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        owner = self._owner
        # One entry per token (several addresses can spell the same one).
        targets = dict(self._targets.pop(envelope, {}).values())
        if not targets:  # cannot happen: aiosmtpd answers 503 to DATA without RCPT
            return "554 5.5.1 no valid recipients"
        mail_from = envelope.mail_from or ""
        if mail_from == "<>":  # the null reverse-path of bounces
            mail_from = ""
        rcpt = envelope.rcpt_tos
        content = envelope.original_content or b""
        try:
            read = await owner.read(content, null_sender=not mail_from)
        except MessageTooComplex as exc:
            log.info("email_reply.refused", rcpt=rcpt, mail_from=mail_from,
                     reason=f"too complex: {exc}", size=len(content))
            return f"552 5.3.4 message too complex to read: {exc}"
        except TimeoutError:
            log.warning("email_reply.refused", rcpt=rcpt, mail_from=mail_from,
                        reason="parse timeout", size=len(content))
            return (
                f"554 5.6.0 the message could not be read within {owner.parse_timeout:g}"
                " seconds (send it as plain text)"
            )
        except Exception as exc:  # the email package is lenient; this is a safety net
            log.info(
                "email_reply.refused",
                rcpt=rcpt,
                mail_from=mail_from,
                reason=f"unreadable message: {type(exc).__name__}",
            )
            return "550 5.6.0 the message could not be read"
        if read.automatic is not None:
            log.info("email_reply.ignored", rcpt=rcpt, mail_from=mail_from,
                     reason=read.automatic)
            return "250 OK (automatic message not sent as SMS)"
        if owner.accept_from is AcceptFrom.RECIPIENTS:
            senders = read.senders | {mail_from.casefold()}
            allowed = {
                token: target
                for token, target in targets.items()
                if target.recipient is not None and target.recipient.casefold() in senders
            }
            if len(allowed) < len(targets):
                log.info(
                    "email_reply.refused",
                    rcpt=rcpt,
                    mail_from=mail_from,
                    header_from=sorted(read.senders),
                    reason="sender not a recipient",
                    refused=len(targets) - len(allowed),
                )
            if not allowed:
                return REFUSED_SENDER
            targets = allowed
        text = read.text
        if not text:
            log.info("email_reply.refused", rcpt=rcpt, mail_from=mail_from, reason="empty")
            return (
                "550 5.6.0 no text left after removing quoted history and signature"
                " (write the reply above the quoted message, as plain text)"
            )
        if len(text) > MAX_REPLY_CHARS:
            log.info(
                "email_reply.refused",
                rcpt=rcpt,
                mail_from=mail_from,
                reason="too long",
                chars=len(text),
            )
            return (
                f"550 5.6.0 reply too long: {len(text)} characters after removing quoted"
                f" history and signature; at most {MAX_REPLY_CHARS} can be sent as SMS"
            )
        limit = owner.max_replies_per_token
        if limit:
            for token, target in targets.items():
                try:
                    ok = await owner.tokens.count_reply(token, limit=limit, window=RATE_WINDOW)
                except Exception as exc:
                    log.warning("email_reply.rate_check_failed",
                                error=f"{type(exc).__name__}: {exc}")
                    return TRY_LATER
                if not ok:
                    log.warning("email_reply.rate_limited", vmn=target.vmn,
                                mo_id=target.mo_id, mail_from=mail_from, limit=limit)
                    return (
                        f"451 4.7.1 too many replies to this address: at most {limit} per"
                        " hour are sent as SMS (your server will retry later)"
                    )
        for target in targets.values():
            try:
                await owner.deliver(target, text, mail_from)
            except ReplyRefused as exc:
                log.warning("email_reply.refused", reason=str(exc), vmn=target.vmn,
                            mo_id=target.mo_id, mail_from=mail_from)
                return f"550 5.7.1 {exc}"
            except Exception:  # logged by deliver()
                return TRY_LATER
            log.info(
                "email_reply.accepted",
                vmn=target.vmn,
                mo_id=target.mo_id,
                mail_from=mail_from,
                chars=len(text),
            )
        return "250 OK"


def _peer(session: Session) -> str | None:
    peer = session.peer
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return None if peer is None else str(peer)


def _parse_listen(listen: str) -> tuple[str, int]:
    """`split_host_port`, also allowing port 0 (any free port; for tests)."""
    host, sep, port = listen.rpartition(":")
    if sep and port == "0":
        return split_host_port(f"{host}:1")[0], 0
    return split_host_port(listen)


class EmailReplyServer:
    """The inbound SMTP listener for email replies (see the module docstring)."""

    def __init__(
        self,
        *,
        listen: str,
        domain: str,
        tokens: ReplyTokens,
        on_reply: OnReply,
        accept_from: AcceptFrom = AcceptFrom.RECIPIENTS,
        max_replies_per_token: int = 10,
        parse_timeout: float = PARSE_TIMEOUT,
    ) -> None:
        self.listen = listen
        self.domain = domain
        self.tokens = tokens
        self.accept_from = accept_from
        self.max_replies_per_token = max_replies_per_token
        self.parse_timeout = parse_timeout
        self._on_reply = on_reply
        self._parser: ThreadPoolExecutor | None = None
        self._host, self._port = _parse_listen(listen)  # ValueError early if malformed
        self._handler = _Handler(self)
        self._server: asyncio.Server | None = None
        self._sessions: weakref.WeakSet[SMTP] = weakref.WeakSet()
        self._inflight: set[asyncio.Future[None]] = set()

    @property
    def port(self) -> int:
        """The bound port (the real one when `listen` asked for port 0)."""
        if self._server is not None and self._server.sockets:
            return int(self._server.sockets[0].getsockname()[1])
        return self._port

    def _make_protocol(self) -> SMTP:
        protocol = SMTP(
            self._handler,
            hostname=self.domain,  # the greeting name; also avoids a getfqdn() lookup
            ident="vmn-gateway",
            data_size_limit=DATA_SIZE_LIMIT,
            enable_SMTPUTF8=True,
            timeout=IDLE_TIMEOUT,
            loop=asyncio.get_running_loop(),
        )
        self._sessions.add(protocol)
        return protocol

    async def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("already started")
        loop = asyncio.get_running_loop()
        self._parser = ThreadPoolExecutor(PARSE_THREADS, thread_name_prefix="mail-parser")
        self._server = await loop.create_server(self._make_protocol, self._host, self._port)
        log.info("email_reply.listening", listen=f"{self._host}:{self.port}", domain=self.domain)

    async def stop(self) -> None:
        """Stop listening, let replies being queued finish (up to `STOP_GRACE` seconds),
        then close the open sessions."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        if self._inflight:
            await asyncio.wait(set(self._inflight), timeout=STOP_GRACE)
            await asyncio.sleep(0)  # let the handlers answer 250 before the close
        for protocol in list(self._sessions):
            transport = protocol.transport
            if transport is not None:
                transport.close()
        await server.wait_closed()
        if self._parser is not None:
            # A parse still running ends on its own (the limits bound it); nobody waits.
            self._parser.shutdown(wait=False, cancel_futures=True)
            self._parser = None

    async def read(self, content: bytes, *, null_sender: bool) -> _Read:
        """Parse a message on a parser thread; TimeoutError after `parse_timeout`."""
        if self._parser is None:
            raise RuntimeError("not started")
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._parser, _read, content, null_sender)
        return await asyncio.wait_for(future, self.parse_timeout)

    async def deliver(self, target: ReplyTarget, text: str, from_address: str) -> None:
        """Call ``on_reply``; a lost connection does not cancel a durable insert midway."""
        task = asyncio.ensure_future(self._on_reply(target, text, from_address))
        self._inflight.add(task)

        def done(task: asyncio.Future[None]) -> None:
            self._inflight.discard(task)
            exc = None if task.cancelled() else task.exception()
            if exc is not None and not isinstance(exc, ReplyRefused):
                log.warning(
                    "email_reply.queue_failed",
                    vmn=target.vmn,
                    mo_id=target.mo_id,
                    error=f"{type(exc).__name__}: {exc}",
                )

        task.add_done_callback(done)
        await asyncio.shield(task)
