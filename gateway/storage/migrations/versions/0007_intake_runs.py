"""intake_runs: how each instance's last run ended (graceful stop with its suspect
dedup keys, or a crash), so that only SMSC redeliveries are folded after a restart.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "intake_runs",
        sa.Column("instance", sa.String(64), primary_key=True),
        sa.Column("stopped_at", sa.Float),
        sa.Column("suspects", sa.Text),
    )


def downgrade() -> None:
    op.drop_table("intake_runs")
