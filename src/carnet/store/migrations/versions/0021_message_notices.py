"""A professional's secure-message notices (their inbox and unread count).

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the professionals' message notices."""
    op.create_table(
        "message_notices",
        sa.Column("patient_id", sa.String(64), nullable=False),
        sa.Column("notice_id", sa.String(64), nullable=False),
        sa.Column("recipient_hash", sa.LargeBinary(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sealed", sa.LargeBinary, nullable=False),
        sa.Column("read_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("patient_id", "notice_id"),
    )
    op.create_index("ix_message_notices_recipient", "message_notices", ["recipient_hash", "created_at"])


def downgrade() -> None:
    """Drop the professionals' message notices (the messages stay in the records)."""
    op.drop_index("ix_message_notices_recipient", table_name="message_notices")
    op.drop_table("message_notices")
