"""Feed messages remember a digest of their content beside their MSH-10.

A sender that reuses an MSH-10 for another message (the ANS's own example messages do: initial,
replacement and deletion all ``015``) must not get the first message's answer back while the
replacement is silently dropped; a message sent again as it was still gets its first answer.
Rows written before this revision have no digest and keep today's rule (same MSH-10, same message).

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the digest column (empty for the messages already taken)."""
    op.add_column("feed_messages", sa.Column("digest", sa.LargeBinary(32), nullable=True))


def downgrade() -> None:
    """Drop the digest column (a reused MSH-10 is then a resend again)."""
    op.drop_column("feed_messages", "digest")
