"""A write's buffered rows, then its journal append: one statement each on PostgreSQL.

A transaction buffers its new resources (version, current row, location, blind-index rows) and its
journal appends, and writes them when it next sends a statement or ends: on SQLite and Citus one
insert per table and three statements per log, on plain PostgreSQL all the rows in one statement
and the appends in another (``store/journal_append.py``). The rows go before the log's head is
read and locked, so the lock (held to the commit) covers the append alone. Drawing a new
resource's id writes nothing, so the resources of a unit (a feed's document: its Binary,
DocumentReference…) are written together. A row written twice is a ``Conflict``, a journal row
that cannot be written makes the transaction fail whole.
"""

from __future__ import annotations

import secrets
from contextlib import AbstractContextManager
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from carnet.api.app import Services, build_services
from carnet.audit.signer import VERIFIER_FILE
from carnet.audit.verify import verify_journal
from carnet.domain.errors import Conflict, JournalUnavailable
from carnet.domain.journal import Entry, shard_of
from carnet.services.ports import StoredVersion, StoreSession
from carnet.settings import Settings
from carnet.store.connected import DueAppend
from statements import sent_statements

KEY = secrets.token_bytes(32)
#: A sealed value the size of a feed's document (bytes that do not compress, as sealed ones).
DOCUMENT = secrets.token_bytes(100_000)


def _append(services: Services, session: StoreSession, patient_id: str) -> None:
    entry = Entry(
        recorded=datetime.now(UTC),
        patient_id=patient_id,
        actor_kind="patient",
        actor_id="patient:flush",
        action="create",
        resource_type="Binary",
    )
    services.journal.append(session, [(KEY, entry)])


def _version(session: StoreSession, patient_id: str, name: str) -> StoredVersion:
    """A new resource's first version, its id drawn as a write draws it."""
    return StoredVersion(
        patient_id=patient_id,
        resource_type="Binary",
        resource_id=session.id_prefix(patient_id) + name,
        version_id=1,
        last_updated=datetime.now(UTC),
        deleted=False,
        sealed=DOCUMENT,
    )


def _writes(services: Services, *, queries: bool = False) -> AbstractContextManager[list[str]]:
    """Note the statements other than queries (and the queries too, if asked) sent within the block."""
    return sent_statements(
        services.store.engine, None if queries else lambda sql: not sql.lstrip().upper().startswith("SELECT")
    )


def _at_once(services: Services) -> bool:
    return services.store.engine.dialect.name == "postgresql" and not services.store.logs.distributed


def test_a_units_new_resources_are_inserted_together(services: Services) -> None:
    """Three new resources, each id drawn before its version is written: one insert of the versions."""
    with _writes(services) as writes, services.store.session(write=True) as session:
        made = []
        for n in range(3):
            made.append(_version(session, "flush-1", f"doc-{n}"))
            session.write_version(made[-1])
            session.set_tokens("flush-1", "Binary", made[-1].resource_id, {("_id", bytes(16))}, new=True)
    assert len([w for w in writes if "INSERT INTO resource_versions" in w]) == 1, writes
    assert len([w for w in writes if "INSERT INTO search_tokens" in w]) == 1, writes
    with services.store.session() as session:
        for version in made:
            stored = session.current("flush-1", "Binary", version.resource_id)
            assert stored is not None
            assert (stored.resource_id, stored.sealed) == (version.resource_id, DOCUMENT)
        assert [
            v.resource_id for v in session.search("flush-1", "Binary", [], [("_id", [bytes(16)])])
        ] == sorted(v.resource_id for v in made)


def test_a_writes_rows_are_written_before_the_journal_head_is_locked(services: Services) -> None:
    """The resource's rows are sent before the log's head is read and locked, the append after it:
    on plain PostgreSQL one statement each (every table's rows; the entry, its nodes, the head)."""
    with _writes(services, queries=True) as sent, services.store.session(write=True) as session:
        version = _version(session, "flush-2", "doc")
        session.write_version(version)
        _append(services, session, "flush-2")
    locked = next(n for n, s in enumerate(sent) if s.startswith("SELECT") and "FROM journal_heads" in s)
    rows = [n for n, s in enumerate(sent) if "INSERT INTO resource_versions" in s]
    appends = [n for n, s in enumerate(sent) if "INSERT INTO journal_entries" in s]
    assert rows, sent
    assert max(rows) < locked < min(appends), sent
    if _at_once(services):
        written = [s for s in sent if not s.startswith("SELECT")]
        assert len(written) == 2, written
        assert all(t in written[0] for t in ("resource_versions", "resources", "resource_locations")), written
        assert all(t in written[1] for t in ("journal_entries", "UPDATE journal_heads")), written
    with services.store.session() as session:
        assert session.current("flush-2", "Binary", version.resource_id) is not None
        assert [e.patient_id for e in session.journal_of("flush-2")] == ["flush-2"]


def test_a_resource_written_twice_is_a_conflict_and_its_unit_alone_is_undone(services: Services) -> None:
    """A duplicate row fails its savepoint with Conflict (not a journal failure); the transaction goes on."""

    def unit(session: StoreSession, twice: StoredVersion) -> None:
        with session.savepoint():
            session.write_version(twice)
            session.write_version(replace(twice, last_updated=datetime.now(UTC)))
            _append(services, session, "flush-3")

    with services.store.session(write=True) as session:
        kept = _version(session, "flush-3", "kept")
        session.write_version(kept)
        _append(services, session, "flush-3")
        twice = _version(session, "flush-3", "twice")
        with pytest.raises(Conflict):
            unit(session, twice)
        _append(services, session, "flush-3")
    with services.store.session() as session:
        assert session.current("flush-3", "Binary", kept.resource_id) is not None
        assert session.current("flush-3", "Binary", twice.resource_id) is None
        assert len(session.journal_of("flush-3")) == 2


def test_a_journal_row_that_cannot_be_written_fails_the_transaction_with_its_rows(services: Services) -> None:
    """An entry already stored, due with a new resource: JournalUnavailable, and nothing of it commits."""
    with services.store.session(write=True) as session:
        _append(services, session, "flush-4")
    with services.store.session() as session:
        (stored,) = session.journal_of("flush-4")
    lost: list[StoredVersion] = []

    def transaction() -> None:
        with services.store.session(write=True) as session:
            lost.append(_version(session, "flush-4", "lost"))
            session.write_version(lost[0])
            head = session.journal_head(stored.shard, lock=True)
            assert head is not None
            key = session._logs.key(stored.shard)  # type: ignore[attr-defined]
            row = {
                "log_key": key,
                "shard": stored.shard,
                "seq": stored.seq,  # taken: the entries' primary key refuses it
                "patient_id": stored.patient_id,
                "recorded_at": stored.recorded_at,
                "commitment": stored.commitment,
                "sealed": stored.sealed,
            }
            session._journal_due[stored.shard] = DueAppend(key, entries=[row])  # type: ignore[attr-defined]
            session._journal_heads[stored.shard] = head  # type: ignore[attr-defined]

    with pytest.raises(JournalUnavailable):
        transaction()
    with services.store.session() as session:
        assert session.current("flush-4", "Binary", lost[0].resource_id) is None
        assert len(session.journal_of("flush-4")) == 1


def test_a_large_write_and_appends_to_several_logs_are_written_whole(settings: Settings) -> None:
    """Over a hundred rows (the arrays form) and appends to four logs in one transaction, then
    a few rows to four logs (``VALUES``): every row stored, every log verifies."""
    services = build_services(replace(settings, journal_shards=4))
    try:
        patients = [f"flush-5-{n}" for n in range(12)]
        assert len({shard_of(p, 4) for p in patients}) == 4
        for resources in (30, 1):
            with _writes(services) as writes, services.store.session(write=True) as session:
                made = []
                for n in range(resources):
                    made.append(_version(session, patients[n % len(patients)], f"{resources}-{n}"))
                    session.write_version(made[-1])
                for patient_id in patients:
                    _append(services, session, patient_id)
            if _at_once(services):  # the rows, then the appends to the four logs together
                assert len(writes) == 2, writes
            with services.store.session() as session:
                for version in made:
                    assert session.current(version.patient_id, "Binary", version.resource_id) is not None
        with services.store.session() as session:
            for patient_id in patients:
                assert len(session.journal_of(patient_id)) == 2
        services.journal.issue_checkpoints()
        key = (settings.key_dir / VERIFIER_FILE).read_text().strip()
        with services.store.session() as session:
            reports = verify_journal(session, key, settings.journal_origin, now=datetime.now(UTC))
        assert len(reports) >= 4
        assert [r.ok for r in reports] == [True] * len(reports)
    finally:
        services.store.engine.dispose()
