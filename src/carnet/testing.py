"""Test helpers shipped with Carnet, for its own tests and for code built on it.

In the spirit of ``structlog.testing``: small, real implementations of Carnet's ports, so a test
need not mock them.

- :class:`FixedClock` — a clock (``Callable[[], datetime]``) that says the time it is told, and
  moves only when :meth:`FixedClock.advance` is called;
- :class:`FixedSeconds` — the same for clocks of seconds (``Callable[[], float]``, like
  ``time.monotonic``): its reading ``now`` changes only when set or advanced;
- :class:`InMemoryKeyProvider` — a :class:`carnet.services.ports.KeyProvider` whose key-encryption
  keys live in memory (AES-256-GCM envelopes of :mod:`carnet.crypto.aead` as wrapping): fast, no
  key directory, gone with the object;
- :func:`journal_entries` — the journal entries about one record, opened with its key, oldest
  first: what the patient would read, for asserting what a request left in the journal.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from carnet.crypto import aead
from carnet.domain.errors import EnvelopeError, KeyProviderError
from carnet.domain.keys import WrappedKey

if TYPE_CHECKING:
    from carnet.api.app import Services
    from carnet.domain.journal import Entry

__all__ = ["FixedClock", "FixedSeconds", "InMemoryKeyProvider", "journal_entries"]


class FixedClock:
    """A clock frozen at a given aware time; call it like ``datetime.now(UTC)``."""

    def __init__(self, now: datetime) -> None:
        """Start the clock at ``now``.

        Raises:
            ValueError: ``now`` has no time zone (Carnet's clocks are always aware).
        """
        if now.tzinfo is None:
            raise ValueError("A FixedClock needs an aware datetime, e.g. datetime(2026, 1, 1, tzinfo=UTC).")
        self.now = now

    def __call__(self) -> datetime:
        """Return the current (fixed) time."""
        return self.now

    def advance(self, delta: timedelta) -> datetime:
        """Move the clock forward by ``delta`` and return the new time."""
        self.now += delta
        return self.now


class FixedSeconds:
    """A clock of seconds frozen at a given reading; call it like ``time.monotonic()``."""

    def __init__(self, now: float = 0.0) -> None:
        """Start the clock at ``now`` seconds."""
        self.now = now

    def __call__(self) -> float:
        """Return the current (fixed) reading."""
        return self.now

    def advance(self, seconds: float) -> float:
        """Move the clock forward by ``seconds`` and return the new reading."""
        self.now += seconds
        return self.now


class InMemoryKeyProvider:
    """Key-encryption keys held in memory; wraps are AES-256-GCM envelopes bound to the KEK id."""

    name = "memory"

    def __init__(self) -> None:
        """Start with one KEK, current."""
        self._keks: dict[str, bytes] = {}
        self._current = ""
        self.new_kek()

    def current_kek_id(self) -> str:
        """Return the id of the KEK that wraps new keys."""
        return self._current

    def wrap(self, key: bytes) -> WrappedKey:
        """Wrap a 32-byte ``key`` under the current KEK.

        Raises:
            KeyProviderError: ``key`` is not 32 bytes long.
        """
        if len(key) != aead.KEY_SIZE:
            raise KeyProviderError(f"Only {aead.KEY_SIZE}-byte keys are wrapped; got {len(key)} bytes.")
        kek_id = self._current
        return WrappedKey(kek_id=kek_id, blob=aead.seal(self._keks[kek_id], key, kek_id.encode()))

    def unwrap(self, wrapped: WrappedKey) -> bytes:
        """Unwrap a key.

        Raises:
            KeyProviderError: the KEK is unknown (or retired), or the blob does not open under it.
        """
        kek = self._keks.get(wrapped.kek_id)
        if kek is None:
            raise KeyProviderError(f"Key-encryption key {wrapped.kek_id} is not held by this provider.")
        try:
            return aead.unseal(kek, wrapped.blob, wrapped.kek_id.encode())
        except EnvelopeError:
            raise KeyProviderError("Wrapped key does not unwrap under its key-encryption key.") from None

    def new_kek(self) -> str:
        """Create a KEK, make it current and return its id."""
        kek_id = f"memory:{len(self._keks) + 1:06d}"
        self._keks[kek_id] = aead.generate_key()
        self._current = kek_id
        return kek_id

    def kek_ids(self) -> list[str]:
        """List the KEKs held, oldest first."""
        return sorted(self._keks)

    def retire(self, kek_id: str) -> None:
        """Destroy a KEK that no longer wraps anything.

        Raises:
            KeyProviderError: ``kek_id`` is the current KEK.
        """
        if kek_id == self._current:
            raise KeyProviderError(f"Key-encryption key {kek_id} is current; make another current first.")
        self._keks.pop(kek_id, None)


def journal_entries(services: Services, patient_id: str) -> list[Entry]:
    """Return every journal entry about a record, opened with its key, oldest first."""
    with services.store.session() as session:
        key = services.records.vault.key(session, patient_id, services.records.clock())
        logs = services.journal.logs_of(session, patient_id)
        rows = session.journal_of(patient_id, limit=1_000_000, newest_first=False, logs=logs)
        return [services.journal.open(key, row).entry for row in rows]
