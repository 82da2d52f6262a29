"""Record keys split with an erasure share kept in the key directory.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06

Existing keys keep ``share_id`` NULL (wrapped whole) until ``carnet keys rotate`` splits them:
the migration cannot reach the key directory. docs/operations.md tells operators to rotate once
after upgrading.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the share id column to the record keys."""
    with op.batch_alter_table("patient_keys") as batch:
        batch.add_column(sa.Column("share_id", sa.LargeBinary(16), nullable=True))


def downgrade() -> None:
    """Drop the share id column (keys with a share then no longer open: restore a backup instead)."""
    with op.batch_alter_table("patient_keys") as batch:
        batch.drop_column("share_id")
