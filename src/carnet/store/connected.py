"""The connection of one store transaction, and the new rows it buffers for bulk inserts.

Every part of :class:`carnet.store.repository.SQLStoreSession` (records, journal, outbox,
portal sessions) reads and writes through :attr:`Connected._c`. New resources and their index
rows are buffered (:meth:`Connected._buffer`) and written with one ``executemany`` per table:
a 1,000-entry transaction costs a handful of statements. Any statement through ``_c`` writes
the buffer first, so a transaction always reads its own writes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, LargeBinary, Table, insert
from sqlalchemy.exc import IntegrityError

from carnet.domain.errors import Conflict
from carnet.store.journal_logs import JournalLogs


def utc(value: datetime) -> datetime:
    """A stored instant as an aware UTC datetime (SQLite hands back naive ones; all are UTC)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Connected:
    """A transaction's connection and its buffered inserts."""

    def __init__(self, connection: Connection, logs: JournalLogs | None = None) -> None:
        self._connection = connection
        #: Where the journal's logs live (shared by the store's sessions).
        self._logs = logs or JournalLogs()
        self._pending: dict[Table, list[dict[str, object]]] = {}
        #: The journal heads this transaction appended to, as it left them (``journal.py``): its
        #: lock on them is held until it ends, so the next append of the same log needs no read.
        self._journal_heads: dict[int, tuple[int, bytes]] = {}

    @property
    def _c(self) -> Connection:
        """The connection, once the buffered rows are written."""
        if self._pending:
            self.flush()
        return self._connection

    def _buffer(self, table: Table, rows: Iterable[dict[str, object]]) -> None:
        """Keep new rows of ``table`` for the next bulk insert."""
        self._pending.setdefault(table, []).extend(rows)

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """Run a block whose writes are undone, alone, if it raises (``SAVEPOINT``).

        The rows buffered before the block are written first; those the block buffers are
        dropped with it. The transaction goes on after a rolled-back block.
        """
        self.flush()
        nested = self._connection.begin_nested()
        try:
            yield
            self.flush()
        except BaseException:
            self._pending = {}
            self._journal_heads = {}  # the block's appends are undone: read the heads again
            nested.rollback()
            raise
        nested.commit()

    def serialise(self, key: str) -> None:
        """Hold, until this transaction ends, a lock on ``key`` that concurrent transactions wait for.

        Conditional writes (``If-None-Exist``, ``PUT``/``DELETE [type]?criteria``) search and then
        write: two concurrent ones with the same criteria would both find nothing and both create.
        On PostgreSQL (and Citus, on the coordinator) a transaction-scoped advisory lock on the
        criteria makes the second wait until the first has committed, then search again and find
        its resource; on SQLite the transaction already holds the database's single write lock.
        """
        if self._connection.dialect.name == "postgresql":
            self._c.exec_driver_sql(
                "SELECT pg_advisory_xact_lock(hashtextextended(%(key)s, 0))", {"key": key}
            )

    def flush(self) -> None:
        """Write the buffered rows, one ``executemany`` per table.

        Raises:
            Conflict: a buffered row already exists (a resource written twice).
        """
        pending, self._pending = self._pending, {}
        try:
            for table, rows in pending.items():
                if rows:
                    _insert_many(self._connection, table, rows)
        except IntegrityError:
            raise Conflict("A resource was written twice in one transaction; retry.") from None


#: Per dialect and table and set of columns: the INSERT's SQL, its parameter order (positional
#: drivers) and the conversion of each column that needs one.
_InsertPlan = tuple[str, tuple[str, ...] | None, tuple[tuple[str, Any], ...]]
_INSERTS: dict[tuple[str, Table, tuple[str, ...]], _InsertPlan] = {}


def _insert_plan(connection: Connection, table: Table, keys: tuple[str, ...]) -> _InsertPlan:
    dialect = connection.dialect
    found = _INSERTS.get((dialect.name, table, keys))
    if found is None:
        compiled = insert(table).compile(dialect=dialect, column_keys=list(keys))
        convert = tuple(
            (key, processor)
            for key in keys
            if not isinstance(table.c[key].type, LargeBinary)  # bytes go to both drivers as they are
            and (processor := table.c[key].type.bind_processor(dialect)) is not None
        )
        order = tuple(compiled.positiontup) if compiled.positional and compiled.positiontup else None
        found = _INSERTS[(dialect.name, table, keys)] = (str(compiled), order, convert)
    return found


def _insert_many(connection: Connection, table: Table, rows: list[dict[str, object]]) -> None:
    """Insert rows with one ``executemany`` of SQL compiled once per table and columns.

    SQLAlchemy's ``execute(insert(table), rows)`` processes every row's parameters through the
    compiled statement again (~10 % of a Synthea ingest's CPU, nine blind-index rows per
    resource); here only the columns whose type converts (a date on SQLite) are converted.
    """
    keys = tuple(rows[0])
    if any(len(row) != len(keys) or row.keys() != rows[0].keys() for row in rows):
        connection.execute(insert(table), rows)  # rows of different shapes: SQLAlchemy sorts them out
        return
    sql, order, convert = _insert_plan(connection, table, keys)
    if convert:
        rows = [dict(row) for row in rows]
        for row in rows:
            for key, processor in convert:
                row[key] = processor(row[key])
    if order is not None:
        connection.exec_driver_sql(sql, [tuple(row[k] for k in order) for row in rows])
    else:
        connection.exec_driver_sql(sql, rows)
