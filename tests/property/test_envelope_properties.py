"""Properties of sealed values: they round-trip, and any change makes them fail the same way."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from carnet.crypto.aead import seal, unseal
from carnet.domain.envelope import associated_data
from carnet.domain.errors import EnvelopeError

OPAQUE = "Sealed value could not be opened."

keys = st.binary(min_size=32, max_size=32)
plaintexts = st.binary(max_size=2048)
aads = st.binary(max_size=256)
contexts = st.tuples(st.text(max_size=20), st.text(max_size=20), st.text(max_size=20), st.integers(1, 10**6))


def _failure(call: Callable[[], bytes]) -> EnvelopeError:
    with pytest.raises(EnvelopeError) as raised:
        call()
    return raised.value


@given(key=keys, plaintext=plaintexts, aad=aads)
def test_seal_then_unseal_round_trips(key: bytes, plaintext: bytes, aad: bytes) -> None:
    """Any plaintext sealed under any key and associated data opens to itself."""
    assert unseal(key, seal(key, plaintext, aad), aad) == plaintext


@given(key=keys, plaintext=plaintexts, aad=aads, data=st.data())
def test_any_flipped_bit_raises(key: bytes, plaintext: bytes, aad: bytes, data: st.DataObject) -> None:
    """Flipping any single bit of a sealed value (header, salt, nonce, ciphertext or tag) raises."""
    sealed = bytearray(seal(key, plaintext, aad))
    bit = data.draw(st.integers(0, len(sealed) * 8 - 1), label="bit")
    sealed[bit // 8] ^= 1 << (bit % 8)
    assert _failure(lambda: unseal(key, bytes(sealed), aad)).message == OPAQUE


@given(key=keys, plaintext=plaintexts, aad=aads, data=st.data())
def test_any_truncation_raises(key: bytes, plaintext: bytes, aad: bytes, data: st.DataObject) -> None:
    """A sealed value cut at any length raises."""
    sealed = seal(key, plaintext, aad)
    length = data.draw(st.integers(0, len(sealed) - 1), label="length")
    assert _failure(lambda: unseal(key, sealed[:length], aad)).message == OPAQUE


@given(key=keys, plaintext=plaintexts, context=contexts, other=contexts)
def test_other_context_raises(
    key: bytes, plaintext: bytes, context: tuple[str, str, str, int], other: tuple[str, str, str, int]
) -> None:
    """A value sealed for one context opens in no other context."""
    sealed = seal(key, plaintext, associated_data(*context))
    if other == context:
        assert unseal(key, sealed, associated_data(*other)) == plaintext
    else:
        assert _failure(lambda: unseal(key, sealed, associated_data(*other))).message == OPAQUE


@given(key=keys, garbage=st.binary(max_size=512), aad=aads)
def test_arbitrary_bytes_raise_only_envelope_error(key: bytes, garbage: bytes, aad: bytes) -> None:
    """Opening arbitrary bytes raises EnvelopeError and never any other exception."""
    assert _failure(lambda: unseal(key, garbage, aad)).message == OPAQUE


@given(
    key=keys,
    other_key=keys,
    plaintext=plaintexts,
    aad=aads,
    cause=st.sampled_from(["key", "aad", "version", "truncated", "bit", "key-size"]),
    data=st.data(),
)
def test_every_failure_cause_gives_the_identical_error(
    key: bytes, other_key: bytes, plaintext: bytes, aad: bytes, cause: str, data: st.DataObject
) -> None:
    """Whatever made it fail, the error has the same type, message and arguments."""
    sealed = seal(key, plaintext, aad)
    if cause == "key" and other_key == key:
        other_key = bytes(b ^ 1 for b in key)
    opener: dict[str, Callable[[], bytes]] = {
        "key": lambda: unseal(other_key, sealed, aad),
        "aad": lambda: unseal(key, sealed, aad + b"\x00"),
        # Any other format version (the legacy one too): drawing the sealed one is no failure.
        "version": lambda: unseal(
            key, bytes([data.draw(st.integers(0, 255).filter(lambda v: v != sealed[0]))]) + sealed[1:], aad
        ),
        "truncated": lambda: unseal(key, sealed[: data.draw(st.integers(0, len(sealed) - 1))], aad),
        "bit": lambda: unseal(key, sealed[:-1] + bytes([sealed[-1] ^ 0x80]), aad),
        "key-size": lambda: unseal(key[: data.draw(st.integers(0, 31))], sealed, aad),
    }
    error = _failure(opener[cause])
    assert (type(error), error.args, error.message, error.code) == (
        EnvelopeError,
        (OPAQUE,),
        OPAQUE,
        "security",
    )
