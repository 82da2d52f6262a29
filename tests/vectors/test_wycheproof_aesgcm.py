"""Project Wycheproof known-answer vectors for the primitives under Carnet's envelopes and key files.

- AES-GCM: the 256-bit-key, 96-bit-IV groups (the only shape ``carnet.crypto.aead`` uses) against
  cryptography's ``AESGCM``.
- HKDF-SHA256 (which derives each envelope's data key) against cryptography's ``HKDF``.
- AES key wrap (RFC 3394): every group against ``aes_key_wrap`` and ``aes_key_unwrap``, the
  primitive of ``LocalKeyProvider``, and the 256-bit group through the provider itself.

The files and their README are in ``shared/data/external/wycheproof``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from carnet.crypto.local_provider import LocalKeyProvider
from carnet.domain.errors import KeyProviderError
from carnet.domain.keys import WrappedKey
from paths import EXTERNAL

VECTORS = EXTERNAL / "wycheproof" / "testvectors_v1"

#: Every test here reads the corpus: deselected, with one line in the summary, when it is absent.
pytestmark = pytest.mark.external

Vector = dict[str, Any]


def _load(name: str) -> dict[str, Any]:
    if not (VECTORS / name).exists():
        return {"testGroups": []}  # no corpus: the tests are deselected, not collected empty
    data: dict[str, Any] = json.loads((VECTORS / name).read_text())
    return data


def _params(groups: list[tuple[dict[str, Any], Vector]]) -> list[Any]:
    return [
        pytest.param(group, test, id=f"tc{test['tcId']}-{test['result']}-{'-'.join(test['flags'])}")
        for group, test in groups
    ]


def _gcm_vectors() -> list[tuple[dict[str, Any], Vector]]:
    data = _load("aes_gcm_test.json")
    return [
        (group, test)
        for group in data["testGroups"]
        if group["keySize"] == 256 and group["ivSize"] == 96 and group["tagSize"] == 128
        for test in group["tests"]
    ]


def _hkdf_vectors() -> list[tuple[dict[str, Any], Vector]]:
    data = _load("hkdf_sha256_test.json")
    return [(group, test) for group in data["testGroups"] for test in group["tests"]]


def _kw_vectors(key_size: int | None = None) -> list[tuple[dict[str, Any], Vector]]:
    data = _load("aes_wrap_test.json")
    return [
        (group, test)
        for group in data["testGroups"]
        if key_size is None or group["keySize"] == key_size
        for test in group["tests"]
    ]


def test_vector_files_have_the_documented_counts() -> None:
    """The selections hold the counts the data README states, so no filter silently drops vectors."""
    gcm = [test["result"] for _group, test in _gcm_vectors()]
    kw = [test["result"] for _group, test in _kw_vectors()]
    kw_256 = [test["result"] for _group, test in _kw_vectors(256)]
    hkdf = [test["result"] for _group, test in _hkdf_vectors()]
    assert (len(gcm), gcm.count("valid"), gcm.count("invalid")) == (66, 39, 27)
    assert (len(hkdf), hkdf.count("valid"), hkdf.count("invalid")) == (86, 83, 3)
    assert (len(kw), kw.count("valid"), kw.count("invalid"), kw.count("acceptable")) == (165, 36, 126, 3)
    assert (kw_256.count("valid"), kw_256.count("invalid"), kw_256.count("acceptable")) == (13, 54, 1)


@pytest.mark.parametrize(("group", "vector"), _params(_gcm_vectors()))
def test_aes_gcm_256_vector(group: dict[str, Any], vector: Vector) -> None:
    """Valid AES-256-GCM vectors encrypt and decrypt exactly; invalid ones fail to decrypt."""
    key, iv, aad, msg = (bytes.fromhex(vector[name]) for name in ("key", "iv", "aad", "msg"))
    sealed = bytes.fromhex(vector["ct"] + vector["tag"])
    assert (len(key) * 8, len(iv) * 8) == (group["keySize"], group["ivSize"])
    cipher = AESGCM(key)
    if vector["result"] == "valid":
        assert cipher.encrypt(iv, msg, aad) == sealed
        assert cipher.decrypt(iv, sealed, aad) == msg
    else:
        assert vector["result"] == "invalid"
        with pytest.raises(InvalidTag):
            cipher.decrypt(iv, sealed, aad)


@pytest.mark.parametrize(("group", "vector"), _params(_hkdf_vectors()))
def test_hkdf_sha256_vector(group: dict[str, Any], vector: Vector) -> None:
    """Valid HKDF-SHA256 vectors derive exactly; invalid ones (too long an output) are refused."""
    ikm, salt, info = (bytes.fromhex(vector[name]) for name in ("ikm", "salt", "info"))
    assert len(ikm) * 8 == group["keySize"]
    if vector["result"] == "valid":
        hkdf = HKDF(algorithm=hashes.SHA256(), length=vector["size"], salt=salt, info=info)
        assert hkdf.derive(ikm).hex() == vector["okm"]
    else:
        assert vector["result"] == "invalid"
        with pytest.raises(ValueError, match="larger than 8160"):
            HKDF(algorithm=hashes.SHA256(), length=vector["size"], salt=salt, info=info).derive(ikm)


@pytest.mark.parametrize(("group", "vector"), _params(_kw_vectors()))
def test_aes_key_wrap_vector(group: dict[str, Any], vector: Vector) -> None:
    """Valid key-wrap vectors wrap and unwrap exactly; invalid ones fail to unwrap."""
    kek, msg, ct = (bytes.fromhex(vector[name]) for name in ("key", "msg", "ct"))
    assert len(kek) * 8 == group["keySize"]
    if vector["result"] == "valid":
        assert aes_key_wrap(kek, msg) == ct
        assert aes_key_unwrap(kek, ct) == msg
    elif vector["result"] == "invalid":
        with pytest.raises((InvalidUnwrap, ValueError)):
            aes_key_unwrap(kek, ct)
    else:
        # "acceptable" (wrapping an 8-byte key, flag ShortKey): rejecting is fine; accepting must be exact.
        assert vector["flags"] == ["ShortKey"]
        try:
            wrapped = aes_key_wrap(kek, msg)
        except ValueError:
            with pytest.raises((InvalidUnwrap, ValueError)):
                aes_key_unwrap(kek, ct)
        else:
            assert (wrapped, aes_key_unwrap(kek, ct)) == (ct, msg)


def _provider_with_kek(directory: Path, kek: bytes) -> LocalKeyProvider:
    """Lay out a key directory whose only KEK is ``kek``, as LocalKeyProvider writes it."""
    directory.mkdir(mode=0o700)
    (directory / "kek-000001.key").write_bytes(kek)
    (directory / "current").write_text("local:000001")
    return LocalKeyProvider(directory)


def _provider_vectors() -> list[tuple[dict[str, Any], Vector]]:
    """The 256-bit KW vectors that concern a provider: every invalid one, and valid 32-byte keys."""
    return [
        (group, test)
        for group, test in _kw_vectors(256)
        if test["result"] == "invalid" or (test["result"] == "valid" and len(test["msg"]) == 64)
    ]


@pytest.mark.parametrize(("group", "vector"), _params(_provider_vectors()))
def test_local_provider_vector(tmp_path: Path, group: dict[str, Any], vector: Vector) -> None:
    """LocalKeyProvider agrees with the 256-bit KW vectors: 32-byte keys round-trip, invalid blobs raise."""
    kek, msg, ct = (bytes.fromhex(vector[name]) for name in ("key", "msg", "ct"))
    provider = _provider_with_kek(tmp_path / "keys", kek)
    wrapped = WrappedKey(kek_id="local:000001", blob=ct)
    if vector["result"] == "valid":
        assert (provider.wrap(msg), provider.unwrap(wrapped)) == (wrapped, msg)
    else:
        with pytest.raises(KeyProviderError):
            provider.unwrap(wrapped)
