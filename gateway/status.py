"""`vmn-gateway status`: the state of a running gateway at a glance (like Kannel's
status page), from the admin listener (binds: state, uptime, last error) and the
database (rates over the last minute, queue depths, the oldest pending action).

Read-only: it never creates or migrates a database. When the admin listener is off or
does not answer it says so and prints what the database gives."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import make_url

from gateway.config import Config, split_host_port
from gateway.log import describe_error, redact_url
from gateway.storage import status as storage_status
from gateway.storage.db import create_engine, is_sqlite

TIMEOUT = 3.0
WINDOW = 60.0  # seconds: "the last minute"


class StatusError(Exception):
    """The database cannot be read (the message says which and why)."""


def _ago(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 172800:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


def _since(iso: str | None, now: float) -> str | None:
    if not iso:
        return None
    return _ago(now - datetime.fromisoformat(iso).timestamp())


async def admin_health(cfg: Config) -> tuple[dict[str, Any] | None, str]:
    """(the /healthz document, None if unavailable; a note on where it came from)."""
    listen = cfg.gateway.admin_listen
    if not listen:
        return None, "admin listener: off ([gateway] admin_listen not set)"
    host, port = split_host_port(listen)
    if host in ("", "0.0.0.0", "::", "[::]"):
        host = "127.0.0.1"
    url = f"http://{host}:{port}/healthz"
    try:
        timeout = aiohttp.ClientTimeout(total=TIMEOUT)
        async with aiohttp.ClientSession(timeout=timeout) as s, s.get(url) as resp:
            body = await resp.text()
        doc = json.loads(body)
        if not isinstance(doc, dict) or "binds" not in doc:
            return None, f"admin listener: {url} gave no health document"
        return doc, f"admin listener: {url}"
    except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
        return None, (f"admin listener: {url} unreachable ({describe_error(exc)}); "
                      f"is the daemon running?")


@dataclass(frozen=True, slots=True)
class Figures:
    traffic: storage_status.Traffic
    queues: storage_status.Queues


async def database_figures(cfg: Config, now: float) -> Figures:
    url = cfg.gateway.database
    if is_sqlite(url):
        db = make_url(url).database
        if db and db != ":memory:" and not db.startswith("file:") and not Path(db).exists():
            raise StatusError(f"database {db} does not exist")
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            seen = await conn.run_sync(storage_status.traffic, now - WINDOW)
            queued = await conn.run_sync(storage_status.queues)
    except StatusError:
        raise
    except Exception as exc:
        raise StatusError(f"database {redact_url(url)}: {describe_error(exc)}") from None
    finally:
        await engine.dispose()
    return Figures(seen, queued)


def _queue(q: storage_status.Queue | None, now: float, what: str = "") -> str:
    q = q or storage_status.EMPTY
    age = f", oldest {_ago(now - q.oldest_at)}" if q.oldest_at is not None else ""
    return f"{q.depth}{what}{age}"


def render(cfg: Config, health: dict[str, Any] | None, note: str, db: Figures,
           now: float) -> str:
    lines = [f"vmn-gateway {cfg.gateway.name}: {cfg.source_file}", note]
    if health is not None:
        started = health.get("started_at")
        up = f", up {_since(started, now)}" if started else ""
        lines.append(f"status: {'ok' if health.get('ok') else 'NOT OK'}{up}, database "
                     f"{'answers' if health.get('database') else 'DOWN'}")
    lines.append("")
    lines.append("binds:")
    binds = (health or {}).get("binds") or {}
    for smsc in cfg.smsc:
        b = binds.get(smsc.name)
        where = f"{smsc.host}:{smsc.port}"
        if b is None:
            lines.append(f"  {smsc.name:<12} {where:<22} state unknown (no admin listener)")
            continue
        state = str(b.get("state"))
        if state == "bound":
            detail = f"up {_since(b.get('bound_since'), now) or '?'}"
        else:
            detail = f"down {_since(b.get('down_since'), now) or '?'}"
            if b.get("last_error"):
                detail += (f", last error: {b['last_error']} "
                           f"({_since(b.get('last_error_at'), now)} ago)")
        lines.append(f"  {smsc.name:<12} {where:<22} {state:<8} {detail}; "
                     f"reconnects {b.get('reconnects', 0)}, "
                     f"in window {b.get('outstanding', 0)}/{smsc.window}")
    last = db.traffic.messages
    sent = db.traffic.mt_statuses
    q = db.queues
    lines += ["", "traffic, last minute:",
              f"  MO received  {last.get('mo', 0)}/min",
              f"  MT queued    {last.get('mt', 0)}/min",
              f"  MT submitted {sent.get('submitted', 0)}/min, delivered "
              f"{sent.get('delivered', 0)}/min, failed {sent.get('failed', 0)}/min, "
              f"unknown {sent.get('unknown', 0)}/min",
              "", "queues:"]
    for status in storage_status.MT_WAITING:
        lines.append(f"  MT {status:<14} " + _queue(q.mt.get(status), now))
    lines.append("  MO fan-out       " + _queue(q.fanout, now))
    for kind in sorted(q.actions):
        lines.append(f"  action {kind:<10} " + _queue(q.actions[kind], now, " pending"))
    if not q.actions:
        lines.append("  actions          0 pending")
    lines.append(f"  dead-lettered    {q.dead} (vmn-gateway redrive)")
    lines.append(f"  failed           {q.failed}")
    o = q.oldest_action
    if o is not None:
        at = datetime.fromtimestamp(o.created_at, UTC).isoformat(timespec="seconds")
        lines.append(f"oldest pending action: job {o.id} ({o.kind}), since {at} "
                     f"({_ago(now - o.created_at)}), {o.attempts} attempt(s)")
    else:
        lines.append("oldest pending action: none")
    return "\n".join(lines)


async def status(cfg: Config) -> int:
    now = time.time()
    (health, note), db = await asyncio.gather(admin_health(cfg), database_figures(cfg, now))
    print(render(cfg, health, note, db, now))
    return 0
