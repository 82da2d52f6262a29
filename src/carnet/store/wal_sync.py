"""Durable SQLite commits whose flush to disk, and the WAL's checkpoints, wait outside the writer lock.

**Flush.** With ``PRAGMA synchronous=FULL`` SQLite flushes the write-ahead log (WAL) inside
``COMMIT``, while it and :class:`carnet.store.writer_lock.WriterLock` are held: every other writer,
in this process and the other worker processes, waits for the disk, and then for the committing
thread to take the GIL back after it (2026-12-07 under 8 concurrent single reads: a commit held the
lock 0.5–1.4 ms, of which 0.2 ms the flush, against 0.15 ms for all the statements before it).

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

**Checkpoints.** SQLite's automatic checkpoint (``wal_autocheckpoint``, every 1,000 pages) runs
at the end of the ``COMMIT`` that crossed the mark, so inside the writer lock: copying ~4 MB of
pages into the database and flushing both files while every writer of every worker waits (a
~140 KB document's commit cost 0.37 ms with it, 0.10 ms without, 2026-12-07). The connections
therefore run ``wal_autocheckpoint=0``, and :meth:`WalSync.sync`, after its flush, starts
:meth:`WalSync.checkpoint` in a thread of its own once the WAL holds :attr:`WalSync.pages` pages
not yet copied into the database (read from the WAL-index header at the start of the ``-shm``
file, https://www.sqlite.org/walformat.html section 2.1). One process at a time checkpoints (a
non-blocking ``flock`` on ``<database>.checkpoint``), on a connection of its own, in two steps:

1. ``PASSIVE``, outside the writer lock: it copies every frame that no reader still needs while
   the other writers go on committing (it takes none of their locks and waits for none); run
   again, up to three times, while the writers committed 64 pages or more meanwhile;
2. ``RESTART``, holding the writer lock, only when the WAL has not been started again since the
   previous checkpoint (its length past twice the threshold): it copies the frames committed
   during the first step, then waits (at most ``_READERS_WAIT_MS``) for the readers still reading
   the WAL, so that the next writer writes the WAL again from its start. Without it the WAL would
   rarely be wholly copied when a writer starts under constant writes and reads, and would grow
   (SQLite's own checkpoints under two reading threads: 5,300 pages for a threshold of 1,000,
   2026-12-07). It costs the lock two flushes (4.8–6.7 ms held when run at every checkpoint of a
   feed under load), hence only when needed.

Should the WAL reach four times :attr:`WalSync.pages` all the same (a checkpoint thread that
cannot keep up), the committing thread checkpoints before its session returns. A checkpoint that
fails (a full disk) is logged and tried again at a later commit: the commits are durable in the
WAL already, and no caller is failed for it. A reader that holds a snapshot for long still keeps
the WAL from being restarted, as it does SQLite's own checkpoints.

Why this is as durable and as consistent as before: these are SQLite's own checkpoints, run by
another connection at another moment. A checkpoint copies only committed frames, flushes the WAL
before it copies and the database after, and records frames as copied only then; the WAL is
written again from its start only once every frame is in the flushed database and no reader
reads the WAL. A checkpoint copies no frame past the snapshot of the oldest reader, so no reader
sees a page change under it. A crash (kill -9, power cut) during a checkpoint leaves the WAL as
it was, and recovery replays it. Each commit is durable by the flush above before anyone is
answered, whether or not a checkpoint has copied it. What changes is only who waits for the copy:
nobody but the checkpoint's thread, instead of every writer.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import struct
import threading
import weakref
from collections.abc import Callable
from pathlib import Path

from carnet.durable import flush_directory
from carnet.store.writer_lock import WriterLock

log = logging.getLogger("carnet.store")

#: In a SQLite connection's ``info``: its next ``COMMIT`` leaves the flush to the caller, which
#: calls :meth:`WalSync.sync` before anything depends on the commit.
SYNC_AFTER = "carnet_sync_after"

#: Pages in the WAL not yet copied into the database from which a checkpoint starts (SQLite's own
#: ``wal_autocheckpoint`` default); the committing thread checkpoints itself from four times it.
CHECKPOINT_PAGES = 1000
_BACKLOG = 4
#: How long the pass under the writer lock waits for the readers still on the WAL (milliseconds).
_READERS_WAIT_MS = 10
#: Unlocked passes at most, each run again while the writers committed this many pages meanwhile.
_PASSES = 3
_FEW_PAGES = 64

_sync = getattr(os, "fdatasync", os.fsync)

#: The WAL-index header at the start of the ``-shm`` file (walformat.html §2.1), in the machine's
#: byte order: two copies of a 48-byte header (``mxFrame``, the WAL's last valid frame, at offset
#: 16 of each) that agree when no writer is changing it, then ``nBackfill``, the frames copied
#: into the database, at offset 96.
_HEADER = struct.Struct("=48s48sI")


#: Read-only descriptors on the ``-shm`` files whose header :meth:`WalSync.pending` reads, by path,
#: shared by every engine of the process and kept open. Closing any descriptor of a file releases
#: every POSIX lock the process holds on it, SQLite's included (https://www.sqlite.org/howtocorrupt.html
#: section 2.2): opening and closing the ``-shm`` file at each commit dropped the locks by which
#: SQLite tells other processes that this one uses the WAL index, so a process opening the
#: database next could rebuild the index under this one's mapping (a worker crashed in ``COMMIT``,
#: CI 2026-12-07). A descriptor is closed only once its file is unlinked (SQLite's last connection
#: removed it), when no connection can hold a lock on it any more.
_SHM_DESCRIPTORS: dict[str, int] = {}
_SHM_LOCK = threading.Lock()


def _shm_descriptor(path: str) -> int | None:
    """A descriptor of the ``-shm`` file at ``path``, kept open (None: there is no such file)."""
    with _SHM_LOCK:
        fd = _SHM_DESCRIPTORS.get(path)
        if fd is not None and os.fstat(fd).st_nlink:
            return fd
        try:
            opened = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        # Let go of the files SQLite has removed meanwhile (databases closed for good).
        for known, old in list(_SHM_DESCRIPTORS.items()):
            if not os.fstat(old).st_nlink:
                os.close(old)
                del _SHM_DESCRIPTORS[known]
        _SHM_DESCRIPTORS[path] = opened
        return opened


class WalSync:
    """Flushes the WAL file of one SQLite database and checkpoints it; thread-safe."""

    def __init__(self, database: Path, *, pages: int = CHECKPOINT_PAGES) -> None:
        self.database = database
        self.wal = database.with_name(database.name + "-wal")
        self.shm = database.with_name(database.name + "-shm")
        self._shm = str(self.shm)
        #: Pages not yet copied into the database from which a checkpoint starts.
        self.pages = pages
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._inode: int | None = None
        self._close: Callable[[], object] | None = None
        #: Flushes done (for the tests).
        self.syncs = 0
        #: Held by the checkpoint in progress in this process (one at a time).
        self._checkpointing = threading.Lock()
        #: The checkpoints' own connection and the process it was opened in.
        self._connection: sqlite3.Connection | None = None
        self._close_connection: weakref.finalize[..., object] | None = None
        self._pid = 0
        #: Our writer lock, on an open file of its own (it excludes this process's writers too).
        self._writers = WriterLock(database)
        #: Held (``flock``) by the checkpoint running in any process on this database.
        self._checkpointer_path = database.with_name(database.name + ".checkpoint")
        self._checkpointer: int | None = None
        #: Checkpoints done (for the tests).
        self.checkpoints = 0

    def sync(self) -> None:
        """Make every commit written to the WAL so far durable; checkpoint the WAL when it is due.

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
        self._checkpoint_when_due()

    def pending(self) -> int | None:
        """Return the WAL's frames not yet copied into the database (None: unknown at this instant)."""
        header = self._header()
        return None if header is None else max(header[0] - header[1], 0)

    def _header(self) -> tuple[int, int] | None:
        """The WAL's length in frames and the frames copied into the database (None: unknown now)."""
        fd = _shm_descriptor(self._shm)
        if fd is None:
            return 0, 0  # no connection has the database open in WAL mode: nothing to copy
        header = os.pread(fd, _HEADER.size, 0)
        if len(header) < _HEADER.size:
            return None
        first, second, backfilled = _HEADER.unpack(header)
        if first != second or not first[12]:  # being written, or not initialised yet
            return None
        (frames,) = struct.unpack_from("=I", first, 16)
        return int(frames), int(backfilled)

    def checkpoint(self) -> None:
        """Copy the WAL into the database, mostly outside the writer lock (see the module's docstring).

        Waits for a checkpoint another process is running, then runs its own.

        Raises:
            sqlite3.Error: the checkpoint failed.
        """
        with self._checkpointing:
            self._checkpoint(wait=True)

    def _checkpoint(self, *, wait: bool = False) -> None:
        """Checkpoint unless another process is (``wait``: after it), holding :attr:`_checkpointing`."""
        fd = self._checkpointer_fd()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return  # another worker process checkpoints this WAL now
        try:
            connection = self._checkpoints_connection()
            for _ in range(_PASSES):  # while the writers commit more than a few pages meanwhile
                connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                if (self.pending() or 0) < _FEW_PAGES:
                    break
            header = self._header()
            if header is None or header[0] >= 2 * self.pages:  # not started again since: make it
                with self._writers.held():
                    connection.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()
            self.checkpoints += 1
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def _checkpoint_when_due(self) -> None:
        """Start a checkpoint when the WAL holds enough uncopied pages; never raises (see above)."""
        try:
            self._start_when_due()
        except Exception as error:  # the commit is durable: a checkpoint is only tried again later
            log.warning("WAL checkpoint not started: %s", error)

    def _start_when_due(self) -> None:
        pending = self.pending()
        if pending is None or pending < self.pages:
            return
        if pending >= _BACKLOG * self.pages:
            blocking = True  # the checkpoints fall behind: this commit's caller waits for one
        elif self._checkpointing.acquire(blocking=False):
            blocking = False
        else:
            return  # one is running in this process
        if blocking:
            self._checkpointing.acquire()
            self._run_checkpoint(blocking=True)
            return
        try:
            threading.Thread(target=self._run_checkpoint, name="carnet-wal-checkpoint").start()
        except BaseException:
            self._checkpointing.release()
            raise

    def _run_checkpoint(self, blocking: bool = False) -> None:
        """Checkpoint, holding :attr:`_checkpointing` (acquired by the caller); log a failure."""
        try:
            if (self.pending() or 0) >= self.pages:  # not done by another thread meanwhile
                self._checkpoint(wait=blocking)
        except Exception as error:  # the commits are durable in the WAL; a later one tries again
            log.warning("WAL checkpoint failed: %s", error)
        finally:
            self._checkpointing.release()

    def _checkpointer_fd(self) -> int:
        """The file whose lock one checkpoint at a time holds, across the worker processes."""
        if self._checkpointer is None:
            fd = os.open(self._checkpointer_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            self._checkpointer = fd
            weakref.finalize(self, os.close, fd)
        return self._checkpointer

    def _checkpoints_connection(self) -> sqlite3.Connection:
        """The connection that runs the checkpoints, opened in this process (not one inherited)."""
        if self._connection is None or self._pid != os.getpid():
            if self._close_connection is not None:
                self._close_connection.detach()  # inherited from the parent process: not ours to close
            connection = sqlite3.connect(self.database, isolation_level=None, check_same_thread=False)
            # Reading the mode opens the WAL (a checkpoint on a connection that has not yet read
            # the database does nothing); FULL flushes as NORMAL does around a checkpoint.
            connection.execute("PRAGMA journal_mode").fetchall()
            connection.execute("PRAGMA synchronous=FULL")
            connection.execute(f"PRAGMA busy_timeout={_READERS_WAIT_MS}")
            self._connection, self._pid = connection, os.getpid()
            self._close_connection = weakref.finalize(self, connection.close)
        return self._connection
