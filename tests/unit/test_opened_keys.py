"""OpenedKeys (services/vault.py): a remembered record key is served only for the same wrapped key, briefly."""

from __future__ import annotations

from carnet.domain.keys import WrappedKey
from carnet.services.vault import OpenedKeys
from carnet.testing import FixedSeconds

WRAPPED = WrappedKey(kek_id="local:000001", blob=b"w" * 40, share_id=b"s" * 16)


def test_a_key_is_served_for_the_same_wrapped_key_only() -> None:
    """Another wrapped key for the record (a rotation, another share) is a miss, and forgets the old key."""
    opened = OpenedKeys()
    opened.put("p1", WRAPPED, b"k" * 32)
    rotated = WrappedKey(kek_id="local:000002", blob=b"v" * 40, share_id=b"s" * 16)
    resplit = WrappedKey(kek_id="local:000001", blob=b"w" * 40, share_id=b"t" * 16)
    assert opened.get("p1", WRAPPED) == b"k" * 32
    assert opened.get("p2", WRAPPED) is None
    assert opened.get("p1", resplit) is None
    assert opened.get("p1", WRAPPED) is None  # the mismatch dropped the entry
    opened.put("p1", WRAPPED, b"k" * 32)
    assert opened.get("p1", rotated) is None


def test_a_key_expires_after_its_ttl() -> None:
    """A key remembered ttl seconds ago is unwrapped again."""
    clock = FixedSeconds(100.0)
    opened = OpenedKeys(ttl=60.0, clock=clock)
    opened.put("p1", WRAPPED, b"k" * 32)
    clock.now += 59.9
    assert opened.get("p1", WRAPPED) == b"k" * 32
    clock.now += 0.1
    assert opened.get("p1", WRAPPED) is None


def test_the_table_is_bounded_least_recently_used_first() -> None:
    """Over ``size`` records, the least recently used key is dropped."""
    opened = OpenedKeys(size=2)
    opened.put("p1", WRAPPED, b"1" * 32)
    opened.put("p2", WRAPPED, b"2" * 32)
    assert opened.get("p1", WRAPPED) == b"1" * 32
    opened.put("p3", WRAPPED, b"3" * 32)
    assert (len(opened), opened.get("p2", WRAPPED), opened.get("p1", WRAPPED)) == (2, None, b"1" * 32)
