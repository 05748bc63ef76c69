"""Email reply tokens in the database: who a reply goes to, who may send it, and how
many replies a token took in the current hour (shared by every instance)."""

from __future__ import annotations

import time

from sqlalchemy import case, select, update
from sqlalchemy.engine import Connection

from gateway.email_replies import ReplyTarget
from gateway.storage.repo import Store
from gateway.storage.schema import email_tokens

__all__ = ["DbReplyTokens", "insert_token"]


def insert_token(conn: Connection, *, token: str, vmn: str, msisdn: str, message_id: str,
                 expires_at: float, recipient: str) -> None:
    """A new reply token: a reply to the email forwarded to `recipient` goes to `msisdn`
    from `vmn`, until `expires_at`."""
    conn.execute(email_tokens.insert().values(
        token=token, vmn=vmn, msisdn=msisdn, message_id=message_id, expires_at=expires_at,
        recipient=recipient))


class DbReplyTokens:
    """`gateway.email_replies.ReplyTokens` on the `email_tokens` table."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def lookup(self, token: str) -> ReplyTarget | None:
        t = email_tokens.c
        async with self.store.reader.connect() as conn:
            row = (await conn.execute(
                select(t.vmn, t.msisdn, t.message_id, t.recipient)
                .where(t.token == token, t.expires_at > time.time()))).first()
        if row is None:
            return None
        return ReplyTarget(vmn=row[0], msisdn=row[1], mo_id=row[2], recipient=row[3])

    async def count_reply(self, token: str, *, limit: int, window: float) -> bool:
        return await self.store.transaction(_count_reply, token, limit, window, time.time())


def _count_reply(conn: Connection, token: str, limit: int, window: float,
                 now: float) -> bool:
    # One conditional UPDATE: two instances answering at once cannot both take the
    # last reply of the window (SET expressions read the row as it was).
    t = email_tokens.c
    new_window = t.window_start <= now - window
    res = conn.execute(
        update(email_tokens)
        .where(t.token == token, new_window | (t.window_count < limit))
        .values(window_start=case((new_window, now), else_=t.window_start),
                window_count=case((new_window, 1), else_=t.window_count + 1)))
    return res.rowcount == 1
