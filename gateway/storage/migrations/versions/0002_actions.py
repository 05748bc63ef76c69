"""Actions: job queue with attempts, opt state, polls, leads, email reply tokens; MO
fan-out flag and MT notify/exempt columns.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("fanout", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("notify", sa.Text))
        batch.add_column(sa.Column("exempt", sa.Integer, nullable=False, server_default="0"))
    fanout = sa.text("fanout = 1")
    op.create_index("ix_messages_fanout", "messages", ["created_at"], sqlite_where=fanout,
                    postgresql_where=fanout)
    job_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.create_table(
        "jobs",
        sa.Column("id", job_id, primary_key=True, autoincrement=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("target", sa.Text, nullable=False),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("message_id", sa.String(32)),
        sa.Column("after", job_id),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("max_attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", sa.Float, nullable=False),
        sa.Column("last_status", sa.Integer),
        sa.Column("last_error", sa.Text),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    pending = sa.text("status = 'pending'")
    op.create_index("ix_jobs_due", "jobs", ["kind", "next_attempt_at"], sqlite_where=pending,
                    postgresql_where=pending)
    op.create_index("ix_jobs_message", "jobs", ["message_id"])
    op.create_table(
        "job_attempts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("job_id", job_id, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("outcome", sa.String(8), nullable=False),
        sa.Column("status", sa.Integer),
        sa.Column("latency_ms", sa.Float),
        sa.Column("detail", sa.Text),
    )
    op.create_index("ix_job_attempts_job", "job_attempts", ["job_id"])
    op.create_table(
        "opt_state",
        sa.Column("msisdn", sa.String(21), primary_key=True),
        sa.Column("vmn", sa.String(21), primary_key=True),
        sa.Column("state", sa.String(3), nullable=False),
        sa.Column("keyword", sa.String(64)),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_table(
        "poll_votes",
        sa.Column("poll", sa.String(64), primary_key=True),
        sa.Column("msisdn", sa.String(21), primary_key=True),
        sa.Column("option", sa.String(64), nullable=False),
        sa.Column("vmn", sa.String(21), nullable=False),
        sa.Column("message_id", sa.String(32), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
    )
    op.create_table(
        "leads",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("vmn", sa.String(21), nullable=False),
        sa.Column("msisdn", sa.String(21), nullable=False),
        sa.Column("keyword", sa.String(64)),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("message_id", sa.String(32), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
    )
    op.create_table(
        "email_tokens",
        sa.Column("token", sa.String(32), primary_key=True),
        sa.Column("vmn", sa.String(21), nullable=False),
        sa.Column("msisdn", sa.String(21), nullable=False),
        sa.Column("message_id", sa.String(32), nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    for name in ("email_tokens", "leads", "poll_votes", "opt_state", "job_attempts", "jobs"):
        op.drop_table(name)
    op.drop_index("ix_messages_fanout", "messages")
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("exempt")
        batch.drop_column("notify")
        batch.drop_column("fanout")
