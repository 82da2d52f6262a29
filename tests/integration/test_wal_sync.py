"""SQLite commits are flushed to disk by Carnet (``store/wal_sync.py``), after the writer lock.

The connections run ``synchronous=NORMAL`` (SQLite does not flush a commit), so every commit
that wrote must be flushed by :class:`WalSync` before anything depends on it: a store's writing
session once its writer lock is released and before the session's block returns (the group
commit wakes its callers only then), any other transaction inside its ``COMMIT``. The flushes are
counted by wrapping the store's real :class:`WalSync` (the real flush still runs); a power cut,
the only thing a missing flush loses, cannot be staged in a test.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from carnet.services.group_commit import GroupCommit
from carnet.store.engine import make_engine, wal_sync
from carnet.store.repository import SQLStore
from carnet.store.wal_sync import WalSync
from sqlite_store import leaks_no_descriptor, taken_elsewhere


class _Watched:
    """Wraps a store's WAL flush: counts the flushes and whether the writer lock was free then."""

    def __init__(self, wal: WalSync, lock_file: Path) -> None:
        self.wal, self.lock_file = wal, lock_file
        self.flushes = 0
        self.locked_at_flush: list[bool] = []
        self._real = wal.sync
        wal.sync = self._sync  # type: ignore[method-assign]

    def _sync(self) -> None:
        self.locked_at_flush.append(_taken_elsewhere(self.lock_file))
        self._real()
        self.flushes += 1


def _taken_elsewhere(path: Path) -> bool:
    return path.exists() and taken_elsewhere(path)  # absent: no store session ever took it


def _watch(engine: Engine, path: Path) -> _Watched:
    wal = wal_sync(engine)
    assert wal is not None
    return _Watched(wal, path.with_name(path.name + ".writer"))


def _insert_actor(session: object, actor: str) -> None:
    session._c.execute(  # type: ignore[attr-defined]
        text("INSERT INTO journal_actors (patient_id, actor_hash) VALUES (:p, :h)"),
        {"p": actor, "h": b"\x00" * 16},
    )


def test_connections_leave_the_flush_to_carnet(sqlite_file_store: tuple[Engine, Path]) -> None:
    """In WAL mode SQLite does not flush commits itself (NORMAL); Carnet does (FULL otherwise)."""
    engine, _ = sqlite_file_store
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 1
    memory = make_engine("sqlite:///:memory:")
    with memory.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 2
    assert wal_sync(memory) is None


def test_a_writing_session_is_flushed_after_its_lock_and_before_it_returns(
    sqlite_file_store: tuple[Engine, Path],
) -> None:
    """One flush per writing session, with the writer lock already free; none for a read."""
    engine, path = sqlite_file_store
    store = SQLStore(engine)
    watched = _watch(engine, path)
    with store.session(write=True) as session:
        _insert_actor(session, "a")
        assert watched.flushes == 0  # not before the commit
    assert watched.flushes == 1
    assert watched.locked_at_flush == [False]
    with store.session() as session:
        session.locate("Observation", "unknown")
    assert watched.flushes == 1


def test_a_session_that_fails_is_not_flushed(sqlite_file_store: tuple[Engine, Path]) -> None:
    """A rolled-back session commits nothing: no flush, and the next commit flushes as usual."""
    engine, path = sqlite_file_store
    store = SQLStore(engine)
    watched = _watch(engine, path)

    def fail() -> None:
        with store.session(write=True) as session:
            _insert_actor(session, "b")
            raise RuntimeError("undone")

    with pytest.raises(RuntimeError):
        fail()
    assert watched.flushes == 0
    with store.session(write=True) as session:
        _insert_actor(session, "b")
    assert watched.flushes == 1


def test_a_commit_outside_the_store_is_flushed_inside_it(sqlite_file_store: tuple[Engine, Path]) -> None:
    """A plain transaction (the CLI's, a migration's) returns from its commit flushed, DDL included."""
    engine, path = sqlite_file_store
    watched = _watch(engine, path)
    with engine.begin() as connection:
        connection.execute(
            text("INSERT INTO journal_actors (patient_id, actor_hash) VALUES ('c', :h)"), {"h": b"\x00" * 16}
        )
    assert watched.flushes == 1
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE hwait_probe (x INTEGER)")
    assert watched.flushes == 2


def test_no_group_commit_caller_goes_on_before_its_unit_is_flushed(
    sqlite_file_store: tuple[Engine, Path],
) -> None:
    """Each caller of concurrent batches returns only after a flush that followed its unit's commit."""
    engine, path = sqlite_file_store
    store = SQLStore(engine)
    watched = _watch(engine, path)
    group = GroupCommit(store)
    failures: list[str] = []

    def caller(index: int) -> None:
        for round_ in range(20):
            seen: list[int] = []

            def unit(session: object, actor: str = f"{index}-{round_}", seen: list[int] = seen) -> None:
                seen.append(watched.flushes)  # inside the transaction, before its commit
                _insert_actor(session, actor)

            group.run(unit, isolate=False)
            if watched.flushes <= seen[-1]:
                failures.append(f"{index}-{round_} returned before a flush of its commit")

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not failures
    assert group.units == 120


def test_a_batch_whose_flush_fails_fails_its_callers_without_running_again(
    sqlite_file_store: tuple[Engine, Path],
) -> None:
    """Committed but not known durable: every caller of the batch gets the error; no unit runs twice."""
    engine, _ = sqlite_file_store
    store = SQLStore(engine)
    wal = wal_sync(engine)
    assert wal is not None
    real = wal.sync
    flushes: list[int] = []

    def sync() -> None:
        flushes.append(1)
        if len(flushes) == 2:  # the second batch's: the two queued units
            raise OSError("disk gone")
        real()

    wal.sync = sync  # type: ignore[method-assign]
    group = GroupCommit(store)
    runs: list[str] = []
    outcomes: dict[str, str] = {}

    def leader(session: object) -> None:
        runs.append("leader")
        deadline = time.monotonic() + 10
        while group.pending < 2 and time.monotonic() < deadline:  # the next batch forms meanwhile
            time.sleep(0.01)
        _insert_actor(session, "leader")

    def caller(name: str) -> None:
        def unit(session: object) -> None:
            runs.append(name)
            _insert_actor(session, name)

        try:
            group.run(unit, isolate=False)
        except OSError as error:
            outcomes[name] = str(error)
        else:
            outcomes[name] = "ok"

    lead = threading.Thread(target=group.run, args=(leader,), kwargs={"isolate": False})
    lead.start()
    while not runs:
        time.sleep(0.01)
    others = [threading.Thread(target=caller, args=(name,)) for name in ("a", "b")]
    for thread in others:
        thread.start()
    for thread in [lead, *others]:
        thread.join(timeout=20)
    assert outcomes == {"a": "disk gone", "b": "disk gone"}
    assert sorted(runs) == ["a", "b", "leader"]


def test_an_engine_let_go_closes_its_wal_descriptor(tmp_path: Path) -> None:
    """The WAL file the flush keeps open is closed with its engine: many engines leak none."""

    def use_one(index: int) -> None:
        engine = make_engine(f"sqlite:///{tmp_path / f'c{index}.sqlite3'}")
        with engine.begin() as connection:
            connection.exec_driver_sql("CREATE TABLE t (x INTEGER)")
        engine.dispose()

    leaks_no_descriptor(use_one, 20)
