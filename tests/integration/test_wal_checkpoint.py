"""The SQLite WAL is checkpointed by Carnet after the flush, mostly outside the writer lock.

SQLite's own automatic checkpoint runs inside ``COMMIT``, so inside the writer lock every writer
of every worker waits for (``store/wal_sync.py``); Carnet's connections turn it off and
:class:`WalSync` checkpoints once the WAL holds enough uncopied pages: a ``PASSIVE`` checkpoint
without the lock, then one holding it for the pages committed meanwhile, so that the WAL starts
again from its beginning. These tests use a small threshold (``WalSync.pages``) and rows of 40 KB
so that a few hundred commits make dozens of checkpoints.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

from sqlalchemy import Engine, text

from carnet.store.engine import make_engine, upgrade, wal_sync
from carnet.store.repository import SQLStore
from carnet.store.wal_sync import WalSync
from carnet.store.writer_lock import WriterLock
from sqlite_store import leaks_no_descriptor, taken_elsewhere

PAGES = 64  # the test threshold: a checkpoint every ~6 rows of 40 KB
ROW = 40_000
#: A WAL page on disk: the page and its 24-byte frame header.
FRAME = 4096 + 24


def _store(engine: Engine, pages: int = PAGES) -> tuple[WalSync, SQLStore]:
    """The engine's WAL checkpoints from ``pages`` on, after its tables; a store on it."""
    wal = wal_sync(engine)
    assert wal is not None
    _blobs(engine)
    wal.checkpoint()  # the migrations' pages: the test starts from an empty WAL
    wal.pages, wal.checkpoints = pages, 0
    return wal, SQLStore(engine)


def _blobs(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE blobs (id INTEGER PRIMARY KEY, body BLOB, digest BLOB)")
        connection.exec_driver_sql("CREATE TABLE tally (id INTEGER PRIMARY KEY, blob_id INTEGER)")


def _write_row(store: SQLStore) -> None:
    """One transaction: a 40 KB row, its digest, and a row in a second table (kept in step)."""
    body = os.urandom(ROW)
    with store.session(write=True) as session:
        connection = session._c  # type: ignore[attr-defined]
        found = connection.execute(
            text("INSERT INTO blobs (body, digest) VALUES (:b, :d) RETURNING id"),
            {"b": body, "d": hashlib.sha256(body).digest()},
        ).scalar_one()
        connection.execute(text("INSERT INTO tally (blob_id) VALUES (:i)"), {"i": found})


def test_connections_leave_checkpoints_to_carnet(sqlite_file_store: tuple[Engine, Path]) -> None:
    """A file store's connections do not checkpoint inside COMMIT; an in-memory one keeps SQLite's."""
    engine, _ = sqlite_file_store
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 0
    memory = make_engine("sqlite:///:memory:")
    with memory.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 1000


def test_commits_leave_the_wal_to_the_checkpoints(sqlite_file_store: tuple[Engine, Path]) -> None:
    """Without Carnet's checkpoint the WAL keeps every commit: no checkpoint ran inside a COMMIT."""
    engine, _ = sqlite_file_store
    wal, store = _store(engine, pages=10**9)
    for _ in range(120):  # ~1,200 pages: SQLite's own checkpoint would have run at 1,000
        _write_row(store)
    assert (wal.pending() or 0) > 1100
    assert wal.checkpoints == 0
    wal.checkpoint()
    assert wal.pending() == 0


def test_the_wal_stays_bounded_and_readers_see_whole_transactions(
    sqlite_file_store: tuple[Engine, Path],
) -> None:
    """Under two writers and two readers the WAL is restarted again and again, never torn."""
    engine, path = sqlite_file_store
    wal, store = _store(engine)
    failures: list[str] = []
    largest = [0]
    writing = threading.Event()
    writing.set()

    def writer() -> None:
        for _ in range(150):
            _write_row(store)
            largest[0] = max(largest[0], os.path.getsize(f"{path}-wal"))

    def reader() -> None:
        while writing.is_set():
            with store.session() as session:
                connection = session._c  # type: ignore[attr-defined]
                blobs = connection.execute(text("SELECT count(*) FROM blobs")).scalar_one()
                tally = connection.execute(text("SELECT count(*) FROM tally")).scalar_one()
                if blobs != tally:
                    failures.append(f"{blobs} rows against {tally} in one snapshot")
                for body, digest in connection.execute(
                    text("SELECT body, digest FROM blobs ORDER BY id DESC LIMIT 3")
                ):
                    if hashlib.sha256(body).digest() != digest:
                        failures.append("a row read back changed")

    writers = [threading.Thread(target=writer) for _ in range(2)]
    readers = [threading.Thread(target=reader) for _ in range(2)]
    for thread in [*writers, *readers]:
        thread.start()
    for thread in writers:
        thread.join(timeout=120)
    writing.clear()
    for thread in readers:
        thread.join(timeout=30)
    assert not failures
    assert wal.checkpoints >= 20  # 300 rows of ~10 pages, a checkpoint from 64 pages on
    # A restart now and then fails to find the readers off the WAL within its wait, and the WAL
    # then grows by another threshold's worth: bounded all the same. Without Carnet's checkpoints
    # it would reach ~3,000 pages; with SQLite's own and two readers, ~2,000 of 3,000 (5,300 of
    # 10,000 for a threshold of 1,000).
    assert largest[0] <= 8 * PAGES * FRAME + 32
    with engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT count(*) FROM blobs").scalar() == 300


def test_the_copy_does_not_wait_for_the_writer_lock(sqlite_file_store: tuple[Engine, Path]) -> None:
    """A checkpoint copies the WAL while another writer holds the lock, and is done without it."""
    engine, path = sqlite_file_store
    wal, store = _store(engine, pages=10**9)
    for _ in range(20):
        _write_row(store)
    assert (wal.pending() or 0) > 150
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with WriterLock(path).held():  # as a writer of another worker process holds it
            held.set()
            release.wait(timeout=30)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(timeout=10)
    try:
        wal.checkpoint()  # the WAL is short: no pass under the lock is needed
        assert wal.pending() == 0
        assert wal.checkpoints == 1
    finally:
        release.set()
        holder.join(timeout=10)


def test_a_wal_not_started_again_is_restarted_under_the_lock(
    sqlite_file_store: tuple[Engine, Path],
) -> None:
    """Past twice the threshold the last pass holds the lock: what was committed meanwhile is
    copied too, and the next writer writes the WAL from its start."""
    engine, path = sqlite_file_store
    wal, store = _store(engine, pages=10**9)
    for _ in range(20):
        _write_row(store)
    wal.pages = 64  # the WAL holds ~210 pages: more than twice the threshold
    connection = wal._checkpoints_connection()
    passes: list[tuple[str, bool]] = []
    reader = sqlite3.connect(path, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM blobs").fetchall()  # a snapshot on the WAL

    class Connection:
        """The checkpoint's connection, with a commit landing after its first pass (a reader
        still on the WAL keeps that writer from starting the WAL again)."""

        def execute(self, sql: str) -> sqlite3.Cursor:
            passes.append((sql, taken_elsewhere(path.with_name(path.name + ".writer"))))
            result = connection.execute(sql)
            if len(passes) == 1:
                wal.pages = 10**9  # no checkpoint of its own
                _write_row(store)
                wal.pages = 64
                reader.execute("COMMIT")
                reader.close()
            return result

    wal._connection = Connection()  # type: ignore[assignment]
    wal.checkpoint()
    assert passes == [("PRAGMA wal_checkpoint(PASSIVE)", False), ("PRAGMA wal_checkpoint(RESTART)", True)]
    assert wal.pending() == 0
    size = os.path.getsize(f"{path}-wal")
    _write_row(store)  # written from the WAL's start again: the file does not grow
    assert os.path.getsize(f"{path}-wal") == size


def test_one_process_checkpoints_at_a_time(sqlite_file_store: tuple[Engine, Path]) -> None:
    """While another process checkpoints the WAL, a commit past the threshold starts none of its own."""
    engine, path = sqlite_file_store
    wal, store = _store(engine, pages=10**9)
    fd = os.open(path.with_name(path.name + ".checkpoint"), os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # as another worker's checkpoint holds it
        wal.pages = 32
        for _ in range(5):
            _write_row(store)
        while any(t.name == "carnet-wal-checkpoint" for t in threading.enumerate()):
            time.sleep(0.01)
        assert wal.checkpoints == 0
        assert (wal.pending() or 0) >= 32
        fcntl.flock(fd, fcntl.LOCK_UN)
        _write_row(store)
        deadline = time.monotonic() + 20
        while wal.checkpoints == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert wal.checkpoints == 1
    finally:
        os.close(fd)


def test_a_commit_does_not_wait_for_the_checkpoint_it_starts(sqlite_file_store: tuple[Engine, Path]) -> None:
    """Past the threshold a commit's caller goes on while a thread of its own checkpoints."""
    engine, _ = sqlite_file_store
    wal, store = _store(engine)
    started, finish = threading.Event(), threading.Event()
    real = wal._checkpoint
    threads: list[str] = []

    def slow(*, wait: bool = False) -> None:
        threads.append(threading.current_thread().name)
        started.set()
        finish.wait(timeout=30)
        real(wait=wait)

    wal._checkpoint = slow  # type: ignore[method-assign]
    while (wal.pending() or 0) < PAGES:
        _write_row(store)  # the last one started the checkpoint, and returned all the same
    assert started.wait(timeout=20)
    for _ in range(2):
        _write_row(store)
    assert wal.checkpoints == 0
    finish.set()
    deadline = time.monotonic() + 20
    while wal.checkpoints == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert wal.checkpoints == 1
    assert threads == ["carnet-wal-checkpoint"]


def test_a_wal_far_behind_is_checkpointed_by_the_committing_thread(
    sqlite_file_store: tuple[Engine, Path],
) -> None:
    """From four times the threshold the commit's caller checkpoints before it goes on."""
    engine, _ = sqlite_file_store
    wal, store = _store(engine, pages=10**9)
    for _ in range(30):
        _write_row(store)
    wal.pages = 60  # ~300 pages pending: five times the threshold
    _write_row(store)
    assert wal.checkpoints == 1  # done before the session returned
    assert wal.pending() == 0


def test_a_failed_checkpoint_fails_no_commit(sqlite_file_store: tuple[Engine, Path]) -> None:
    """A checkpoint that fails leaves the commits as they are (durable in the WAL) and is tried again."""
    engine, _ = sqlite_file_store
    wal, store = _store(engine, pages=10**9)
    for _ in range(30):
        _write_row(store)
    real = wal._checkpoint
    failures = [1]

    def failing(*, wait: bool = False) -> None:
        if failures:
            failures.pop()
            raise OSError("disk full")
        real(wait=wait)

    wal._checkpoint = failing  # type: ignore[method-assign]
    wal.pages = 60
    _write_row(store)  # its checkpoint fails: the session does not
    assert wal.checkpoints == 0
    _write_row(store)
    assert wal.checkpoints == 1
    with engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT count(*) FROM blobs").scalar() == 32


def test_an_engine_let_go_closes_what_its_checkpoints_opened(tmp_path: Path) -> None:
    """The checkpoints' connection and lock file are closed with their engine: many engines leak none."""

    def use_one(index: int) -> None:
        engine = make_engine(f"sqlite:///{tmp_path / f'c{index}.sqlite3'}")
        upgrade(engine)
        wal, store = _store(engine, pages=8)
        for _ in range(4):
            _write_row(store)
        deadline = time.monotonic() + 20
        while wal.checkpoints == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert wal.checkpoints >= 1
        while any(t.name == "carnet-wal-checkpoint" for t in threading.enumerate()):
            time.sleep(0.01)
        engine.dispose()

    leaks_no_descriptor(use_one, 10)


#: SQLite's POSIX locks another process tests (os.c, walformat.html section 2.3): in the ``-shm``
#: file the byte each process using the WAL index holds shared (a process that gets it alone
#: rebuilds the index), and in the database file the range of SHARED locks a WAL connection holds.
_DMS_BYTE = 128
_SHARED_FIRST, _SHARED_SIZE = 0x40000002, 510
_PROBE = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
try:
    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, int(sys.argv[3]), int(sys.argv[2]))
except OSError:
    print("held")
else:
    print("free")
"""


def _held_by_this_process(path: Path, first: int, size: int) -> bool:
    """Tell whether another process finds SQLite's lock on ``size`` bytes of ``path`` from ``first`` held."""
    found = subprocess.run(
        [sys.executable, "-c", _PROBE, str(path), str(first), str(size)],
        capture_output=True,
        text=True,
        check=True,
    )
    return found.stdout.strip() == "held"


def test_carnet_keeps_the_locks_sqlite_holds_on_its_files(sqlite_file_store: tuple[Engine, Path]) -> None:
    """Reading the WAL index at each commit, or opening a second engine on the database, releases none
    of SQLite's locks, which would let another process rebuild the WAL index under this one."""
    engine, path = sqlite_file_store
    wal, store = _store(engine)
    for _ in range(20):  # commits that read the WAL-index header, and checkpoints
        _write_row(store)
    assert wal.checkpoints >= 1
    shm = path.with_name(path.name + "-shm")
    assert _held_by_this_process(shm, _DMS_BYTE, 1)
    assert _held_by_this_process(path, _SHARED_FIRST, _SHARED_SIZE)
    second = make_engine(f"sqlite:///{path}")
    try:
        with second.connect() as connection:
            assert connection.exec_driver_sql("SELECT count(*) FROM blobs").scalar() == 20
        assert _held_by_this_process(shm, _DMS_BYTE, 1)
        assert _held_by_this_process(path, _SHARED_FIRST, _SHARED_SIZE)
    finally:
        second.dispose()
