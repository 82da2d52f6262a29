"""Where each Merkle log of the access journal lives, and which log takes a record's entries.

A log is identified by its number (``shard``: it is in the checkpoint's origin and in each entry's
sealed associated data) and placed by its key (``log_key``, the journal tables' Citus distribution
column).

- On SQLite and plain PostgreSQL the key is the number in decimal, and a record's log is chosen
  by SHA-256 of its id (:func:`carnet.domain.journal.shard_of`, ``CARNET_JOURNAL_SHARDS`` logs).
- On Citus the journal is co-located with the records: there is one log per shard of the record
  group, log *i* for the *i*-th shard (by hash range), and its key is a short token that Citus
  hashes into that shard (found once, by :func:`assign_log_keys`, and kept in the reference table
  ``journal_logs``). A record's entries go to the log of its own shard, asked of the coordinator
  (``get_shard_id_for_distribution_column``, metadata only, remembered per process): an entry, its
  log's head and nodes are written in the record's shard group, on the record's worker, so a read
  or an update commits on one node without two-phase commit.

A resource id drawn on Citus starts with its record's log key (:meth:`JournalLogs.id_prefix`), by
which its location is placed in the record's shard group too (``resource_places``).

A store converted by ``carnet db distribute`` keeps its logs (their numbers, checkpoints and proofs
do not change; only their key does): they are marked ``legacy``, and a record's earlier entries
are in the log SHA-256 chose among them, read beside its Citus log (:meth:`JournalLogs.logs_of`).
"""

from __future__ import annotations

import threading

from sqlalchemy import Connection, column, text, update
from sqlalchemy import table as sql_table

from carnet.domain.journal import shard_of

#: The table whose shards decide the logs (the anchor of the record group).
ANCHOR = "patient_keys"
#: The journal tables keyed by ``log_key``.
JOURNAL_TABLES = (
    "journal_heads",
    "journal_entries",
    "journal_nodes",
    "journal_checkpoints",
    "journal_cosignatures",
)
#: How many records' logs a process remembers (a record's shard never changes, short of a split).
_REMEMBERED = 100_000


class JournalLogs:
    """One store's log placement, read once from ``journal_logs`` (shared by its sessions)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loaded = False
        self.distributed = False
        self._keys: dict[int, str] = {}
        self._tokens: frozenset[str] = frozenset()
        #: Citus shard id → log number.
        self._by_shard_id: dict[int, int] = {}
        self._legacy = 0
        self._records: dict[str, int] = {}

    def load(self, connection: Connection) -> None:
        """Read the placement the first time a session opens (nothing to read on a single node)."""
        if self._loaded:
            return
        with self._lock:
            if not self._loaded:
                self._read(connection)
                self._loaded = True

    def _read(self, connection: Connection) -> None:
        """Read ``journal_logs`` on Citus (empty on a single-node store)."""
        if connection.dialect.name == "postgresql" and _is_distributed(connection):
            rows = connection.execute(
                text(
                    "SELECT shard, log_key, legacy, "
                    "get_shard_id_for_distribution_column(CAST(:a AS regclass), log_key) "
                    "FROM journal_logs ORDER BY shard"
                ),
                {"a": ANCHOR},
            ).all()
            self._keys = {int(r[0]): str(r[1]) for r in rows}
            self._tokens = frozenset(self._keys.values())
            self._legacy = sum(1 for r in rows if r[2])
            # The first log placed in each shard takes that shard's records.
            for shard, _key, _legacy, shard_id in rows:
                self._by_shard_id.setdefault(int(shard_id), int(shard))
            self.distributed = bool(rows)

    def key(self, shard: int) -> str:
        """Return the placement key of a log."""
        return self._keys.get(shard, str(shard)) if self.distributed else str(shard)

    def count(self, configured: int) -> int:
        """Return how many logs the journal has: one per record shard on Citus, else as configured."""
        return len(self._keys) if self.distributed else configured

    def log_of(self, connection: Connection, patient_id: str, configured: int) -> int:
        """Return the log that takes a record's new entries."""
        if not self.distributed:
            return shard_of(patient_id, configured)
        found = self._records.get(patient_id)
        if found is not None:
            return found
        shard_id = connection.execute(
            text("SELECT get_shard_id_for_distribution_column(CAST(:a AS regclass), CAST(:p AS VARCHAR))"),
            {"a": ANCHOR, "p": patient_id},
        ).scalar_one()
        # A shard without a log (after a shard split): any log is correct, the record's shard
        # group is just not the log's (two-phase commit again until the logs are re-assigned).
        log = self._by_shard_id.get(int(shard_id))
        if log is None:
            log = shard_of(patient_id, len(self._keys))
        if len(self._records) >= _REMEMBERED:
            self._records.clear()
        self._records[patient_id] = log
        return log

    def id_prefix(self, connection: Connection, patient_id: str) -> str:
        """Return how a new resource id of a record starts: its log's key and a dot on Citus, else nothing.

        The key hashes into the record's shard, so the resource's location (``resource_places``,
        placed by the key) is written in the record's shard group.
        """
        if not self.distributed:
            return ""
        return self.key(self.log_of(connection, patient_id, len(self._keys))) + "."

    def token_in(self, resource_id: str) -> str | None:
        """Return the log key a resource id starts with (``<key>.<uuid>``, drawn on Citus), if any."""
        if not self.distributed:
            return None
        head, dot, _ = resource_id.partition(".")
        return head if dot and head in self._tokens else None

    def logs_of(self, connection: Connection, patient_id: str, configured: int) -> tuple[int, ...]:
        """Return every log that may hold a record's entries (its own, and its legacy log if any)."""
        own = self.log_of(connection, patient_id, configured)
        if not self._legacy:
            return (own,)
        earlier = shard_of(patient_id, self._legacy)
        return (own,) if earlier == own else (own, earlier)


def _is_distributed(connection: Connection) -> bool:
    """Tell whether ``journal_logs`` is a Citus table holding rows (the journal is co-located)."""
    return bool(
        connection.execute(
            text(
                "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') "
                "AND to_regclass('journal_logs') IS NOT NULL"
            )
        ).scalar_one()
    ) and bool(connection.execute(text("SELECT EXISTS (SELECT 1 FROM journal_logs)")).scalar_one())


def assign_log_keys(connection: Connection) -> int:
    """On Citus, give every log a key in its record shard and re-key the journal's local rows.

    Runs in ``distribute`` once the record group is distributed and before the journal tables are
    (Citus does not change a distribution column's value in place). Logs already in the journal
    (a store being converted) keep their numbers and are marked ``legacy``; there are as many logs
    as record shards, or as legacy logs if more. Does nothing when ``journal_logs`` has rows.
    Returns the number of logs.
    """
    present = connection.execute(text("SELECT count(*) FROM journal_logs")).scalar_one()
    if present:
        return int(present)
    shard_ids = [
        int(row[0])
        for row in connection.execute(
            text(
                "SELECT shardid FROM pg_dist_shard WHERE logicalrelid = CAST(:a AS regclass) "
                "ORDER BY CAST(shardminvalue AS bigint)"
            ),
            {"a": ANCHOR},
        )
    ]
    tokens: dict[int, str] = {}
    start = 0
    while len(tokens) < len(shard_ids):
        # Candidates "l0", "l1", …: Citus says which shard each hashes to; the first of each is kept.
        stop = start + 8 * len(shard_ids)
        for n, shard_id in connection.execute(
            text(
                "SELECT n, get_shard_id_for_distribution_column(CAST(:a AS regclass), CAST('l' || n AS VARCHAR)) "
                "FROM generate_series(CAST(:s AS int), CAST(:e AS int)) AS n ORDER BY n"
            ),
            {"a": ANCHOR, "s": start, "e": stop - 1},
        ):
            tokens.setdefault(int(shard_id), f"l{n}")
        start = stop
    # Logs already in the journal (a store being converted): numbers 0 … legacy - 1.
    legacy = 1 + int(
        connection.execute(
            text(
                "SELECT coalesce(max(shard), -1) FROM (SELECT shard FROM journal_heads "
                "UNION ALL SELECT shard FROM journal_entries) AS logs"
            )
        ).scalar_one()
    )
    logs = max(len(shard_ids), legacy)
    rows = [
        {"s": log, "k": tokens[shard_ids[log % len(shard_ids)]], "l": log < legacy} for log in range(logs)
    ]
    connection.execute(text("INSERT INTO journal_logs (shard, log_key, legacy) VALUES (:s, :k, :l)"), rows)
    for table in JOURNAL_TABLES:
        rows_of = sql_table(table, column("log_key"), column("shard"))
        for row in rows[:legacy]:
            connection.execute(update(rows_of).where(rows_of.c.shard == row["s"]).values(log_key=row["k"]))
    return logs
