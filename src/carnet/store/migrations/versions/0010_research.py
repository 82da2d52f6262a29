"""Research (issue 15): the study registry, bulk exports and their sealed parts, the budget ledger.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the research tables."""
    op.create_table(
        "research_studies",
        sa.Column("study_id", sa.String(64), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("registration", sa.Text, nullable=False),
        sa.Column("registered_by", sa.String(200), nullable=False),
        sa.Column("approved_by", sa.String(200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "exports",
        sa.Column("export_id", sa.String(64), primary_key=True),
        sa.Column("study_id", sa.String(64), nullable=True),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("request", sa.Text, nullable=False),
        sa.Column("progress", sa.String(200), nullable=False),
        sa.Column("summary", sa.Text, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_table(
        "export_parts",
        sa.Column("export_id", sa.String(64), nullable=False),
        sa.Column("part", sa.Integer, nullable=False),
        sa.Column("resource_type", sa.String(64), nullable=False),
        sa.Column("lines", sa.Integer, nullable=False),
        sa.Column("sealed", sa.LargeBinary, nullable=False),
        sa.PrimaryKeyConstraint("export_id", "part"),
    )
    op.create_table(
        "research_ledger",
        sa.Column("study_id", sa.String(64), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("asked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("asked_by", sa.String(200), nullable=False),
        sa.Column("question", sa.Text, nullable=False),
        sa.Column("epsilon", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("study_id", "seq"),
    )


def downgrade() -> None:
    """Drop the research tables."""
    for table in ("research_ledger", "export_parts", "exports", "research_studies"):
        op.drop_table(table)
