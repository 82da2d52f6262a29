"""The access journal (Merkle logs, checkpoints), the notification outbox and preferences.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

ID = sa.String(64)


def upgrade() -> None:
    """Create the journal, outbox and preference tables."""
    op.create_table(
        "journal_entries",
        sa.Column("shard", sa.Integer, nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("patient_id", ID, nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("commitment", sa.LargeBinary(32), nullable=False),
        sa.Column("sealed", sa.LargeBinary, nullable=False),
        sa.PrimaryKeyConstraint("shard", "seq"),
    )
    op.create_index("ix_journal_entries_patient", "journal_entries", ["patient_id", "recorded_at"])
    op.create_table(
        "journal_nodes",
        sa.Column("shard", sa.Integer, nullable=False),
        sa.Column("level", sa.Integer, nullable=False),
        sa.Column("idx", sa.BigInteger, nullable=False),
        sa.Column("digest", sa.LargeBinary(32), nullable=False),
        sa.PrimaryKeyConstraint("shard", "level", "idx"),
    )
    op.create_table(
        "journal_heads",
        sa.Column("shard", sa.Integer, primary_key=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("peaks", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "journal_checkpoints",
        sa.Column("shard", sa.Integer, nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("note", sa.LargeBinary, nullable=False),
        sa.PrimaryKeyConstraint("shard", "size"),
    )
    op.create_table(
        "journal_actors",
        sa.Column("patient_id", ID, nullable=False),
        sa.Column("actor_hash", sa.LargeBinary(16), nullable=False),
        sa.PrimaryKeyConstraint("patient_id", "actor_hash"),
    )
    op.create_table(
        "outbox",
        sa.Column("patient_id", ID, nullable=False),
        sa.Column("message_id", ID, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("sealed", sa.LargeBinary, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(200), nullable=True),
        sa.PrimaryKeyConstraint("patient_id", "message_id"),
    )
    op.create_index("ix_outbox_due", "outbox", ["status", "next_attempt_at"])
    op.create_table(
        "notification_preferences",
        sa.Column("patient_id", ID, primary_key=True),
        sa.Column("sealed", sa.LargeBinary, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    """Drop the journal, outbox and preference tables."""
    for table in (
        "notification_preferences",
        "outbox",
        "journal_actors",
        "journal_checkpoints",
        "journal_heads",
        "journal_nodes",
        "journal_entries",
    ):
        op.drop_table(table)
