"""The HTTP API's read side: where an opt change came from, and an index that answers
`GET /v1/stats` from the index alone.

- `opt_history.source`: `keyword` (an MO carried it; every row before this revision)
  or `api` (`PUT /v1/optins/{vmn}/{msisdn}`).
- `ix_messages_created (created_at)` becomes `ix_messages_stats (created_at, vmn,
  direction)`: the stats query (MO/MT per VMN per time step) reads only this index, so a
  day costs the rows of that day, never the table; every query that used the old index
  uses its prefix, and the MO insert still maintains one index on `created_at`, not two.

Revision ID: 0011
Revises: 0009 (the brief said 0008; chained after the api branch's 0009 for one head)
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"  # console merge: after numbers (the coordinator re-chains)
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("opt_history") as batch:
        batch.add_column(sa.Column("source", sa.String(8), nullable=False,
                                   server_default=sa.text("'keyword'")))
    op.create_index("ix_messages_stats", "messages", ["created_at", "vmn", "direction"])
    op.drop_index("ix_messages_created", table_name="messages")


def downgrade() -> None:
    op.create_index("ix_messages_created", "messages", ["created_at"])
    op.drop_index("ix_messages_stats", table_name="messages")
    with op.batch_alter_table("opt_history") as batch:
        batch.drop_column("source")
