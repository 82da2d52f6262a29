"""The journal heads' log number takes no value from a sequence.

``journal_heads.shard`` was created as an integer primary key, which PostgreSQL made a ``serial``
(a ``journal_heads_shard_seq`` default). Carnet always writes the log number itself, so the
sequence was never used, but on Citus a sequence default on a distribution column is a trap: a row
inserted without its number would take the coordinator's next value, unrelated to the log, and a
shard move or a new node copies the sequence too. No table of the schema uses a sequence now.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Drop the default and its sequence (PostgreSQL; SQLite has no sequences)."""
    if op.get_bind().dialect.name != "postgresql":
        return
    # CASCADE drops the column's default with it; a plain ALTER ... DROP DEFAULT is refused by
    # Citus on a distribution column, and the workers' copies of the table hold the default too.
    op.execute("DROP SEQUENCE IF EXISTS journal_heads_shard_seq CASCADE")


def downgrade() -> None:
    """Nothing to put back: no code ever used the sequence."""
