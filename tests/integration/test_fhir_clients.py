"""Two real FHIR client libraries, ``fhirpy`` and SMART's ``fhirclient``, round-trip the interactions
of issue 19 against a real ``carnet serve``: PATCH, conditional update and delete, paged
``$everything``, criteria refused on create (``get_or_create``), and 406 for FHIR XML."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fhirclient import client as smart
from fhirclient.models.observation import Observation
from fhirclient.models.parameters import Parameters
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import MultipleResourcesFound, OperationOutcome

from carnet.api.auth import issue_token
from carnet.settings import Settings
from served import free_port, popen_serve, serve_env, wait_until_up

SYSTEM = "urn:oid:1.2.250.1.213.1.4.10"
LOINC = "http://loinc.org"
OBS_SYSTEM = "urn:example:carnet-tests:obs"


@dataclass(frozen=True, slots=True, kw_only=True)
class Server:
    """A running ``carnet serve``."""

    base_url: str
    key_dir: Path


@dataclass(frozen=True, slots=True, kw_only=True)
class Holder:
    """A patient with a record, and both clients carrying their token."""

    patient_id: str
    fhirpy: SyncFHIRClient
    smart: smart.FHIRClient


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``carnet serve`` on a free port with a fresh SQLite database; stopped at teardown."""
    root = tmp_path_factory.mktemp("served")
    env = serve_env(root, free_port())
    log = root / "server.log"
    process = popen_serve(env, log)
    try:
        wait_until_up(process, f"{env['CARNET_BASE_URL']}/metadata", log)
        yield Server(base_url=env["CARNET_BASE_URL"], key_dir=root / "keys")
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture
def holder(server: Server) -> Holder:
    """A fresh patient who opened their record with fhirpy; both clients carry their token."""
    value = str(uuid.uuid4().int)[:13]
    settings = Settings(key_dir=server.key_dir)
    claims = {"sub": f"patient:{value}", "kind": "patient", "identifier": f"{SYSTEM}|{value}"}
    token = issue_token(settings, claims, now=datetime.now(UTC), lifetime=timedelta(minutes=30))
    client = SyncFHIRClient(server.base_url, authorization=f"Bearer {token}")
    patient = client.resource(
        "Patient", identifier=[{"system": SYSTEM, "value": value}], birthDate="1984-03-09"
    )
    patient.save()
    fhir = smart.FHIRClient(settings={"app_id": "carnet-tests", "api_base": server.base_url + "/"})
    fhir.server.session.trust_env = False
    fhir.server.session.headers["Authorization"] = f"Bearer {token}"
    return Holder(patient_id=str(patient.id), fhirpy=client, smart=fhir)


def _observation(patient_id: str, value: float, ident: str | None = None) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "29463-7"}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "valueQuantity": {"value": value, "unit": "kg"},
    }
    if ident is not None:
        resource["identifier"] = [{"system": OBS_SYSTEM, "value": ident}]
    return resource


def test_fhirpy_patch_and_fhirclient_reads_it_back(holder: Holder) -> None:
    """fhirpy's patch() (a merge patch) changes the resource; fhirclient reads the new version."""
    created = holder.fhirpy.resource("Observation", **_observation(holder.patient_id, 70))
    created.save()
    patched = holder.fhirpy.reference("Observation", created.id).patch(status="amended")
    assert patched["status"] == "amended"
    read = Observation.read(created.id, holder.smart.server)
    assert read.status == "amended"
    assert read.meta.versionId == "2"
    assert read.valueQuantity.value == 70


def test_fhirclient_sends_a_fhirpath_patch(holder: Holder) -> None:
    """A FHIRPath Patch built with fhirclient's Parameters model is applied; fhirpy reads the result."""
    created = holder.fhirpy.resource("Observation", **_observation(holder.patient_id, 70))
    created.save()
    body = Parameters(
        {
            "resourceType": "Parameters",
            "parameter": [
                {
                    "name": "operation",
                    "part": [
                        {"name": "type", "valueCode": "replace"},
                        {"name": "path", "valueString": "Observation.valueQuantity.value"},
                        {"name": "value", "valueDecimal": 71.5},
                    ],
                }
            ],
        }
    ).as_json()
    session = holder.smart.server.session
    url = f"{holder.smart.server.base_uri}Observation/{created.id}"
    response = session.patch(url, json=body, headers={"Content-Type": "application/fhir+json"})
    assert response.status_code == 200, response.text
    assert holder.fhirpy.reference("Observation", created.id).to_resource()["valueQuantity"]["value"] == 71.5


def test_fhirpy_conditional_update_and_delete(holder: Holder) -> None:
    """fhirpy's search-set update() creates then updates the one match; delete() removes it."""
    search = holder.fhirpy.resources("Observation").search(
        patient=holder.patient_id, identifier=f"{OBS_SYSTEM}|w-1"
    )
    first, created = search.update(
        holder.fhirpy.resource("Observation", **_observation(holder.patient_id, 70, "w-1"))
    )
    assert created is True
    again, created_again = search.update(
        holder.fhirpy.resource("Observation", **_observation(holder.patient_id, 72, "w-1"))
    )
    assert created_again is False
    assert again.id == first.id
    assert again["valueQuantity"]["value"] == 72
    assert len(search.fetch_all()) == 1  # (fhirpy's count() sends Aidbox's _totalMethod)
    _, status = search.delete()
    assert status == 204
    assert search.fetch_all() == []


def test_fhirclient_conditional_update_refuses_several_matches(holder: Holder) -> None:
    """fhirclient's put_json on criteria matching two resources is refused (412), changing nothing."""
    for value in (70, 71):
        holder.fhirpy.resource("Observation", **_observation(holder.patient_id, value, "dup")).save()
    criteria = f"Observation?patient={holder.patient_id}&identifier={OBS_SYSTEM}|dup"
    response = holder.smart.server.session.put(
        f"{holder.smart.server.base_uri}{criteria}",
        json=_observation(holder.patient_id, 90, "dup"),
        headers={"Content-Type": "application/fhir+json"},
    )
    assert response.status_code == 412
    values = sorted(
        o["valueQuantity"]["value"]
        for o in holder.fhirpy.resources("Observation")
        .search(patient=holder.patient_id, identifier=f"{OBS_SYSTEM}|dup")
        .fetch_all()
    )
    assert values == [70, 71]


def test_fhirpy_get_or_create_is_refused_not_duplicated(holder: Holder) -> None:
    """fhirpy's get_or_create sends its criteria on the create: refused with 400, nothing created."""
    search = holder.fhirpy.resources("Observation").search(
        patient=holder.patient_id, identifier=f"{OBS_SYSTEM}|g"
    )
    resource = holder.fhirpy.resource("Observation", **_observation(holder.patient_id, 70, "g"))
    for _ in range(2):
        with pytest.raises(OperationOutcome, match="If-None-Exist"):
            search.get_or_create(resource)
    assert search.fetch_all() == []
    for _ in range(2):
        holder.fhirpy.resource("Observation", **_observation(holder.patient_id, 70, "g")).save()
    with pytest.raises(MultipleResourcesFound):  # fhirpy's name for a 412
        search.update(resource)


def test_everything_paged_through_both_clients(holder: Holder) -> None:
    """$everything with _count pages through next links the same for fhirpy and fhirclient."""
    for value in range(4):
        holder.fhirpy.resource("Observation", **_observation(holder.patient_id, 60 + value)).save()
    path = f"Patient/{holder.patient_id}/$everything"
    seen: list[str] = []
    page = holder.fhirpy.execute(path, method="get", params={"_count": 2})
    while True:
        seen += [e["resource"]["id"] for e in page["entry"]]
        following = [link["url"] for link in page["link"] if link["relation"] == "next"]
        if not following:
            break
        page = holder.fhirpy.execute(following[0], method="get")
    assert len(seen) == 5
    assert len(set(seen)) == 5
    whole = holder.smart.server.request_json(path)
    assert [e["resource"]["id"] for e in whole["entry"]] == seen
    only = holder.smart.server.request_json(f"{path}?_type=Patient")
    assert [e["resource"]["resourceType"] for e in only["entry"]] == ["Patient"]


def test_fhir_xml_is_406_for_both_clients(server: Server) -> None:
    """A client asking for FHIR XML gets 406 (fhirpy raises the OperationOutcome), not JSON with 200."""
    xml = SyncFHIRClient(server.base_url, extra_headers={"Accept": "application/fhir+xml"})
    with pytest.raises(OperationOutcome, match="JSON"):
        xml.execute("metadata", method="get")
    fhir = smart.FHIRClient(settings={"app_id": "carnet-tests", "api_base": server.base_url + "/"})
    fhir.server.session.trust_env = False
    response = fhir.server.session.get(f"{server.base_url}/metadata", params={"_format": "xml"})
    assert response.status_code == 406
