"""Rate limits: an in-process token bucket per key (a principal, a client address, an account).

Each key owns a bucket of ``burst`` tokens refilled at ``per_minute / 60`` tokens a second; a
request takes one token, or is refused with the seconds until one is back (``Retry-After``).
The buckets live in this process's memory: with several worker processes each enforces its
own limits, so a client may get up to ``workers x`` the configured rate. A deployment that
needs one shared limit puts it in front (the reverse proxy) or in a shared store; see
``docs/security.md``.

The table of buckets is bounded: past :data:`MAX_KEYS`, the buckets that are full again (their
keys idle) are dropped, then the oldest, so a flood of new keys cannot exhaust memory.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

MAX_KEYS = 100_000


class RateLimiter:
    """Token buckets by key; thread-safe (portal handlers run in worker threads)."""

    def __init__(self, *, per_minute: int, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = per_minute / 60.0
        self._burst = float(max(burst, 1))
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        """Whether the limiter limits anything (a rate of 0 per minute turns it off)."""
        return self._rate > 0

    def take(self, key: str) -> int:
        """Take one token from ``key``'s bucket: 0 when allowed, else whole seconds to wait (≥ 1)."""
        if not self.enabled:
            return 0
        now = self._clock()
        with self._lock:
            tokens, stamp = self._buckets.pop(key, (self._burst, now))
            tokens = min(self._burst, tokens + (now - stamp) * self._rate)
            if tokens >= 1:
                self._buckets[key] = (tokens - 1, now)
                self._evict(now)
                return 0
            self._buckets[key] = (tokens, now)
            return max(1, math.ceil((1 - tokens) / self._rate))

    def _evict(self, now: float) -> None:
        if len(self._buckets) <= MAX_KEYS:
            return
        refilled = [
            k
            for k, (tokens, stamp) in self._buckets.items()
            if tokens + (now - stamp) * self._rate >= self._burst
        ]
        for key in refilled:
            del self._buckets[key]
        while len(self._buckets) > MAX_KEYS * 9 // 10:  # room again for a while: no sweep per request
            self._buckets.popitem(last=False)
