"""A transaction's appends to one journal log read its head once and are written together.

The appends of a group commit's units share one transaction, which holds the log's head (row
lock on PostgreSQL, the write lock on SQLite) from its first append: the following appends take
the head it left without reading it again. A unit whose savepoint is rolled back undoes its
append, so the head is read again from the database, and the journal still verifies entry by
entry against a signed checkpoint. Appends made without savepoints between them are written
together when the transaction next sends a statement or ends: one insert of the entries and one
head update per log, whatever their number; one that cannot be written stops the transaction.
"""

from __future__ import annotations

import secrets
from contextlib import AbstractContextManager
from datetime import UTC, datetime

import pytest

from carnet.api.app import Services
from carnet.audit.signer import VERIFIER_FILE
from carnet.audit.verify import verify_journal
from carnet.domain.errors import JournalUnavailable
from carnet.domain.journal import Entry
from carnet.services.ports import StoreSession
from carnet.settings import Settings
from carnet.store.connected import DueAppend
from statements import sent_statements

KEY = secrets.token_bytes(32)


def _append(services: Services, session: StoreSession, patient_id: str) -> None:
    entry = Entry(
        recorded=datetime.now(UTC),
        patient_id=patient_id,
        actor_kind="patient",
        actor_id="patient:heads",
        action="read",
        resource_type="Observation",
    )
    services.journal.append(session, [(KEY, entry)])


def _failing_unit(services: Services, session: StoreSession) -> None:
    """A unit that appends, then fails: its savepoint is rolled back."""
    with session.savepoint():
        _append(services, session, "heads-2")
        raise RuntimeError("this unit fails after its append")


def _head_reads(services: Services) -> AbstractContextManager[list[str]]:
    return sent_statements(
        services.store.engine,
        lambda sql: sql.lstrip().upper().startswith("SELECT") and "FROM journal_heads" in sql,
    )


def _verified(services: Services, settings: Settings) -> int:
    """Sign checkpoints and verify the journal entry by entry; return its entries, every log summed."""
    services.journal.issue_checkpoints()
    key = (settings.key_dir / VERIFIER_FILE).read_text().strip()
    with services.store.session() as session:
        reports = verify_journal(session, key, settings.journal_origin, now=datetime.now(UTC))
        heads = [session.journal_head(log) for log in session.journal_shards()]
    assert [r.ok for r in reports] == [True] * len(reports)
    return sum(head[0] for head in heads if head is not None)


def test_appends_of_one_transaction_read_the_head_once(services: Services, settings: Settings) -> None:
    before = _verified(services, settings)
    with _head_reads(services) as reads, services.store.session(write=True) as session:
        for _ in range(3):
            with session.savepoint():  # as a group commit runs each unit
                _append(services, session, "heads-1")
    assert len(reads) == 1
    assert _verified(services, settings) == before + 3


def test_an_undone_append_makes_the_next_one_read_the_head_again(
    services: Services, settings: Settings
) -> None:
    before = _verified(services, settings)
    with _head_reads(services) as reads, services.store.session(write=True) as session:
        _append(services, session, "heads-2")
        with pytest.raises(RuntimeError):
            _failing_unit(services, session)
        _append(services, session, "heads-2")
    assert len(reads) == 2
    assert _verified(services, settings) == before + 2
    with services.store.session() as session:
        stored = session.journal_of("heads-2")
    assert len({e.shard for e in stored}) == 1
    first = min(e.seq for e in stored)
    assert sorted(e.seq for e in stored) == [first, first + 1]  # no gap where the undone one was


def _journal_writes(services: Services) -> AbstractContextManager[list[str]]:
    return sent_statements(
        services.store.engine, lambda sql: "journal_entries" in sql or "UPDATE journal_heads" in sql
    )


def test_appends_of_one_transaction_are_written_together(services: Services, settings: Settings) -> None:
    """Five appends to one log without savepoints: one write of the entries and one head update."""
    before = _verified(services, settings)
    with _journal_writes(services) as writes, services.store.session(write=True) as session:
        for _ in range(5):
            _append(services, session, "heads-3")
    entries = [s for s in writes if "INSERT INTO journal_entries" in s]
    heads = [s for s in writes if "UPDATE journal_heads" in s]
    # PostgreSQL writes entries, nodes and head in one statement (the UPDATE is its last part).
    assert (len(entries), len(heads)) == (1, 1)
    assert _verified(services, settings) == before + 5
    with services.store.session() as session:
        stored = session.journal_of("heads-3")
    first = min(e.seq for e in stored)
    assert sorted(e.seq for e in stored) == list(range(first, first + 5))


def test_an_append_that_cannot_be_written_stops_its_transaction(services: Services) -> None:
    """A due append that fails to be written leaves its transaction uncommittable, even if caught."""
    caught: list[JournalUnavailable] = []

    def transaction() -> None:
        with services.store.session(write=True) as session:
            _append(services, session, "heads-4")
            # A bogus append (its entry row lacks every other column) makes the journal's write fail.
            session._journal_due[10_000] = DueAppend("bogus", entries=[{"seq": 1}])  # type: ignore[attr-defined]
            session._journal_heads[10_000] = (1, b"")  # type: ignore[attr-defined]
            try:
                session.flush()  # type: ignore[attr-defined]
            except JournalUnavailable as error:  # the caller goes on, as a savepoint's would
                caught.append(error)

    with pytest.raises(JournalUnavailable):
        transaction()
    assert len(caught) == 1
    with services.store.session() as session:
        assert session.journal_of("heads-4") == []  # written before the bogus one, not committed
