"""Key management: rotating the KEK (resumably) and shredding one patient's record."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import event, text
from starlette.testclient import TestClient

from carnet.api.app import Services, build_services
from carnet.domain.errors import AccessDenied
from carnet.domain.principal import ActorKind, Identifier, Principal
from carnet.settings import Settings
from minting import Mint

INS = "urn:oid:1.2.250.1.213.1.4.10"
ADMIN = Principal(kind=ActorKind.ADMIN, subject="admin:test")


def _open_record(client: TestClient, auth: Mint, nir: str) -> tuple[str, str, dict[str, str]]:
    headers = auth(kind="patient", identifier=f"{INS}|{nir}")
    patient = {
        "resourceType": "Patient",
        "identifier": [{"system": INS, "value": nir}],
        "name": [{"family": "Roux"}],
    }
    pid = client.post("/fhir/Patient", json=patient, headers=headers).json()["id"]
    headers = auth(kind="patient", patient=pid)
    obs = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "tension"},
        "subject": {"reference": f"Patient/{pid}"},
    }
    oid = client.post("/fhir/Observation", json=obs, headers=headers).json()["id"]
    return pid, oid, headers


def _kek_ids(services: Services) -> set[str]:
    with services.store.engine.connect() as connection:
        return {row[0] for row in connection.execute(text("SELECT kek_id FROM patient_keys"))}


def test_rotation_rewraps_every_key(client: TestClient, auth: Mint, services: Services) -> None:
    """After a rotation every key is under the new KEK, the old KEK is gone, and records still open."""
    records = [_open_record(client, auth, f"28403123456{i:02d}") for i in range(5)]
    before = _kek_ids(services)
    report = services.key_service.rotate(ADMIN, batch=2)
    assert report.rewrapped == 5 + 2  # five records, the directory and the identifier index
    assert _kek_ids(services) == {report.kek_id}
    assert report.kek_id not in before
    assert report.retired == ()  # the previous KEK is kept for one more rotation
    again = services.key_service.rotate(ADMIN)
    assert set(again.retired) == before
    assert services.keys.kek_ids() == [report.kek_id, again.kek_id]
    for _, oid, headers in records:
        assert client.get(f"/fhir/Observation/{oid}", headers=headers).status_code == 200


def test_rotation_resumes_after_interruption(client: TestClient, auth: Mint, services: Services) -> None:
    """A rotation killed half-way is finished by the next run, under the same KEK."""
    records = [_open_record(client, auth, f"18403123456{i:02d}") for i in range(4)]
    new_kek = services.keys.new_kek()  # a rotation that was killed right after creating its KEK
    report = services.key_service.rotate(ADMIN, batch=1)
    assert report.resumed
    assert report.kek_id == new_kek
    assert _kek_ids(services) == {new_kek}
    for _, oid, headers in records:
        assert client.get(f"/fhir/Observation/{oid}", headers=headers).status_code == 200


def test_rotation_survives_kill(
    settings: Settings, services: Services, client: TestClient, auth: Mint
) -> None:
    """`carnet keys rotate` killed mid-way and rerun leaves every key readable under one KEK."""
    records = [_open_record(client, auth, f"2750312345{i:03d}") for i in range(10)]
    for i in range(290):  # more records, quickly, so the rotation is long enough to be caught mid-way
        nir = f"2760312345{i:03d}"
        patient = Principal(kind=ActorKind.PATIENT, subject=nir, identifier=Identifier(system=INS, value=nir))
        services.records.records(patient).create(
            {"resourceType": "Patient", "identifier": [{"system": INS, "value": nir}]}
        )
    env = {
        **os.environ,
        "CARNET_DATA_DIR": str(settings.data_dir),
        "CARNET_KEY_DIR": str(settings.key_dir),
        "CARNET_DATABASE_URL": settings.effective_database_url,
    }
    command = [sys.executable, "-m", "carnet", "keys", "rotate", "--batch", "1"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    # Kill -9 at its first progress line (a tenth of the keys re-wrapped, nine tenths to go).
    with process.stderr:
        first = process.stderr.readline()
        process.kill()
        process.wait()
    assert first.startswith("Re-wrapping patient keys: "), first
    assert process.returncode != 0, "the rotation finished before it could be interrupted"
    assert len(_kek_ids(services)) == 2  # caught half-way: keys under the old and the new KEK
    finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert finished.returncode == 0, finished.stderr
    fresh = build_services(settings)
    try:
        assert len(_kek_ids(fresh)) == 1
        assert sorted(_kek_ids(fresh))[0] in fresh.keys.kek_ids()
    finally:
        fresh.store.engine.dispose()
    for _, oid, headers in records:
        assert client.get(f"/fhir/Observation/{oid}", headers=headers).status_code == 200


def test_shred_erases_one_record_only(client: TestClient, auth: Mint, services: Services) -> None:
    """After shredding, nothing of that record opens and the other patient is untouched."""
    victim_id, victim_obs, victim_headers = _open_record(client, auth, "2840312345601")
    _, other_obs, other_headers = _open_record(client, auth, "2840312345602")
    services.key_service.shred(ADMIN, victim_id)
    assert client.get(f"/fhir/Observation/{victim_obs}", headers=victim_headers).status_code == 410
    assert client.get(f"/fhir/Patient/{victim_id}", headers=victim_headers).status_code == 410
    assert client.get(f"/fhir/Patient/{victim_id}/$everything", headers=victim_headers).status_code == 410
    found = client.get(f"/fhir/Patient?identifier={INS}|2840312345601", headers=victim_headers).json()
    assert found["total"] == 0
    assert client.get(f"/fhir/Observation/{other_obs}", headers=other_headers).status_code == 200
    with services.store.engine.connect() as connection:
        wrapped = connection.execute(
            text("SELECT wrapped_key FROM patient_keys WHERE patient_id = :p"), {"p": victim_id}
        ).scalar_one()
    assert wrapped is None


def test_only_admins_manage_keys(services: Services) -> None:
    """A patient or professional cannot rotate keys or shred a record."""
    for kind in (ActorKind.PATIENT, ActorKind.PROFESSIONAL, ActorKind.DPO, ActorKind.EMPLOYER):
        actor = Principal(kind=kind, subject=f"{kind}:x")
        with pytest.raises(AccessDenied):
            services.key_service.rotate(actor)
        with pytest.raises(AccessDenied):
            services.key_service.shred(actor, "some-patient")


def test_cli_shred(
    settings: Settings, services: Services, client: TestClient, auth: Mint, tmp_path: Path
) -> None:
    """`carnet patient shred --yes` erases the record from the command line."""
    pid, oid, headers = _open_record(client, auth, "2840312345603")
    env = {
        **os.environ,
        "CARNET_DATA_DIR": str(settings.data_dir),
        "CARNET_KEY_DIR": str(settings.key_dir),
        "CARNET_DATABASE_URL": settings.effective_database_url,
    }
    done = subprocess.run(
        [sys.executable, "-m", "carnet", "patient", "shred", pid, "--yes"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert client.get(f"/fhir/Observation/{oid}", headers=headers).status_code == 410
    unknown = subprocess.run(
        [sys.executable, "-m", "carnet", "patient", "shred", "no-such-record", "--yes"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert unknown.returncode == 1
    assert "no record" in unknown.stderr


class _Undone(Exception):
    """Raised to roll a transaction back, with what it saw."""


def test_a_located_resource_brings_its_records_key_row_until_the_key_changes(
    client: TestClient, auth: Mint, services: Services
) -> None:
    """A read's look-up brings the record's key row with the resource (no second query); a shred forgets it."""
    pid, oid, _ = _open_record(client, auth, "1850675000033")
    keys: list[str] = []

    def note(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if "FROM patient_keys" in statement and "resource_locations" not in statement:  # read apart
            keys.append(statement)

    def shred_and_undo() -> tuple[object, object, object]:
        with services.store.session(write=True) as session:
            found = session.locate_current("Observation", oid)
            stored = session.get_key(pid)
            session.shred_key(pid, datetime.now(UTC))
            after = session.get_key(pid)
            raise _Undone(found, stored, after)

    event.listen(services.store.engine, "before_cursor_execute", note)
    try:
        with pytest.raises(_Undone) as undone:
            shred_and_undo()
    finally:
        event.remove(services.store.engine, "before_cursor_execute", note)
    found, stored, after = undone.value.args
    assert getattr(found, "__getitem__", None) is not None
    assert found[0] == pid  # type: ignore[index]
    assert getattr(stored, "wrapped", None) is not None
    assert after is not None
    assert getattr(after, "wrapped", "") is None
    # Only the read after the shred goes apart (on Citus, where the look-up is two queries, the first too).
    assert len(keys) == (1 if services.store._locations_joined else 2)
    with services.store.session() as session:
        kept = session.get_key(pid)
    assert kept is not None
    assert kept.wrapped is not None  # the shred was rolled back
