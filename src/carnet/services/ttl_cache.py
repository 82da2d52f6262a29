"""A small bounded cache whose entries expire: the one behind every "remembered lately" table.

Each entry is kept at most ``ttl`` seconds after it was put, and never at or after its own
``deadline`` when it has one. At most ``size`` entries are kept: putting one more drops the least
recently used (a hit counts as a use). An entry found expired, or rejected by the caller's
``is_current`` check, is dropped on the spot. All methods are thread-safe (the users are called
from the event loop and from worker threads alike).

Users: the record keys unwrapped lately (``services/vault.py``) and the bearer tokens verified
lately (``api/token_cache.py``).
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TTLCache(Generic[K, V]):
    """Values by key, each for at most ``ttl`` seconds, at most ``size`` of them; thread-safe."""

    def __init__(self, *, ttl: float, size: int, clock: Callable[[], float]) -> None:
        self._ttl = ttl
        self._size = size
        self._clock = clock
        # Per key: (value, when it was put, its own deadline or +inf).
        self._entries: OrderedDict[K, tuple[V, float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K, *, is_current: Callable[[V], bool] | None = None) -> V | None:
        """Return the value put under ``key`` within ``ttl`` and before its deadline, else None.

        ``is_current``, when given, must accept the value too; a value it rejects is dropped. It
        is called under the cache's lock (so that the check and the drop are one step): keep it
        quick.
        """
        now = self._clock()
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                return None
            value, put_at, deadline = found
            if (
                now >= deadline
                or now - put_at >= self._ttl
                or (is_current is not None and not is_current(value))
            ):
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return value

    def put(self, key: K, value: V, *, deadline: float | None = None) -> None:
        """Remember ``value`` under ``key``, until ``deadline`` (same clock) if one is given."""
        now = self._clock()
        with self._lock:
            self._entries[key] = (value, now, math.inf if deadline is None else deadline)
            self._entries.move_to_end(key)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        """How many entries are held (expired ones included until looked up or pushed out)."""
        return len(self._entries)
