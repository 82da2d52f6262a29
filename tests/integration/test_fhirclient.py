"""A real FHIR client library (SMART's ``fhirclient``, R4 models) talks to the real server.

The server runs as ``python -m carnet serve`` in a subprocess on a free port, with its own data
and key directories; the test mints a development token with the same key directory.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from fhirclient import client as smart
from fhirclient.models.capabilitystatement import CapabilityStatement
from fhirclient.models.observation import Observation
from fhirclient.models.patient import Patient
from fhirclient.server import FHIRNotFoundException, FHIRUnauthorizedException

from carnet.api.auth import issue_token
from carnet.settings import Settings
from served import free_port, popen_serve, serve_env, wait_until_up

SYSTEM = "urn:oid:1.2.250.1.213.1.4.10"
LOINC = "http://loinc.org"


@dataclass(frozen=True, slots=True, kw_only=True)
class Server:
    """A running ``carnet serve``."""

    base_url: str
    key_dir: Path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``carnet serve`` on a free port with a fresh SQLite database; stopped at teardown."""
    root = tmp_path_factory.mktemp("served")
    env = serve_env(root, free_port())
    base_url = env["CARNET_BASE_URL"]
    log = root / "server.log"
    process = popen_serve(env, log)
    try:
        wait_until_up(process, f"{base_url}/metadata", log)
        yield Server(base_url=base_url, key_dir=root / "keys")
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _token(server: Server, **claims: str) -> str:
    settings = Settings(key_dir=server.key_dir)
    claims.setdefault("sub", f"patient:{uuid.uuid4().hex[:8]}")
    return issue_token(settings, claims, now=datetime.now(UTC), lifetime=timedelta(minutes=30))


@dataclass(frozen=True, slots=True, kw_only=True)
class PatientClient:
    """A ``fhirclient`` client carrying one patient's bearer token."""

    smart: smart.FHIRClient
    identifier: str

    @property
    def server(self) -> object:
        """The client's ``FHIRServer`` (what the models' REST methods take)."""
        return self.smart.server


def _client(server: Server, token: str | None) -> smart.FHIRClient:
    fhir = smart.FHIRClient(settings={"app_id": "carnet-tests", "api_base": server.base_url})
    session = fhir.server.session
    session.trust_env = False  # a proxy from the environment must not intercept 127.0.0.1
    if token is not None:
        # fhirclient signs requests only after a SMART OAuth dance; a bearer token set on its
        # requests session is sent with every request instead.
        session.headers["Authorization"] = f"Bearer {token}"
    return fhir


@pytest.fixture
def patient_client(server: Server) -> PatientClient:
    """A client for a patient who has no record yet (a fresh INS-like identifier)."""
    value = str(uuid.uuid4().int)[:13]
    token = _token(server, kind="patient", identifier=f"{SYSTEM}|{value}")
    return PatientClient(smart=_client(server, token), identifier=value)


def _open_record(fhir: PatientClient) -> str:
    patient = Patient(
        {
            "resourceType": "Patient",
            "identifier": [{"system": SYSTEM, "value": fhir.identifier}],
            "name": [{"family": "Lefèvre", "given": ["Anaïs"]}],
            "birthDate": "1984-03-09",
        }
    )
    created = patient.create(fhir.server)
    assert created is not None
    return str(created["id"])


def _observation(patient_id: str, code: str, value: str) -> Observation:
    return Observation(
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": LOINC, "code": code}]},
            "subject": {"reference": f"Patient/{patient_id}"},
            "effectiveDateTime": "2024-05-01T08:30:00+02:00",
            "valueQuantity": {
                "value": float(value),
                "unit": "kg",
                "system": "http://unitsofmeasure.org",
                "code": "kg",
            },
        }
    )


def test_capability_statement_parses_as_r4(server: Server) -> None:
    """fhirclient reads and parses the CapabilityStatement with its R4 models, without a token."""
    fhir = _client(server, None)
    statement = fhir.server.capabilityStatement
    assert isinstance(statement, CapabilityStatement)
    assert statement.fhirVersion.startswith("4.0")
    assert statement.rest[0].mode == "server"
    types = {r.type for r in statement.rest[0].resource}
    assert {"Patient", "Observation", "Practitioner"} <= types


def test_create_and_read_patient_and_observation(patient_client: PatientClient) -> None:
    """A patient opens a record, records an Observation and reads both back as fhirclient models."""
    patient_id = _open_record(patient_client)
    read = Patient.read(patient_id, patient_client.server)
    assert read.id == patient_id
    assert read.name[0].family == "Lefèvre"
    assert read.birthDate.isostring == "1984-03-09"
    created = _observation(patient_id, "29463-7", "72.5").create(patient_client.server)
    assert created is not None
    observation = Observation.read(created["id"], patient_client.server)
    assert observation.subject.reference == f"Patient/{patient_id}"
    assert observation.valueQuantity.value == 72.5
    assert observation.meta.versionId == "1"


def test_search_observations_by_patient_and_code(patient_client: PatientClient) -> None:
    """A search by patient and code through fhirclient's FHIRSearch returns just the matching Observation."""
    patient_id = _open_record(patient_client)
    weight = _observation(patient_id, "29463-7", "72.5").create(patient_client.server)
    _observation(patient_id, "8302-2", "171").create(patient_client.server)
    assert weight is not None
    search = Observation.where({"patient": patient_id, "code": f"{LOINC}|29463-7"})
    found = list(search.perform_resources_iter(patient_client.server))
    assert [o.id for o in found] == [weight["id"]]
    everything = list(
        Observation.where({"patient": patient_id}).perform_resources_iter(patient_client.server)
    )
    assert len(everything) == 2


def test_errors_surface_as_exceptions(server: Server, patient_client: PatientClient) -> None:
    """A bad request, an unknown id and a missing token each raise in fhirclient, with an OperationOutcome."""
    patient_id = _open_record(patient_client)
    with pytest.raises(requests.HTTPError) as bad:
        list(Observation.where({"code": f"{LOINC}|29463-7"}).perform_resources_iter(patient_client.server))
    response = bad.value.response
    assert response is not None
    assert response.status_code == 400
    assert response.json()["resourceType"] == "OperationOutcome"
    with pytest.raises(FHIRNotFoundException):
        Observation.read(str(uuid.uuid4()), patient_client.server)
    with pytest.raises(FHIRUnauthorizedException):
        Patient.read(patient_id, _client(server, None).server)
    invalid = Observation({"resourceType": "Observation", "status": "final", "code": {"text": "no subject"}})
    with pytest.raises(requests.HTTPError) as refused:
        invalid.create(patient_client.server)
    assert refused.value.response is not None
    assert refused.value.response.status_code == 422
