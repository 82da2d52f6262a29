"""X.509 certificates as Carnet names them: by the SHA-256 of their DER (a feed's MLLP client certificate)."""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import hashes

__all__ = ["certificate_fingerprint"]


def certificate_fingerprint(pem: bytes) -> str:
    """The SHA-256 (lower-case hex) of a PEM certificate's DER, as the MLLP listener sees its peer's.

    Raises:
        ValueError: not a PEM certificate.
    """
    return x509.load_pem_x509_certificate(pem).fingerprint(hashes.SHA256()).hex()
