"""The connection of one store transaction, and the new rows it buffers for bulk inserts.

Every part of :class:`carnet.store.repository.SQLStoreSession` (records, journal, outbox,
portal sessions) reads and writes through :attr:`Connected._c`. New resources and their index
rows are buffered (:meth:`Connected._buffer`) and written with one ``executemany`` per table
(on plain PostgreSQL, with the journal's due appends, in one statement): a 1,000-entry
transaction costs a handful of statements. Any statement through ``_c`` writes the buffer
first, so a transaction always reads its own writes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any, NoReturn, cast

from sqlalchemy import ClauseElement, Connection, LargeBinary, Select, Table, insert
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.sql.compiler import SQLCompiler

from carnet.domain.errors import Conflict, JournalUnavailable
from carnet.services.ports import StoredKey
from carnet.store.journal_append import Head, is_uniform, write_at_once
from carnet.store.journal_logs import JournalLogs
from carnet.store.tables import journal_entries, journal_heads, journal_nodes

log = logging.getLogger("carnet.journal")

#: The tables a journal append writes: a unique violation there is the journal's, not a resource's.
_JOURNAL_TABLES = frozenset(t.name for t in (journal_entries, journal_nodes, journal_heads))


def utc(value: datetime) -> datetime:
    """A stored instant as an aware UTC datetime (SQLite hands back naive ones; all are UTC)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@dataclass(slots=True)
class DueAppend:
    """A journal log's rows appended in this transaction and not written yet (``journal.py``)."""

    key: str
    entries: list[dict[str, object]] = field(default_factory=list)
    nodes: list[dict[str, object]] = field(default_factory=list)


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
        #: Per journal log: the entries and nodes appended and not written yet (``journal.py``).
        self._journal_due: dict[int, DueAppend] = {}
        #: Key rows read along with a resource in this transaction (``keys.py``), by record.
        self._key_rows: dict[str, StoredKey] = {}
        #: A due journal append failed to be written: this transaction must not commit, even if
        #: whoever saw the failure went on (a savepoint's caller; the append may be another's).
        self._journal_lost = False

    @property
    def _c(self) -> Connection:
        """The connection, once the buffered rows are written."""
        if self._pending or self._journal_due:
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
            self._journal_due = {}
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

    @property
    def _rows_written(self) -> Connection:
        """The connection, once the buffered rows are written; the journal's due appends stay due."""
        if self._pending:
            self.flush(journal=False)
        return self._connection

    def flush(self, *, journal: bool = True) -> None:
        """Write the buffered rows, one ``executemany`` per table, then the journal's due appends.

        On plain PostgreSQL all of them in one statement (:meth:`_flush_at_once`). ``journal``
        False leaves the appends due (written with the transaction's next flush).

        Raises:
            Conflict: a buffered row already exists (a resource written twice).
            JournalUnavailable: journal entries of this transaction could not be written (now or
                by an earlier flush): it must end without committing.
        """
        if self._journal_lost:
            raise _journal_unavailable()
        pending, self._pending = self._pending, {}
        if self._connection.dialect.name == "postgresql" and not self._logs.distributed:
            self._flush_at_once(pending, journal=journal)
            return
        try:
            for table, rows in pending.items():
                if rows:
                    insert_many(self._connection, table, rows)
        except IntegrityError:
            raise Conflict("A resource was written twice in one transaction; retry.") from None
        if journal and self._journal_due:
            try:
                self._write_journal()
            except Exception as error:
                self._lose_journal(error)

    def _flush_at_once(self, pending: dict[Table, list[dict[str, object]]], *, journal: bool = True) -> None:
        """Write the buffered rows and the due journal appends in one statement (PostgreSQL).

        :func:`carnet.store.journal_append.write_at_once`: one round trip where :meth:`flush`
        sends one per table and per log. Not on Citus: the coordinator runs such a statement's
        ``INSERT … SELECT`` through COPY into the shards and commits it in two phases even on one
        worker (``store/journal.py``). Rows of one table with different columns (none on the
        write paths) are inserted first, on their own.

        Raises:
            Conflict: a buffered row already exists (a resource written twice); the journal's
                appends stay due, as they would if the rows had been written apart.
            JournalUnavailable: as :meth:`flush`.
        """
        inserts: list[tuple[Table, list[dict[str, object]]]] = []
        try:
            for table, rows in pending.items():
                if rows and is_uniform(rows):
                    inserts.append((table, rows))
                elif rows:
                    insert_many(self._connection, table, rows)
        except IntegrityError:
            raise Conflict("A resource was written twice in one transaction; retry.") from None
        heads: list[Head] = []
        entries: list[dict[str, object]] = []
        nodes: list[dict[str, object]] = []
        for shard in sorted(self._journal_due) if journal else ():
            append = self._journal_due[shard]
            if append.entries:
                entries.extend(append.entries)
                nodes.extend(append.nodes)
                size, peaks = self._journal_heads[shard]
                heads.append((append.key, shard, size, peaks))
        appended = bool(heads)
        if appended and is_uniform(entries) and (not nodes or is_uniform(nodes)):
            inserts.append((journal_entries, entries))
            if nodes:
                inserts.append((journal_nodes, nodes))
        else:  # rows of unusual shapes: the journal is written apart, as :meth:`flush` writes it
            appended, heads = False, []
        try:
            write_at_once(self._connection, inserts, heads, _send_one)
        except IntegrityError as error:
            failed: str | None = getattr(getattr(error.orig, "diag", None), "table_name", None)
            if not (appended and failed in _JOURNAL_TABLES):
                raise Conflict("A resource was written twice in one transaction; retry.") from None
            self._lose_journal(error)
        except Exception as error:
            if not appended:
                raise
            self._lose_journal(error)
        if appended:
            self._journal_due = {}
        elif journal and self._journal_due:
            try:
                self._write_journal()
            except Exception as error:
                self._lose_journal(error)

    def _lose_journal(self, error: Exception) -> NoReturn:
        """Mark this transaction's journal appends lost (it must not commit) and say so."""
        self._journal_lost = True
        log.error("journal write failed: %s", type(error).__name__)
        raise _journal_unavailable() from error

    def _write_journal(self) -> None:
        """Write the journal appends of this transaction not written yet (``journal.py``)."""
        self._journal_due = {}


def _journal_unavailable() -> JournalUnavailable:
    return JournalUnavailable(
        "The access journal could not be written, so the request was not carried out; retry later."
    )


#: Per dialect and table and set of columns: the INSERT's SQL, for a positional driver the
#: function that lays a row's values out in its parameters' order, and the conversion of each
#: column that needs one.
_InsertPlan = tuple[
    str, Callable[[dict[str, object]], tuple[object, ...]] | None, tuple[tuple[str, Any], ...]
]
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
        found = _INSERTS[(dialect.name, table, keys)] = (str(compiled), _laid_out(order), convert)
    return found


def _laid_out(order: tuple[str, ...] | None) -> Callable[[dict[str, object]], tuple[object, ...]] | None:
    """The values of a row in ``order`` as one tuple (``itemgetter``: C, ~4x a generator's speed)."""
    if not order:
        return None
    if len(order) == 1:
        (only,) = order
        return lambda row: (row[only],)
    return itemgetter(*order)


def insert_many(connection: Connection, table: Table, rows: list[dict[str, object]]) -> None:
    """Insert rows with one ``executemany`` of SQL compiled once per table and columns.

    SQLAlchemy's ``execute(insert(table), rows)`` processes every row's parameters through the
    compiled statement again (~10 % of a Synthea ingest's CPU, nine blind-index rows per
    resource); here only the columns whose type converts (a date on SQLite) are converted.

    Raises:
        sqlalchemy.exc.IntegrityError: a row already exists (and the driver's other errors, as
            SQLAlchemy wraps them).
    """
    keys = tuple(rows[0])
    if any(len(row) != len(keys) or row.keys() != rows[0].keys() for row in rows):
        connection.execute(insert(table), rows)  # rows of different shapes: SQLAlchemy sorts them out
        return
    sql, lay_out, convert = _insert_plan(connection, table, keys)
    if convert:
        rows = [dict(row) for row in rows]
        for row in rows:
            for key, processor in convert:
                row[key] = processor(row[key])
    if lay_out is not None:
        _send(connection, sql, list(map(lay_out, rows)), many=True).close()
    else:
        _send(connection, sql, rows, many=True).close()


#: Per dialect and statement: its SQL, for a positional driver its parameters' order, and for a
#: query each column's result conversion (none when no column has one), the values it binds
#: itself (a LIMIT's) and the conversions of its parameters that need one. At most
#: ``_PLAIN_MOST`` statements are kept.
_PLAIN: dict[
    tuple[str, ClauseElement],
    tuple[str, tuple[str, ...] | None, tuple[Any, ...], dict[str, Any], dict[str, Any]],
] = {}
_PLAIN_MOST = 1024


def execute_plain(connection: Connection, statement: ClauseElement, parameters: Mapping[str, object]) -> None:
    """Run a prebuilt statement, compiled once per dialect, on the transaction's cursor.

    For the few statements of every request (the journal's head, a feed message's answer): no
    compile-cache look-up, no execution context; only the parameters whose type converts (a date
    on SQLite) are converted.
    """
    sql, driver_parameters, _ = _plain(connection, statement, parameters)
    _send(connection, sql, driver_parameters, many=False).close()


def _converted(row: Iterable[Any], results: tuple[Any, ...]) -> tuple[Any, ...]:
    """A driver's row with each column through its type's result conversion (none: as it came)."""
    if not results:
        return tuple(row)
    return tuple(
        value if convert is None else convert(value) for value, convert in zip(row, results, strict=True)
    )


def first_plain(
    connection: Connection, statement: ClauseElement, parameters: Mapping[str, object]
) -> tuple[Any, ...] | None:
    """Return the first row of a prebuilt query, run as :func:`execute_plain` runs a statement.

    Each column goes through its type's result conversion for the dialect (a date stored as
    text on SQLite), as SQLAlchemy's own execution would; columns without one come as the
    driver hands them.
    """
    sql, driver_parameters, results = _plain(connection, statement, parameters)
    cursor = _send(connection, sql, driver_parameters, many=False)
    try:
        row = cursor.fetchone()
    finally:
        cursor.close()
    return None if row is None else _converted(row, results)


def all_plain(
    connection: Connection, statement: ClauseElement, parameters: Mapping[str, object]
) -> list[tuple[Any, ...]]:
    """Return every row of a prebuilt query, run and converted as :func:`first_plain` does.

    SQLAlchemy's own execution of a cached query costs ~100 us of CPU more than the driver's
    (an execution context, a result and its metadata): the store's queries of every write (the
    policy's Patient and Consents, a feed's INS, the resubmission search) run this way. The
    statement must have no expanding parameter (a list): build one per list length instead.
    """
    sql, driver_parameters, results = _plain(connection, statement, parameters)
    cursor = _send(connection, sql, driver_parameters, many=False)
    try:
        rows = cursor.fetchall()
    finally:
        cursor.close()
    return [_converted(row, results) for row in rows]


def execute_bare(connection: Connection, sql: str) -> None:
    """Send a statement without parameters (``SAVEPOINT``…) as :func:`execute_plain` sends its own."""
    _send(connection, sql, (), many=False).close()


def _plain(
    connection: Connection, statement: ClauseElement, parameters: Mapping[str, object]
) -> tuple[str, Any, tuple[Any, ...]]:
    """A prebuilt statement's SQL for this connection's dialect, its parameters as the driver
    takes them, and its columns' result conversions."""
    dialect = connection.dialect
    found = _PLAIN.get((dialect.name, statement))
    if found is None:
        compiled = cast(SQLCompiler, statement.compile(dialect=dialect))
        order = tuple(compiled.positiontup) if compiled.positional and compiled.positiontup else None
        results: tuple[Any, ...] = ()
        if isinstance(statement, Select):
            results = tuple(
                column.type.dialect_impl(dialect).result_processor(dialect, None)
                for column in statement.selected_columns
            )
            if all(convert is None for convert in results):
                results = ()
        # Values the statement binds itself (a LIMIT's): sent with the caller's.
        fixed = {
            name: bind.effective_value for bind, name in compiled.bind_names.items() if not bind.required
        }
        # Each value's conversion for the driver, as SQLAlchemy's execution would (a date on SQLite).
        converts = {
            name: convert
            for bind, name in compiled.bind_names.items()
            if not isinstance(bind.type, LargeBinary)
            and (convert := bind.type.dialect_impl(dialect).bind_processor(dialect)) is not None
        }
        if len(_PLAIN) >= _PLAIN_MOST:  # statements built per shape (list lengths): keep it bounded
            _PLAIN.clear()
        found = _PLAIN[(dialect.name, statement)] = (str(compiled), order, results, fixed, converts)
    sql, order, results, fixed, converts = found
    if fixed or converts:
        parameters = {**fixed, **parameters}
        for name, convert in converts.items():
            if name in parameters:
                parameters[name] = convert(parameters[name])
    if order is not None:
        return sql, tuple(parameters[k] for k in order), results
    return sql, dict(parameters), results


def _send_one(connection: Connection, sql: str, parameters: Any) -> None:
    """Send one statement as :func:`_send` does, its cursor closed."""
    _send(connection, sql, parameters, many=False).close()


def _send(connection: Connection, sql: str, parameters: Any, *, many: bool) -> Any:
    """Send SQL with driver-ready parameters on the transaction's own DBAPI cursor; return the cursor.

    SQLAlchemy's ``exec_driver_sql`` costs about as much CPU as the statement itself on SQLite
    (a context, a result object, its metadata: ~70 us a statement, and a request sends 4-8 of
    these). The dialect's ``do_execute``/``do_executemany`` still send it, so the driver's
    settings hold. Whenever anything listens to the engine's or the connection's statements
    (a test or bench counting them), the statement goes through SQLAlchemy instead, so that
    they see it; so does one outside a transaction (SQLAlchemy begins it). The driver's errors are
    wrapped as SQLAlchemy wraps them (``IntegrityError``…);
    a lost connection is noticed by the pool when the transaction's rollback meets it.
    """
    if connection._has_events or connection.engine._has_events or not connection.in_transaction():
        return connection.exec_driver_sql(sql, parameters)  # listened to, or it must begin one
    dialect = connection.dialect
    cursor = connection.connection.cursor()
    try:
        if many:
            dialect.do_executemany(cursor, sql, parameters, None)
        else:
            dialect.do_execute(cursor, sql, parameters, None)
    except dialect.loaded_dbapi.Error as error:
        cursor.close()
        raise DBAPIError.instance(
            sql, parameters, error, dialect.loaded_dbapi.Error, dialect=dialect, ismulti=many
        ) from error
    return cursor
