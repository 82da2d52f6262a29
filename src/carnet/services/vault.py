"""Patient keys: create, unwrap, seal and open a record's values, blind-index them, shred, rotate.

The store holds a patient key ``K`` only as ``wrap_KEK(K xor S)``: ``S`` is the record's erasure
share, kept by ``ErasureShares`` in the key directory and destroyed when the record is shredded,
so that a database backup taken before the shred does not open the record with the current keys
(docs/security.md). A key stored before erasure shares existed is wrapped whole (no share id)
until ``carnet keys rotate`` splits it. Two reserved records
use the same machinery: ``_directory`` (shared reference data) and ``_index`` (the key of the
global identifier index used by ``Patient?identifier=``). Reserved ids start with ``_``,
which no FHIR id can.

Unwrapping a record's key (reading its erasure share from the key directory, unwrapping under
the KEK) cost ~15 % of a single read. :class:`OpenedKeys` keeps the keys unwrapped lately, each
with the exact stored wrapped key it came from. Every use still reads the record's key row in the
caller's transaction, and a remembered key is served only when that row holds **the same**
wrapped key: a shred (the row loses its wrapped key when the erasure commits, in any process) or
a rotation (a new wrapped key) takes effect at the next request. Entries also expire after
``ttl`` seconds (60 by default) and the table is bounded (least recently used dropped first).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import datetime

from carnet.domain.envelope import associated_data
from carnet.domain.errors import RecordShredded
from carnet.domain.keys import WrappedKey
from carnet.services.ports import Cipher, ErasureShares, KeyProvider, StoreSession
from carnet.services.ttl_cache import TTLCache

DIRECTORY = "_directory"
INDEX = "_index"


def xor(left: bytes, right: bytes) -> bytes:
    """Combine a key and its erasure share byte by byte (both 32 bytes)."""
    if len(left) != len(right):
        raise ValueError("A key and its share have the same length.")
    return bytes(a ^ b for a, b in zip(left, right, strict=True))


def split_and_wrap(keys: KeyProvider, shares: ErasureShares, key: bytes) -> WrappedKey:
    """Wrap ``key`` split with a new durable erasure share: ``wrap_KEK(key xor share)``."""
    share_id, share = shares.new()
    return replace(keys.wrap(xor(key, share)), share_id=share_id)


def unwrap_whole(keys: KeyProvider, shares: ErasureShares, wrapped: WrappedKey) -> bytes:
    """Unwrap a stored key and recombine it with its share.

    Raises:
        RecordShredded: the share was destroyed (a database restored from before the shred).
        KeyProviderError: the KEK is missing or the blob does not unwrap.
    """
    if wrapped.share_id is None:
        return keys.unwrap(wrapped)
    share = shares.get(wrapped.share_id)
    if share is None:
        raise RecordShredded("This record was erased: its key was destroyed.")
    return xor(keys.unwrap(wrapped), share)


class OpenedKeys:
    """Record keys unwrapped lately, each with the wrapped key it came from; bounded, thread-safe."""

    def __init__(
        self, *, ttl: float = 60.0, size: int = 10_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._cache: TTLCache[str, tuple[WrappedKey, bytes]] = TTLCache(ttl=ttl, size=size, clock=clock)

    def get(self, patient_id: str, wrapped: WrappedKey) -> bytes | None:
        """The key unwrapped from exactly ``wrapped`` within ``ttl``, else None."""
        found = self._cache.get(patient_id, is_current=lambda remembered: remembered[0] == wrapped)
        return None if found is None else found[1]

    def put(self, patient_id: str, wrapped: WrappedKey, key: bytes) -> None:
        """Remember the key unwrapped from ``wrapped``."""
        self._cache.put(patient_id, (wrapped, key))

    def __len__(self) -> int:
        """How many keys are remembered."""
        return len(self._cache)


class Vault:
    """Seals and opens values of one record with that record's key."""

    def __init__(
        self,
        *,
        keys: KeyProvider,
        shares: ErasureShares,
        cipher: Cipher,
        opened: OpenedKeys | None = None,
    ) -> None:
        self.keys = keys
        self.shares = shares
        self.cipher = cipher
        # The reserved records' keys are never shredded, so they are unwrapped once per process.
        self._reserved: dict[str, bytes] = {}
        #: The other records' keys unwrapped lately, served only against the same stored row.
        self.opened = opened if opened is not None else OpenedKeys()

    def ensure_reserved(self, session: StoreSession, now: datetime) -> None:
        """Create the reserved records' keys if missing (at start-up, before concurrent requests)."""
        for reserved in (DIRECTORY, INDEX):
            if session.get_key(reserved) is None:
                self.create_key(session, reserved, now)

    def create_key(self, session: StoreSession, patient_id: str, now: datetime) -> bytes:
        """Create, wrap and store a new record key; return it."""
        key, wrapped = self.new_key()
        self.store_key(session, patient_id, wrapped, now)
        return key

    def new_key(self) -> tuple[bytes, WrappedKey]:
        """Create a new record key and wrap it (its erasure share made durable); store nothing else."""
        key = self.cipher.generate_key()
        return key, split_and_wrap(self.keys, self.shares, key)

    def store_key(self, session: StoreSession, patient_id: str, wrapped: WrappedKey, now: datetime) -> None:
        """Store a new record's wrapped key (from :meth:`new_key`) in ``session``."""
        session.put_key(patient_id, wrapped, now)

    def key(self, session: StoreSession, patient_id: str, now: datetime) -> bytes:
        """Return a record's key, creating the reserved records' keys on first use.

        Raises:
            RecordShredded: the key was destroyed, or the record is unknown.
        """
        if patient_id in self._reserved:
            return self._reserved[patient_id]
        stored = session.get_key(patient_id)
        if stored is None:
            if patient_id in (DIRECTORY, INDEX):
                # Not cached yet: the creating transaction may still roll back.
                return self.create_key(session, patient_id, now)
            raise RecordShredded("This record does not exist or was erased.")
        if stored.wrapped is None:
            raise RecordShredded("This record was erased: its key was destroyed.")
        key = self.opened.get(patient_id, stored.wrapped)
        if key is not None:
            return key
        key = unwrap_whole(self.keys, self.shares, stored.wrapped)
        if patient_id in (DIRECTORY, INDEX):
            self._reserved[patient_id] = key
        else:
            self.opened.put(patient_id, stored.wrapped, key)
        return key

    def seal_resource(
        self, key: bytes, patient_id: str, resource_type: str, resource_id: str, version: int, data: bytes
    ) -> bytes:
        """Seal one resource version, bound to its place."""
        return self.cipher.seal(key, data, associated_data(patient_id, resource_type, resource_id, version))

    def open_resource(
        self, key: bytes, patient_id: str, resource_type: str, resource_id: str, version: int, sealed: bytes
    ) -> bytes:
        """Open one resource version; raise ``EnvelopeError`` if it does not open in this place."""
        return self.cipher.unseal(
            key, sealed, associated_data(patient_id, resource_type, resource_id, version)
        )

    def token_hashes(
        self, key: bytes, entries: Iterable[tuple[str, tuple[str, ...]]]
    ) -> set[tuple[str, bytes]]:
        """Blind-index ``(param, key parts)`` pairs under the record's index subkey."""
        return self.hashes_under(self.index_key(key), entries)

    def index_key(self, key: bytes) -> bytes:
        """The record's blind-index subkey (a call that writes many resources derives it once)."""
        return self.cipher.derive_subkey(key, "blind-index")

    def hashes_under(
        self, index_key: bytes, entries: Iterable[tuple[str, tuple[str, ...]]]
    ) -> set[tuple[str, bytes]]:
        """Blind-index ``(param, key parts)`` pairs under an :meth:`index_key`."""
        blind_index = self.cipher.blind_index
        return {(param, blind_index(index_key, param, *parts)) for param, parts in entries}

    def token_hash(self, key: bytes, param: str, parts: tuple[str, ...]) -> bytes:
        """Blind-index one search value."""
        return self.cipher.blind_index(self.cipher.derive_subkey(key, "blind-index"), param, *parts)

    def identity_hash(self, session: StoreSession, *parts: str, now: datetime) -> bytes:
        """Return the global keyed hash of an identifier token key (for ``Patient?identifier=``)."""
        index_key = self.key(session, INDEX, now)
        return self.cipher.blind_index(index_key, "identifier", *parts)
