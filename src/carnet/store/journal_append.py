"""A PostgreSQL transaction's buffered writes in one statement: new rows, journal entries, nodes, heads.

What a write buffers (:meth:`carnet.store.connected.Connected.flush`: a resource's version,
current row, location and blind-index rows, an outbox message) and the journal appends due
(the entries, the tree nodes they completed, each log's new head) are written in one statement:
each table's insert a data-modifying CTE, the heads' update last. One round trip to the server
instead of one per table and per log, and one execution instead of one per statement. A write's
rows are usually sent before the journal's head is read and locked (``journal.py``), the append
after it: two such statements, so that the head's lock covers the append alone. PostgreSQL runs
every data-modifying CTE to completion, in the statement's transaction, so the writes stay atomic
with the rest of that transaction; a unique violation names its table (``diag.table_name``).

Two forms, by size:

- **A few rows** (a single write, a feed's document: up to :data:`VALUES_ROWS` rows) as multi-row
  ``VALUES`` with one parameter per value: psycopg dumps each in C, where an array goes through
  its Python list dumper (~10 us a column); the server neither builds nor unnests arrays. One SQL
  text per set of tables and row counts: psycopg prepares each after a few uses. Measured on a
  feed document's writes (3 versions, one of 137 KB, their rows, 6 blind-index rows, an entry,
  2 nodes, the head): 0.51-0.53 ms of client CPU and 0.90 ms of server CPU, against 0.59 and
  1.23-1.27 ms as arrays and 0.99-1.03 and 1.13-1.17 ms as seven statements.
- **More rows** (a bundle's transaction) as one array per column (``unnest``): one SQL text
  whatever the number of rows, and no limit on parameters (65,535 per statement). The ``bytea``
  arrays go in binary (``%b``): as text, psycopg escapes every byte into the array literal
  (~0.7 ms for a 100 KB document) and the server parses it back.

The columns are those of the row dictionaries the caller builds, their types those of the tables
(:mod:`carnet.store.tables`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

from sqlalchemy import Connection, LargeBinary, Table
from sqlalchemy.dialects import postgresql

from carnet.store.tables import journal_heads

_DIALECT = postgresql.dialect()  # type: ignore[no-untyped-call]

#: The heads' rows: ``(log_key, shard, size, peaks)``.
Head = tuple[str, int, int, bytes]
#: Up to this many rows in all, a flush is sent as ``VALUES``; beyond, as arrays.
VALUES_ROWS = 64
_HEAD_COLUMNS = ("log_key", "shard", "size", "peaks")


def _type(table: Table, column: str) -> str:
    """The column's SQL type; a name that is not a column of ``table`` raises ``KeyError``."""
    return str(table.c[column].type.compile(dialect=_DIALECT))


def _value(table: Table, column: str) -> str:
    """One value's placeholder, cast to its column's type (``bytea`` goes as is: psycopg types it)."""
    if isinstance(table.c[column].type, LargeBinary):
        return "%s"
    return f"%s::{_type(table, column)}"


def _array(table: Table, name: str, column: str) -> str:
    """The placeholder of one column's array: binary for ``bytea`` (see the module's docstring)."""
    kind = "b" if isinstance(table.c[column].type, LargeBinary) else "s"
    return f"%({name}){kind}::{_type(table, column)}[]"


def _values(table: Table, columns: tuple[str, ...], rows: int) -> str:
    one = "(" + ", ".join(_value(table, c) for c in columns) + ")"
    return ", ".join([one] * rows)


def _insert(table: Table, columns: tuple[str, ...], source: str) -> str:
    # Every name is a column of the table (``_type`` looked each up); the values are parameters.
    return f"INSERT INTO {table.name} ({', '.join(columns)}) {source}"


def _update_heads(source: str) -> str:
    return (
        f"UPDATE {journal_heads.name} AS h SET size = v.size, peaks = v.peaks "  # noqa: S608
        f"FROM {source} AS v(log_key, shard, size, peaks) WHERE h.log_key = v.log_key AND h.shard = v.shard"
    )


_UPDATE_HEAD = (
    f"UPDATE {journal_heads.name} SET size = %s::BIGINT, peaks = %s "  # noqa: S608
    f"WHERE log_key = %s::{_type(journal_heads, 'log_key')} AND shard = %s::INTEGER"
)


def _with(parts: list[str]) -> str:
    *first, last = parts
    if not first:
        return last
    return "WITH " + ", ".join(f"w{n} AS ({sql})" for n, sql in enumerate(first)) + " " + last


@cache
def _values_statement(shape: tuple[tuple[Table, tuple[str, ...], int], ...], heads: int) -> str:
    """The ``VALUES`` form of one shape: the tables with their columns and row counts, then the heads."""
    parts = [
        _insert(table, columns, "VALUES " + _values(table, columns, rows)) for table, columns, rows in shape
    ]
    if heads == 1:
        parts.append(_UPDATE_HEAD)
    elif heads:
        parts.append(_update_heads("(VALUES " + _values(journal_heads, _HEAD_COLUMNS, heads) + ")"))
    return _with(parts)


@cache
def _arrays_statement(shape: tuple[tuple[Table, tuple[str, ...]], ...], heads: bool) -> str:
    """The arrays form of one shape: the tables with their columns, in order, then the heads if any."""
    parts = []
    for n, (table, columns) in enumerate(shape):
        arrays = ", ".join(_array(table, f"i{n}_{c}", c) for c in columns)
        parts.append(_insert(table, columns, f"SELECT * FROM unnest({arrays})"))  # noqa: S608
    if heads:
        arrays = ", ".join(_array(journal_heads, f"h_{c}", c) for c in _HEAD_COLUMNS)
        parts.append(_update_heads(f"unnest({arrays})"))
    return _with(parts)


@cache
def _conversions(dialect: Any, table: Table, columns: tuple[str, ...]) -> tuple[Any, ...]:
    """Each column's bind conversion for the dialect (None where it needs none; bytes never do)."""
    return tuple(
        None if isinstance(table.c[c].type, LargeBinary) else table.c[c].type.bind_processor(dialect)
        for c in columns
    )


def is_uniform(rows: Sequence[Mapping[str, object]]) -> bool:
    """Whether every row has the same columns, in the same order (one array per column)."""
    keys = tuple(rows[0])
    return all(tuple(row) == keys for row in rows)


def write_at_once(
    connection: Connection,
    inserts: Sequence[tuple[Table, Sequence[Mapping[str, object]]]],
    heads: Sequence[Head],
    send: Any,
) -> None:
    """Insert the rows of each table and set the heads, in one statement sent by ``send``.

    The rows of one table must have the same columns in the same order (:func:`is_uniform`);
    ``inserts`` lists tables with rows, each at most once. ``send(connection, sql, parameters)``
    sends it (:func:`carnet.store.connected._send`). Nothing is sent when there is nothing to write.
    """
    if not inserts and not heads:
        return
    dialect = connection.dialect
    if sum(len(rows) for _, rows in inserts) + len(heads) <= VALUES_ROWS:
        shape: list[tuple[Table, tuple[str, ...], int]] = []
        values: list[object] = []
        for table, rows in inserts:
            columns = tuple(rows[0])
            shape.append((table, columns, len(rows)))
            conversions = _conversions(dialect, table, columns)
            if any(conversions):
                for row in rows:
                    values.extend(
                        row[c] if convert is None else convert(row[c])
                        for c, convert in zip(columns, conversions, strict=True)
                    )
            else:
                for row in rows:
                    values.extend(row.values())
        for head in heads if len(heads) != 1 else ():
            values.extend(head)
        if len(heads) == 1:
            key, shard, size, peaks = heads[0]
            values.extend((size, peaks, key, shard))
        send(connection, _values_statement(tuple(shape), len(heads)), tuple(values))
        return
    parameters: dict[str, object] = {}
    for n, (table, rows) in enumerate(inserts):
        columns = tuple(rows[0])
        for column, convert in zip(columns, _conversions(dialect, table, columns), strict=True):
            column_values = [row[column] for row in rows]
            parameters[f"i{n}_{column}"] = (
                column_values if convert is None else [convert(v) for v in column_values]
            )
    if heads:
        for index, column in enumerate(_HEAD_COLUMNS):
            parameters[f"h_{column}"] = [head[index] for head in heads]
    send(
        connection,
        _arrays_statement(tuple((table, tuple(rows[0])) for table, rows in inserts), bool(heads)),
        parameters,
    )
