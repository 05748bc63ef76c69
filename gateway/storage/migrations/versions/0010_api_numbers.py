"""api_numbers: numbers and keywords managed through the HTTP API, and the version
counter every instance polls to apply a change made on another.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_numbers",
        sa.Column("vmn", sa.String(16), primary_key=True),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    version = op.create_table(
        "api_numbers_version",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("version", sa.BigInteger, nullable=False),
    )
    op.bulk_insert(version, [{"id": 1, "version": 0}])


def downgrade() -> None:
    op.drop_table("api_numbers_version")
    op.drop_table("api_numbers")
