"""Where each table lives on Citus (distributed PostgreSQL): sharded by record, or everywhere.

Every table of the schema is declared here (a test fails when a table is added without a
placement). A per-record table is distributed on its record column (``patient_id``) and
co-located with ``patient_keys``, so one record's rows of every table sit in one shard group on
one worker: its reads, writes, searches and ``$everything`` route to that worker. The access
journal is co-located with the records too: each record shard has its own Merkle log, whose head,
entries, tree nodes, checkpoints and cosignatures are distributed on the log's key (a token that
hashes into that shard, :mod:`carnet.store.journal_logs`), so a record's journal entries are
written with its rows, and a read or an update commits on one worker. A resource id drawn on
Citus starts with that key too, and its location is placed by it (``resource_places``): a create
commits on one worker as well. Small tables read
by every request (directory, profiles, authorisation rules) are reference tables, copied to
every node. A table keyed by something else gets its own co-location group on that key.

``distribute`` runs after the migrations (``carnet db upgrade``) and by ``carnet db distribute``
on an existing single-node store: Citus copies a local table's rows into its shards.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sqlalchemy import Connection, text

from carnet.domain.errors import ConfigurationError
from carnet.store.journal_logs import assign_log_keys

#: The distribution column of every per-record table.
RECORD = "patient_id"

#: Tables Alembic keeps for itself on the coordinator (never read by a request).
LOCAL = frozenset({"alembic_version"})


@dataclass(frozen=True)
class Placement:
    """How one table is placed: ``distributed`` on ``column`` beside ``colocate``, or ``reference``."""

    kind: Literal["distributed", "reference"]
    column: str | None = None
    #: The anchor table of the co-location group (the anchor names itself).
    colocate: str | None = None


BY_RECORD = Placement("distributed", RECORD, "patient_keys")
BY_LOG = Placement("distributed", "log_key", "patient_keys")
REFERENCE = Placement("reference")
#: The journal's placement before migration 0022: on the log number, in a group of its own.
_BY_LOG_NUMBER = Placement("distributed", "shard", "journal_heads")

PLACEMENTS: dict[str, Placement] = {
    # The record's key, resources, versions, blind indexes, identities (INS lookup fans out).
    "patient_keys": BY_RECORD,
    "resources": BY_RECORD,
    "resource_versions": BY_RECORD,
    "search_tokens": BY_RECORD,
    "identities": BY_RECORD,
    # Which record holds a resource, found by the resource's id: its own group on that id, so a
    # read by bare id probes one shard (then reads the record's group), not every shard.
    "resource_locations": Placement("distributed", "resource_id", "resource_locations"),
    # Which record holds a resource whose id starts with its record shard's log key (every id
    # drawn on Citus since migration 0023): placed by that key, in the record's shard group, so a
    # create writes its location with its record and a read by bare id probes that shard.
    "resource_places": BY_LOG,
    # Notifications and the "already seen" actors of a record.
    "journal_actors": BY_RECORD,
    "outbox": BY_RECORD,
    "notification_preferences": BY_RECORD,
    # A professional's message notices live with the record they are about (the inbox, found by
    # the professional's keyed hash, reads every shard: a few rows, on a page view).
    "message_notices": BY_RECORD,
    # The access journal: one Merkle log per record shard, in that shard's group (placed by its
    # key, which hashes into the shard); the logs' keys are everywhere.
    "journal_logs": REFERENCE,
    "journal_heads": BY_LOG,
    "journal_entries": BY_LOG,
    "journal_nodes": BY_LOG,
    "journal_checkpoints": BY_LOG,
    "journal_cosignatures": BY_LOG,
    # Legal representatives' links live with the record represented (found by the
    # representative's key at sign-in: a fan-out, like the INS lookup).
    "representations": BY_RECORD,
    # Registered document feeds (a few rows, read by every feed request): everywhere.
    "feeds": REFERENCE,
    # A feed's messages taken are found by feed and MSH-10: grouped by feed. Dead letters are
    # found by their id (an operator's listing scans them all, rarely).
    "feed_messages": Placement("distributed", "feed_id", "feed_messages"),
    "feed_dead_letters": Placement("distributed", "letter_id", "feed_dead_letters"),
    # A feed's documents waiting for the patient's decision live with the record.
    "feed_offers": BY_RECORD,
    # Registered SMART apps (few rows, read at every app request): everywhere. Their codes and
    # tokens are found by their hash (a token may have no record): each its own group on it.
    "app_clients": REFERENCE,
    "app_codes": Placement("distributed", "code_hash", "app_codes"),
    "app_tokens": Placement("distributed", "token_hash", "app_tokens"),
    # Backend services' assertion ids taken, found by their hash: their own group on it.
    "app_assertions": Placement("distributed", "jti_hash", "app_assertions"),
    # Research (issue 15): the study registry is small and read by every export (everywhere);
    # an export and its sealed parts share a group on the export id; a study's budget ledger is
    # its own group on the study id.
    "research_studies": REFERENCE,
    "exports": Placement("distributed", "export_id", "exports"),
    "export_parts": Placement("distributed", "export_id", "exports"),
    "research_ledger": Placement("distributed", "study_id", "research_ledger"),
    # Portal sessions are found by the hash of their cookie id: their own group on that key.
    "portal_sessions": Placement("distributed", "sid_hash", "portal_sessions"),
    # Built-in patient accounts' credentials live with the record (a passkey's sign-in finds
    # its row by credential id across the shards: rare, one row).
    "patient_credentials": BY_RECORD,
}


def placement(table: str) -> Placement:
    """Return the placement of ``table``.

    Raises:
        ConfigurationError: the table has no declared placement (add it to ``PLACEMENTS``).
    """
    try:
        return PLACEMENTS[table]
    except KeyError:
        raise ConfigurationError(
            f"Table {table!r} has no Citus placement: declare it in carnet.store.distribution.PLACEMENTS."
        ) from None


def is_citus(connection: Connection) -> bool:
    """Tell whether the database has the Citus extension."""
    if connection.dialect.name != "postgresql":
        return False
    return connection.execute(text("SELECT 1 FROM pg_extension WHERE extname = 'citus'")).first() is not None


def placed(connection: Connection) -> dict[str, str]:
    """Return the Citus kind of each table of the current schema: ``h`` (hash), ``n`` (reference)."""
    rows = connection.execute(
        text(
            "SELECT c.relname, p.partmethod FROM pg_dist_partition p "
            "JOIN pg_class c ON c.oid = p.logicalrelid "
            "WHERE c.relnamespace = to_regnamespace(current_schema())"
        )
    )
    return {str(name): str(method) for name, method in rows}


def schema_tables(connection: Connection) -> list[str]:
    """Return the ordinary tables of the current schema."""
    rows = connection.execute(
        text("SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY tablename")
    )
    return [str(row[0]) for row in rows]


def hold_schema_lock(connection: Connection) -> None:
    """Wait, until this transaction ends, for any other Carnet schema change on this database.

    Two servers (or a server and ``carnet db distribute``) placing or migrating tables at once take
    Citus's metadata locks in different orders and end in a distributed deadlock; one
    transaction-scoped advisory lock on the coordinator makes the second wait for the first.
    """
    connection.exec_driver_sql("SELECT pg_advisory_xact_lock(hashtextextended('carnet.schema', 0))")


def distribute(connection: Connection) -> list[str]:
    """Distribute (or make reference) every table of the schema not placed yet; return those placed.

    Anchors first, so the other tables co-locate with them. A table that already holds rows has
    them copied into its shards, then its local copy is emptied.

    Raises:
        ConfigurationError: the database is not Citus, or a table has no declared placement.
    """
    if not is_citus(connection):
        raise ConfigurationError("This database has no Citus extension (CREATE EXTENSION citus).")
    hold_schema_lock(connection)
    done = placed(connection)
    tables = schema_tables(connection)
    pending = [name for name in tables if name not in LOCAL and name not in done]
    for name in pending:
        placement(name)  # every table declared before any is changed
    pending.sort(key=lambda name: (placement(name).colocate != name, placement(name) == BY_LOG, name))
    for name in pending:
        spec = placement(name)
        if spec == BY_LOG and "journal_logs" not in tables:
            spec = _BY_LOG_NUMBER  # a schema before migration 0022 (tests of later migrations)
        elif spec == BY_LOG:
            # Keys found once the record group is placed, written before the journal is moved.
            assign_log_keys(connection)
        if spec.kind == "reference":
            connection.execute(text("SELECT create_reference_table(CAST(:t AS regclass))"), {"t": name})
        else:
            if not _has_primary_key(connection, name):
                # Shard moves copy changes by logical replication, which needs a replica identity.
                connection.execute(text(f'ALTER TABLE "{name}" REPLICA IDENTITY FULL'))
            anchor = spec.colocate if spec.colocate != name and spec.colocate in done else "none"
            connection.execute(
                text("SELECT create_distributed_table(CAST(:t AS regclass), :c, colocate_with => :w)"),
                {"t": name, "c": spec.column, "w": anchor},
            )
        done[name] = "n" if spec.kind == "reference" else "h"
        connection.execute(
            text("SELECT truncate_local_data_after_distributing_table(CAST(:t AS regclass))"), {"t": name}
        )
    return pending


def _has_primary_key(connection: Connection, table: str) -> bool:
    return (
        connection.execute(
            text("SELECT 1 FROM pg_constraint WHERE conrelid = CAST(:t AS regclass) AND contype = 'p'"),
            {"t": table},
        ).first()
        is not None
    )


def restore_point(connection: Connection, name: str) -> str:
    """Create a named restore point on every node of the cluster at one instant; return its WAL position.

    ``citus_create_restore_point`` blocks writes (and 2PC commits) on all nodes while it writes the
    record, so restoring every node to this name (``recovery_target_name``) gives a cluster where
    no multi-shard transaction is half applied (docs/operations.md).

    Raises:
        ConfigurationError: the database is not Citus, or the name is not a short plain word.
    """
    if not is_citus(connection):
        raise ConfigurationError("This database has no Citus extension: use carnet backup instead.")
    if not name or len(name) > 60 or not all(c.isalnum() or c in "-_." for c in name):
        raise ConfigurationError("A restore point name is 1-60 letters, digits, '-', '_' or '.'.")
    return str(connection.execute(text("SELECT citus_create_restore_point(:n)"), {"n": name}).scalar_one())
