"""The helpers ``carnet.testing`` ships: a fixed clock and an in-memory key provider behave as real ones."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import pytest

from carnet.domain.errors import KeyProviderError
from carnet.domain.keys import WrappedKey
from carnet.testing import FixedClock, FixedSeconds, InMemoryKeyProvider

START = datetime(2026, 12, 6, 9, tzinfo=UTC)


def test_fixed_clock_moves_only_when_told() -> None:
    """The clock answers the same time until advanced, then the advanced time."""
    clock = FixedClock(START)
    assert (clock(), clock()) == (START, START)
    assert clock.advance(timedelta(minutes=5)) == START + timedelta(minutes=5)
    assert clock() == START + timedelta(minutes=5)


def test_fixed_seconds_move_only_when_told() -> None:
    """The clock of seconds answers the same reading until advanced or set."""
    clock = FixedSeconds(100.0)
    assert (clock(), clock()) == (100.0, 100.0)
    assert (clock.advance(2.5), clock()) == (102.5, 102.5)
    clock.now = 7.0
    assert (clock(), FixedSeconds()()) == (7.0, 0.0)


def test_fixed_clock_refuses_a_naive_time() -> None:
    """A datetime without a time zone is refused: Carnet's clocks are aware."""
    with pytest.raises(ValueError, match="aware"):
        FixedClock(datetime(2026, 12, 6, 9))


def test_in_memory_provider_round_trips_under_every_kek() -> None:
    """A key wrapped under an older KEK still unwraps after a new one became current."""
    keys = InMemoryKeyProvider()
    key = os.urandom(32)
    old = keys.wrap(key)
    new_kek = keys.new_kek()
    assert (keys.current_kek_id(), keys.kek_ids()) == (new_kek, [old.kek_id, new_kek])
    assert (keys.unwrap(old), keys.unwrap(keys.wrap(key))) == (key, key)


def test_in_memory_provider_refuses_what_it_cannot_unwrap() -> None:
    """A flipped bit, another KEK's id, or a retired KEK raise KeyProviderError, never return a key."""
    keys = InMemoryKeyProvider()
    wrapped = keys.wrap(os.urandom(32))
    flipped = WrappedKey(kek_id=wrapped.kek_id, blob=wrapped.blob[:-1] + bytes([wrapped.blob[-1] ^ 1]))
    other = WrappedKey(kek_id=keys.new_kek(), blob=wrapped.blob)
    for bad in (flipped, other):
        with pytest.raises(KeyProviderError):
            keys.unwrap(bad)
    keys.retire(wrapped.kek_id)
    with pytest.raises(KeyProviderError, match="not held"):
        keys.unwrap(wrapped)


def test_in_memory_provider_wraps_only_32_byte_keys_and_keeps_its_current_kek() -> None:
    """A short key is refused, and the current KEK cannot be retired."""
    keys = InMemoryKeyProvider()
    with pytest.raises(KeyProviderError, match="32-byte"):
        keys.wrap(b"short")
    with pytest.raises(KeyProviderError, match="current"):
        keys.retire(keys.current_kek_id())
