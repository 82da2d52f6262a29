"""Envelope version 2 pads plaintexts to size buckets; version 1 values still open (issue 11, item 7)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given
from hypothesis import strategies as st

from carnet.crypto.aead import seal, unseal
from carnet.domain.envelope import HEADER_SIZE, MIN_BUCKET, TAG_SIZE, associated_data, pad, padded_size, unpad
from carnet.domain.errors import EnvelopeError

KEY = bytes(range(32))
AAD = associated_data("p1", "Observation", "o1", 1)
V1_VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "envelope_v1.json").read_text())["vectors"]


@pytest.mark.parametrize(
    ("length", "bucket"),
    [(0, 256), (1, 256), (256, 256), (257, 272), (1000, 1024), (1024, 1024), (5000, 5120), (70_000, 71_680)],
)
def test_bucket_sizes(length: int, bucket: int) -> None:
    """Padmé buckets above a 256-byte floor: known sizes."""
    assert padded_size(length) == bucket


@given(st.integers(min_value=0, max_value=50_000_000))
def test_bucket_overhead_is_bounded(length: int) -> None:
    """A bucket is never smaller than the value and at most 12 % larger (above the floor)."""
    bucket = padded_size(length)
    assert length <= bucket
    assert bucket <= max(MIN_BUCKET, int(length * 1.12) + 1)


def test_few_sizes_remain_per_power_of_two() -> None:
    """Between 64 KiB and 128 KiB, 65,536 lengths fall into 33 ciphertext sizes (multiples of 2 KiB)."""
    assert len({padded_size(n) for n in range(65_536, 131_072)}) == 33


@given(st.binary(max_size=5000))
def test_pad_round_trip(plaintext: bytes) -> None:
    """Unpadding a padded plaintext gives it back, whatever its trailing bytes."""
    padded = pad(plaintext)
    assert (len(padded), unpad(padded)) == (padded_size(len(plaintext) + 1), plaintext)


@pytest.mark.parametrize("bad", [b"", bytes(300), b"abc\x00\x00", b"\x81" + bytes(10)])
def test_unpad_without_marker_raises(bad: bytes) -> None:
    """A padded block with no 0x80 marker raises EnvelopeError."""
    with pytest.raises(EnvelopeError):
        unpad(bad)


@given(st.binary(max_size=3000))
def test_sealed_length_reveals_only_the_bucket(plaintext: bytes) -> None:
    """A version-2 envelope is header + bucket + tag long, and opens to the plaintext."""
    sealed = seal(KEY, plaintext, AAD)
    assert len(sealed) == HEADER_SIZE + padded_size(len(plaintext) + 1) + TAG_SIZE
    assert unseal(KEY, sealed, AAD) == plaintext


@given(st.data())
def test_any_flipped_bit_of_a_padded_envelope_raises(data: st.DataObject) -> None:
    """Flipping any bit of a version-2 envelope (padding included) raises EnvelopeError."""
    sealed = bytearray(seal(KEY, b"tension 12/8", AAD))
    index = data.draw(st.integers(min_value=0, max_value=len(sealed) - 1))
    sealed[index] ^= 1 << data.draw(st.integers(min_value=0, max_value=7))
    with pytest.raises(EnvelopeError):
        unseal(KEY, bytes(sealed), AAD)


def test_unpadded_content_under_the_v2_key_is_refused() -> None:
    """A v2 envelope whose authenticated plaintext lacks the padding marker does not open."""
    salt, nonce = bytes([3]) * 16, bytes([4]) * 12
    data_key = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=b"carnet/seal/v2").derive(KEY)
    forged = b"\x02" + salt + nonce + AESGCM(data_key).encrypt(nonce, b"no marker here", AAD)
    with pytest.raises(EnvelopeError):
        unseal(KEY, forged, AAD)


@pytest.mark.parametrize("vector", V1_VECTORS, ids=lambda v: f"v1-{len(v['plaintext']) // 2}B")
def test_version_1_vectors_still_open(vector: dict[str, str]) -> None:
    """Known answers of format version 1 (made before padding) open unchanged, and match its layout."""
    key, aad, sealed = (bytes.fromhex(vector[k]) for k in ("key", "aad", "sealed"))
    plaintext, salt, nonce = (bytes.fromhex(vector[k]) for k in ("plaintext", "salt", "nonce"))
    assert unseal(key, sealed, aad) == plaintext
    data_key = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=b"carnet/seal/v1").derive(key)
    assert sealed == b"\x01" + salt + nonce + AESGCM(data_key).encrypt(nonce, plaintext, aad)


def test_version_1_vector_tampered_raises() -> None:
    """Flipping a byte of a version-1 known answer raises EnvelopeError."""
    vector = V1_VECTORS[1]
    sealed = bytearray(bytes.fromhex(vector["sealed"]))
    sealed[-1] ^= 0x01
    with pytest.raises(EnvelopeError):
        unseal(bytes.fromhex(vector["key"]), bytes(sealed), bytes.fromhex(vector["aad"]))
