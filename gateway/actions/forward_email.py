"""forward_email: the MO as an email to each listed address (a job run by `EmailAction`,
actions/email.py, when `[smtp]` is set); with `[email_replies]` each email carries a
reply token (stored here, in the fan-out's transaction) that lets the recipient answer
by email."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

from gateway.actions.kind import Effects, Kind, Runtime
from gateway.model import ActionKind, JobKind
from gateway.storage.tokens import insert_token

if TYPE_CHECKING:
    from gateway.actions.base import Action
    from gateway.config import ActionConfig, Config


def _forward(fx: Effects, action: ActionConfig) -> None:
    ctx, mo, number, now = fx.ctx, fx.mo, fx.number, fx.now
    for address in action.forward_email:
        token = None
        if ctx.email_domain:
            token = secrets.token_hex(8)
            insert_token(fx.conn, token=token, vmn=number.vmn, msisdn=mo.sender,
                         message_id=mo.id, expires_at=now + ctx.token_ttl_days * 86400,
                         recipient=address)
        fx.jobs.append(ctx.emitter.job(JobKind.EMAIL.value, address, {
            "id": mo.id, "vmn": number.vmn, "from": mo.sender, "text": mo.text,
            "received_at": fx.event["received_at"], "keyword": fx.decision.keyword,
            "reply_token": token,
        }, message_id=mo.id, now=now))


def _runner(cfg: Config, rt: Runtime) -> Action | None:
    if cfg.smtp is None:
        return None
    from gateway.actions.email import EmailAction  # aiosmtplib: only with [smtp]

    def reply_domain() -> str | None:
        er = rt.config().email_replies
        return er.domain if er else None

    return EmailAction(lambda: rt.config().smtp, reply_domain=reply_domain)


KIND = Kind(kind=ActionKind.FORWARD_EMAIL, fields=("forward_email",),
            enabled=lambda a: bool(a.forward_email),
            label=lambda a: f"forward_email({len(a.forward_email)})", step=_forward,
            job=JobKind.EMAIL, runner=_runner)
