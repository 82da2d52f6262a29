"""Built-in patient accounts: enrolment codes, passkeys, recovery codes and TOTP secrets.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the patients' sign-in credentials."""
    op.create_table(
        "patient_credentials",
        sa.Column("patient_id", sa.String(64), nullable=False),
        sa.Column("credential_key", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("secret", sa.LargeBinary, nullable=False),
        sa.Column("sign_count", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("patient_id", "credential_key"),
    )
    op.create_index("ix_patient_credentials_key", "patient_credentials", ["credential_key"])


def downgrade() -> None:
    """Drop the patients' sign-in credentials (built-in accounts stop working)."""
    op.drop_index("ix_patient_credentials_key", table_name="patient_credentials")
    op.drop_table("patient_credentials")
