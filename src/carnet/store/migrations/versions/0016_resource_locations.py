"""Resource locations: the record of each resource, found by the resource's id alone.

A read by bare id (``GET /fhir/Observation/<id>``) found its record with an index probe of
``resources`` on (type, id); on Citus, where ``resources`` is sharded by record, that probe went to
every shard. ``resource_locations`` is keyed (and, on Citus, distributed) by the resource id: one
probe on one shard. It is filled from ``resources`` here; the index it replaces is dropped.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the locations, fill them from the stored resources, drop the (type, id) index."""
    op.create_table(
        "resource_locations",
        sa.Column("resource_id", sa.String(64), nullable=False),
        sa.Column("resource_type", sa.String(64), nullable=False),
        sa.Column("patient_id", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("resource_id", "resource_type"),
    )
    op.execute(
        "INSERT INTO resource_locations (resource_id, resource_type, patient_id) "
        "SELECT resource_id, resource_type, patient_id FROM resources"
    )
    op.drop_index("ix_resources_locate", table_name="resources")


def downgrade() -> None:
    """Put the (type, id) index back and drop the locations."""
    op.create_index("ix_resources_locate", "resources", ["resource_type", "resource_id"])
    op.drop_table("resource_locations")
