"""Legal representatives: who represents which record, on which legal basis.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the registry of representation links."""
    op.create_table(
        "representations",
        sa.Column("patient_id", sa.String(64), nullable=False),
        sa.Column("link_id", sa.String(64), nullable=False),
        sa.Column("representative_key", sa.String(128), nullable=False),
        sa.Column("basis", sa.String(32), nullable=False),
        sa.Column("details", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("patient_id", "link_id"),
    )
    op.create_index("ix_representations_key", "representations", ["representative_key"])


def downgrade() -> None:
    """Drop the registry (representatives can no longer sign in as themselves)."""
    op.drop_index("ix_representations_key", table_name="representations")
    op.drop_table("representations")
