"""Resource places: the location of a resource whose id carries its record shard's log key.

On Citus a new resource's id starts with the key of its record shard's journal log
(``<key>.<uuid>``, :mod:`carnet.store.journal_logs`); its location is written in
``resource_places``, keyed (and distributed, beside the records) by that key, so a create writes
in its record's shard group only and commits on one worker. ``carnet db upgrade`` places the table
(:mod:`carnet.store.distribution`). Ids without a key (SQLite, plain PostgreSQL, a store written
before) stay in ``resource_locations``; nothing is moved.

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the places (empty: only ids drawn from now on carry a key)."""
    op.create_table(
        "resource_places",
        sa.Column("log_key", sa.String(64), nullable=False),
        sa.Column("resource_id", sa.String(64), nullable=False),
        sa.Column("resource_type", sa.String(64), nullable=False),
        sa.Column("patient_id", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("log_key", "resource_id", "resource_type"),
    )


def downgrade() -> None:
    """Copy the places back into the locations, with the Patients Citus found in their record, then drop them.

    On Citus a Patient created after this revision has no location (its record is its id); the
    revision before reads every resource from ``resource_locations``.
    """
    op.execute(
        "INSERT INTO resource_locations (resource_id, resource_type, patient_id) "
        "SELECT resource_id, resource_type, patient_id FROM resource_places"
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "INSERT INTO resource_locations (resource_id, resource_type, patient_id) "
            "SELECT resource_id, resource_type, patient_id FROM resources "
            "WHERE resource_type = 'Patient' ON CONFLICT DO NOTHING"
        )
    op.drop_table("resource_places")
