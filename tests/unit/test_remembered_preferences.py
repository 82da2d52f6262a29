"""The preferences a process remembers for notices: what a change does to them, and for how long."""

from __future__ import annotations

from carnet.services.notifications import Preferences, RememberedPreferences
from carnet.testing import FixedSeconds

OFF = Preferences(new_document=False)


def test_a_read_is_remembered_until_its_record_is_forgotten() -> None:
    """Preferences put after a read are returned, and no longer once the record is forgotten."""
    remembered = RememberedPreferences(clock=FixedSeconds())
    remembered.put("p1", OFF, remembered.start())

    assert remembered.get("p1") == OFF
    remembered.forget("p1")
    assert remembered.get("p1") is None


def test_a_read_that_overlaps_a_change_is_not_remembered() -> None:
    """Preferences read before a change ended are not kept: the next notice reads the new ones."""
    remembered = RememberedPreferences(clock=FixedSeconds())
    started = remembered.start()
    remembered.forget("p1")  # another thread changes the preferences while the read is under way
    remembered.put("p1", Preferences(), started)

    assert remembered.get("p1") is None


def test_a_change_made_elsewhere_is_followed_within_the_ttl() -> None:
    """A process that was not told of a change reads the record again once ttl seconds have passed."""
    clock = FixedSeconds()
    remembered = RememberedPreferences(ttl=2.0, clock=clock)
    remembered.put("p1", Preferences(), remembered.start())

    clock.advance(1.9)
    assert remembered.get("p1") == Preferences()
    clock.advance(0.1)
    assert remembered.get("p1") is None
