"""The wire format of sealed values, and the associated data that binds them.

A sealed value is::

    version (1 byte, 0x01) | salt (16 bytes) | nonce (12 bytes) | ciphertext | tag (16 bytes)

The data key is HKDF-SHA256(patient key, salt, info=b"carnet/seal/v1"); the cipher is
AES-256-GCM. The associated data is :func:`associated_data` of the value's context, so a
ciphertext copied to another row (other patient, type, id or version) fails to open.
This module is pure: it lays bytes out and checks lengths; ``carnet.crypto`` does the
cryptography.
"""

from __future__ import annotations

from dataclasses import dataclass

from carnet.domain.errors import EnvelopeError

FORMAT_VERSION = 1
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

    def to_bytes(self) -> bytes:
        """Lay the envelope out in its wire format."""
        return bytes([FORMAT_VERSION]) + self.salt + self.nonce + self.ciphertext

    @classmethod
    def from_bytes(cls, data: bytes) -> Envelope:
        """Parse a sealed value.

        Raises:
            EnvelopeError: unknown version or truncated value (the same opaque error as a bad tag).
        """
        if len(data) < HEADER_SIZE + TAG_SIZE or data[0] != FORMAT_VERSION:
            raise EnvelopeError()
        return cls(
            salt=data[1 : 1 + SALT_SIZE],
            nonce=data[1 + SALT_SIZE : HEADER_SIZE],
            ciphertext=data[HEADER_SIZE:],
        )


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
