"""The human summary `vmn-gateway check` prints for a valid file; never shows a secret."""

from __future__ import annotations

from datetime import UTC, datetime

from gateway.config.models import ActionConfig, Config
from gateway.config.types import mask_url


def summary(config: Config, *, now: datetime | None = None) -> str:
    """A human summary for ``vmn-gateway check``; never shows a secret."""
    now = now or datetime.now(UTC)
    g = config.gateway
    lines = [
        f"configuration: {config.source_file or '<memory>'}",
        f"gateway: {g.name}",
        f"  database: {mask_url(g.database)}",
        f"  country code: {g.country_code}, unrouted: {g.unrouted.value}"
        + (f", admin: {g.admin_listen}" if g.admin_listen else ""),
        f"smsc binds: {len(config.smsc)}",
    ]
    for s in config.smsc:
        cap = f"{s.throughput:g}/s" if s.throughput else "no cap"
        lines.append(
            f"  {s.name} {s.host}:{s.port} system_id={s.system_id} window={s.window} "
            f"throughput={cap}"
        )
    if config.mqtt is not None:
        m = config.mqtt
        lines.append(f"mqtt: {mask_url(m.url)} topic_prefix={m.topic_prefix} qos={m.qos}")
    if config.smtp is not None:
        mode = "tls" if config.smtp.tls else "starttls" if config.smtp.starttls else "plain"
        lines.append(
            f"smtp: {config.smtp.host}:{config.smtp.port} ({mode}) from={config.smtp.from_}"
        )
    if config.email_replies is not None:
        e = config.email_replies
        limit = (f"at most {e.max_replies_per_token} per address and hour"
                 if e.max_replies_per_token else "no rate limit")
        lines.append(f"email replies: listen {e.listen}, reply+<token>@{e.domain}, "
                     f"accepted from {e.accept_from.value}, {limit}")
    if config.api is not None:
        a = config.api
        signed = "signed" if a.callback_secret is not None else "unsigned"
        lines.append(f"http api: listen {a.listen}, body cap {a.max_body} bytes, "
                     f"callbacks {signed}")
    for name, profile in config.callback_profiles.items():
        lines.append(f"callback profile {name}: {profile.method.value} {mask_url(profile.url)}")
    o = config.optout
    lines.append(
        f"opt-out: stop={','.join(o.stop_keywords)} start={','.join(o.start_keywords)} "
        f"help={','.join(o.help_keywords)} scope={o.scope.value}"
    )

    keyword_count = alias_count = 0
    lines.append(f"numbers: {len(config.numbers)}")
    for number in config.numbers:
        kind = "short code" if number.is_short_code else "long code"
        extra = f", sender {number.sender_id}" if number.sender_id != number.vmn else ""
        extra += ", opt-out overrides" if number.optout is not None else ""
        lines.append(f"  {number.vmn} ({kind}{extra}, {len(number.keywords)} keywords)")
        for keyword in number.keywords:
            keyword_count += 1
            alias_count += len(keyword.aliases)
            details = [f"+{len(keyword.aliases)} aliases"] if keyword.aliases else []
            details.append(keyword.match.value)
            actions = _describe_actions(keyword, now)
            lines.append(f"    {keyword.keyword} ({', '.join(details)}): {actions}")
        lines.append(f"    <default>: {_describe_actions(number.default, now)}")
    lines.append(
        f"totals: {len(config.smsc)} smsc, {len(config.numbers)} numbers, "
        f"{keyword_count} keywords, {alias_count} aliases, "
        f"{len(config.callback_profiles)} callback profiles"
    )
    return "\n".join(lines)


def _describe_actions(action: ActionConfig, now: datetime) -> str:
    from gateway.actions.registry import describe  # each kind words its own

    text = ", ".join(describe(action)) or "no action (event only)"
    if action.starts is not None and now < action.starts:
        text += f" [starts {action.starts.isoformat()}]"
    if action.expires is not None:
        state = "expired" if now >= action.expires else "expires"
        text += f" [{state} {action.expires.isoformat()}]"
    return text
