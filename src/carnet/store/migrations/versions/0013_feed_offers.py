"""Documents offered by feeds that wait for the patient's decision ("ask me first").

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the feed inbox."""
    op.create_table(
        "feed_offers",
        sa.Column("patient_id", sa.String(64), nullable=False),
        sa.Column("offer_id", sa.String(64), nullable=False),
        sa.Column("feed_id", sa.String(64), nullable=False),
        sa.Column("class_code", sa.String(8), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sealed", sa.LargeBinary, nullable=False),
        sa.PrimaryKeyConstraint("patient_id", "offer_id"),
    )


def downgrade() -> None:
    """Drop the feed inbox (pending offers are lost)."""
    op.drop_table("feed_offers")
