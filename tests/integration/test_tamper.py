"""Tampering with the database is detected: a flipped byte, or a ciphertext or key moved to another
row, fails to open (an opaque ``security`` OperationOutcome) and never yields anyone's data."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest
from sqlalchemy import text
from starlette.testclient import TestClient

from carnet.api.app import Services
from carnet.crypto.aead import AESGCMCipher
from carnet.crypto.local_provider import LocalKeyProvider
from carnet.crypto.shares import ShareLedger
from carnet.domain.errors import EnvelopeError
from carnet.services.vault import Vault
from minting import Mint
from records import open_record, post

#: Plaintext that must never appear in an answer to a tampered read.
SECRETS = ("Tamperson", "Oddbyte", "glycemie-marker-A", "glycemie-marker-B")


@dataclass(frozen=True, slots=True, kw_only=True)
class Record:
    """A patient record with one Observation at two versions."""

    patient_id: str
    observation_id: str
    headers: dict[str, str]


def _record(client: TestClient, auth: Mint, family: str, marker: str) -> Record:
    patient_id, headers = open_record(client, auth, name=[{"family": family}])
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": marker},
        "subject": {"reference": f"Patient/{patient_id}"},
        "valueQuantity": {"value": 5.4, "unit": "mmol/L"},
    }
    created = post(client, "/fhir/Observation", observation, headers)
    assert created.status_code == 201, created.text
    observation_id = created.json()["id"]
    updated = {**observation, "id": observation_id, "note": [{"text": f"{marker} (checked)"}]}
    assert client.put(f"/fhir/Observation/{observation_id}", json=updated, headers=headers).status_code == 200
    return Record(patient_id=patient_id, observation_id=observation_id, headers=headers)


@pytest.fixture
def records(client: TestClient, auth: Mint) -> tuple[Record, Record]:
    """Two patients, A and B, each with an Observation at version 2."""
    return _record(client, auth, "Tamperson", "glycemie-marker-A"), _record(
        client, auth, "Oddbyte", "glycemie-marker-B"
    )


def _sealed(services: Services, record: Record, version: int) -> bytes:
    with services.store.engine.connect() as connection:
        value = connection.execute(
            text(
                "SELECT sealed FROM resource_versions WHERE resource_type = 'Observation' "
                "AND resource_id = :id AND version_id = :version"
            ),
            {"id": record.observation_id, "version": version},
        ).scalar_one()
    return bytes(value)


def _set_sealed(services: Services, record: Record, version: int, sealed: bytes) -> None:
    with services.store.engine.begin() as connection:
        result = connection.execute(
            text(
                "UPDATE resource_versions SET sealed = :sealed WHERE resource_type = 'Observation' "
                "AND resource_id = :id AND version_id = :version"
            ),
            {"sealed": sealed, "id": record.observation_id, "version": version},
        )
        assert result.rowcount == 1


@contextmanager
def _replaced(services: Services, record: Record, version: int, sealed: bytes) -> Iterator[None]:
    """Put ``sealed`` in a version's row for the duration of the block, then restore the original."""
    original = _sealed(services, record, version)
    _set_sealed(services, record, version, sealed)
    try:
        yield
    finally:
        _set_sealed(services, record, version, original)


def _key_row(services: Services, patient_id: str) -> tuple[str, bytes]:
    with services.store.engine.connect() as connection:
        row = connection.execute(
            text("SELECT kek_id, wrapped_key FROM patient_keys WHERE patient_id = :p"), {"p": patient_id}
        ).one()
    return str(row[0]), bytes(row[1])


def _set_key_row(services: Services, patient_id: str, kek_id: str, wrapped: bytes) -> None:
    with services.store.engine.begin() as connection:
        connection.execute(
            text("UPDATE patient_keys SET kek_id = :k, wrapped_key = :w WHERE patient_id = :p"),
            {"k": kek_id, "w": wrapped, "p": patient_id},
        )


def _assert_refused(response: httpx2.Response, *, status: int = 500) -> None:
    """The answer is an opaque security OperationOutcome carrying none of the stored plaintext."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    assert [issue["code"] for issue in body["issue"]] == ["security"]
    for secret in SECRETS:
        assert secret not in response.text


def _flip(data: bytes, position: int) -> bytes:
    flipped = bytearray(data)
    flipped[position] ^= 0x01
    return bytes(flipped)


def test_untampered_records_open(client: TestClient, records: tuple[Record, Record]) -> None:
    """Before any tampering both records read normally (the baseline of the tests below)."""
    for record in records:
        response = client.get(f"/fhir/Observation/{record.observation_id}", headers=record.headers)
        assert response.status_code == 200
        assert response.json()["meta"]["versionId"] == "2"


def test_one_flipped_byte_fails_to_open(
    client: TestClient, services: Services, records: tuple[Record, Record]
) -> None:
    """One flipped byte (in version, salt, nonce, ciphertext or tag) fails read, search and $everything."""
    a, _ = records
    sealed = _sealed(services, a, 2)
    url = f"/fhir/Observation/{a.observation_id}"
    for position in (0, 1, 17, 29, len(sealed) // 2, len(sealed) - 1):
        with _replaced(services, a, 2, _flip(sealed, position)):
            _assert_refused(client.get(url, headers=a.headers))
            _assert_refused(client.get(f"/fhir/Observation?patient={a.patient_id}", headers=a.headers))
            _assert_refused(client.get(f"/fhir/Patient/{a.patient_id}/$everything", headers=a.headers))
        assert client.get(url, headers=a.headers).status_code == 200


def test_truncated_ciphertext_fails_to_open(
    client: TestClient, services: Services, records: tuple[Record, Record]
) -> None:
    """A ciphertext cut short, or emptied, fails to open."""
    a, _ = records
    sealed = _sealed(services, a, 2)
    for cut in (sealed[:-1], sealed[:40], b""):
        with _replaced(services, a, 2, cut):
            _assert_refused(client.get(f"/fhir/Observation/{a.observation_id}", headers=a.headers))


def test_ciphertext_copied_to_another_patient_fails_to_open(
    client: TestClient, services: Services, records: tuple[Record, Record]
) -> None:
    """Patient A's sealed Observation copied over patient B's Observation row does not open as B's."""
    a, b = records
    with _replaced(services, b, 2, _sealed(services, a, 2)):
        _assert_refused(client.get(f"/fhir/Observation/{b.observation_id}", headers=b.headers))


def test_ciphertext_and_key_moved_together_still_fail(
    client: TestClient, services: Services, records: tuple[Record, Record]
) -> None:
    """Moving A's ciphertext *and* A's wrapped key onto B fails too: the row's place is bound in."""
    a, b = records
    b_key = _key_row(services, b.patient_id)
    _set_key_row(services, b.patient_id, *_key_row(services, a.patient_id))
    try:
        with _replaced(services, b, 2, _sealed(services, a, 2)):
            _assert_refused(client.get(f"/fhir/Observation/{b.observation_id}", headers=b.headers))
    finally:
        _set_key_row(services, b.patient_id, *b_key)
    assert client.get(f"/fhir/Observation/{b.observation_id}", headers=b.headers).status_code == 200


def test_older_version_copied_over_newer_fails_to_open(
    client: TestClient, services: Services, records: tuple[Record, Record]
) -> None:
    """Version 1's ciphertext copied over version 2 of the same Observation fails to open."""
    a, _ = records
    url = f"/fhir/Observation/{a.observation_id}"
    with _replaced(services, a, 2, _sealed(services, a, 1)):
        _assert_refused(client.get(url, headers=a.headers))
        _assert_refused(client.get(f"{url}/_history/2", headers=a.headers))
        assert client.get(f"{url}/_history/1", headers=a.headers).status_code == 200


def test_swapped_patient_keys_fail_to_open(
    client: TestClient, services: Services, records: tuple[Record, Record]
) -> None:
    """With A's and B's wrapped keys swapped, neither record opens, and neither shows the other's data."""
    a, b = records
    a_key, b_key = _key_row(services, a.patient_id), _key_row(services, b.patient_id)
    _set_key_row(services, a.patient_id, *b_key)
    _set_key_row(services, b.patient_id, *a_key)
    try:
        for record in records:
            _assert_refused(client.get(f"/fhir/Observation/{record.observation_id}", headers=record.headers))
            _assert_refused(client.get(f"/fhir/Patient/{record.patient_id}", headers=record.headers))
    finally:
        _set_key_row(services, a.patient_id, *a_key)
        _set_key_row(services, b.patient_id, *b_key)
    for record in records:
        assert (
            client.get(f"/fhir/Observation/{record.observation_id}", headers=record.headers).status_code
            == 200
        )


def test_flipped_byte_in_wrapped_key_fails_to_unwrap(
    client: TestClient, services: Services, records: tuple[Record, Record]
) -> None:
    """A wrapped patient key with one flipped byte does not unwrap: 503 security, no data."""
    a, _ = records
    kek_id, wrapped = _key_row(services, a.patient_id)
    _set_key_row(services, a.patient_id, kek_id, _flip(wrapped, len(wrapped) // 2))
    try:
        _assert_refused(client.get(f"/fhir/Observation/{a.observation_id}", headers=a.headers), status=503)
    finally:
        _set_key_row(services, a.patient_id, kek_id, wrapped)


def test_vault_binds_patient_type_id_and_version(tmp_path: Path) -> None:
    """A value sealed for (patient, type, id, version) opens only there, and only under its key."""
    cipher = AESGCMCipher()
    vault = Vault(
        keys=LocalKeyProvider(tmp_path / "keys"), shares=ShareLedger(tmp_path / "shares"), cipher=cipher
    )
    key = cipher.generate_key()
    place = ("p1", "Observation", "o1", 3)
    sealed = vault.seal_resource(key, *place, b'{"resourceType":"Observation"}')
    assert vault.open_resource(key, *place, sealed) == b'{"resourceType":"Observation"}'
    for moved in (
        ("p2", "Observation", "o1", 3),
        ("p1", "Condition", "o1", 3),
        ("p1", "Observation", "o2", 3),
        ("p1", "Observation", "o1", 2),
        ("p1", "Observation", "o1", 4),
    ):
        with pytest.raises(EnvelopeError):
            vault.open_resource(key, *moved, sealed)
    with pytest.raises(EnvelopeError):
        vault.open_resource(cipher.generate_key(), *place, sealed)
    for position in range(len(sealed)):
        with pytest.raises(EnvelopeError):
            vault.open_resource(key, *place, _flip(sealed, position))
