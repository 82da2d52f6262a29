"""Key provider keeping key-encryption keys (KEKs) in files of a separate directory.

Layout of the directory (0700, files 0600)::

    kek-000001.key   32 raw bytes
    kek-000002.key
    current          the id of the KEK used for new wraps, e.g. "local:000002"

Patient keys are wrapped with AES key wrap (RFC 3394).
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from carnet.crypto.aead import KEY_SIZE, generate_key
from carnet.domain.errors import ConfigurationError, KeyProviderError
from carnet.domain.keys import WrappedKey
from carnet.durable import flush_directory

_PREFIX = "local:"


def _write_durably(path: Path, data: bytes, flag: int) -> None:
    """Write ``data`` to a new 0600 file and fsync it (``flag``: ``O_EXCL`` or ``O_TRUNC``)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | flag, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(path, 0o600)  # O_CREAT's mode does not apply to a file that already existed.


class LocalKeyProvider:
    """KEKs in a local directory, kept apart from the data directory."""

    name = "local"

    def __init__(self, directory: Path) -> None:
        self._dir = directory
        self._cache: dict[str, bytes] = {}
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(directory, 0o700)
        if not (directory / "current").exists():
            self.new_kek()

    def current_kek_id(self) -> str:
        """Return the id of the KEK that wraps new keys."""
        return (self._dir / "current").read_text().strip()

    def _path(self, kek_id: str) -> Path:
        if not kek_id.startswith(_PREFIX) or not kek_id[len(_PREFIX) :].isdigit():
            raise KeyProviderError(f"Key-encryption key id {kek_id!r} is not a local key id.")
        return self._dir / f"kek-{kek_id[len(_PREFIX) :]}.key"

    def _kek(self, kek_id: str) -> bytes:
        if kek_id not in self._cache:
            path = self._path(kek_id)
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                raise KeyProviderError(
                    f"Key-encryption key {kek_id} is missing from the key directory."
                ) from None
            if len(data) != KEY_SIZE:
                raise ConfigurationError(f"Key file {path.name} is damaged; restore it from the key backup.")
            self._cache[kek_id] = data
        return self._cache[kek_id]

    def wrap(self, key: bytes) -> WrappedKey:
        """Wrap ``key`` under the current KEK."""
        if len(key) != KEY_SIZE:
            raise KeyProviderError(f"Only {KEY_SIZE}-byte keys are wrapped; got {len(key)} bytes.")
        kek_id = self.current_kek_id()
        return WrappedKey(kek_id=kek_id, blob=aes_key_wrap(self._kek(kek_id), key))

    def unwrap(self, wrapped: WrappedKey) -> bytes:
        """Unwrap a key.

        Raises:
            KeyProviderError: unknown KEK or a blob that does not unwrap.
        """
        try:
            key = aes_key_unwrap(self._kek(wrapped.kek_id), wrapped.blob)
        except (InvalidUnwrap, ValueError):
            raise KeyProviderError("Wrapped key does not unwrap under its key-encryption key.") from None
        if len(key) != KEY_SIZE:
            raise KeyProviderError("Wrapped key does not unwrap under its key-encryption key.")
        return key

    def new_kek(self) -> str:
        """Create a new KEK, make it current and return its id."""
        existing = [int(p.stem.split("-")[1]) for p in self._dir.glob("kek-*.key")]
        number = max(existing, default=0) + 1
        path = self._dir / f"kek-{number:06d}.key"
        _write_durably(path, generate_key(), os.O_EXCL)
        # The KEK's directory entry must reach the disk before any key is wrapped under it:
        # otherwise a power cut could drop the file and with it every key wrapped meanwhile.
        flush_directory(self._dir)
        kek_id = f"{_PREFIX}{number:06d}"
        tmp = self._dir / "current.tmp"
        _write_durably(tmp, kek_id.encode(), os.O_TRUNC)
        tmp.replace(self._dir / "current")
        flush_directory(self._dir)
        return kek_id

    def kek_ids(self) -> list[str]:
        """List every KEK the provider holds."""
        return sorted(f"{_PREFIX}{p.stem.split('-')[1]}" for p in self._dir.glob("kek-*.key"))

    def retire(self, kek_id: str) -> None:
        """Destroy an old KEK (after no key is wrapped under it any more)."""
        if kek_id == self.current_kek_id():
            raise KeyProviderError("The current key-encryption key cannot be retired.")
        self._cache.pop(kek_id, None)
        self._path(kek_id).unlink(missing_ok=True)
