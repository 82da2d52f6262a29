"""LocalKeyProvider: KEK files in a private directory, rotation and retirement."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from carnet.crypto.local_provider import LocalKeyProvider
from carnet.domain.errors import ConfigurationError, KeyProviderError
from carnet.domain.keys import WrappedKey


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def key_dir(tmp_path: Path) -> Path:
    """A key directory that does not exist yet."""
    return tmp_path / "keys"


@pytest.fixture
def provider(key_dir: Path) -> LocalKeyProvider:
    """A provider on a fresh key directory."""
    return LocalKeyProvider(key_dir)


def test_first_kek_is_created(provider: LocalKeyProvider, key_dir: Path) -> None:
    """A new directory gets KEK local:000001, made current."""
    assert (provider.kek_ids(), provider.current_kek_id()) == (["local:000001"], "local:000001")
    assert sorted(p.name for p in key_dir.iterdir()) == ["current", "kek-000001.key"]
    assert len((key_dir / "kek-000001.key").read_bytes()) == 32


def test_directory_is_0700_and_files_0600(provider: LocalKeyProvider, key_dir: Path) -> None:
    """The key directory is private to its owner and every file in it is 0600."""
    provider.new_kek()
    assert _mode(key_dir) == 0o700
    assert {p.name: _mode(p) for p in key_dir.iterdir()} == {
        "current": 0o600,
        "kek-000001.key": 0o600,
        "kek-000002.key": 0o600,
    }


def test_modes_hold_under_a_permissive_umask(key_dir: Path) -> None:
    """Even with umask 000 the directory is created 0700 and the KEK file 0600."""
    previous = os.umask(0)
    try:
        LocalKeyProvider(key_dir)
    finally:
        os.umask(previous)
    assert (_mode(key_dir), _mode(key_dir / "kek-000001.key"), _mode(key_dir / "current")) == (
        0o700,
        0o600,
        0o600,
    )


def test_existing_open_directory_is_tightened(key_dir: Path) -> None:
    """A pre-existing world-readable key directory is changed to 0700."""
    key_dir.mkdir(mode=0o755)
    os.chmod(key_dir, 0o755)  # noqa: S103 - the loose mode is what the test starts from.
    LocalKeyProvider(key_dir)
    assert _mode(key_dir) == 0o700


def test_wrap_unwrap_round_trip(provider: LocalKeyProvider) -> None:
    """A wrapped key unwraps to the same 32 bytes; the blob is an RFC 3394 wrap (40 bytes)."""
    key = os.urandom(32)
    wrapped = provider.wrap(key)
    assert (wrapped.kek_id, len(wrapped.blob)) == ("local:000001", 40)
    assert provider.unwrap(wrapped) == key


def test_reopened_directory_keeps_its_keys(provider: LocalKeyProvider, key_dir: Path) -> None:
    """A provider opened later on the same directory unwraps earlier keys and creates no KEK."""
    key = os.urandom(32)
    wrapped = provider.wrap(key)
    reopened = LocalKeyProvider(key_dir)
    assert (reopened.kek_ids(), reopened.unwrap(wrapped)) == (["local:000001"], key)


def test_rotate_with_new_kek(provider: LocalKeyProvider) -> None:
    """After new_kek, new wraps use the new KEK and keys wrapped earlier still unwrap."""
    old_key, new_key = os.urandom(32), os.urandom(32)
    old = provider.wrap(old_key)
    assert provider.new_kek() == "local:000002"
    new = provider.wrap(new_key)
    assert (provider.current_kek_id(), new.kek_id) == ("local:000002", "local:000002")
    assert provider.kek_ids() == ["local:000001", "local:000002"]
    assert (provider.unwrap(old), provider.unwrap(new)) == (old_key, new_key)
    rewrapped = provider.wrap(provider.unwrap(old))
    assert (rewrapped.kek_id, provider.unwrap(rewrapped)) == ("local:000002", old_key)


def test_retire_makes_old_wrapped_keys_fail(provider: LocalKeyProvider, key_dir: Path) -> None:
    """A retired KEK's file is deleted and keys wrapped under it no longer unwrap."""
    old = provider.wrap(os.urandom(32))
    provider.new_kek()
    provider.retire("local:000001")
    assert provider.kek_ids() == ["local:000002"]
    assert not (key_dir / "kek-000001.key").exists()
    with pytest.raises(KeyProviderError):
        provider.unwrap(old)


def test_retired_kek_number_is_not_reused(provider: LocalKeyProvider) -> None:
    """After retiring an old KEK, the next KEK takes a new number."""
    provider.new_kek()
    provider.retire("local:000001")
    assert provider.new_kek() == "local:000003"


def test_current_kek_cannot_be_retired(provider: LocalKeyProvider) -> None:
    """Retiring the current KEK raises KeyProviderError and keeps it."""
    with pytest.raises(KeyProviderError):
        provider.retire("local:000001")
    assert provider.kek_ids() == ["local:000001"]


@pytest.mark.parametrize("kek_id", ["local:000009", "pkcs11:000001", "local:", "local:../current", "", "kek"])
def test_unknown_kek_id_raises(provider: LocalKeyProvider, kek_id: str) -> None:
    """Unwrapping under a KEK id the directory does not hold raises KeyProviderError."""
    blob = provider.wrap(os.urandom(32)).blob
    with pytest.raises(KeyProviderError):
        provider.unwrap(WrappedKey(kek_id=kek_id, blob=blob))


@pytest.mark.parametrize(
    "blob",
    [
        pytest.param(lambda blob: bytes([blob[0] ^ 1]) + blob[1:], id="flipped-first-byte"),
        pytest.param(lambda blob: blob[:-1] + bytes([blob[-1] ^ 1]), id="flipped-last-byte"),
        pytest.param(lambda blob: blob[:-8], id="truncated"),
        pytest.param(lambda blob: blob[:-3], id="not-a-multiple-of-8"),
        pytest.param(lambda blob: b"", id="empty"),
    ],
)
def test_tampered_blob_raises(provider: LocalKeyProvider, blob: Callable[[bytes], bytes]) -> None:
    """A tampered wrapped key raises KeyProviderError, never another exception."""
    wrapped = provider.wrap(os.urandom(32))
    with pytest.raises(KeyProviderError):
        provider.unwrap(WrappedKey(kek_id=wrapped.kek_id, blob=blob(wrapped.blob)))


def test_damaged_key_file_is_a_configuration_error(provider: LocalKeyProvider, key_dir: Path) -> None:
    """A KEK file that is not 32 bytes stops with ConfigurationError instead of unwrapping garbage."""
    wrapped = provider.wrap(os.urandom(32))
    (key_dir / "kek-000001.key").write_bytes(b"short")
    with pytest.raises(ConfigurationError):
        LocalKeyProvider(key_dir).unwrap(wrapped)
