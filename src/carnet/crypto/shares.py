"""Erasure shares: one random secret per record, kept in the key directory, destroyed at shred.

A record key ``K`` is never stored whole. The database keeps ``wrap_KEK(K xor S)`` beside a
random 16-byte *share id*; the 32-byte share ``S`` lives only here, outside the database and
outside its backups. Opening a record needs all three: the database row, the KEK (key file or
HSM) and the share. Shredding destroys the share, so a database backup taken before the shred
no longer opens the record with the current key directory (DESIGN §4, docs/security.md).

Layout of the directory (0700; files 0600)::

    000.shares … fff.shares   4096 shard files, by the first 12 bits of the share id;
                              each a run of 48-byte entries: share id (16) | share (32)
    .lock                     held (flock) by every writer, in every process

A share is added by appending one entry and fsyncing before the record key that uses it is
committed; a torn tail left by a crash is cut off by the next writer. A share is destroyed by
overwriting its entry with zeros in place and fsyncing (an all-zero id is never issued). On a
copy-on-write file system, a snapshot or an SSD, overwritten bytes may survive on the medium:
docs/security.md says so. Readers take no lock: an entry is either complete or ignored.

At 10⁶ records a shard holds ≈ 244 entries (≈ 12 KB): a lookup reads one small file.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from carnet.domain.errors import KeyProviderError
from carnet.durable import flush_directory

SHARE_ID_SIZE = 16
SHARE_SIZE = 32
_ENTRY = SHARE_ID_SIZE + SHARE_SIZE
_EMPTY = bytes(SHARE_ID_SIZE)

Random = Callable[[int], bytes]


class ShareLedger:
    """The erasure shares of every record, in shard files of one directory."""

    def __init__(self, directory: Path, *, random: Random = os.urandom) -> None:
        self._dir = directory
        self._random = random
        self._lock = threading.Lock()
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(directory, 0o700)

    def _shard(self, share_id: bytes) -> Path:
        if len(share_id) != SHARE_ID_SIZE or share_id == _EMPTY:
            raise KeyProviderError("An erasure share id is 16 bytes and not all zeros.")
        return self._dir / f"{share_id.hex()[:3]}.shares"

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """Hold the ledger's write lock: the thread lock, then the cross-process file lock."""
        with self._lock:
            fd = os.open(self._dir / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)  # closing releases the flock

    def new(self) -> tuple[bytes, bytes]:
        """Create a share, make it durable and return ``(share id, share)``."""
        share_id = _EMPTY
        while share_id == _EMPTY:
            share_id = self._random(SHARE_ID_SIZE)
        share = self._random(SHARE_SIZE)
        path = self._shard(share_id)
        with self._writing():
            created = not path.exists()
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                end = os.lseek(fd, 0, os.SEEK_END)
                end -= end % _ENTRY  # a crash mid-append left a torn entry: cut it off
                os.ftruncate(fd, end)
                os.pwrite(fd, share_id + share, end)
                os.fsync(fd)
            finally:
                os.close(fd)
            if created:
                flush_directory(self._dir)
        return share_id, share

    def get(self, share_id: bytes) -> bytes | None:
        """Return the share with this id, or None if it was destroyed (or never existed here)."""
        try:
            data = self._shard(share_id).read_bytes()
        except FileNotFoundError:
            return None
        offset = self._find(data, share_id)
        return None if offset is None else data[offset + SHARE_ID_SIZE : offset + _ENTRY]

    @staticmethod
    def _find(data: bytes, share_id: bytes) -> int | None:
        start = data.find(share_id)
        while start != -1:
            if start % _ENTRY == 0 and start + _ENTRY <= len(data):
                return start
            start = data.find(share_id, start + 1)
        return None

    def destroy(self, share_id: bytes) -> bool:
        """Overwrite a share with zeros on disk; tell whether it was there."""
        path = self._shard(share_id)
        with self._writing():
            try:
                fd = os.open(path, os.O_RDWR)
            except FileNotFoundError:
                return False
            try:
                offset = self._find(os.pread(fd, os.fstat(fd).st_size, 0), share_id)
                if offset is None:
                    return False
                os.pwrite(fd, bytes(_ENTRY), offset)
                os.fsync(fd)
            finally:
                os.close(fd)
        return True

    def count(self) -> int:
        """Count the live shares (for reports and tests)."""
        total = 0
        for path in self._dir.glob("*.shares"):
            data = path.read_bytes()
            total += sum(
                1 for i in range(0, len(data) - _ENTRY + 1, _ENTRY) if data[i : i + SHARE_ID_SIZE] != _EMPTY
            )
        return total
