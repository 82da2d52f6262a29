"""The embedded development token issuer's Ed25519 key, kept in the key directory."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

DEV_ISSUER_FILE = "dev-issuer.pem"


def dev_issuer_keys(key_dir: Path) -> tuple[bytes, bytes]:
    """Return (private PEM, public PEM) of the development issuer, creating it on first use."""
    key_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = key_dir / DEV_ISSUER_FILE
    if not path.exists():
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process created it first; read theirs
        else:
            with os.fdopen(fd, "wb") as handle:
                handle.write(pem)
    private_pem = path.read_bytes()
    key = serialization.load_pem_private_key(private_pem, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("dev-issuer.pem is not an Ed25519 key")
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private_pem, public_pem
