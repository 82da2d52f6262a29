"""Seal and open values with AES-256-GCM under a key derived by HKDF (see ``domain.envelope``)."""

from __future__ import annotations

import hmac
import os
from collections.abc import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from carnet.domain.envelope import FORMAT_VERSION, LEGACY_VERSION, NONCE_SIZE, SALT_SIZE, Envelope, pad, unpad
from carnet.domain.errors import EnvelopeError

KEY_SIZE = 32
_SEAL_INFO = {LEGACY_VERSION: b"carnet/seal/v1", FORMAT_VERSION: b"carnet/seal/v2"}

Random = Callable[[int], bytes]


def generate_key(random: Random = os.urandom) -> bytes:
    """Return a fresh 256-bit key."""
    return random(KEY_SIZE)


def _derive(key: bytes, salt: bytes, info: bytes) -> bytes:
    if len(key) != KEY_SIZE:
        raise EnvelopeError()
    return HKDF(algorithm=hashes.SHA256(), length=KEY_SIZE, salt=salt, info=info).derive(key)


def seal(key: bytes, plaintext: bytes, aad: bytes, *, random: Random = os.urandom) -> bytes:
    """Seal ``plaintext`` (padded to its size bucket) under ``key`` bound to ``aad``; return the
    envelope bytes (format version 2, see ``domain.envelope``)."""
    salt = random(SALT_SIZE)
    nonce = random(NONCE_SIZE)
    data_key = _derive(key, salt, _SEAL_INFO[FORMAT_VERSION])
    ciphertext = AESGCM(data_key).encrypt(nonce, pad(plaintext), aad)
    return Envelope(salt=salt, nonce=nonce, ciphertext=ciphertext).to_bytes()


def unseal(key: bytes, sealed: bytes, aad: bytes) -> bytes:
    """Open an envelope made by :func:`seal` (format version 2, or version 1 from before padding).

    Raises:
        EnvelopeError: for every failure (wrong key, tampered bytes, other context, bad format).
    """
    envelope = Envelope.from_bytes(sealed)
    if len(envelope.nonce) != NONCE_SIZE:  # AESGCM accepts other sizes; we never do.
        raise EnvelopeError()
    data_key = _derive(key, envelope.salt, _SEAL_INFO[envelope.version])
    try:
        plaintext = AESGCM(data_key).decrypt(envelope.nonce, envelope.ciphertext, aad)
    except (InvalidTag, ValueError, OverflowError):
        raise EnvelopeError() from None
    return plaintext if envelope.version == LEGACY_VERSION else unpad(plaintext)


def derive_subkey(key: bytes, purpose: str) -> bytes:
    """Derive a purpose-bound 256-bit subkey (e.g. the patient's blind-index key)."""
    return _derive(key, b"", b"carnet/subkey/" + purpose.encode())


def blind_index(key: bytes, *parts: str) -> bytes:
    """Return a 16-byte keyed hash (HMAC-SHA256) of ``parts``, for equality search."""
    message = b"\x1f".join(p.encode("utf-8") for p in parts)
    return hmac.digest(key, message, "sha256")[:16]


class AESGCMCipher:
    """The ``Cipher`` port implemented with the functions above."""

    def generate_key(self) -> bytes:
        """Return a fresh 256-bit key."""
        return generate_key()

    def seal(self, key: bytes, plaintext: bytes, aad: bytes) -> bytes:
        """Seal ``plaintext`` bound to ``aad``."""
        return seal(key, plaintext, aad)

    def unseal(self, key: bytes, sealed: bytes, aad: bytes) -> bytes:
        """Open a sealed value."""
        return unseal(key, sealed, aad)

    def derive_subkey(self, key: bytes, purpose: str) -> bytes:
        """Derive a purpose-bound subkey."""
        return derive_subkey(key, purpose)

    def blind_index(self, key: bytes, *parts: str) -> bytes:
        """Return a keyed hash of ``parts``."""
        return blind_index(key, *parts)
