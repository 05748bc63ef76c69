"""Email reply tokens remember the address the forward went to (only that address may
answer) and count the replies of the current hour (a per-token rate limit).

Tokens made before this revision have no recipient: with ``accept_from =
"recipients"`` (the default) they are refused, as nobody can tell who got them.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("email_tokens") as batch:
        batch.add_column(sa.Column("recipient", sa.String(320)))
        batch.add_column(sa.Column("window_start", sa.Float, nullable=False,
                                   server_default=sa.text("0")))
        batch.add_column(sa.Column("window_count", sa.Integer, nullable=False,
                                   server_default=sa.text("0")))


def downgrade() -> None:
    with op.batch_alter_table("email_tokens") as batch:
        batch.drop_column("window_count")
        batch.drop_column("window_start")
        batch.drop_column("recipient")
