"""Witness cosignatures of checkpoints (C2SP ``tlog-cosignature``, Ed25519 ``cosignature/v1``).

A witness that checked a checkpoint to be consistent with every earlier one it saw of the same
log adds a signature line to the checkpoint's signed note (https://c2sp.org/signed-note)::

    — <witness name> base64(key ID (4) || timestamp (u64, big-endian) || Ed25519 signature (64))

The key ID is ``SHA-256(name || 0x0A || 0x04 || 32-byte public key)[:4]``: signature type 0x04
keeps a cosigner key apart from a log key. The signed message is two lines and the whole
checkpoint text::

    cosignature/v1
    time <timestamp, POSIX seconds, decimal>
    <origin>
    <size>
    <root hash>

It states that, at that time, this was the largest consistent tree the witness had seen of that
log. Keys are written like checkpoint keys, with type 0x04::

    verifier key  <name>+<key ID, 8 hex digits>+<base64(0x04 || 32-byte public key)>
    signer key    PRIVATE+KEY+<name>+<key ID, 8 hex digits>+<base64(0x04 || 32-byte seed)>
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from carnet.audit.checkpoint import (
    KEY_ID_SIZE,
    SIGNATURE_PREFIX,
    SIGNATURE_SIZE,
    SIGNER_PREFIX,
    Checkpoint,
    Random,
    b64encode_text,
    check_key_name,
    ed25519_public_key,
    note_key_id,
    parse_body,
    parse_key,
    split_note,
)
from carnet.domain.errors import AuditChainError

__all__ = [
    "COSIGNATURE_TYPE",
    "Cosignature",
    "cosign",
    "cosigner_name",
    "generate_cosigner",
    "open_cosignature",
    "parse_cosigner_key",
]

#: Signed-note signature type of an Ed25519 cosignature/v1.
COSIGNATURE_TYPE = 0x04
_TIMESTAMP = struct.Struct(">Q")
_MAX_TIMESTAMP = 2**63 - 1


@dataclass(frozen=True, slots=True, kw_only=True)
class Cosignature:
    """A verified cosignature: ``witness`` saw ``checkpoint`` as its latest view at ``timestamp``."""

    witness: str
    timestamp: int
    checkpoint: Checkpoint
    line: str


def generate_cosigner(name: str, *, random: Random = os.urandom) -> tuple[str, str]:
    """Create a witness's Ed25519 key for ``name``; return ``(signer key, verifier key)`` strings.

    Raises:
        AuditChainError: if ``name`` is not a valid note key name.
    """
    check_key_name(name)
    seed = random(32)
    public = ed25519_public_key(seed)
    key_id = note_key_id(name, public, COSIGNATURE_TYPE).hex()
    kind = bytes([COSIGNATURE_TYPE])
    return (
        f"{SIGNER_PREFIX}{name}+{key_id}+{b64encode_text(kind + seed)}",
        f"{name}+{key_id}+{b64encode_text(kind + public)}",
    )


def parse_cosigner_key(signer_key: str) -> tuple[str, bytes]:
    """Return the ``(name, 32-byte seed)`` of a witness signer key from :func:`generate_cosigner`.

    Raises:
        AuditChainError: the key is malformed or its key ID does not match.
    """
    if not signer_key.startswith(SIGNER_PREFIX):
        raise AuditChainError("Witness key does not start with PRIVATE+KEY+; run `carnet witness init`.")
    name, key_id, seed = parse_key(signer_key[len(SIGNER_PREFIX) :], "Witness key", COSIGNATURE_TYPE)
    if len(seed) != 32 or note_key_id(name, ed25519_public_key(seed), COSIGNATURE_TYPE) != key_id:
        raise AuditChainError("Witness key is corrupt (seed or key ID); run `carnet witness init` again.")
    return name, seed


def cosigner_name(verifier_key: str) -> str:
    """Return the name of a witness verifier key.

    Raises:
        AuditChainError: the key is not a cosigner verifier key.
    """
    return parse_key(verifier_key, "Witness verifier key", COSIGNATURE_TYPE)[0]


def cosign(text: str, seed: bytes, name: str, timestamp: int) -> str:
    """Return the cosignature line (ending in a newline) of the checkpoint text ``text``.

    Raises:
        AuditChainError: the text is not a checkpoint or the timestamp is out of range.
    """
    parse_body(text)
    if not 0 <= timestamp <= _MAX_TIMESTAMP:
        raise AuditChainError(f"Cosignature timestamp {timestamp} is out of range.")
    private = Ed25519PrivateKey.from_private_bytes(seed)
    stamp = _TIMESTAMP.pack(timestamp)
    signature = private.sign(_message(text, timestamp))
    key_id = note_key_id(name, ed25519_public_key(seed), COSIGNATURE_TYPE)
    return f"{SIGNATURE_PREFIX}{name} {b64encode_text(key_id + stamp + signature)}\n"


def open_cosignature(note: bytes | str, verifier_key: str) -> Cosignature:
    """Verify the cosignature of the witness ``verifier_key`` on a checkpoint note; return it.

    Other signatures (the log's, other witnesses') are ignored; the log's signature is checked
    with :func:`carnet.audit.checkpoint.open_checkpoint`.

    Raises:
        AuditChainError: the note is malformed, carries no cosignature by that witness, or a
            cosignature by that witness does not verify.
    """
    name, key_id, public_bytes = parse_key(verifier_key, "Witness verifier key", COSIGNATURE_TYPE)
    if len(public_bytes) != 32 or note_key_id(name, public_bytes, COSIGNATURE_TYPE) != key_id:
        raise AuditChainError(f"Witness verifier key for {name!r} is corrupt (public key or key ID).")
    public = Ed25519PublicKey.from_public_bytes(public_bytes)
    text, signatures = split_note(note)
    checkpoint = parse_body(text)
    found: Cosignature | None = None
    for signer, signature in signatures:
        if signer != name or signature[:KEY_ID_SIZE] != key_id:
            continue
        if len(signature) != KEY_ID_SIZE + _TIMESTAMP.size + SIGNATURE_SIZE:
            raise AuditChainError(f"Cosignature by {name!r} has the wrong length.")
        (timestamp,) = _TIMESTAMP.unpack_from(signature, KEY_ID_SIZE)
        try:
            if timestamp > _MAX_TIMESTAMP:
                raise InvalidSignature
            public.verify(signature[KEY_ID_SIZE + _TIMESTAMP.size :], _message(text, timestamp))
        except InvalidSignature:
            raise AuditChainError(f"Cosignature by {name!r} does not verify.") from None
        line = f"{SIGNATURE_PREFIX}{signer} {b64encode_text(signature)}\n"
        if found is None or timestamp > found.timestamp:
            found = Cosignature(witness=name, timestamp=timestamp, checkpoint=checkpoint, line=line)
    if found is None:
        raise AuditChainError(f"Checkpoint carries no cosignature by the witness {name!r}.")
    return found


def _message(text: str, timestamp: int) -> bytes:
    return f"cosignature/v1\ntime {timestamp}\n{text}".encode()
