"""The SQLite writer lock (store/writer_lock.py): writers queue in the kernel, across threads and processes."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from carnet.store.writer_lock import WRITER_FIRST_WAIT, WriterLock, sqlite_file, writer_first
from sqlite_store import taken_elsewhere


def test_lock_file_is_held_only_inside_the_block(tmp_path: Path) -> None:
    """Inside ``held()`` another process could not take the lock; outside it could; the file is 0600."""
    lock = WriterLock(tmp_path / "carnet.db")
    path = tmp_path / "carnet.db.writer"
    with lock.held():
        assert taken_elsewhere(path)
        with lock.held():  # reentrant in the same thread
            assert taken_elsewhere(path)
        assert taken_elsewhere(path)
    assert not taken_elsewhere(path)
    assert path.stat().st_mode & 0o777 == 0o600


def test_a_second_thread_waits_for_the_first(tmp_path: Path) -> None:
    """A second writer thread enters only once the first has left."""
    lock = WriterLock(tmp_path / "carnet.db")
    order: list[str] = []
    inside = threading.Event()

    def first() -> None:
        with lock.held():
            order.append("first in")
            inside.set()
            time.sleep(0.2)
            order.append("first out")

    def second() -> None:
        assert inside.wait(timeout=10)
        with lock.held():
            order.append("second in")

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert order == ["first in", "first out", "second in"]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:////var/lib/carnet/carnet.db", Path("/var/lib/carnet/carnet.db")),
        ("sqlite:///data/c.db?mode=rwc", Path("data/c.db")),
        ("sqlite:///:memory:", None),
        ("sqlite://", None),
    ],
)
def test_sqlite_file_of_a_url(url: str, expected: Path | None) -> None:
    """The lock sits beside the database file; an in-memory database has only the thread lock."""
    assert sqlite_file(url) == expected


def test_writer_first_waits_while_a_thread_of_the_process_holds_a_writer_lock(tmp_path: Path) -> None:
    """Preparing work gives way to the writer: ``writer_first`` returns at once while no thread holds a
    writer lock, waits while one does (whichever database), and never longer than its bound."""
    lock = WriterLock(tmp_path / "carnet.db")
    started = time.perf_counter()
    writer_first()
    assert time.perf_counter() - started < 0.01
    inside, leave = threading.Event(), threading.Event()

    def writer(hold: float) -> None:
        with lock.held():
            inside.set()
            leave.wait(hold)

    holder = threading.Thread(target=writer, args=(0.02,))
    holder.start()
    inside.wait()
    started = time.perf_counter()
    writer_first()  # returns when the writer leaves, ~0.02 s later
    waited = time.perf_counter() - started
    holder.join()
    assert 0.005 < waited < WRITER_FIRST_WAIT
    inside.clear()
    holder = threading.Thread(target=writer, args=(5.0,))
    holder.start()
    inside.wait()
    started = time.perf_counter()
    writer_first()  # a writer that stays: no longer than the bound
    waited = time.perf_counter() - started
    leave.set()
    holder.join()
    assert WRITER_FIRST_WAIT * 0.9 < waited < WRITER_FIRST_WAIT + 0.05
    started = time.perf_counter()
    writer_first()
    assert time.perf_counter() - started < 0.01
