"""TTLCache (services/ttl_cache.py): expiry by age and by deadline, the bound, LRU order, threads."""

from __future__ import annotations

import threading

from carnet.services.ttl_cache import TTLCache
from carnet.testing import FixedSeconds


def test_an_entry_expires_ttl_seconds_after_it_was_put() -> None:
    """An entry is served until ``ttl`` seconds have passed since its put, never at or after."""
    clock = FixedSeconds(1_000.0)
    cache: TTLCache[str, int] = TTLCache(ttl=60.0, size=10, clock=clock)
    cache.put("a", 1)
    clock.now += 59.9
    assert cache.get("a") == 1
    clock.now += 0.1
    assert (cache.get("a"), len(cache)) == (None, 0)


def test_putting_again_restarts_the_ttl() -> None:
    """A value put again is kept ``ttl`` seconds from the second put; a hit alone does not extend it."""
    clock = FixedSeconds(1_000.0)
    cache: TTLCache[str, int] = TTLCache(ttl=10.0, size=10, clock=clock)
    cache.put("a", 1)
    cache.put("b", 3)
    clock.now += 8
    cache.put("a", 2)
    assert cache.get("b") == 3
    clock.now += 2
    assert (cache.get("a"), cache.get("b")) == (2, None)


def test_an_entry_is_dropped_at_its_own_deadline() -> None:
    """An entry's deadline ends it before its ``ttl`` does."""
    clock = FixedSeconds(1_000.0)
    cache: TTLCache[str, int] = TTLCache(ttl=3600.0, size=10, clock=clock)
    cache.put("a", 1, deadline=clock.now + 5)
    clock.now += 4.9
    assert cache.get("a") == 1
    clock.now += 0.1
    assert (cache.get("a"), len(cache)) == (None, 0)


def test_a_value_the_caller_rejects_is_a_miss_and_is_dropped() -> None:
    """``is_current`` returning False gives None and forgets the entry."""
    cache: TTLCache[str, int] = TTLCache(ttl=60.0, size=10, clock=FixedSeconds(1_000.0))
    cache.put("a", 1)
    assert cache.get("a", is_current=lambda value: value == 1) == 1
    assert cache.get("a", is_current=lambda value: value == 2) is None
    assert (cache.get("a"), len(cache)) == (None, 0)


def test_the_bound_drops_the_least_recently_used() -> None:
    """Past ``size`` entries the least recently used goes first; a hit counts as a use."""
    cache: TTLCache[str, int] = TTLCache(ttl=60.0, size=2, clock=FixedSeconds(1_000.0))
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # "b" is now the least recently used
    cache.put("c", 3)
    assert (len(cache), cache.get("b"), cache.get("a"), cache.get("c")) == (2, None, 1, 3)
    cache.put("a", 4)  # "c" was used last before this put, "a"'s put is the latest use
    cache.put("d", 5)
    assert (cache.get("c"), cache.get("a"), cache.get("d")) == (None, 4, 5)


def test_a_put_made_while_another_thread_checks_the_entry_is_kept() -> None:
    """A lookup dropping a rejected value cannot drop a value another thread puts meanwhile."""
    cache: TTLCache[str, int] = TTLCache(ttl=60.0, size=10, clock=FixedSeconds(1_000.0))
    cache.put("a", 1)
    checking, written = threading.Event(), threading.Event()

    def reject(value: int) -> bool:
        checking.set()
        # The cache's lock keeps the writer out until this lookup is over: without it the
        # writer's put lands here and the lookup then deletes the new value.
        written.wait(timeout=0.3)
        return False

    def write() -> None:
        checking.wait(timeout=10)
        cache.put("a", 2)
        written.set()

    writer = threading.Thread(target=write)
    writer.start()
    assert cache.get("a", is_current=reject) is None
    writer.join(timeout=10)
    assert cache.get("a") == 2
