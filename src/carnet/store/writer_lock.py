"""One SQLite writer at a time, queued by the operating system rather than by SQLite's busy handler.

SQLite lets one transaction write at a time. A writer that finds the lock taken waits in SQLite's
busy handler, which *sleeps* and retries (1, 2, 5 … up to 100 ms between tries): under a few
concurrent writers — the threads of one ``carnet serve`` worker and the other workers — a
write waited up to a second (p99 of single creates 950 ms at 8 connections, bench/run.py) while
the lock was free most of that time. :class:`WriterLock` makes writers queue before they ask
SQLite: a thread lock within the process, and ``flock`` on a file beside the database across the
worker processes; the kernel wakes the next writer the moment the lock is released. SQLite's own
lock is still taken (``BEGIN IMMEDIATE``) and still guards against any other program.

Reentrant within a thread (a nested writing transaction behaves as before: SQLite refuses it).
"""

from __future__ import annotations

import fcntl
import os
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

#: Set while no thread of this process holds a writer lock (:func:`writer_first`).
_IDLE = threading.Event()
_IDLE.set()
_holders = 0
_holders_lock = threading.Lock()
#: The longest one :func:`writer_first` waits (a writer holds the lock for a few milliseconds).
WRITER_FIRST_WAIT = 0.05


def writer_first() -> None:
    """Wait (at most :data:`WRITER_FIRST_WAIT` seconds) while a thread of this process holds a writer lock.

    Python runs one thread of a process at a time. A thread that prepares a write (parsing,
    validating a Bundle of 300 resources) while another thread of its process holds the writer
    lock takes the interpreter from it: the lock is then held longer, waiting for the
    interpreter after each SQLite call, while the other worker processes wait for the lock
    (`bench/ingest.py`: 84 ms held per batch for 60 ms of the holder's CPU, 2026-12-07). Work
    that can wait calls this between its steps, so that the thread in the lock runs first; the
    process loses no CPU by it (its threads share one interpreter) and the other processes get
    the lock sooner.
    """
    if not _IDLE.is_set():
        _IDLE.wait(WRITER_FIRST_WAIT)


def _holding(change: int) -> None:
    global _holders
    with _holders_lock:
        _holders += change
        if _holders:
            _IDLE.clear()
        else:
            _IDLE.set()


class WriterLock:
    """Serialises the writing transactions of all threads and processes using one SQLite file."""

    def __init__(self, database: Path | None) -> None:
        self._thread = threading.RLock()
        self._depth = 0
        self._path = database.with_name(database.name + ".writer") if database is not None else None
        self._fd: int | None = None
        self._closer: Callable[[], object] | None = None

    @contextmanager
    def held(self) -> Iterator[None]:
        """Hold the writer lock for the duration of the block."""
        with self._thread:
            self._depth += 1
            try:
                if self._depth == 1 and self._path is not None:
                    if self._fd is None:
                        self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
                        # Closed with this object at the latest (a store let go, a checkpoint's own).
                        self._closer = weakref.finalize(self, os.close, self._fd)
                    fcntl.flock(self._fd, fcntl.LOCK_EX)
                if self._depth == 1:
                    _holding(+1)
                try:
                    yield
                finally:
                    if self._depth == 1:
                        _holding(-1)
                        if self._fd is not None:
                            fcntl.flock(self._fd, fcntl.LOCK_UN)
            finally:
                self._depth -= 1


def sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite URL (None for an in-memory database)."""
    if not url.startswith("sqlite:///") or ":memory:" in url or "mode=memory" in url:
        return None
    return Path(url.removeprefix("sqlite:///").split("?", 1)[0])
