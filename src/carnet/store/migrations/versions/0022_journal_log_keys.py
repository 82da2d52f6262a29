"""The journal's logs are placed by a key: on Citus, in their record shard's group.

Each journal table gets ``log_key`` (the log number in decimal here; on Citus a token hashing
into the log's record shard, kept in the new reference table ``journal_logs``), first in its
primary key. On a distributed store the journal tables are first brought back to the
coordinator (``undistribute_table``); ``carnet db upgrade`` then re-keys them and distributes
them on ``log_key``, co-located with the records (:func:`carnet.store.journal_logs.assign_log_keys`).

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from carnet.store.distribution import is_citus

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None

#: Each journal table and its primary key after the log number.
_KEYS = {
    "journal_heads": ("shard",),
    "journal_entries": ("shard", "seq"),
    "journal_nodes": ("shard", "level", "idx"),
    "journal_checkpoints": ("shard", "size"),
    "journal_cosignatures": ("shard", "size", "witness"),
}


def _distributed(table: str) -> bool:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql" or not is_citus(bind):
        return False
    return bool(
        bind.execute(
            sa.text(
                "SELECT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = CAST(:t AS regclass))"
            ),
            {"t": table},
        ).scalar_one()
    )


def _fill(table: str) -> sa.Update:
    """Key each existing row by its log number in decimal."""
    rows = sa.table(table, sa.column("log_key"), sa.column("shard"))
    return sa.update(rows).values(log_key=sa.cast(rows.c.shard, sa.String(64)))


def _columns(table: str) -> list[sa.Column[object]]:
    """The columns of a journal table after the log number (as migrations 0002 and 0005 made them)."""
    big, small = sa.BigInteger, sa.Integer
    columns: dict[str, list[sa.Column[object]]] = {
        "journal_heads": [
            sa.Column("size", big, nullable=False),
            sa.Column("peaks", sa.LargeBinary, nullable=False),
        ],
        "journal_entries": [
            sa.Column("seq", big, nullable=False),
            sa.Column("patient_id", sa.String(64), nullable=False),
            sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("commitment", sa.LargeBinary(32), nullable=False),
            sa.Column("sealed", sa.LargeBinary, nullable=False),
        ],
        "journal_nodes": [
            sa.Column("level", small, nullable=False),
            sa.Column("idx", big, nullable=False),
            sa.Column("digest", sa.LargeBinary(32), nullable=False),
        ],
        "journal_checkpoints": [
            sa.Column("size", big, nullable=False),
            sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("note", sa.LargeBinary, nullable=False),
        ],
        "journal_cosignatures": [
            sa.Column("size", big, nullable=False),
            sa.Column("witness", sa.String(255), nullable=False),
            sa.Column("cosigned_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("line", sa.Text, nullable=False),
        ],
    }
    return columns[table]


def _rebuild_sqlite(table: str, key: tuple[str, ...], *, keyed: bool = True) -> None:
    """SQLite changes no primary key in place: copy the rows into a new table, keyed by their log or not."""
    columns = _columns(table)
    names = ["shard", *(c.name for c in columns)]
    op.create_table(
        f"{table}_new",
        *([sa.Column("log_key", sa.String(64), nullable=False)] if keyed else []),
        sa.Column("shard", sa.Integer, nullable=False, autoincrement=False),
        *columns,
        sa.PrimaryKeyConstraint(*(["log_key"] if keyed else []), *key),
    )
    old = sa.table(table, *(sa.column(n) for n in names))
    new = sa.table(f"{table}_new", sa.column("log_key"), *(sa.column(n) for n in names))
    copied = [old.c[n] for n in names]
    if keyed:
        query = sa.insert(new).from_select(
            ["log_key", *names], sa.select(sa.cast(old.c.shard, sa.String(64)), *copied)
        )
    else:
        query = sa.insert(new).from_select(names, sa.select(*copied))
    op.execute(query)
    op.drop_table(table)
    op.rename_table(f"{table}_new", table)
    if table == "journal_entries":
        op.create_index("ix_journal_entries_patient", table, ["patient_id", "recorded_at"])


def _replace_primary_key(table: str, key: tuple[str, ...]) -> None:
    """Replace a PostgreSQL table's primary key by one on ``key``."""
    name = (
        op.get_bind()
        .execute(
            sa.text(
                "SELECT conname FROM pg_constraint WHERE conrelid = CAST(:t AS regclass) AND contype = 'p'"
            ),
            {"t": table},
        )
        .scalar_one()
    )
    op.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
    op.execute(f"ALTER TABLE {table} ADD PRIMARY KEY ({', '.join(key)})")


def upgrade() -> None:
    """Add ``log_key`` to every journal table and to its primary key; create ``journal_logs``."""
    bind = op.get_bind()
    op.create_table(
        "journal_logs",
        sa.Column("shard", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("log_key", sa.String(64), nullable=False),
        sa.Column("legacy", sa.Boolean, nullable=False),
    )
    for table, key in _KEYS.items():
        if _distributed(table):
            bind.execute(sa.text("SELECT undistribute_table(CAST(:t AS regclass))"), {"t": table})
        if bind.dialect.name == "postgresql":
            op.add_column(table, sa.Column("log_key", sa.String(64), nullable=True))
            op.execute(_fill(table))
            op.alter_column(table, "log_key", nullable=False)
            _replace_primary_key(table, ("log_key", *key))
        else:
            _rebuild_sqlite(table, key)


def downgrade() -> None:
    """Key the journal by its log number alone again (on Citus, back on the coordinator first).

    ``carnet db upgrade`` then distributes it again: on a Citus store, only through migration
    0022 (a schema before it keeps its journal on the coordinator).
    """
    bind = op.get_bind()
    for table, key in _KEYS.items():
        if _distributed(table):
            bind.execute(sa.text("SELECT undistribute_table(CAST(:t AS regclass))"), {"t": table})
        if bind.dialect.name == "postgresql":
            _replace_primary_key(table, key)
            op.drop_column(table, "log_key")
        else:
            _rebuild_sqlite(table, key, keyed=False)
    op.drop_table("journal_logs")
