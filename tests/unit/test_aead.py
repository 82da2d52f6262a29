"""Sealing and opening values (carnet.crypto.aead) and the envelope wire format."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from carnet.crypto.aead import blind_index, derive_subkey, generate_key, seal, unseal
from carnet.domain.envelope import (
    FORMAT_VERSION,
    HEADER_SIZE,
    MIN_BUCKET,
    NONCE_SIZE,
    SALT_SIZE,
    TAG_SIZE,
    associated_data,
)
from carnet.domain.errors import EnvelopeError

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
AAD = associated_data("p1", "Observation", "o1", 3)


def test_round_trip() -> None:
    """A sealed value opens to the same plaintext under the same key and context."""
    sealed = seal(KEY, b"glycemie 5.4 mmol/L", AAD)
    assert unseal(KEY, sealed, AAD) == b"glycemie 5.4 mmol/L"


def test_round_trip_of_empty_plaintext() -> None:
    """An empty plaintext seals to a header, the smallest bucket and a tag, and opens to empty bytes."""
    sealed = seal(KEY, b"", AAD)
    assert (len(sealed), unseal(KEY, sealed, AAD)) == (HEADER_SIZE + MIN_BUCKET + TAG_SIZE, b"")


def test_wire_format_layout() -> None:
    """Version 2 is 0x02 | salt | nonce | AES-256-GCM(HKDF(key, salt, "v2")) of the padded plaintext."""
    salt, nonce = bytes([7]) * SALT_SIZE, bytes([9]) * NONCE_SIZE
    draws = iter([salt, nonce])
    sealed = seal(KEY, b"plain", AAD, random=lambda size: next(draws)[:size])
    data_key = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=b"carnet/seal/v2").derive(KEY)
    padded = b"plain\x80" + bytes(MIN_BUCKET - 6)
    expected = bytes([FORMAT_VERSION]) + salt + nonce + AESGCM(data_key).encrypt(nonce, padded, AAD)
    assert (FORMAT_VERSION, sealed) == (2, expected)


def test_each_seal_uses_fresh_salt_and_nonce() -> None:
    """Sealing the same plaintext twice gives different envelopes."""
    assert seal(KEY, b"same", AAD) != seal(KEY, b"same", AAD)


def test_wrong_key_raises() -> None:
    """Opening under another key raises EnvelopeError."""
    sealed = seal(KEY, b"secret", AAD)
    with pytest.raises(EnvelopeError):
        unseal(OTHER_KEY, sealed, AAD)


def test_wrong_aad_raises() -> None:
    """Opening with other associated data raises EnvelopeError."""
    sealed = seal(KEY, b"secret", AAD)
    with pytest.raises(EnvelopeError):
        unseal(KEY, sealed, AAD + b"x")


@pytest.mark.parametrize(
    "other",
    [
        pytest.param(("p2", "Observation", "o1", 3), id="other-patient"),
        pytest.param(("p1", "Condition", "o1", 3), id="other-type"),
        pytest.param(("p1", "Observation", "o2", 3), id="other-id"),
        pytest.param(("p1", "Observation", "o1", 4), id="other-version"),
        pytest.param(("p1", "content", "o1", 3), id="document-content"),
        pytest.param(("p1", "Observationo1", "", 3), id="shifted-boundary"),
    ],
)
def test_ciphertext_moved_to_another_context_fails(other: tuple[str, str, str, int]) -> None:
    """A ciphertext sealed for one row does not open in the context of another."""
    sealed = seal(KEY, b"resource json", AAD)
    with pytest.raises(EnvelopeError):
        unseal(KEY, sealed, associated_data(*other))


@pytest.mark.parametrize("version", [0, 1, 3, 0x7F, 0xFF])
def test_unknown_version_byte_raises(version: int) -> None:
    """A version-2 envelope relabelled with any other version byte (even 1) raises EnvelopeError."""
    sealed = seal(KEY, b"secret", AAD)
    with pytest.raises(EnvelopeError):
        unseal(KEY, bytes([version]) + sealed[1:], AAD)


@pytest.mark.parametrize("length", [0, 1, HEADER_SIZE, HEADER_SIZE + TAG_SIZE - 1])
def test_truncated_input_raises(length: int) -> None:
    """An envelope shorter than header plus tag raises EnvelopeError."""
    sealed = seal(KEY, b"", AAD)
    with pytest.raises(EnvelopeError):
        unseal(KEY, sealed[:length], AAD)


def test_truncated_ciphertext_raises() -> None:
    """Dropping the last byte of a longer envelope raises EnvelopeError."""
    sealed = seal(KEY, b"a longer plaintext", AAD)
    with pytest.raises(EnvelopeError):
        unseal(KEY, sealed[:-1], AAD)


def test_appended_bytes_raise() -> None:
    """Bytes appended to an envelope make it fail to open."""
    sealed = seal(KEY, b"secret", AAD)
    with pytest.raises(EnvelopeError):
        unseal(KEY, sealed + b"\x00", AAD)


@pytest.mark.parametrize("size", [0, 16, 31, 33])
def test_key_of_wrong_size_raises(size: int) -> None:
    """Only 32-byte keys seal or open; any other size raises EnvelopeError."""
    sealed = seal(KEY, b"secret", AAD)
    with pytest.raises(EnvelopeError):
        unseal(bytes(size), sealed, AAD)
    with pytest.raises(EnvelopeError):
        seal(bytes(size), b"secret", AAD)


def test_every_failure_has_the_same_message() -> None:
    """Wrong key, wrong context, bad version and truncation raise identical errors."""
    sealed = seal(KEY, b"secret", AAD)
    failures = [
        lambda: unseal(OTHER_KEY, sealed, AAD),
        lambda: unseal(KEY, sealed, b""),
        lambda: unseal(KEY, b"\x01" + sealed[1:], AAD),
        lambda: unseal(KEY, b"\x03" + sealed[1:], AAD),
        lambda: unseal(KEY, sealed[:10], AAD),
    ]
    messages = set()
    for failure in failures:
        with pytest.raises(EnvelopeError) as raised:
            failure()
        messages.add((type(raised.value), str(raised.value)))
    assert messages == {(EnvelopeError, "Sealed value could not be opened.")}


def test_generate_key_uses_the_given_random_source() -> None:
    """generate_key returns 32 bytes drawn from the injected random source."""
    assert generate_key(random=lambda size: b"\x05" * size) == b"\x05" * 32


def test_derive_subkey_is_deterministic_and_purpose_bound() -> None:
    """The same key and purpose give the same subkey; another purpose gives another one."""
    assert derive_subkey(KEY, "blind-index") == derive_subkey(KEY, "blind-index")
    assert derive_subkey(KEY, "blind-index") != derive_subkey(KEY, "journal")
    assert len(derive_subkey(KEY, "blind-index")) == 32


def test_blind_index_is_a_truncated_hmac() -> None:
    """blind_index is the first 16 bytes of HMAC-SHA256 over the 0x1f-joined parts."""
    expected = hmac.new(KEY, b"family\x1fDupont", hashlib.sha256).digest()[:16]
    assert blind_index(KEY, "family", "Dupont") == expected
    assert blind_index(KEY, "family", "Dupont") != blind_index(OTHER_KEY, "family", "Dupont")


def test_associated_data_is_unambiguous() -> None:
    """Moving a boundary between context parts changes the associated data."""
    assert associated_data("ab", "c") != associated_data("a", "bc")
    assert associated_data("a", "") != associated_data("a")
