"""The SQLite writer lock's file seen from outside, as another process sees it (SQLite store tests)."""

from __future__ import annotations

import fcntl
import gc
import os
from collections.abc import Callable
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


def open_descriptors() -> int:
    """File descriptors this process has open."""
    return len(os.listdir("/proc/self/fd"))


def leaks_no_descriptor(use_one: Callable[[int], None], times: int) -> None:
    """Assert that ``use_one(i)`` (make an engine, use it, let it go) run ``times`` more times after
    a first leaves no more than two descriptors more open (gc.collect: what finalizers close)."""
    use_one(0)
    gc.collect()
    before = open_descriptors()
    for index in range(1, times + 1):
        use_one(index)
    gc.collect()
    assert open_descriptors() <= before + 2
