"""The portal's notification centre: when the patient marked each notice read.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add ``outbox.read_at`` (null: unread)."""
    op.add_column("outbox", sa.Column("read_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    """Drop ``outbox.read_at``."""
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("read_at")
