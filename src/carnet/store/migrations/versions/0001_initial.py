"""The sealed record store: keys, resources, versions, blind indexes, identities.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ID = sa.String(64)


def upgrade() -> None:
    """Create the tables of the first schema."""
    op.create_table(
        "patient_keys",
        sa.Column("patient_id", ID, primary_key=True),
        sa.Column("kek_id", sa.String(64), nullable=False),
        sa.Column("wrapped_key", sa.LargeBinary, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("shredded_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_table(
        "resources",
        sa.Column("patient_id", ID, nullable=False),
        sa.Column("resource_type", sa.String(64), nullable=False),
        sa.Column("resource_id", ID, nullable=False),
        sa.Column("version_id", sa.Integer, nullable=False),
        sa.Column("deleted", sa.Boolean, nullable=False),
        sa.Column("last_updated", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("patient_id", "resource_type", "resource_id"),
    )
    op.create_index("ix_resources_locate", "resources", ["resource_type", "resource_id"])
    op.create_table(
        "resource_versions",
        sa.Column("patient_id", ID, nullable=False),
        sa.Column("resource_type", sa.String(64), nullable=False),
        sa.Column("resource_id", ID, nullable=False),
        sa.Column("version_id", sa.Integer, nullable=False),
        sa.Column("deleted", sa.Boolean, nullable=False),
        sa.Column("last_updated", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sealed", sa.LargeBinary, nullable=True),
        sa.PrimaryKeyConstraint("patient_id", "resource_type", "resource_id", "version_id"),
    )
    op.create_table(
        "search_tokens",
        sa.Column("patient_id", ID, nullable=False),
        sa.Column("resource_type", sa.String(64), nullable=False),
        sa.Column("resource_id", ID, nullable=False),
        sa.Column("param", sa.String(64), nullable=False),
        sa.Column("value_hash", sa.LargeBinary(16), nullable=False),
    )
    op.create_index(
        "ix_search_tokens_lookup", "search_tokens", ["patient_id", "resource_type", "param", "value_hash"]
    )
    op.create_index(
        "ix_search_tokens_resource", "search_tokens", ["patient_id", "resource_type", "resource_id"]
    )
    op.create_table(
        "identities",
        sa.Column("patient_id", ID, nullable=False),
        sa.Column("value_hash", sa.LargeBinary(16), nullable=False),
        sa.PrimaryKeyConstraint("value_hash", "patient_id"),
    )
    op.create_index("ix_identities_patient", "identities", ["patient_id"])


def downgrade() -> None:
    """Drop every table of the first schema."""
    for table in ("identities", "search_tokens", "resource_versions", "resources", "patient_keys"):
        op.drop_table(table)
