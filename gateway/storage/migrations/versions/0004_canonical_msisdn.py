"""One spelling of a phone number (issue 9 point 2): every number stored so far in its
canonical E.164 form (gateway.msisdn), national ones read in `[gateway] country_code`
(handed in by gateway.storage.db.migrate). What is not a phone number (an alphanumeric
sender) stays as it is.

Where two spellings of one person meet on one key, the newest wins: `opt_state` per
sender (and a newer "*" row drops the older per-sender rows, as a STOPALL does in
fanout.py), `poll_votes` per poll (the latest vote), `leads` per (VMN, keyword) (counts
added, first and last seen kept, the latest text). `opt_history`, the reply tokens and
the message log (`msisdn`, and the customer's side of `sender` / `recipient`) are
rewritten in place. Plain SQL and Python, so it runs alike on SQLite and PostgreSQL.

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from alembic import op

from gateway.msisdn import canonical_or_raw

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _respellings(conn: sa.Connection, table: str, country_code: str) -> dict[str, str]:
    """{stored spelling: canonical} for the spellings of `table.msisdn` that change."""
    out: dict[str, str] = {}
    for (raw,) in conn.execute(sa.text(f"SELECT DISTINCT msisdn FROM {table}")):
        new = canonical_or_raw(raw, country_code)
        if new != raw:
            out[raw] = new
    return out


def _by_person(respelled: dict[str, str]) -> dict[str, list[str]]:
    """canonical -> every spelling of it to read (the canonical one included)."""
    people: dict[str, list[str]] = {}
    for raw, new in respelled.items():
        people.setdefault(new, [new]).append(raw)
    return people


def _rows(conn: sa.Connection, sql: str, spellings: Iterable[str]) -> list[Any]:
    q = sa.text(sql).bindparams(sa.bindparam("ms", expanding=True))
    return list(conn.execute(q, {"ms": list(spellings)}))


def _delete(conn: sa.Connection, table: str, spellings: list[str]) -> None:
    q = sa.text(f"DELETE FROM {table} WHERE msisdn IN :ms").bindparams(
        sa.bindparam("ms", expanding=True))
    conn.execute(q, {"ms": spellings})


def _opt_state(conn: sa.Connection, country_code: str) -> None:
    for new, spellings in _by_person(_respellings(conn, "opt_state", country_code)).items():
        rows = _rows(conn, "SELECT msisdn, vmn, state, keyword, updated_at FROM opt_state "
                           "WHERE msisdn IN :ms", spellings)
        newest: dict[str, Any] = {}
        for r in sorted(rows, key=lambda r: r.updated_at):
            newest[r.vmn] = r
        every = newest.get("*")
        keep = [r for v, r in newest.items()
                if every is None or v == "*" or r.updated_at > every.updated_at]
        _delete(conn, "opt_state", spellings)
        conn.execute(sa.text(
            "INSERT INTO opt_state (msisdn, vmn, state, keyword, updated_at) "
            "VALUES (:msisdn, :vmn, :state, :keyword, :updated_at)"),
            [{"msisdn": new, "vmn": r.vmn, "state": r.state, "keyword": r.keyword,
              "updated_at": r.updated_at} for r in keep])


def _poll_votes(conn: sa.Connection, country_code: str) -> None:
    for new, spellings in _by_person(_respellings(conn, "poll_votes", country_code)).items():
        rows = _rows(conn, 'SELECT poll, option, vmn, message_id, at FROM poll_votes '
                           'WHERE msisdn IN :ms', spellings)
        latest: dict[str, Any] = {}
        for r in sorted(rows, key=lambda r: r.at):
            latest[r.poll] = r
        _delete(conn, "poll_votes", spellings)
        conn.execute(sa.text(
            'INSERT INTO poll_votes (poll, msisdn, option, vmn, message_id, at) '
            'VALUES (:poll, :msisdn, :option, :vmn, :message_id, :at)'),
            [{"poll": r.poll, "msisdn": new, "option": r.option, "vmn": r.vmn,
              "message_id": r.message_id, "at": r.at} for r in latest.values()])


def _leads(conn: sa.Connection, country_code: str) -> None:
    for new, spellings in _by_person(_respellings(conn, "leads", country_code)).items():
        rows = _rows(conn, "SELECT id, vmn, keyword, text, message_id, at, count, last_at "
                           "FROM leads WHERE msisdn IN :ms", spellings)
        groups: dict[tuple[str, str], list[Any]] = {}
        for r in rows:
            groups.setdefault((r.vmn, r.keyword), []).append(r)
        for group in groups.values():
            first = min(group, key=lambda r: r.id)
            last = max(group, key=lambda r: (r.last_at, r.id))
            others = [r.id for r in group if r.id != first.id]
            if others:
                conn.execute(sa.text("DELETE FROM leads WHERE id IN :ids").bindparams(
                    sa.bindparam("ids", expanding=True)), {"ids": others})
            conn.execute(sa.text(
                "UPDATE leads SET msisdn = :msisdn, text = :text, message_id = :message_id, "
                "at = :at, count = :count, last_at = :last_at WHERE id = :id"),
                {"msisdn": new, "text": last.text, "message_id": last.message_id,
                 "at": min(r.at for r in group), "count": sum(r.count for r in group),
                 "last_at": max(r.last_at for r in group), "id": first.id})


def _in_place(conn: sa.Connection, table: str, country_code: str) -> None:
    respelled = _respellings(conn, table, country_code)
    if respelled:
        conn.execute(sa.text(f"UPDATE {table} SET msisdn = :new WHERE msisdn = :old"),
                     [{"old": k, "new": v} for k, v in respelled.items()])


def _messages(conn: sa.Connection, country_code: str) -> None:
    # `msisdn` is the customer's number: the MO's sender, the MT's recipient. Queued MTs
    # are checked against opt_state by their recipient, and MOs not yet fanned out
    # record opt state by their sender: both must be the canonical spelling.
    respelled = _respellings(conn, "messages", country_code)
    if respelled:
        conn.execute(sa.text(
            "UPDATE messages SET msisdn = :new, "
            "sender = CASE WHEN direction = 'mo' AND sender = :old THEN :new "
            "ELSE sender END, "
            "recipient = CASE WHEN direction = 'mt' AND recipient = :old THEN :new "
            "ELSE recipient END "
            "WHERE msisdn = :old"),
            [{"old": k, "new": v} for k, v in respelled.items()])


def upgrade() -> None:
    conn = op.get_bind()
    config = op.get_context().config
    country_code = str((config.attributes if config is not None else {})
                       .get("country_code", "1"))
    _opt_state(conn, country_code)
    _poll_votes(conn, country_code)
    _leads(conn, country_code)
    _in_place(conn, "opt_history", country_code)
    _in_place(conn, "email_tokens", country_code)
    _messages(conn, country_code)


def downgrade() -> None:
    # The spellings that were merged are not kept: the canonical form is valid for the
    # older code too, so there is nothing to undo.
    pass
