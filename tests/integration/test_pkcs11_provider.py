"""PKCS11KeyProvider against a real SoftHSM2 token (one fresh token per test)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pkcs11
import pytest
from pkcs11 import Attribute, KeyType, MechanismFlag, ObjectClass

from carnet.crypto.pkcs11_provider import PKCS11KeyProvider
from carnet.domain.errors import KeyProviderError
from carnet.domain.keys import WrappedKey
from paths import EXTERNAL
from softhsm import create_token, is_available

Token = tuple[str, str, str]

_UNWRAP_FAILED = "Wrapped key does not unwrap under its key-encryption key."


@pytest.fixture
def token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Token]:
    """Give the test its own SoftHSM2 configuration and token; fail in CI when SoftHSM2 is missing."""
    if not is_available():
        message = "SoftHSM2 is not installed (apt-get install -y softhsm2)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}; CI must install it before running the tests.")
        pytest.skip(message)
    # Recorded now so that monkeypatch restores the caller's value after create_token sets it.
    monkeypatch.delenv("SOFTHSM2_CONF", raising=False)
    created = create_token(tmp_path)
    yield created
    pkcs11.unload(created[0])


@pytest.fixture
def provider(token: Token) -> Iterator[PKCS11KeyProvider]:
    """Open a provider on the test's token."""
    with PKCS11KeyProvider(*token) as opened:
        yield opened


def _session(token: Token, *, login: bool = False) -> pkcs11.Session:
    """Open another session on the token; while a provider is open, its login covers this one."""
    module, label, pin = token
    return pkcs11.lib(module).get_token(token_label=label).open(rw=True, user_pin=pin if login else None)


def test_first_kek_is_created_at_start(provider: PKCS11KeyProvider) -> None:
    """An empty token gets KEK pkcs11:000001 when the provider opens it."""
    assert (provider.kek_ids(), provider.current_kek_id()) == (["pkcs11:000001"], "pkcs11:000001")


def test_wrap_unwrap_round_trip(provider: PKCS11KeyProvider) -> None:
    """A wrapped key unwraps to the same 32 bytes, and the blob is an RFC 3394 wrap (40 bytes)."""
    key = os.urandom(32)
    wrapped = provider.wrap(key)
    assert (wrapped.kek_id, len(wrapped.blob)) == ("pkcs11:000001", 40)
    assert key not in wrapped.blob
    assert provider.unwrap(wrapped) == key


def test_wrap_leaves_no_objects_in_the_token(provider: PKCS11KeyProvider, token: Token) -> None:
    """Wrapping and unwrapping destroy their temporary key objects; only the KEK remains."""
    provider.unwrap(provider.wrap(os.urandom(32)))
    with _session(token) as session:
        labels = [obj[Attribute.LABEL] for obj in session.get_objects()]
    assert labels == ["carnet-kek-000001"]


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda blob: bytes([blob[0] ^ 1]) + blob[1:], id="first-byte"),
        pytest.param(lambda blob: blob[:20] + bytes([blob[20] ^ 0x80]) + blob[21:], id="middle-byte"),
        pytest.param(lambda blob: blob[:-1] + bytes([blob[-1] ^ 1]), id="last-byte"),
        pytest.param(lambda blob: blob[:-8], id="truncated"),
        pytest.param(lambda blob: blob + bytes(8), id="extended"),
        pytest.param(lambda blob: b"", id="empty"),
    ],
)
def test_tampered_blob_raises(provider: PKCS11KeyProvider, tamper: Any) -> None:
    """A tampered wrapped key raises KeyProviderError with the one opaque message."""
    wrapped = provider.wrap(os.urandom(32))
    with pytest.raises(KeyProviderError) as raised:
        provider.unwrap(WrappedKey(kek_id=wrapped.kek_id, blob=tamper(wrapped.blob)))
    assert raised.value.message == _UNWRAP_FAILED


@pytest.mark.parametrize(
    "kek_id",
    ["pkcs11:000009", "local:000001", "pkcs11:1", "pkcs11:0000001", "pkcs11:00000x", "pkcs11:٠٠٠٠٠١", ""],
)
def test_unknown_or_foreign_kek_id_raises(provider: PKCS11KeyProvider, kek_id: str) -> None:
    """Unwrapping under a KEK id the token does not hold raises KeyProviderError."""
    blob = provider.wrap(os.urandom(32)).blob
    with pytest.raises(KeyProviderError):
        provider.unwrap(WrappedKey(kek_id=kek_id, blob=blob))


@pytest.mark.parametrize("size", [0, 16, 31, 33, 64])
def test_only_32_byte_keys_are_wrapped(provider: PKCS11KeyProvider, size: int) -> None:
    """Wrapping anything but a 32-byte key raises KeyProviderError."""
    with pytest.raises(KeyProviderError):
        provider.wrap(bytes(size))


def test_new_kek_keeps_old_wrapped_keys(provider: PKCS11KeyProvider) -> None:
    """After new_kek, new wraps use the new KEK and keys wrapped earlier still unwrap."""
    old_key, new_key = os.urandom(32), os.urandom(32)
    old = provider.wrap(old_key)
    assert provider.new_kek() == "pkcs11:000002"
    new = provider.wrap(new_key)
    assert (provider.current_kek_id(), new.kek_id) == ("pkcs11:000002", "pkcs11:000002")
    assert provider.kek_ids() == ["pkcs11:000001", "pkcs11:000002"]
    assert (provider.unwrap(old), provider.unwrap(new)) == (old_key, new_key)


def test_rewrap_after_rotation(provider: PKCS11KeyProvider) -> None:
    """Rotation re-wraps a key under the new KEK without changing the key itself."""
    key = os.urandom(32)
    old = provider.wrap(key)
    provider.new_kek()
    rewrapped = provider.wrap(provider.unwrap(old))
    assert (rewrapped.kek_id, provider.unwrap(rewrapped)) == ("pkcs11:000002", key)


def test_retire_makes_old_wrapped_keys_fail(provider: PKCS11KeyProvider) -> None:
    """A key wrapped under a retired KEK no longer unwraps, and the KEK is gone from the token."""
    old = provider.wrap(os.urandom(32))
    provider.new_kek()
    provider.retire("pkcs11:000001")
    assert provider.kek_ids() == ["pkcs11:000002"]
    with pytest.raises(KeyProviderError):
        provider.unwrap(old)


def test_retire_is_idempotent(provider: PKCS11KeyProvider) -> None:
    """Retiring a KEK that is already gone does nothing."""
    provider.new_kek()
    provider.retire("pkcs11:000001")
    provider.retire("pkcs11:000001")
    assert provider.kek_ids() == ["pkcs11:000002"]


def test_current_kek_cannot_be_retired(provider: PKCS11KeyProvider) -> None:
    """Retiring the current KEK raises KeyProviderError and leaves it in place."""
    with pytest.raises(KeyProviderError):
        provider.retire(provider.current_kek_id())
    assert provider.kek_ids() == ["pkcs11:000001"]


def test_kek_is_not_extractable(provider: PKCS11KeyProvider, token: Token) -> None:
    """The KEK is sensitive and non-extractable: reading its value or wrapping it out both fail."""
    with _session(token) as session:
        kek = session.get_key(ObjectClass.SECRET_KEY, KeyType.AES, label="carnet-kek-000001")
        attributes = kek.get_attributes(
            [
                Attribute.TOKEN,
                Attribute.SENSITIVE,
                Attribute.ALWAYS_SENSITIVE,
                Attribute.EXTRACTABLE,
                Attribute.NEVER_EXTRACTABLE,
                Attribute.VALUE_LEN,
                Attribute.MODIFIABLE,
                Attribute.ENCRYPT,
                Attribute.DECRYPT,
                Attribute.WRAP,
                Attribute.UNWRAP,
            ]
        )
        assert attributes == {
            Attribute.TOKEN: True,
            Attribute.SENSITIVE: True,
            Attribute.ALWAYS_SENSITIVE: True,
            Attribute.EXTRACTABLE: False,
            Attribute.NEVER_EXTRACTABLE: True,
            Attribute.VALUE_LEN: 32,
            Attribute.MODIFIABLE: False,
            Attribute.ENCRYPT: False,
            Attribute.DECRYPT: False,
            Attribute.WRAP: True,
            Attribute.UNWRAP: True,
        }
        with pytest.raises(pkcs11.AttributeSensitive):
            kek[Attribute.VALUE]
        wrapper = session.generate_key(KeyType.AES, 256, capabilities=MechanismFlag.WRAP)
        assert isinstance(wrapper, pkcs11.WrapMixin)
        with pytest.raises(pkcs11.PKCS11Error):
            wrapper.wrap_key(kek, mechanism=pkcs11.Mechanism.AES_KEY_WRAP)


def test_keys_are_found_by_label(tmp_path: Path, token: Token) -> None:
    """With several tokens, the provider uses the labelled one, and a reopened provider finds its KEKs."""
    module, label, pin = token
    create_token(tmp_path, label="other-token")
    key = os.urandom(32)
    with PKCS11KeyProvider(module, label, pin) as first:
        first.new_kek()
        wrapped = first.wrap(key)
    with PKCS11KeyProvider(module, label, pin) as reopened:
        assert reopened.kek_ids() == ["pkcs11:000001", "pkcs11:000002"]
        assert reopened.unwrap(wrapped) == key
    with PKCS11KeyProvider(module, "other-token", pin) as other:
        assert other.kek_ids() == ["pkcs11:000001"]
        with pytest.raises(KeyProviderError):
            other.unwrap(WrappedKey(kek_id="pkcs11:000001", blob=wrapped.blob))


def test_unknown_token_label_raises(token: Token) -> None:
    """A label no token carries raises KeyProviderError naming the label."""
    module, _label, pin = token
    with pytest.raises(KeyProviderError, match="no-such-token"):
        PKCS11KeyProvider(module, "no-such-token", pin)


def test_wrong_pin_raises_without_echoing_it(token: Token) -> None:
    """A wrong PIN raises KeyProviderError whose message does not contain the PIN."""
    module, label, _pin = token
    with pytest.raises(KeyProviderError) as raised:
        PKCS11KeyProvider(module, label, "99990000")
    assert "99990000" not in str(raised.value)
    assert "PIN" in str(raised.value)


def test_missing_module_raises(tmp_path: Path, token: Token) -> None:
    """A module path that does not load raises KeyProviderError."""
    _module, label, pin = token
    with pytest.raises(KeyProviderError, match="module"):
        PKCS11KeyProvider(str(tmp_path / "missing.so"), label, pin)


def test_extractable_key_under_a_kek_label_is_refused(provider: PKCS11KeyProvider, token: Token) -> None:
    """An extractable key planted under the next KEK label is never used to wrap."""
    with _session(token) as session:
        session.generate_key(
            KeyType.AES,
            256,
            label="carnet-kek-000002",
            store=True,
            capabilities=MechanismFlag.WRAP | MechanismFlag.UNWRAP,
            template={Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True},
        )
    with pytest.raises(KeyProviderError, match="extractable"):
        provider.wrap(os.urandom(32))


def test_closed_provider_raises(token: Token) -> None:
    """Every call after close() raises KeyProviderError; closing twice is harmless."""
    opened = PKCS11KeyProvider(*token)
    opened.close()
    opened.close()
    with pytest.raises(KeyProviderError, match="closed"):
        opened.wrap(os.urandom(32))


def test_concurrent_round_trips(provider: PKCS11KeyProvider) -> None:
    """Wraps and unwraps from many threads at once all round-trip."""
    keys = [os.urandom(32) for _ in range(200)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda key: provider.unwrap(provider.wrap(key)), keys))
    assert results == keys


def _wycheproof_kw_256() -> list[dict[str, Any]]:
    data = json.loads((EXTERNAL / "wycheproof" / "testvectors_v1" / "aes_wrap_test.json").read_text())
    return [
        test
        for group in data["testGroups"]
        if group["keySize"] == 256
        for test in group["tests"]
        if test["result"] in {"valid", "invalid"}
    ]


def _import_kek(token: Token, number: int, value: bytes, *, login: bool) -> None:
    """Store a known AES key in the token under KEK label ``number``, non-extractable as new_kek makes it."""
    with _session(token, login=login) as session:
        session.create_object(
            {
                Attribute.CLASS: ObjectClass.SECRET_KEY,
                Attribute.KEY_TYPE: KeyType.AES,
                Attribute.VALUE: value,
                Attribute.LABEL: f"carnet-kek-{number:06d}",
                Attribute.TOKEN: True,
                Attribute.PRIVATE: True,
                Attribute.SENSITIVE: True,
                Attribute.EXTRACTABLE: False,
                Attribute.WRAP: True,
                Attribute.UNWRAP: True,
            }
        )


@pytest.mark.external
def test_token_key_wrap_matches_wycheproof(token: Token) -> None:
    """The token's key wrap agrees with the Wycheproof AES-KW vectors for a 256-bit KEK."""
    vectors = _wycheproof_kw_256()
    assert len(vectors) == 67
    for number, vector in enumerate(vectors, start=1):
        _import_kek(token, number, bytes.fromhex(vector["key"]), login=True)
    with PKCS11KeyProvider(*token) as provider:
        for number, vector in enumerate(vectors, start=1):
            msg, ct = bytes.fromhex(vector["msg"]), bytes.fromhex(vector["ct"])
            wrapped = WrappedKey(kek_id=f"pkcs11:{number:06d}", blob=ct)
            if vector["result"] == "valid" and len(msg) == 32:
                assert provider.unwrap(wrapped) == msg, vector["tcId"]
            else:
                # Invalid vectors must fail; valid ones of other sizes are not patient keys.
                with pytest.raises(KeyProviderError):
                    provider.unwrap(wrapped)
        patient_key_vectors = [v for v in vectors if v["result"] == "valid" and len(v["msg"]) == 64]
        assert len(patient_key_vectors) == 4
        for number, vector in enumerate(patient_key_vectors, start=len(vectors) + 1):
            _import_kek(token, number, bytes.fromhex(vector["key"]), login=False)  # becomes the current KEK
            wrapped = provider.wrap(bytes.fromhex(vector["msg"]))
            assert (wrapped.kek_id, wrapped.blob.hex()) == (f"pkcs11:{number:06d}", vector["ct"])
