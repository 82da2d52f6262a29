"""The journal's checkpoint signer: an Ed25519 key in the key directory, apart from the data.

``journal-signer.key`` (0600) holds the C2SP signer key ``PRIVATE+KEY+name+keyid+…``;
``journal-verifier.pub`` holds the verifier key to publish. Both are created on first use.
"""

from __future__ import annotations

import os
from pathlib import Path

from carnet.audit.checkpoint import generate_signer, parse_signer_key, sign_checkpoint
from carnet.domain.errors import ConfigurationError

SIGNER_FILE = "journal-signer.key"
VERIFIER_FILE = "journal-verifier.pub"


class FileCheckpointSigner:
    """Signs checkpoints with the key of ``key_dir``, named after the journal's origin."""

    def __init__(self, key_dir: Path, name: str) -> None:
        key_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        signer_path = key_dir / SIGNER_FILE
        if not signer_path.exists():
            signer, verifier = generate_signer(name)
            try:
                fd = os.open(signer_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass  # another process created it first; read theirs
            else:
                with os.fdopen(fd, "w", encoding="ascii") as handle:
                    handle.write(signer + "\n")
                (key_dir / VERIFIER_FILE).write_text(verifier + "\n", encoding="ascii")
        self._name, self._seed = parse_signer_key(signer_path.read_text(encoding="ascii").strip())
        if self._name != name:
            raise ConfigurationError(
                f"{SIGNER_FILE} signs for {self._name!r}, not {name!r}; keep CARNET_JOURNAL_ORIGIN unchanged."
            )
        verifier_path = key_dir / VERIFIER_FILE
        self.verifier_key = verifier_path.read_text(encoding="ascii").strip()

    def sign(self, origin: str, size: int, root: bytes) -> bytes:
        """Return the signed checkpoint note of ``origin`` at ``size`` with ``root``."""
        return sign_checkpoint(origin, size, root, self._seed, self._name)
