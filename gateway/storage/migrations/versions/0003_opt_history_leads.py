"""Opt-in/opt-out history; leads de-duplicated per (VMN, msisdn, keyword) with a counter
and last-seen time.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "opt_history",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("msisdn", sa.String(21), nullable=False),
        sa.Column("vmn", sa.String(21), nullable=False),
        sa.Column("received_on", sa.String(21)),
        sa.Column("state", sa.String(3), nullable=False),
        sa.Column("keyword", sa.String(64)),
        sa.Column("message_id", sa.String(32)),
        sa.Column("changed", sa.Integer, nullable=False),
        sa.Column("at", sa.Float, nullable=False),
    )
    op.create_index("ix_opt_history_msisdn", "opt_history", ["msisdn", "at"])
    op.create_index("ix_opt_history_at", "opt_history", ["at"])
    # The current states as the first history rows (who and when are known, not the MO).
    op.execute(
        "INSERT INTO opt_history (msisdn, vmn, received_on, state, keyword, message_id, "
        "changed, at) SELECT msisdn, vmn, NULL, state, keyword, NULL, 1, updated_at "
        "FROM opt_state")
    with op.batch_alter_table("leads") as batch:
        batch.add_column(sa.Column("count", sa.Integer, nullable=False,
                                   server_default=sa.text("1")))
        batch.add_column(sa.Column("last_at", sa.Float, nullable=False,
                                   server_default=sa.text("0")))
    # Merge the rows recorded so far: one per key (the earliest row, with the latest
    # text and MO, as the upsert in fanout.py keeps them).
    op.execute("UPDATE leads SET keyword = '' WHERE keyword IS NULL")
    same = ("l2.vmn = leads.vmn AND l2.msisdn = leads.msisdn "
            "AND l2.keyword = leads.keyword")
    latest = f"FROM leads l2 WHERE {same} ORDER BY l2.at DESC, l2.id DESC LIMIT 1"
    op.execute(
        f"UPDATE leads SET count = (SELECT COUNT(*) FROM leads l2 WHERE {same}), "
        f"last_at = (SELECT MAX(l2.at) FROM leads l2 WHERE {same}), "
        f"text = (SELECT l2.text {latest}), message_id = (SELECT l2.message_id {latest})")
    op.execute("DELETE FROM leads WHERE id NOT IN "
               "(SELECT MIN(id) FROM leads GROUP BY vmn, msisdn, keyword)")
    op.create_index("ux_leads_key", "leads", ["vmn", "msisdn", "keyword"], unique=True)
    op.create_index("ix_leads_last", "leads", ["last_at"])


def downgrade() -> None:
    op.drop_index("ix_leads_last", "leads")
    op.drop_index("ux_leads_key", "leads")
    with op.batch_alter_table("leads") as batch:
        batch.drop_column("last_at")
        batch.drop_column("count")
    op.drop_index("ix_opt_history_at", "opt_history")
    op.drop_index("ix_opt_history_msisdn", "opt_history")
    op.drop_table("opt_history")
