"""Initial schema: messages, MO parts, MT segments, receipts, status history.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "messages",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("direction", sa.String(2), nullable=False),
        sa.Column("smsc", sa.String(64)),
        sa.Column("vmn", sa.String(21), nullable=False),
        sa.Column("msisdn", sa.String(21), nullable=False),
        sa.Column("sender", sa.String(21), nullable=False),
        sa.Column("recipient", sa.String(21), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("data_coding", sa.Integer, nullable=False),
        sa.Column("segments", sa.Integer, nullable=False),
        sa.Column("keyword", sa.String(64)),
        sa.Column("route", sa.String(16)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("in_reply_to", sa.String(32)),
        sa.Column("client_ref", sa.String(64)),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("raw_pdu", sa.LargeBinary),
        sa.Column("dedup_key", sa.String(32)),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", sa.Float),
    )
    op.create_index("ix_messages_created", "messages", ["created_at"])
    op.create_index("ix_messages_vmn", "messages", ["vmn", "created_at"])
    op.create_index("ix_messages_msisdn", "messages", ["msisdn", "created_at"])
    queued = sa.text("direction = 'mt' AND status IN ('queued', 'sending')")
    op.create_index("ix_messages_queue", "messages", ["next_attempt_at"],
                    sqlite_where=queued, postgresql_where=queued)
    op.create_table(
        "mo_parts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("smsc", sa.String(64), nullable=False),
        sa.Column("concat_key", sa.String(128), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("total", sa.Integer, nullable=False),
        sa.Column("data_coding", sa.Integer, nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
        sa.Column("raw_pdu", sa.LargeBinary, nullable=False),
        sa.Column("received_at", sa.Float, nullable=False),
        sa.Column("dedup_key", sa.String(32)),
        sa.Column("message_id", sa.String(32)),
    )
    op.create_index("ix_mo_parts_key", "mo_parts", ["concat_key"])
    op.create_index("ix_mo_parts_open", "mo_parts", ["message_id"])
    op.create_table(
        "mt_segments",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("message_id", sa.String(32), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("total", sa.Integer, nullable=False),
        sa.Column("smsc", sa.String(64)),
        sa.Column("smsc_message_id", sa.String(65)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_index("ix_mt_segments_msg", "mt_segments", ["message_id"])
    op.create_index("ix_mt_segments_smsc_id", "mt_segments", ["smsc_message_id"])
    op.create_table(
        "receipts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("smsc", sa.String(64), nullable=False),
        sa.Column("smsc_message_id", sa.String(65), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("error", sa.String(16)),
        sa.Column("raw_pdu", sa.LargeBinary, nullable=False),
        sa.Column("received_at", sa.Float, nullable=False),
        sa.Column("matched", sa.Integer, nullable=False),
    )
    op.create_index("ix_receipts_smsc_id", "receipts", ["smsc_message_id"])
    op.create_table(
        "status_history",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("message_id", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("detail", sa.Text),
    )
    op.create_index("ix_status_history_msg", "status_history", ["message_id"])


def downgrade() -> None:
    for name in ("status_history", "receipts", "mt_segments", "mo_parts", "messages"):
        op.drop_table(name)
