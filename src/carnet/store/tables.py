"""The database schema (SQLAlchemy Core). Every table carries ``patient_id``, the Citus
distribution column; nothing but opaque ids, types, versions, server timestamps, sealed
bytes and keyed hashes is stored."""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
)

metadata = MetaData()

ID = String(64)

patient_keys = Table(
    "patient_keys",
    metadata,
    Column("patient_id", ID, primary_key=True),
    Column("kek_id", String(64), nullable=False),
    Column("wrapped_key", LargeBinary, nullable=True),
    Column("status", String(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("shredded_at", DateTime(timezone=True), nullable=True),
)

resources = Table(
    "resources",
    metadata,
    Column("patient_id", ID, nullable=False),
    Column("resource_type", String(64), nullable=False),
    Column("resource_id", ID, nullable=False),
    Column("version_id", Integer, nullable=False),
    Column("deleted", Boolean, nullable=False),
    Column("last_updated", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("patient_id", "resource_type", "resource_id"),
    Index("ix_resources_locate", "resource_type", "resource_id"),
)

resource_versions = Table(
    "resource_versions",
    metadata,
    Column("patient_id", ID, nullable=False),
    Column("resource_type", String(64), nullable=False),
    Column("resource_id", ID, nullable=False),
    Column("version_id", Integer, nullable=False),
    Column("deleted", Boolean, nullable=False),
    Column("last_updated", DateTime(timezone=True), nullable=False),
    Column("sealed", LargeBinary, nullable=True),
    PrimaryKeyConstraint("patient_id", "resource_type", "resource_id", "version_id"),
)

search_tokens = Table(
    "search_tokens",
    metadata,
    Column("patient_id", ID, nullable=False),
    Column("resource_type", String(64), nullable=False),
    Column("resource_id", ID, nullable=False),
    Column("param", String(64), nullable=False),
    Column("value_hash", LargeBinary(16), nullable=False),
    Index("ix_search_tokens_lookup", "patient_id", "resource_type", "param", "value_hash"),
    Index("ix_search_tokens_resource", "patient_id", "resource_type", "resource_id"),
)

identities = Table(
    "identities",
    metadata,
    Column("patient_id", ID, nullable=False),
    Column("value_hash", LargeBinary(16), nullable=False),
    PrimaryKeyConstraint("value_hash", "patient_id"),
    Index("ix_identities_patient", "patient_id"),
)
