"""Witness cosignatures of the journal's checkpoints.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the table of witness cosignatures (one line per witness and checkpoint)."""
    op.create_table(
        "journal_cosignatures",
        sa.Column("shard", sa.Integer, nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("witness", sa.String(255), nullable=False),
        sa.Column("cosigned_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("line", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("shard", "size", "witness"),
    )


def downgrade() -> None:
    """Drop the table of witness cosignatures."""
    op.drop_table("journal_cosignatures")
