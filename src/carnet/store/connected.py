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

from sqlalchemy import Connection, Table, insert
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

    def flush(self) -> None:
        """Write the buffered rows, one ``executemany`` per table.

        Raises:
            Conflict: a buffered row already exists (a resource written twice).
        """
        pending, self._pending = self._pending, {}
        try:
            for table, rows in pending.items():
                if rows:
                    self._connection.execute(insert(table), rows)
        except IntegrityError:
            raise Conflict("A resource was written twice in one transaction; retry.") from None
