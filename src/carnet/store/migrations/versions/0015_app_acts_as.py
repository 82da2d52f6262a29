"""A backend service's role holds 'study:<study id>' (48) or 'feed:<feed id>' (64): 80 characters.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Widen ``app_clients.acts_as`` from 32 to 80 characters."""
    with op.batch_alter_table("app_clients") as batch:
        batch.alter_column(
            "acts_as", existing_type=sa.String(32), type_=sa.String(80), existing_nullable=True
        )


def downgrade() -> None:
    """Narrow ``app_clients.acts_as`` back to 32 characters."""
    with op.batch_alter_table("app_clients") as batch:
        batch.alter_column(
            "acts_as", existing_type=sa.String(80), type_=sa.String(32), existing_nullable=True
        )
