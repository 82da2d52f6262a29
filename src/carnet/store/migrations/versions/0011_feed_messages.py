"""Feed messages taken (idempotency by MSH-10) and the dead letters of those that could not be.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the tables of feed messages and dead letters."""
    op.create_table(
        "feed_messages",
        sa.Column("feed_id", sa.String(64), nullable=False),
        sa.Column("control_id", sa.String(64), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("ack", sa.LargeBinary, nullable=False),
        sa.PrimaryKeyConstraint("feed_id", "control_id"),
    )
    op.create_table(
        "feed_dead_letters",
        sa.Column("letter_id", sa.String(64), primary_key=True),
        sa.Column("feed_id", sa.String(64), nullable=False),
        sa.Column("control_id", sa.String(64), nullable=False),
        sa.Column("message_type", sa.String(32), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("error_code", sa.String(16), nullable=False),
        sa.Column("error", sa.String(300), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("sealed", sa.LargeBinary, nullable=False),
    )
    op.create_index("ix_feed_dead_letters_status", "feed_dead_letters", ["status", "received_at"])


def downgrade() -> None:
    """Drop them."""
    op.drop_index("ix_feed_dead_letters_status", table_name="feed_dead_letters")
    op.drop_table("feed_dead_letters")
    op.drop_table("feed_messages")
