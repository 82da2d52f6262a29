"""A resource is found by its id alone through its location (migrations 0016, 0023), alike on every backend.

On SQLite and PostgreSQL every location is in ``resource_locations``. On Citus a new resource's id
starts with its record shard's log key and its location is in ``resource_places`` on that key (in
the record's shard group), a Patient needs none (its id is its record's), and an id without a key
is in ``resource_locations``, distributed on the id: a read by bare id probes one shard
(``test_citus.py::test_a_read_by_bare_id_probes_one_shard`` checks the plans). Here the answers are
checked on SQLite, PostgreSQL and Citus, and a store written before the table existed is filled in
by the migration.
"""

from __future__ import annotations

from typing import Any

import pytest
from alembic import command
from sqlalchemy import func, select
from starlette.testclient import TestClient

from carnet.api.app import Services, build_services, create_app
from carnet.settings import Settings
from carnet.store.engine import alembic_config, upgrade
from carnet.store.tables import resource_locations, resource_places, resources
from minting import Mint

BACKENDS = [
    "sqlite",
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("citus", marks=[pytest.mark.postgres, pytest.mark.citus]),
]
INS = "urn:oid:1.2.250.1.213.1.4.10"
NIRS = ("2840312345678", "1750599123456", "2690175111222")


def _open_record(client: TestClient, auth: Mint, nir: str) -> tuple[str, dict[str, str]]:
    patient = {
        "resourceType": "Patient",
        "identifier": [{"system": INS, "value": nir}],
        "birthDate": "1984-03-12",
    }
    response = client.post(
        "/fhir/Patient", json=patient, headers=auth(kind="patient", identifier=f"{INS}|{nir}")
    )
    assert response.status_code == 201, response.text
    patient_id = str(response.json()["id"])
    return patient_id, auth(kind="patient", patient=patient_id)


def _observation(patient_id: str, value: int) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": "2026-01-02",
        "valueQuantity": {"value": value, "unit": "kg"},
    }


def _fill(client: TestClient, auth: Mint) -> dict[str, tuple[str, dict[str, str]]]:
    """Three records with two Observations each; return each path with its record and headers."""
    paths: dict[str, tuple[str, dict[str, str]]] = {}
    for nir in NIRS:
        patient_id, headers = _open_record(client, auth, nir)
        paths[f"Patient/{patient_id}"] = (patient_id, headers)
        for value in (70, 71):
            created = client.post("/fhir/Observation", json=_observation(patient_id, value), headers=headers)
            assert created.status_code == 201, created.text
            paths[f"Observation/{created.json()['id']}"] = (patient_id, headers)
    return paths


@pytest.mark.parametrize("database_url", BACKENDS, indirect=True)
def test_every_resource_is_found_by_its_id(client: TestClient, auth: Mint, services: Services) -> None:
    """Each create writes one location (on Citus, a Patient none); reads by bare id answer the owner, 404 an unknown id, and hide others'."""
    paths = _fill(client, auth)
    with services.store.session() as session:
        for path, (patient_id, _) in paths.items():
            assert session.locate(*path.split("/")) == patient_id, path
        assert session.locate("Observation", "no-such-id") is None
        assert (
            session.locate("Condition", next(p for p in paths if p.startswith("Observation/")).split("/")[1])
            is None
        )
        assert session.locate("Patient", "no-such-id") is None
    distributed = services.store.logs.distributed
    with services.store.engine.connect() as connection:
        located = connection.execute(select(func.count()).select_from(resource_locations)).scalar_one()
        placed = connection.execute(select(resource_places.c.log_key, resource_places.c.resource_id)).all()
        stored = connection.execute(select(func.count()).select_from(resources)).scalar_one()
    patients = sum(1 for path in paths if path.startswith("Patient/"))
    assert stored == len(paths)
    if distributed:  # every id drawn carries its log key, the Patients' excepted
        assert located == 0
        assert len(placed) == stored - patients
        assert all(resource_id.startswith(f"{key}.") for key, resource_id in placed), placed
    else:
        assert (located, placed) == (stored, [])
    owners = {patient_id for patient_id, _ in paths.values()}
    for path, (patient_id, headers) in paths.items():
        response = client.get(f"/fhir/{path}", headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["id"] == path.split("/")[1]
        if path.startswith("Observation/"):
            assert body["subject"]["reference"] == f"Patient/{patient_id}"
            other = next(p for p in owners if p != patient_id)
            stranger = client.get(f"/fhir/{path}", headers=auth(kind="patient", patient=other))
            assert stranger.status_code in (403, 404), stranger.text
    first = next(iter(paths.values()))[1]
    assert client.get("/fhir/Observation/no-such-id", headers=first).status_code == 404


@pytest.mark.parametrize("database_url", BACKENDS, indirect=True)
def test_a_store_written_before_the_locations_is_filled_in(settings: Settings, auth: Mint) -> None:
    """Back to revision 0015 (no locations), then upgraded: every resource reads back byte-identical by its id."""
    wired = build_services(settings)
    with TestClient(create_app(settings, wired), base_url="http://testserver") as client:
        paths = _fill(client, auth)
        before = {
            path: client.get(f"/fhir/{path}", headers=headers).content for path, (_, headers) in paths.items()
        }
    engine = wired.store.engine
    config = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0015")
    upgrade(engine)  # 0016 fills the locations from the resources (on Citus, then distributes them)
    with engine.connect() as connection:
        filled = connection.execute(select(func.count()).select_from(resource_locations)).scalar_one()
    assert filled == len(paths)
    with TestClient(create_app(settings, wired), base_url="http://testserver") as client:
        after = {
            path: client.get(f"/fhir/{path}", headers=headers).content for path, (_, headers) in paths.items()
        }
    engine.dispose()
    assert after == before
