"""Portal sessions kept server-side: the cookie carries only an opaque id.

The table of ended sessions (0003) is replaced: a session now exists only as a row, so
signing out deletes it and a copied cookie finds nothing.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the table of portal sessions; drop the table of ended ones."""
    op.create_table(
        "portal_sessions",
        sa.Column("sid_hash", sa.String(64), primary_key=True),
        sa.Column("sealed", sa.LargeBinary, nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_portal_sessions_expires_at", "portal_sessions", ["expires_at"])
    op.drop_index("ix_portal_sessions_ended_ended_at", table_name="portal_sessions_ended")
    op.drop_table("portal_sessions_ended")


def downgrade() -> None:
    """Restore the table of ended sessions; drop the sessions (everyone signs in again)."""
    op.create_table(
        "portal_sessions_ended",
        sa.Column("sid_hash", sa.String(64), primary_key=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_portal_sessions_ended_ended_at", "portal_sessions_ended", ["ended_at"])
    op.drop_index("ix_portal_sessions_expires_at", table_name="portal_sessions")
    op.drop_table("portal_sessions")
