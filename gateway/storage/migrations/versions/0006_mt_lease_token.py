"""MT claims are fenced: the token of the claim that may send an MT.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # MTs left `sending` by an older version have no token: they are claimed again when
    # their lease runs out, as before.
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("lease_token", sa.String(32)))


def downgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("lease_token")
