"""Portal sessions ended by signing out.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the table of ended portal sessions."""
    op.create_table(
        "portal_sessions_ended",
        sa.Column("sid_hash", sa.String(64), primary_key=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_portal_sessions_ended_ended_at", "portal_sessions_ended", ["ended_at"])


def downgrade() -> None:
    """Drop the table of ended portal sessions."""
    op.drop_table("portal_sessions_ended")
