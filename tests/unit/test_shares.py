"""The erasure share ledger: durable shares, destroyed in place, shared between processes."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from carnet.crypto.shares import ShareLedger
from carnet.domain.errors import KeyProviderError


def test_share_round_trip_and_destroy(tmp_path: Path) -> None:
    """A new share reads back from another ledger on the same directory until it is destroyed."""
    ledger = ShareLedger(tmp_path / "shares")
    made = [ledger.new() for _ in range(50)]
    other = ShareLedger(tmp_path / "shares")
    assert all(other.get(share_id) == share for share_id, share in made)
    victim_id, _victim = made[17]
    assert other.destroy(victim_id)
    assert ledger.get(victim_id) is None
    assert not ledger.destroy(victim_id)
    assert all(ledger.get(share_id) == share for share_id, share in made if share_id != victim_id)
    assert ledger.count() == 49


def test_destroyed_share_leaves_no_bytes_in_the_file(tmp_path: Path) -> None:
    """Destroying overwrites the share's bytes in the shard file (no copy left beside it)."""
    ledger = ShareLedger(tmp_path / "shares")
    share_id, share = ledger.new()
    shard = next((tmp_path / "shares").glob("*.shares"))
    assert share in shard.read_bytes()
    ledger.destroy(share_id)
    data = shard.read_bytes()
    assert share not in data
    assert share_id not in data


def test_torn_tail_is_ignored_then_cut(tmp_path: Path) -> None:
    """A partial entry left by a crash is never read as a share and the next append cuts it off."""
    ids = iter([bytes([0xAB]) + bytes(15), bytes([0xAB]) + b"\x01" * 15])
    ledger = ShareLedger(tmp_path / "shares", random=lambda n: next(ids) if n == 16 else b"\x07" * n)
    first_id, _ = ledger.new()
    shard = next((tmp_path / "shares").glob("*.shares"))
    with shard.open("ab") as handle:
        handle.write(b"\xab" * 20)  # a torn append
    assert ledger.get(first_id) == b"\x07" * 32
    second_id, _ = ledger.new()
    assert shard.stat().st_size == 2 * 48
    assert ledger.get(second_id) == b"\x07" * 32


def test_files_are_private(tmp_path: Path) -> None:
    """The ledger directory is 0700 and its shard files 0600."""
    ledger = ShareLedger(tmp_path / "shares")
    ledger.new()
    assert stat.S_IMODE(os.stat(tmp_path / "shares").st_mode) == 0o700
    for path in (tmp_path / "shares").glob("*.shares"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_bad_share_id_is_refused(tmp_path: Path) -> None:
    """A share id that is not 16 bytes, or all zeros (a destroyed slot), is refused."""
    ledger = ShareLedger(tmp_path / "shares")
    for bad in (b"", b"\x01" * 15, bytes(16)):
        with pytest.raises(KeyProviderError):
            ledger.get(bad)
