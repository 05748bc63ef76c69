"""Poll votes: one per msisdn per poll, a later vote replacing the earlier one."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from gateway.storage.db import upsert
from gateway.storage.schema import poll_votes


def record_vote(conn: Connection, *, poll: str, options: Sequence[str], msisdn: str,
                option: str, vmn: str, message_id: str, now: float) -> dict[str, int]:
    """Record the vote; the poll's tally after it (every one of `options`, 0 when none)."""
    v = poll_votes.c
    ins = upsert(conn, poll_votes).values(poll=poll, msisdn=msisdn, option=option, vmn=vmn,
                                          message_id=message_id, at=now)
    conn.execute(ins.on_conflict_do_update(index_elements=[v.poll, v.msisdn], set_={
        "option": ins.excluded.option, "vmn": ins.excluded.vmn,
        "message_id": ins.excluded.message_id, "at": ins.excluded.at}))
    tally = dict.fromkeys(options, 0)
    for opt, n in conn.execute(select(v.option, func.count()).where(v.poll == poll)
                               .group_by(v.option)):
        tally[opt] = int(n)
    return tally
