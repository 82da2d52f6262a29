"""The wire format of sealed values, and the associated data that binds them.

A sealed value is::

    version (1 byte) | salt (16 bytes) | nonce (12 bytes) | ciphertext | tag (16 bytes)

The data key is HKDF-SHA256(patient key, salt, info=b"carnet/seal/v<version>"); the cipher is
AES-256-GCM. The associated data is :func:`associated_data` of the value's context, so a
ciphertext copied to another row (other patient, type, id or version) fails to open.

- Version 2 (written since 2026-12): the plaintext is padded before encryption to a size
  bucket (:func:`padded_size`): ``plaintext | 0x80 | 0x00…``, so a ciphertext's length tells
  only the bucket, not the exact size.
- Version 1 (older values, still opened): the plaintext unpadded.

The version byte is bound through the HKDF info: a value relabelled with another version
derives another key and fails to open.
This module is pure: it lays bytes out and checks lengths; ``carnet.crypto`` does the
cryptography.
"""

from __future__ import annotations

from dataclasses import dataclass

from carnet.domain.errors import EnvelopeError

FORMAT_VERSION = 2
LEGACY_VERSION = 1
VERSIONS = frozenset({LEGACY_VERSION, FORMAT_VERSION})
MIN_BUCKET = 256
SALT_SIZE = 16
NONCE_SIZE = 12
TAG_SIZE = 16
HEADER_SIZE = 1 + SALT_SIZE + NONCE_SIZE


@dataclass(frozen=True, slots=True, kw_only=True)
class Envelope:
    """The parts of one sealed value."""

    salt: bytes
    nonce: bytes
    ciphertext: bytes  # includes the 16-byte GCM tag
    version: int = FORMAT_VERSION

    def to_bytes(self) -> bytes:
        """Lay the envelope out in its wire format."""
        return bytes([self.version]) + self.salt + self.nonce + self.ciphertext

    @classmethod
    def from_bytes(cls, data: bytes) -> Envelope:
        """Parse a sealed value.

        Raises:
            EnvelopeError: unknown version or truncated value (the same opaque error as a bad tag).
        """
        if len(data) < HEADER_SIZE + TAG_SIZE or data[0] not in VERSIONS:
            raise EnvelopeError()
        return cls(
            salt=data[1 : 1 + SALT_SIZE],
            nonce=data[1 + SALT_SIZE : HEADER_SIZE],
            ciphertext=data[HEADER_SIZE:],
            version=data[0],
        )


def padded_size(length: int) -> int:
    """Return the bucket a padded plaintext of ``length`` bytes (marker included) fills.

    Padmé (Nikitin et al., "Reducing metadata leakage from encrypted files", PETS 2019) above a
    floor of 256 bytes: a length in [2^E, 2^(E+1)) is rounded up to a multiple of
    2^(E - bit_length(E)), so at most ≈ 2·E sizes remain in each power of two (a leak of
    O(log log n) bits instead of O(log n)) for at most 12 % more bytes.
    """
    if length <= MIN_BUCKET:
        return MIN_BUCKET
    exponent = length.bit_length() - 1
    low_bits = exponent - exponent.bit_length()
    mask = (1 << low_bits) - 1
    return (length + mask) & ~mask


def pad(plaintext: bytes) -> bytes:
    """Pad to the bucket: ``plaintext | 0x80 | 0x00…`` (ISO/IEC 7816-4)."""
    size = padded_size(len(plaintext) + 1)
    return plaintext + b"\x80" + bytes(size - len(plaintext) - 1)


def unpad(padded: bytes) -> bytes:
    """Remove the padding added by :func:`pad`.

    Raises:
        EnvelopeError: no padding marker (never happens to an authenticated value).
    """
    stripped = padded.rstrip(b"\x00")
    if not stripped or stripped[-1] != 0x80:
        raise EnvelopeError()
    return stripped[:-1]


def associated_data(*parts: str | int) -> bytes:
    """Encode a value's context unambiguously (length-prefixed UTF-8 fields).

    ``associated_data("p1", "Observation", "o1", 3)`` binds a resource version; a document
    content uses ``("p1", "content", sha256)``.
    """
    out = bytearray(b"carnet/ad/v1")
    for part in parts:
        raw = str(part).encode("utf-8")
        out += len(raw).to_bytes(4, "big") + raw
    return bytes(out)
