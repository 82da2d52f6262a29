"""Signed checkpoints (c2sp.org/tlog-checkpoint) on signed notes (c2sp.org/signed-note)."""

from __future__ import annotations

import base64

import pytest

from carnet.audit.checkpoint import (
    Checkpoint,
    generate_signer,
    open_checkpoint,
    open_note,
    parse_signer_key,
    sign_checkpoint,
    sign_note,
)
from carnet.domain.errors import AuditChainError
from carnet.domain.merkle import MAX_TREE_SIZE, leaf_hash

# The example of golang.org/x/mod/sumdb/note, the reference implementation of signed notes.
GO_SIGNER = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VERIFIER = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
)
GO_SIGNATURE = "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM="
GO_NOTE = f"{GO_TEXT}\n— PeterNeumann {GO_SIGNATURE}\n"

ORIGIN = "carnet.example/journal"
ROOT = leaf_hash(b"root")


def _seeded(byte: int) -> tuple[str, str]:
    """A signer for ORIGIN whose seed is 32 copies of ``byte``."""
    return generate_signer(ORIGIN, random=lambda n: bytes([byte]) * n)


SIGNER, VERIFIER = _seeded(1)
OTHER_SIGNER, OTHER_VERIFIER = _seeded(2)


def _seed(signer: str) -> bytes:
    return parse_signer_key(signer)[1]


def _signed(size: int = 42, root: bytes = ROOT) -> bytes:
    return sign_checkpoint(ORIGIN, size, root, _seed(SIGNER))


# --------------------------------------------------------------------------- known answers


def test_go_note_is_reproduced_byte_for_byte() -> None:
    """Signing the Go example text with the Go example key gives the Go example note."""
    name, seed = parse_signer_key(GO_SIGNER)
    assert name == "PeterNeumann"
    assert sign_note(GO_TEXT, seed, name).decode() == GO_NOTE


def test_go_note_opens() -> None:
    """The Go example note opens with the Go example verifier key."""
    assert open_note(GO_NOTE, GO_VERIFIER) == GO_TEXT
    assert open_note(GO_NOTE.encode(), GO_VERIFIER) == GO_TEXT


def test_generated_keys_are_in_the_go_format() -> None:
    """A signer generated from the Go example seed prints the Go example signer and verifier keys."""
    seed = parse_signer_key(GO_SIGNER)[1]
    assert generate_signer("PeterNeumann", random=lambda n: seed[:n]) == (GO_SIGNER, GO_VERIFIER)


def test_checkpoint_text_is_the_c2sp_layout() -> None:
    """A checkpoint is origin, decimal size, base64 root, a blank line and one em-dash signature line."""
    lines = _signed().decode().split("\n")
    assert lines[:4] == [ORIGIN, "42", base64.b64encode(ROOT).decode(), ""]
    assert lines[4].startswith(f"— {ORIGIN} ")
    assert len(base64.b64decode(lines[4].split(" ")[2])) == 4 + 64
    assert lines[5:] == [""]


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("size", [0, 1, 42, MAX_TREE_SIZE])
def test_round_trip(size: int) -> None:
    """A signed checkpoint opens with the signer's verifier key to the same origin, size and root."""
    checkpoint = open_checkpoint(_signed(size), VERIFIER, origin=ORIGIN)
    assert checkpoint == Checkpoint(origin=ORIGIN, size=size, root_hash=ROOT)


def test_key_name_may_differ_from_origin() -> None:
    """A checkpoint may be signed under a key name other than its origin."""
    signer, verifier = generate_signer("carnet.example/key-2027")
    note = sign_checkpoint(ORIGIN, 7, ROOT, _seed(signer), "carnet.example/key-2027")
    assert open_checkpoint(note, verifier).origin == ORIGIN


def test_extension_lines_are_returned() -> None:
    """Extension lines after the root hash are kept, opaque, in ``extensions``."""
    text = f"{ORIGIN}\n3\n{base64.b64encode(ROOT).decode()}\nextension one\nextension two\n"
    note = sign_note(text, _seed(SIGNER), ORIGIN)
    assert open_checkpoint(note, VERIFIER).extensions == ("extension one", "extension two")


def test_cosignatures_by_other_keys_are_ignored() -> None:
    """Signatures by unknown keys, before or after the trusted one, do not matter."""
    ours = _signed().decode()
    text, our_line = ours.split("\n\n")
    theirs = sign_checkpoint(ORIGIN, 42, ROOT, _seed(OTHER_SIGNER)).decode().split("\n\n")[1]
    for note in (f"{text}\n\n{theirs}{our_line}", f"{text}\n\n{our_line}{theirs}"):
        assert open_checkpoint(note, VERIFIER).size == 42


# --------------------------------------------------------------------------- tampering


def test_every_flipped_bit_fails() -> None:
    """Flipping any single bit anywhere in a signed checkpoint makes it fail to open."""
    note = _signed()
    for position in range(len(note)):
        for bit in range(8):
            tampered = bytearray(note)
            tampered[position] ^= 1 << bit
            with pytest.raises(AuditChainError):
                open_checkpoint(bytes(tampered), VERIFIER)


def test_checkpoint_signed_by_another_key_fails() -> None:
    """A checkpoint signed by another key of the same name does not open with our verifier key."""
    note = sign_checkpoint(ORIGIN, 42, ROOT, _seed(OTHER_SIGNER))
    with pytest.raises(AuditChainError, match="no signature"):
        open_checkpoint(note, VERIFIER)


def test_bad_signature_by_the_trusted_key_fails_even_beside_a_good_one() -> None:
    """A note whose trusted-key signature fails is refused, even if another copy of it verifies."""
    ours = _signed().decode()
    text, line = ours.split("\n\n")
    name, encoded = line[2:].split()
    raw = bytearray(base64.b64decode(encoded))
    raw[-1] ^= 1
    forged = f"— {name} {base64.b64encode(bytes(raw)).decode()}\n"
    with pytest.raises(AuditChainError, match="does not verify"):
        open_checkpoint(f"{text}\n\n{line}{forged}", VERIFIER)


def test_wrong_origin_fails() -> None:
    """A genuine checkpoint of another log is refused when the expected origin is given."""
    with pytest.raises(AuditChainError, match=r"not 'carnet\.example/other'"):
        open_checkpoint(_signed(), VERIFIER, origin="carnet.example/other")


# --------------------------------------------------------------------------- malformed notes

B64_ROOT = base64.b64encode(ROOT).decode()
URLSAFE_ROOT = base64.urlsafe_b64encode(b"\xff" * 32).decode()


@pytest.mark.parametrize(
    "text",
    [
        f"{ORIGIN}\n42\n",  # two lines
        f"{ORIGIN}\n\n42\n{B64_ROOT}\n",  # an empty line
        f"\n42\n{B64_ROOT}\n",  # empty origin
        f"{ORIGIN}\n042\n{B64_ROOT}\n",  # leading zero
        f"{ORIGIN}\n-1\n{B64_ROOT}\n",
        f"{ORIGIN}\n+1\n{B64_ROOT}\n",
        f"{ORIGIN}\n1e3\n{B64_ROOT}\n",
        f"{ORIGIN}\n{MAX_TREE_SIZE + 1}\n{B64_ROOT}\n",
        f"{ORIGIN}\n٤٢\n{B64_ROOT}\n",  # non-ASCII digits
        f"{ORIGIN}\n42\n{base64.b64encode(ROOT[:31]).decode()}\n",  # 31-byte root
        f"{ORIGIN}\n42\n{B64_ROOT.rstrip('=')}\n",  # unpadded
        f"{ORIGIN}\n42\n{URLSAFE_ROOT}\n",  # URL-safe alphabet
        f"{ORIGIN}\n42\n{B64_ROOT[:-2]}B=\n",  # non-zero padding bits
        f"{ORIGIN}\n42\n {B64_ROOT}\n",
    ],
)
def test_signed_text_that_is_not_a_checkpoint_fails(text: str) -> None:
    """A validly signed note whose text is not a well-formed checkpoint is refused."""
    note = sign_note(text, _seed(SIGNER), ORIGIN)
    assert open_note(note, VERIFIER) == text
    with pytest.raises(AuditChainError):
        open_checkpoint(note, VERIFIER)


#: Our key ID followed by a 63-byte "signature".
SHORT_SIGNATURE = base64.b64encode(bytes.fromhex(VERIFIER.split("+")[1]) + b"s" * 63).decode()


def _line() -> str:
    return _signed().decode().split("\n\n")[1]


@pytest.mark.parametrize(
    "note",
    [
        b"",
        b"\n",
        _signed()[:-1],  # no final newline
        _signed().replace(b"\n\n", b"\n"),  # no blank line
        _signed().split(b"\n\n")[0] + b"\n\n",  # no signature line
        _signed().replace("—".encode(), b"-"),  # ASCII hyphen for the em dash
        _signed().replace(b"\n", b"\r\n"),  # CRLF
        _signed().replace(ORIGIN.encode(), ORIGIN.encode() + b"\x00", 1),
        _signed()[:-3] + b"\xff\n",  # not UTF-8
        _signed().replace(f"{ORIGIN} ".encode(), f"{ORIGIN}  ".encode()),  # double space
        _signed().replace(f"— {ORIGIN} ".encode(), "— ".encode()),  # no key name
        _signed()[:-10] + b"!!!!!!!!!\n",  # not base64
        (_signed().decode().split("\n\n")[0] + f"\n\n— {ORIGIN} AAAA\n").encode(),  # no room for a key ID
        (_signed().decode().split("\n\n")[0] + f"\n\n— {ORIGIN} {SHORT_SIGNATURE}\n").encode(),
        (_signed().decode().split("\n\n")[0] + "\n\n" + _line() * 101).encode(),  # 101 signatures
        b"x" * 70_000,
    ],
)
def test_malformed_note_fails(note: bytes) -> None:
    """A note that breaks the signed-note format is refused."""
    with pytest.raises(AuditChainError):
        open_checkpoint(note, VERIFIER)


def test_sixteen_signatures_are_accepted() -> None:
    """A note with 16 signatures, the minimum the specification requires verifiers to take, opens."""
    text, line = _signed().decode().split("\n\n")
    other = sign_checkpoint(ORIGIN, 42, ROOT, _seed(OTHER_SIGNER)).decode().split("\n\n")[1]
    assert open_checkpoint(f"{text}\n\n{other * 15}{line}", VERIFIER).size == 42


@pytest.mark.parametrize(
    "verifier",
    [
        "",
        ORIGIN,
        VERIFIER.replace("+", "-", 1),
        VERIFIER.split("+")[0] + "+00000000+" + VERIFIER.split("+", 2)[2],  # wrong key ID
        VERIFIER.split("+")[0] + "+" + VERIFIER.split("+")[1].upper() + "+" + VERIFIER.split("+", 2)[2],
        "+".join(VERIFIER.split("+")[:2]) + "+" + base64.b64encode(b"\x02" + b"k" * 32).decode(),
        "+".join(VERIFIER.split("+")[:2]) + "+" + base64.b64encode(b"\x01" + b"k" * 31).decode(),
        "other name+" + VERIFIER.split("+", 1)[1],
    ],
)
def test_malformed_verifier_key_fails(verifier: str) -> None:
    """A verifier key that is malformed, of another type, or whose key ID does not match, is refused."""
    with pytest.raises(AuditChainError):
        open_checkpoint(_signed(), verifier)


@pytest.mark.parametrize(
    "signer",
    [
        "",
        GO_VERIFIER,
        GO_SIGNER.replace("c74f20a3", "c74f20a4"),
        GO_SIGNER.replace("PeterNeumann", "PeterNeumanm"),
        GO_SIGNER[:-4],
    ],
)
def test_malformed_signer_key_fails(signer: str) -> None:
    """A signer key that is malformed or whose key ID does not match its seed is refused."""
    with pytest.raises(AuditChainError):
        parse_signer_key(signer)


@pytest.mark.parametrize(
    ("origin", "size", "root", "key_name"),
    [
        ("", 1, ROOT, ORIGIN),
        ("two\nlines", 1, ROOT, ORIGIN),
        (ORIGIN, -1, ROOT, None),
        (ORIGIN, MAX_TREE_SIZE + 1, ROOT, None),
        (ORIGIN, True, ROOT, None),
        (ORIGIN, 1, ROOT[:31], None),
        (ORIGIN, 1, ROOT, "with space"),
        (ORIGIN, 1, ROOT, "with+plus"),
        (ORIGIN, 1, ROOT, ""),
    ],
)
def test_sign_refuses_what_a_checkpoint_cannot_hold(
    origin: str, size: int, root: bytes, key_name: str | None
) -> None:
    """Signing refuses an empty or multi-line origin, a size out of range, a short root or a bad key name."""
    with pytest.raises(AuditChainError):
        sign_checkpoint(origin, size, root, _seed(SIGNER), key_name)


def test_sign_refuses_a_short_private_key() -> None:
    """A private key that is not a 32-byte Ed25519 seed is refused."""
    with pytest.raises(AuditChainError):
        sign_checkpoint(ORIGIN, 1, ROOT, b"k" * 31)
