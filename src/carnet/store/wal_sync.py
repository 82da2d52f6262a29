"""Durable SQLite commits whose flush to disk waits outside the writer lock.

With ``PRAGMA synchronous=FULL`` SQLite flushes the write-ahead log (WAL) inside ``COMMIT``,
while it and :class:`carnet.store.writer_lock.WriterLock` are held: every other writer, in this
process and the other worker processes, waits for the disk, and then for the committing thread
to take the GIL back after it (2026-12-07 under 8 concurrent single reads: a commit held the lock
0.5–1.4 ms, of which 0.2 ms the flush, against 0.15 ms for all the statements before it).

So Carnet's SQLite connections run ``synchronous=NORMAL`` (SQLite then flushes the WAL only
before a checkpoint, and the database after one) and every commit is made durable here instead,
before anything that depends on it goes on: :meth:`WalSync.sync` flushes the WAL file
(``fdatasync``). The store's writing sessions call it once the writer lock is released
(``carnet.store.repository``); any other commit on the engine calls it inside ``COMMIT``
(``carnet.store.engine``).

Why one flush after the commit is as durable as SQLite's own: a transaction's frames are written
to the WAL (``write``) before its ``COMMIT`` returns, after those of every transaction committed
before it, and a flush of the file makes every byte written to it so far durable, whoever wrote
it. After a power loss SQLite recovers the WAL up to the last commit frame whose checksum chain
is whole; the flush after our commit put all frames up to ours on disk, so ours is recovered (and
so is everything it read). A flush that also carries the frames of later transactions harms
nothing. A checkpoint flushes the WAL before copying it into the database and the database after,
before the WAL is reused; a WAL gone (deleted by the last connection closing, after a full
checkpoint) leaves every commit in the flushed database file. A new WAL file's directory entry is
flushed once, the first time it is seen, as SQLite does for a WAL it creates in FULL mode.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable
from pathlib import Path

from carnet.durable import flush_directory

#: In a SQLite connection's ``info``: its next ``COMMIT`` leaves the flush to the caller, which
#: calls :meth:`WalSync.sync` before anything depends on the commit.
SYNC_AFTER = "carnet_sync_after"

_sync = getattr(os, "fdatasync", os.fsync)


class WalSync:
    """Flushes the WAL file of one SQLite database; thread-safe."""

    def __init__(self, database: Path) -> None:
        self.wal = database.with_name(database.name + "-wal")
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._inode: int | None = None
        self._close: Callable[[], object] | None = None
        #: Flushes done (for the tests).
        self.syncs = 0

    def sync(self) -> None:
        """Make every commit written to the WAL so far durable.

        Raises:
            OSError: the flush failed (the commit may be lost on a power cut: do not acknowledge it).
        """
        try:
            inode = os.stat(self.wal).st_ino
        except FileNotFoundError:
            return  # no WAL: every commit was checkpointed into the database file, flushed then
        with self._lock:
            fd = self._fd
            if fd is None or inode != self._inode:
                if self._close is not None:
                    self._close()  # the WAL file it was opened on is gone
                    self._fd = self._close = None
                try:
                    fd = os.open(self.wal, os.O_RDONLY | os.O_CLOEXEC)
                except FileNotFoundError:
                    return
                self._fd, self._inode = fd, os.fstat(fd).st_ino
                self._close = weakref.finalize(self, os.close, fd)  # closed with this object at the latest
                flush_directory(self.wal.parent)  # a new WAL's directory entry, once
            _sync(fd)
            self.syncs += 1
