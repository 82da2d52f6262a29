"""Signed checkpoints: the journal's tree heads as C2SP signed notes.

A checkpoint (https://c2sp.org/tlog-checkpoint) is a signed note
(https://c2sp.org/signed-note) whose text is three lines, each ending in a newline::

    carnet.example/journal                          origin: names the log
    20852163                                        tree size, decimal, no leading zero
    CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=    root hash, standard base64 of 32 bytes

followed by a blank line and one signature line per signer::

    — <key name> base64(key ID (4 bytes) || Ed25519 signature of the text (64 bytes))

The key ID is ``SHA-256(key name || 0x0A || 0x01 || 32-byte public key)[:4]``, 0x01
being the signed-note type of Ed25519. Keys are written as the Go
``golang.org/x/mod/sumdb/note`` tools write them, so the same keys work with
them and with the transparency-dev witnesses::

    verifier key  <name>+<key ID, 8 hex digits>+<base64(0x01 || 32-byte public key)>
    signer key    PRIVATE+KEY+<name>+<key ID, 8 hex digits>+<base64(0x01 || 32-byte seed)>

:func:`sign_note` and :func:`open_note` are the signed-note layer;
:func:`sign_checkpoint` and :func:`open_checkpoint` add the checkpoint text on
top. Opening ignores signatures by other keys (witness cosignatures, a rotated
key), as the note specification requires, and refuses the whole note if the
signature of the trusted key does not verify or is missing: it never returns
text it has not verified.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from carnet.domain.errors import AuditChainError
from carnet.domain.merkle import HASH_SIZE, MAX_TREE_SIZE

__all__ = [
    "Checkpoint",
    "generate_signer",
    "open_checkpoint",
    "open_note",
    "parse_signer_key",
    "sign_checkpoint",
    "sign_note",
]

#: Signed-note signature type of Ed25519.
ED25519_TYPE = 0x01
_SEED_SIZE = 32
_PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64
KEY_ID_SIZE = 4
#: The note specification asks verifiers to accept at least 16 signatures and to cap them.
MAX_SIGNATURES = 100
#: Far above any checkpoint with MAX_SIGNATURES signatures; stops parsing huge inputs early.
MAX_NOTE_SIZE = 64 * 1024

SIGNATURE_PREFIX = "\u2014 "  # em dash, space
SIGNER_PREFIX = "PRIVATE+KEY+"
_SIZE_LINE = re.compile(r"0|[1-9][0-9]{0,19}")
_KEY_ID_HEX = re.compile(r"[0-9a-f]{8}")

Random = Callable[[int], bytes]


@dataclass(frozen=True, slots=True, kw_only=True)
class Checkpoint:
    """A verified tree head: the journal ``origin`` held ``size`` leaves under ``root_hash``."""

    origin: str
    size: int
    root_hash: bytes
    #: Extension lines after the root hash, opaque; Carnet itself never writes any.
    extensions: tuple[str, ...] = ()


def generate_signer(name: str, *, random: Random = os.urandom) -> tuple[str, str]:
    """Create an Ed25519 key for ``name``; return ``(signer key, verifier key)`` strings.

    The signer key is secret; publish the verifier key so anyone can check the
    journal's checkpoints.

    Raises:
        AuditChainError: if ``name`` is not a valid note key name.
    """
    check_key_name(name)
    seed = random(_SEED_SIZE)
    public = ed25519_public_key(seed)
    key_id = note_key_id(name, public).hex()
    signer = f"{SIGNER_PREFIX}{name}+{key_id}+{b64encode_text(bytes([ED25519_TYPE]) + seed)}"
    verifier = f"{name}+{key_id}+{b64encode_text(bytes([ED25519_TYPE]) + public)}"
    return signer, verifier


def parse_signer_key(signer_key: str) -> tuple[str, bytes]:
    """Return the ``(key name, 32-byte Ed25519 seed)`` of a signer key from :func:`generate_signer`.

    Raises:
        AuditChainError: if the signer key is malformed or its key ID does not match.
    """
    if not signer_key.startswith(SIGNER_PREFIX):
        raise AuditChainError("Signer key does not start with PRIVATE+KEY+; use a key from generate_signer.")
    name, key_id, seed = parse_key(signer_key[len(SIGNER_PREFIX) :], "Signer key")
    if len(seed) != _SEED_SIZE or note_key_id(name, ed25519_public_key(seed)) != key_id:
        raise AuditChainError("Signer key is corrupt (seed or key ID); use a key from generate_signer.")
    return name, seed


def sign_checkpoint(
    origin: str, size: int, root: bytes, private_key: bytes, key_name: str | None = None
) -> bytes:
    """Return the signed note (UTF-8) of the checkpoint (``origin``, ``size``, ``root``).

    ``private_key`` is the 32-byte Ed25519 seed (see :func:`parse_signer_key`);
    ``key_name`` defaults to ``origin``, as the checkpoint specification advises.

    Raises:
        AuditChainError: if a field cannot be written in a checkpoint or the key is not 32 bytes.
    """
    return sign_note(_format_body(origin, size, root), private_key, origin if key_name is None else key_name)


def open_checkpoint(note: bytes | str, verifier_key: str, *, origin: str | None = None) -> Checkpoint:
    """Verify a signed checkpoint against ``verifier_key``; return its content.

    Signatures by other keys are ignored. Pass ``origin`` to also require the
    checkpoint to be about that log.

    Raises:
        AuditChainError: if the note is malformed, carries no signature by the
            verifier key, a signature by that key does not verify, or the text is
            not a checkpoint (of ``origin``, when given).
    """
    checkpoint = parse_body(open_note(note, verifier_key))
    if origin is not None and checkpoint.origin != origin:
        raise AuditChainError(
            f"Checkpoint is for the log {checkpoint.origin!r}, not {origin!r}; "
            "fetch the checkpoint of the right log."
        )
    return checkpoint


def sign_note(text: str, private_key: bytes, key_name: str) -> bytes:
    """Return ``text`` signed with the Ed25519 seed ``private_key`` as a signed note (UTF-8).

    Raises:
        AuditChainError: if ``text`` cannot be a note text (empty, no final newline,
            a control character or a blank line at its end) or the key is not 32 bytes.
    """
    check_key_name(key_name)
    if not text.endswith("\n") or text.endswith("\n\n") or text == "\n" or _has_control(text):
        raise AuditChainError(
            "Note text must be lines of text ending in a newline, without a blank last line."
        )
    if len(private_key) != _SEED_SIZE:
        raise AuditChainError(f"Ed25519 private key is {len(private_key)} bytes; it must be a 32-byte seed.")
    private = Ed25519PrivateKey.from_private_bytes(private_key)
    public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    signature = note_key_id(key_name, public) + private.sign(text.encode())
    return f"{text}\n{SIGNATURE_PREFIX}{key_name} {b64encode_text(signature)}\n".encode()


def open_note(note: bytes | str, verifier_key: str) -> str:
    """Verify a signed note against ``verifier_key``; return its text, final newline included.

    Signatures by other keys are ignored, as the note specification requires.

    Raises:
        AuditChainError: if the note is malformed, carries no signature by the
            verifier key, or a signature by that key does not verify.
    """
    name, key_id, public_bytes = parse_key(verifier_key, "Verifier key")
    if len(public_bytes) != _PUBLIC_KEY_SIZE or note_key_id(name, public_bytes) != key_id:
        raise AuditChainError(f"Verifier key for {name!r} is corrupt (public key or key ID).")
    try:
        public = Ed25519PublicKey.from_public_bytes(public_bytes)
    except ValueError:
        raise AuditChainError(f"Verifier key for {name!r} is not an Ed25519 public key.") from None
    text, signatures = split_note(note)
    verified = False
    for signer_name, signature in signatures:
        # Ignore unknown keys, even when the name or the ID (but not both) matches;
        # verify every signature by the known key, and refuse the note if one fails.
        if signer_name != name or signature[:KEY_ID_SIZE] != key_id:
            continue
        try:
            if len(signature) != KEY_ID_SIZE + SIGNATURE_SIZE:
                raise InvalidSignature
            public.verify(signature[KEY_ID_SIZE:], text.encode())
        except InvalidSignature:
            raise AuditChainError(f"Note signature by {name!r} does not verify.") from None
        verified = True
    if not verified:
        raise AuditChainError(f"Note carries no signature by {name!r}; it cannot be trusted.")
    return text


# --------------------------------------------------------------------------- note format


def _format_body(origin: str, size: int, root: bytes) -> str:
    if not origin or "\n" in origin or _has_control(origin):
        raise AuditChainError(f"Checkpoint origin {origin!r} must be one non-empty line of text.")
    if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= MAX_TREE_SIZE:
        raise AuditChainError(f"Checkpoint tree size {size!r} is not an integer from 0 to {MAX_TREE_SIZE}.")
    if len(root) != HASH_SIZE:
        raise AuditChainError(f"Checkpoint root hash is {len(root)} bytes long; it must be {HASH_SIZE}.")
    return f"{origin}\n{size}\n{b64encode_text(root)}\n"


def parse_body(text: str) -> Checkpoint:
    """Read a checkpoint body (origin, tree size, root hash, each on its line).

    Raises:
        AuditChainError: not a well-formed checkpoint body.
    """
    lines = text[:-1].split("\n")  # split_note guarantees the final newline.
    if len(lines) < 3 or not all(lines):
        raise AuditChainError(
            "Checkpoint text must be at least three non-empty lines: origin, size, root hash."
        )
    origin, size_line, root_line, *extensions = lines
    if not _SIZE_LINE.fullmatch(size_line) or int(size_line) > MAX_TREE_SIZE:
        raise AuditChainError("Checkpoint tree size is not a decimal number without leading zeros.")
    root = _b64decode(root_line, "Checkpoint root hash")
    if len(root) != HASH_SIZE:
        raise AuditChainError(f"Checkpoint root hash is {len(root)} bytes long; it must be {HASH_SIZE}.")
    return Checkpoint(origin=origin, size=int(size_line), root_hash=root, extensions=tuple(extensions))


def split_note(note: bytes | str) -> tuple[str, list[tuple[str, bytes]]]:
    """Split a signed note into its text (with its final newline) and its ``(name, signature)`` pairs."""
    if len(note) > MAX_NOTE_SIZE:
        raise AuditChainError(f"Signed note is longer than {MAX_NOTE_SIZE} bytes.")
    if isinstance(note, bytes):
        try:
            note = note.decode("utf-8")
        except UnicodeDecodeError:
            raise AuditChainError("Signed note is not valid UTF-8.") from None
    if _has_control(note):
        raise AuditChainError("Signed note contains a control character other than newline.")
    if not note.endswith("\n"):
        raise AuditChainError("Signed note does not end with a newline.")
    # The text ends at the last blank line; signature lines contain none.
    cut = note.rfind("\n\n")
    if cut < 0:
        raise AuditChainError("Signed note has no blank line between its text and its signatures.")
    text, signature_block = note[: cut + 1], note[cut + 2 :]
    if not signature_block:
        raise AuditChainError("Signed note has no signature line after its blank line.")
    lines = signature_block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise AuditChainError(f"Signed note has more than {MAX_SIGNATURES} signatures.")
    signatures = []
    for line in lines:
        if not line.startswith(SIGNATURE_PREFIX):
            raise AuditChainError("Signed note has a signature line that does not start with an em dash.")
        name, space, encoded = line[len(SIGNATURE_PREFIX) :].partition(" ")
        if not space or " " in encoded:
            raise AuditChainError("Signed note signature line is not '— <key name> <base64 signature>'.")
        check_key_name(name)
        signature = _b64decode(encoded, "Signed note signature")
        if len(signature) <= KEY_ID_SIZE:
            raise AuditChainError("Signed note signature is too short to hold a key ID and a signature.")
        signatures.append((name, signature))
    return text, signatures


def parse_key(key: str, what: str, key_type: int = ED25519_TYPE) -> tuple[str, bytes, bytes]:
    """Split ``<name>+<hex key ID>+<base64(type || key)>``; return name, key ID and key bytes."""
    parts = key.split("+", 2)  # The base64 key may itself contain "+".
    if len(parts) != 3:
        raise AuditChainError(f"{what} is not <name>+<key ID>+<base64 key>.")
    name, key_id_hex, encoded = parts
    check_key_name(name)
    if not _KEY_ID_HEX.fullmatch(key_id_hex):
        raise AuditChainError(
            f"The key ID {key_id_hex!r} of the {what.lower()} is not 8 lowercase hex digits."
        )
    typed = _b64decode(encoded, what)
    if not typed or typed[0] != key_type:
        raise AuditChainError(f"{what} is not a key of signature type 0x{key_type:02x}.")
    return name, bytes.fromhex(key_id_hex), typed[1:]


def note_key_id(name: str, public_key: bytes, key_type: int = ED25519_TYPE) -> bytes:
    """Return the 4-byte key ID of a signed-note key: SHA-256(name, newline, type, key), truncated."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([key_type]) + public_key).digest()[:KEY_ID_SIZE]


def ed25519_public_key(seed: bytes) -> bytes:
    """Return the raw Ed25519 public key of a 32-byte seed."""
    private = Ed25519PrivateKey.from_private_bytes(seed)
    return private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def check_key_name(name: str) -> None:
    """Refuse a key name a signed note cannot carry.

    Raises:
        AuditChainError: empty, or with spaces, ``+`` or control characters.
    """
    if not name or "+" in name or any(c.isspace() for c in name) or _has_control(name):
        raise AuditChainError(f"Key name {name!r} must be non-empty, without spaces or '+'.")


def _has_control(text: str) -> bool:
    return any(ord(c) < 0x20 and c != "\n" for c in text)


def b64encode_text(data: bytes) -> str:
    """Return standard base64 of ``data`` as text."""
    return base64.b64encode(data).decode("ascii")


def _b64decode(encoded: str, what: str) -> bytes:
    """Decode standard base64, refusing any other spelling of the same bytes."""
    try:
        decoded = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise AuditChainError(f"{what} is not standard base64.") from None
    if b64encode_text(decoded) != encoded:
        raise AuditChainError(f"{what} is not canonical base64.")
    return decoded
