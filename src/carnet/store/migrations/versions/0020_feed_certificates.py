"""A feed's client certificate for MLLP over TLS: the SHA-256 of its DER, hex (64 characters).

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add ``feeds.certificate`` (nullable: feeds without one use HTTP, or MLLP with a sender)."""
    with op.batch_alter_table("feeds") as batch:
        batch.add_column(sa.Column("certificate", sa.String(64), nullable=True))


def downgrade() -> None:
    """Drop ``feeds.certificate`` (the MLLP over TLS listener then knows no feed)."""
    with op.batch_alter_table("feeds") as batch:
        batch.drop_column("certificate")
