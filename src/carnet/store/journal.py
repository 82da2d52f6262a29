"""SQL for the access journal: entries, tree nodes, heads, checkpoints, known actors.

Mixed into :class:`carnet.store.repository.SQLStoreSession`; every method runs in the
session's transaction. On PostgreSQL a shard's head row is locked (``FOR UPDATE``) by the
transaction that appends to it, so concurrent writers take turns per shard; on SQLite the
writing transaction already holds the database's write lock.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, insert, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError

from carnet.domain.errors import Conflict
from carnet.domain.journal import StoredEntry
from carnet.store.connected import Connected, DueAppend, execute_plain, first_plain, insert_many, utc
from carnet.store.tables import (
    journal_actors,
    journal_checkpoints,
    journal_cosignatures,
    journal_entries,
    journal_heads,
    journal_nodes,
)

_ENTRY_COLUMNS = (
    journal_entries.c.shard,
    journal_entries.c.seq,
    journal_entries.c.patient_id,
    journal_entries.c.recorded_at,
    journal_entries.c.commitment,
    journal_entries.c.sealed,
)
_STREAM_BATCH = 5_000

# The statements of every append, built once: SQLAlchemy then neither rebuilds them nor recomputes
# their cache keys per request (~5 % of a single read's CPU, bench/profiles/).
_HEAD = select(journal_heads.c.size, journal_heads.c.peaks).where(
    journal_heads.c.log_key == bindparam("head_key"), journal_heads.c.shard == bindparam("head_shard")
)
_HEAD_FOR_UPDATE = _HEAD.with_for_update()
_UPDATE_HEAD = (
    update(journal_heads)
    .where(journal_heads.c.log_key == bindparam("head_key"), journal_heads.c.shard == bindparam("head_shard"))
    .values(size=bindparam("new_size"), peaks=bindparam("new_peaks"))
)


def _row(row: Any) -> StoredEntry:
    return StoredEntry(
        shard=row[0],
        seq=row[1],
        patient_id=row[2],
        recorded_at=utc(row[3]),
        commitment=bytes(row[4]),
        sealed=bytes(row[5]),
    )


class JournalSessionMixin(Connected):
    """The journal's part of a store transaction."""

    def journal_head(self, shard: int, *, lock: bool = False) -> tuple[int, bytes] | None:
        """Return a shard's ``(size, peaks)``, locking its row for this transaction if asked.

        A head this transaction appended to is known without a statement (its lock, or SQLite's
        write lock, is held since): the appends of a group commit's units read it once.
        """
        known = self._journal_heads.get(shard)
        if known is not None:
            return known
        # The buffered rows are written first: the head's lock is held to the commit, and every
        # writer of the log waits for it, so it should cover the append alone. With the rows in
        # the append's statement (one round trip fewer) 8 concurrent creates on PostgreSQL took
        # 4.5-5.9 ms each, against 3.2-5.0 ms (bench/statements.py --threads 8). The appends
        # already due (to other logs) stay due: written together at the end.
        connection = self._rows_written
        query = _HEAD_FOR_UPDATE if lock and connection.dialect.name == "postgresql" else _HEAD
        row = first_plain(connection, query, {"head_key": self._logs.key(shard), "head_shard": shard})
        return None if row is None else (int(row[0]), bytes(row[1]))

    def ensure_journal_heads(self, shards: int) -> None:
        """Create the empty head of every shard that has none (at start-up)."""
        present = {row[0] for row in self._c.execute(select(journal_heads.c.shard))}
        missing = [
            {"log_key": self._logs.key(s), "shard": s, "size": 0, "peaks": b""}
            for s in range(shards)
            if s not in present
        ]
        if missing:
            try:
                self._c.execute(insert(journal_heads), missing)
            except IntegrityError:
                raise Conflict("Another process created the journal at the same moment; retry.") from None

    def append_journal(
        self,
        shard: int,
        entries: list[StoredEntry],
        nodes: list[tuple[int, int, bytes]],
        size: int,
        peaks: bytes,
    ) -> None:
        """Append entries, the tree nodes they completed and the shard's new head to this transaction.

        They are written with the transaction's next statement or at its end (:meth:`flush`), with
        the appends made to the same log since: the journal entries of a group commit's units
        cost one ``executemany`` per table and one head update per log, not three statements each.
        """
        due = self._journal_due.get(shard)
        if due is None:
            due = self._journal_due[shard] = DueAppend(self._logs.key(shard))
        key = due.key
        due.entries.extend(
            {
                "log_key": key,
                "shard": e.shard,
                "seq": e.seq,
                "patient_id": e.patient_id,
                "recorded_at": e.recorded_at,
                "commitment": e.commitment,
                "sealed": e.sealed,
            }
            for e in entries
        )
        due.nodes.extend(
            {"log_key": key, "shard": shard, "level": level, "idx": idx, "digest": digest}
            for level, idx, digest in nodes
        )
        self._journal_heads[shard] = (size, peaks)

    def _write_journal(self) -> None:
        """Write the due appends: per log its entries, its nodes and its head, in three statements.

        On plain PostgreSQL they go with the transaction's buffered rows in one statement
        (:meth:`Connected.flush`, :mod:`carnet.store.journal_append`) and come here only in an
        unusual shape. Not on Citus: it runs such a statement's INSERT … SELECT through the
        coordinator (COPY into the shards), which commits in two phases even on one worker; three
        routed statements commit in one
        (test_a_records_requests_commit_on_one_worker_without_two_phase_commit).
        """
        due, self._journal_due = self._journal_due, {}
        connection = self._connection
        for shard in sorted(due):  # the order the heads were locked in (``Journal.append``)
            append = due[shard]
            if not append.entries:
                continue
            size, peaks = self._journal_heads[shard]
            insert_many(connection, journal_entries, append.entries)
            if append.nodes:
                insert_many(connection, journal_nodes, append.nodes)
            execute_plain(
                connection,
                _UPDATE_HEAD,
                {"head_key": append.key, "head_shard": shard, "new_size": size, "new_peaks": peaks},
            )

    def journal_node(self, shard: int, level: int, idx: int) -> bytes | None:
        """Return one stored perfect-subtree hash."""
        row = self._c.execute(
            select(journal_nodes.c.digest).where(
                and_(
                    journal_nodes.c.log_key == self._logs.key(shard),
                    journal_nodes.c.shard == shard,
                    journal_nodes.c.level == level,
                    journal_nodes.c.idx == idx,
                )
            )
        ).first()
        return None if row is None else bytes(row[0])

    def journal_node_rows(self, shard: int) -> Iterator[tuple[int, int, bytes]]:
        """Yield a shard's stored nodes as ``(level, index, digest)``, by level then index, in batches."""
        after = (-1, -1)
        while True:
            level, idx = after
            rows = self._c.execute(
                select(journal_nodes.c.level, journal_nodes.c.idx, journal_nodes.c.digest)
                .where(
                    and_(
                        journal_nodes.c.log_key == self._logs.key(shard),
                        journal_nodes.c.shard == shard,
                        # A row value, which both databases seek to in the primary key; the
                        # equivalent OR made SQLite rescan the shard from its start each batch.
                        tuple_(journal_nodes.c.level, journal_nodes.c.idx) > tuple_(level, idx),
                    )
                )
                .order_by(journal_nodes.c.level, journal_nodes.c.idx)
                .limit(_STREAM_BATCH)
            ).all()
            for row in rows:
                yield int(row[0]), int(row[1]), bytes(row[2])
            if len(rows) < _STREAM_BATCH:
                return
            after = (int(rows[-1][0]), int(rows[-1][1]))

    def journal_entry(self, shard: int, seq: int) -> StoredEntry | None:
        """Return one stored entry."""
        row = self._c.execute(
            select(*_ENTRY_COLUMNS).where(
                and_(
                    journal_entries.c.log_key == self._logs.key(shard),
                    journal_entries.c.shard == shard,
                    journal_entries.c.seq == seq,
                )
            )
        ).first()
        return None if row is None else _row(row)

    def journal_rows(self, shard: int) -> Iterator[StoredEntry]:
        """Yield a shard's entries in ``seq`` order, in batches (constant memory)."""
        after = -1
        while True:
            rows = self._c.execute(
                select(*_ENTRY_COLUMNS)
                .where(
                    and_(
                        journal_entries.c.log_key == self._logs.key(shard),
                        journal_entries.c.shard == shard,
                        journal_entries.c.seq > after,
                    )
                )
                .order_by(journal_entries.c.seq)
                .limit(_STREAM_BATCH)
            ).all()
            for row in rows:
                yield _row(row)
            if len(rows) < _STREAM_BATCH:
                return
            after = rows[-1][1]

    def journal_log_count(self, configured: int) -> int:
        """Return how many logs the journal has (one per record shard on Citus, else ``configured``)."""
        return self._logs.count(configured)

    def journal_log_of(self, patient_id: str, configured: int) -> int:
        """Return the log that takes a record's new entries.

        The buffered rows are not written first: the answer is placement metadata, and the
        appends of a batch stay due together.
        """
        return self._logs.log_of(self._connection, patient_id, configured)

    def journal_logs_of(self, patient_id: str, configured: int) -> tuple[int, ...]:
        """Return the logs that may hold a record's entries (one, or two on a converted Citus store)."""
        return self._logs.logs_of(self._c, patient_id, configured)

    def journal_shards(self) -> list[int]:
        """Return the shards that have a head or hold entries."""
        heads = {row[0] for row in self._c.execute(select(journal_heads.c.shard))}
        stored = {row[0] for row in self._c.execute(select(journal_entries.c.shard).distinct())}
        return sorted(heads | stored)

    def journal_of(
        self,
        patient_id: str | None,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
        newest_first: bool = True,
        logs: Sequence[int] | None = None,
    ) -> list[StoredEntry]:
        """Return the entries about one record (or every record), by time.

        ``logs`` (the record's, :meth:`journal_logs_of`) lets a distributed database read the
        record's shard group instead of every one.
        """
        query = select(*_ENTRY_COLUMNS)
        if logs is not None:
            keys = sorted({self._logs.key(log) for log in logs})
            query = query.where(
                journal_entries.c.log_key.in_(keys), journal_entries.c.shard.in_(sorted(logs))
            )
        if patient_id is not None:
            query = query.where(journal_entries.c.patient_id == patient_id)
        if since is not None:
            query = query.where(journal_entries.c.recorded_at >= since)
        if until is not None:
            query = query.where(journal_entries.c.recorded_at <= until)
        order = (journal_entries.c.recorded_at, journal_entries.c.shard, journal_entries.c.seq)
        query = query.order_by(*(c.desc() for c in order) if newest_first else order).limit(limit)
        return [_row(row) for row in self._c.execute(query)]

    def put_checkpoint(self, shard: int, size: int, issued_at: datetime, note: bytes) -> bool:
        """Store a signed checkpoint; return False if one of that size already exists."""
        statement = (pg_insert if self._c.dialect.name == "postgresql" else sqlite_insert)(
            journal_checkpoints
        )
        # RETURNING, not rowcount: psycopg reports -1 for an INSERT … ON CONFLICT DO NOTHING.
        stored = self._c.execute(
            statement.values(
                log_key=self._logs.key(shard), shard=shard, size=size, issued_at=issued_at, note=note
            )
            .on_conflict_do_nothing()
            .returning(journal_checkpoints.c.size)
        ).first()
        return stored is not None

    def latest_checkpoint(self, shard: int) -> tuple[int, bytes] | None:
        """Return the ``(size, note)`` of a shard's largest checkpoint."""
        row = self._c.execute(
            select(journal_checkpoints.c.size, journal_checkpoints.c.note)
            .where(
                journal_checkpoints.c.log_key == self._logs.key(shard), journal_checkpoints.c.shard == shard
            )
            .order_by(journal_checkpoints.c.size.desc())
            .limit(1)
        ).first()
        return None if row is None else (int(row[0]), bytes(row[1]))

    def journal_checkpoints(self, shard: int) -> list[tuple[int, bytes]]:
        """Return every ``(size, note)`` of a shard, smallest first."""
        rows = self._c.execute(
            select(journal_checkpoints.c.size, journal_checkpoints.c.note)
            .where(
                journal_checkpoints.c.log_key == self._logs.key(shard), journal_checkpoints.c.shard == shard
            )
            .order_by(journal_checkpoints.c.size)
        )
        return [(int(r[0]), bytes(r[1])) for r in rows]

    def checkpoint_at_least(self, shard: int, size: int) -> tuple[int, bytes] | None:
        """Return the smallest checkpoint of a shard covering at least ``size`` entries."""
        row = self._c.execute(
            select(journal_checkpoints.c.size, journal_checkpoints.c.note)
            .where(
                and_(
                    journal_checkpoints.c.log_key == self._logs.key(shard),
                    journal_checkpoints.c.shard == shard,
                    journal_checkpoints.c.size >= size,
                )
            )
            .order_by(journal_checkpoints.c.size)
            .limit(1)
        ).first()
        return None if row is None else (int(row[0]), bytes(row[1]))

    def put_cosignature(self, shard: int, size: int, witness: str, cosigned_at: datetime, line: str) -> None:
        """Store (or replace) a witness's cosignature line of the checkpoint of ``size``."""
        statement = (pg_insert if self._c.dialect.name == "postgresql" else sqlite_insert)(
            journal_cosignatures
        )
        self._c.execute(
            statement.values(
                log_key=self._logs.key(shard),
                shard=shard,
                size=size,
                witness=witness,
                cosigned_at=cosigned_at,
                line=line,
            ).on_conflict_do_update(
                index_elements=["log_key", "shard", "size", "witness"],
                set_={"cosigned_at": cosigned_at, "line": line},
            )
        )

    def cosignatures(self, shard: int, size: int) -> dict[str, str]:
        """Return the cosignature lines of a checkpoint, by witness name."""
        rows = self._c.execute(
            select(journal_cosignatures.c.witness, journal_cosignatures.c.line).where(
                and_(
                    journal_cosignatures.c.log_key == self._logs.key(shard),
                    journal_cosignatures.c.shard == shard,
                    journal_cosignatures.c.size == size,
                )
            )
        )
        return {str(r[0]): str(r[1]) for r in rows}

    def last_cosigned(self, shard: int, witness: str) -> int:
        """Return the largest checkpoint size of a shard the witness cosigned (0: none).

        Walks the primary key down from the newest checkpoint: it stops at the witness's latest
        cosignature instead of reading every cosignature of the shard.
        """
        row = self._c.execute(
            select(journal_cosignatures.c.size)
            .where(
                and_(
                    journal_cosignatures.c.log_key == self._logs.key(shard),
                    journal_cosignatures.c.shard == shard,
                    journal_cosignatures.c.witness == witness,
                )
            )
            .order_by(journal_cosignatures.c.size.desc())
            .limit(1)
        ).first()
        return 0 if row is None else int(row[0])

    def recent_checkpoints(self, shard: int, limit: int) -> list[tuple[int, datetime, bytes]]:
        """Return a shard's latest ``(size, issued_at, note)`` checkpoints, newest first."""
        rows = self._c.execute(
            select(journal_checkpoints.c.size, journal_checkpoints.c.issued_at, journal_checkpoints.c.note)
            .where(
                journal_checkpoints.c.log_key == self._logs.key(shard), journal_checkpoints.c.shard == shard
            )
            .order_by(journal_checkpoints.c.size.desc())
            .limit(limit)
        )
        return [(int(r[0]), utc(r[1]), bytes(r[2])) for r in rows]

    def checkpoint_issued(self, shard: int, size: int) -> datetime | None:
        """Return when the checkpoint of ``size`` was issued."""
        row = self._c.execute(
            select(journal_checkpoints.c.issued_at).where(
                and_(
                    journal_checkpoints.c.log_key == self._logs.key(shard),
                    journal_checkpoints.c.shard == shard,
                    journal_checkpoints.c.size == size,
                )
            )
        ).first()
        return None if row is None else utc(row[0])

    def add_journal_actor(self, patient_id: str, actor_hash: bytes) -> bool:
        """Remember that an actor accessed a record; return True the first time."""
        statement = (pg_insert if self._c.dialect.name == "postgresql" else sqlite_insert)(journal_actors)
        # RETURNING, not rowcount: psycopg reports -1 for an INSERT … ON CONFLICT DO NOTHING, which
        # made every access "the first" on PostgreSQL (a new-professional notice each time).
        added = self._c.execute(
            statement.values(patient_id=patient_id, actor_hash=actor_hash)
            .on_conflict_do_nothing()
            .returning(journal_actors.c.actor_hash)
        ).first()
        return added is not None
