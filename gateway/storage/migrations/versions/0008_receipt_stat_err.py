"""A delivery receipt's `stat` and `err` kept on the MT (segment and message), so that
`logs`, `logs --json` and the `mt_status` event can say why a delivery failed.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

TABLES = ("mt_segments", "messages")


def upgrade() -> None:
    # Receipts matched by an older version keep no stat/err: those MTs show none.
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("receipt_stat", sa.String(16)))
            batch.add_column(sa.Column("receipt_err", sa.String(16)))


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("receipt_err")
            batch.drop_column("receipt_stat")
