"""A submitted segment's message id match key (issue 16 point 4): `<form>:<value>`, the
number its submit_sm_resp id stands for under the bind's `[[smsc]] message_id`, so that
a receipt that writes the same number in the other base finds it (gateway/smpp/dialect.py).

Revision ID: 0012
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Segments submitted before keep no key: their receipts match by the string, as before.
    with op.batch_alter_table("mt_segments") as batch:
        batch.add_column(sa.Column("match_key", sa.String(80)))
    op.create_index("ix_mt_segments_match_key", "mt_segments", ["match_key"])


def downgrade() -> None:
    op.drop_index("ix_mt_segments_match_key", table_name="mt_segments")
    with op.batch_alter_table("mt_segments") as batch:
        batch.drop_column("match_key")
