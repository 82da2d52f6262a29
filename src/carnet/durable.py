"""Making a file's creation or renaming durable: the directory entry is flushed too.

``fsync`` of a file makes its bytes durable, not its name: a power cut after a file is created or
renamed can leave the directory without it until the directory itself is flushed. Used by the
key provider and the erasure shares (``carnet.crypto``) and by the SQLite WAL flush
(``carnet.store.wal_sync``).
"""

from __future__ import annotations

import os
from pathlib import Path


def flush_directory(directory: Path) -> None:
    """Flush ``directory``'s entries (the files created, renamed or removed in it) to disk."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
