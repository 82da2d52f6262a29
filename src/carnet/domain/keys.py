"""Values describing wrapped keys (the key material itself never lives in the domain)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class WrappedKey:
    """A patient key wrapped by a key-encryption key (KEK) of a key provider."""

    kek_id: str
    blob: bytes
    #: The record's erasure share (``crypto.shares``): the blob then wraps ``key xor share``.
    #: None for a key wrapped whole (made before erasure shares; ``carnet keys rotate`` splits it).
    share_id: bytes | None = None
