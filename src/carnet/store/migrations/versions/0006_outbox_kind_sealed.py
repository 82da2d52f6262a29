"""The outbox no longer stores the kind of event in clear.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06

Every outbox payload has always carried the event inside its sealed part, so the clear
``event`` column (``break-glass``, ``regulation``…) is dropped without losing anything.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Drop the clear event column of the outbox."""
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("event")


def downgrade() -> None:
    """Bring the column back, filled with a neutral value (the real kind stays sealed)."""
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("event", sa.String(32), nullable=False, server_default="sealed"))
