"""The SQLite writer lock's file seen from outside, as another process sees it (SQLite store tests)."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


def taken_elsewhere(path: Path) -> bool:
    """Tell whether another open file description (as another process has) finds the lock taken."""
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)
