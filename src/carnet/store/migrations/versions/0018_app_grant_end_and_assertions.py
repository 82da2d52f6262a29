"""SMART apps: codes and tokens carry the end of the patient's grant; backend assertions taken, shared.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add ``grant_until`` to app codes and tokens; create the table of assertion ids taken."""
    op.add_column("app_codes", sa.Column("grant_until", sa.DateTime(timezone=True), nullable=True))
    op.add_column("app_tokens", sa.Column("grant_until", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "app_assertions",
        sa.Column("jti_hash", sa.String(64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("jti_hash"),
    )
    op.create_index("ix_app_assertions_expires_at", "app_assertions", ["expires_at"])


def downgrade() -> None:
    """Drop the assertion ids taken and the grants' ends (tokens then live their own lifetime)."""
    op.drop_index("ix_app_assertions_expires_at", table_name="app_assertions")
    op.drop_table("app_assertions")
    for table in ("app_tokens", "app_codes"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("grant_until")
