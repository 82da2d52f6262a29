"""A journal append on PostgreSQL in one statement: entries, tree nodes and head update together.

The three writes of an append (``INSERT`` the entries, ``INSERT`` the nodes they completed,
``UPDATE`` the log's head) are one statement whose two inserts are data-modifying CTEs, each
taking its rows as one array per column (``unnest``): one round trip to the server instead of
three, one fixed SQL text whatever the number of rows (psycopg prepares it on the server after
a few uses), and no SQLAlchemy statement compiling per append. PostgreSQL runs every
data-modifying CTE to completion, in the statement's transaction, so the append stays atomic with
the rest of that transaction. The columns are those of the row dictionaries the caller builds,
their types those of the tables (:mod:`carnet.store.tables`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cache

from sqlalchemy import Connection, Table
from sqlalchemy.dialects import postgresql

from carnet.store.tables import journal_entries, journal_heads, journal_nodes

_DIALECT = postgresql.dialect()  # type: ignore[no-untyped-call]


def _type(table: Table, column: str) -> str:
    """The column's SQL type; a name that is not a column of ``table`` raises ``KeyError``."""
    return str(table.c[column].type.compile(dialect=_DIALECT))


def _unnest(table: Table, prefix: str, columns: tuple[str, ...]) -> str:
    arrays = ", ".join(f"%({prefix}{c})s::{_type(table, c)}[]" for c in columns)
    # Every name is a column of the table (``_type`` looked each up); the values are parameters.
    return f"INSERT INTO {table.name} ({', '.join(columns)}) SELECT * FROM unnest({arrays})"  # noqa: S608


@cache
def _statement(
    entry_columns: tuple[str, ...], node_columns: tuple[str, ...], head_key: tuple[str, ...]
) -> str:
    where = " AND ".join(f"{c} = %(h_{c})s::{_type(journal_heads, c)}" for c in head_key)
    # Names checked against the tables by ``_type``; the values are parameters.
    return (
        f"WITH entries AS ({_unnest(journal_entries, 'e_', entry_columns)}), "  # noqa: S608
        f"nodes AS ({_unnest(journal_nodes, 'n_', node_columns)}) "
        f"UPDATE {journal_heads.name} SET size = %(h__size)s::BIGINT, peaks = %(h__peaks)s::BYTEA "
        f"WHERE {where}"
    )


def append_at_once(
    connection: Connection,
    entries: Sequence[Mapping[str, object]],
    nodes: Sequence[Mapping[str, object]],
    head: Mapping[str, object],
    size: int,
    peaks: bytes,
) -> None:
    """Insert ``entries`` and ``nodes`` (rows of the same columns each) and set the head ``head`` names.

    ``head`` maps the key columns of the log's ``journal_heads`` row to their values.
    """
    entry_columns = tuple(entries[0]) if entries else ()
    node_columns = tuple(nodes[0]) if nodes else ()
    parameters: dict[str, object] = {"h__size": size, "h__peaks": peaks}
    parameters.update({f"e_{c}": [row[c] for row in entries] for c in entry_columns})
    parameters.update({f"n_{c}": [row[c] for row in nodes] for c in node_columns})
    parameters.update({f"h_{c}": value for c, value in head.items()})
    connection.exec_driver_sql(_statement(entry_columns, node_columns, tuple(head)), parameters)
