"""Two real FHIR client libraries, ``fhirpy`` and SMART's ``fhirclient``, round-trip the interactions
of issue 19 against a real ``carnet serve``: PATCH (merge, JSON Patch, FHIRPath Patch), conditional
create, update and delete, ``$everything`` paged with ``_count``, ``_type`` and ``_since``, unknown
parameters refused (fhirpy's ``get_or_create``), ``_include``/``_revinclude``, ``_elements``,
``_summary`` (fhirpy's ``count()`` too), and 406 for FHIR XML."""

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
from fhirclient.models.documentreference import DocumentReference
from fhirclient.models.observation import Observation
from fhirclient.models.parameters import Parameters
from fhirclient.models.patient import Patient
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
    later = holder.fhirpy.resource("Observation", **_observation(holder.patient_id, 99))
    later.save()
    last = later["meta"]["lastUpdated"]  # _since is inclusive: what changed at or after it
    since = holder.fhirpy.execute(path, method="get", params={"_since": last, "_count": 1})
    assert [e["resource"]["id"] for e in since["entry"]] == [later.id]
    assert since["total"] == 1
    assert not [link for link in since["link"] if link["relation"] == "next"]
    smart_since = holder.smart.server.session.get(
        f"{holder.smart.server.base_uri}{path}", params={"_since": last}
    ).json()
    assert [e["resource"]["id"] for e in smart_since["entry"]] == [later.id]


def test_fhir_xml_is_406_for_both_clients(server: Server) -> None:
    """A client asking for FHIR XML gets 406 (fhirpy raises the OperationOutcome), not JSON with 200."""
    xml = SyncFHIRClient(server.base_url, extra_headers={"Accept": "application/fhir+xml"})
    with pytest.raises(OperationOutcome, match="JSON"):
        xml.execute("metadata", method="get")
    fhir = smart.FHIRClient(settings={"app_id": "carnet-tests", "api_base": server.base_url + "/"})
    fhir.server.session.trust_env = False
    response = fhir.server.session.get(f"{server.base_url}/metadata", params={"_format": "xml"})
    assert response.status_code == 406


def _document(patient_id: str, author_id: str) -> dict[str, Any]:
    return {
        "resourceType": "DocumentReference",
        "status": "current",
        "subject": {"reference": f"Patient/{patient_id}"},
        "author": [{"reference": f"Practitioner/{author_id}"}],
        "type": {"coding": [{"system": LOINC, "code": "11506-3"}]},
        "content": [{"attachment": {"contentType": "text/plain", "data": "Ym9uam91cg=="}}],
    }


def test_include_and_revinclude_through_both_clients(holder: Holder) -> None:
    """fhirpy's include()/revinclude() and fhirclient's FHIRSearch.include() bring the referenced and
    referring resources of the record (search mode include), the author from the directory."""
    author = holder.fhirpy.resource("Practitioner", name=[{"family": "Bernard"}])
    author.save()
    document = holder.fhirpy.resource("DocumentReference", **_document(holder.patient_id, str(author.id)))
    document.save()
    observation = holder.fhirpy.resource("Observation", **_observation(holder.patient_id, 70))
    observation.save()
    documents = holder.fhirpy.resources("DocumentReference").search(patient=holder.patient_id)
    bundle = holder.fhirpy.execute(
        "DocumentReference",
        method="get",
        params={"patient": holder.patient_id, "_include": "DocumentReference:author"},
    )
    modes = {(e["resource"]["resourceType"], e["search"]["mode"]) for e in bundle["entry"]}
    assert modes == {("DocumentReference", "match"), ("Practitioner", "include")}
    fetched = documents.include("DocumentReference", "author").fetch_raw()
    assert [e["resource"]["id"] for e in fetched["entry"] if e["search"]["mode"] == "include"] == [author.id]
    patients = holder.fhirpy.resources("Patient").search(_id=holder.patient_id)
    raw = patients.revinclude("Observation", "subject").fetch_raw()
    assert {e["resource"]["id"] for e in raw["entry"] if e["search"]["mode"] == "include"} == {observation.id}

    search = DocumentReference.where(struct={"patient": holder.patient_id}).include("author")
    entries = [e for page in search.perform_iter(holder.smart.server) for e in page.entry]
    assert {(e.resource.resource_type, e.search.mode) for e in entries} == modes
    reverse = Patient.where(struct={"_id": holder.patient_id}).include("subject", Observation, reverse=True)
    entries = [e for page in reverse.perform_iter(holder.smart.server) for e in page.entry]
    assert sorted(e.resource.resource_type for e in entries) == ["Observation", "Patient"]


def test_elements_summary_and_count_through_both_clients(holder: Holder) -> None:
    """fhirpy's elements(), _summary=true|text|data, fhirpy's count() (which sends _totalMethod) and
    _summary=count; fhirclient reads the same subsets."""
    for value in (70, 71, 72):
        resource = {**_observation(holder.patient_id, value), "note": [{"text": "à jeun"}]}
        holder.fhirpy.resource("Observation", **resource).save()
    search = holder.fhirpy.resources("Observation").search(patient=holder.patient_id)
    assert search.count() == 3
    counted = holder.fhirpy.execute(
        "Observation", method="get", params={"patient": holder.patient_id, "_summary": "count"}
    )
    assert counted["total"] == 3
    assert "entry" not in counted
    cut = search.elements("valueQuantity").fetch()
    assert len(cut) == 3
    assert all(set(r) == {"resourceType", "id", "meta", "status", "valueQuantity"} for r in cut)
    assert all(t["code"] == "SUBSETTED" for r in cut for t in r["meta"]["tag"])
    for summary, absent, present in (
        ("true", "note", "valueQuantity"),
        ("text", "valueQuantity", "status"),
        ("data", "text", "note"),
    ):
        found = search.search(_summary=summary).fetch()
        assert all(absent not in r and present in r for r in found), summary
    bundle = holder.smart.server.request_json(
        f"Observation?patient={holder.patient_id}&_elements=valueQuantity&_summary=false"
    )
    assert {e["resource"]["valueQuantity"]["value"] for e in bundle["entry"]} == {70, 71, 72}
    one = bundle["entry"][0]["resource"]["id"]
    text = holder.smart.server.request_json(f"Observation/{one}?_summary=text")
    assert "valueQuantity" not in text
    assert any(t["code"] == "SUBSETTED" for t in text["meta"]["tag"])


def test_json_patch_and_if_none_exist_through_both_clients(holder: Holder) -> None:
    """A JSON Patch sent by fhirpy's and fhirclient's sessions; If-None-Exist from both creates once."""
    created = holder.fhirpy.resource("Observation", **_observation(holder.patient_id, 70))
    created.save()
    patch = [{"op": "replace", "path": "/valueQuantity/value", "value": 75}]
    session = holder.smart.server.session
    url = f"{holder.smart.server.base_uri}Observation/{created.id}"
    response = session.patch(url, json=patch, headers={"Content-Type": "application/json-patch+json"})
    assert response.status_code == 200, response.text
    assert holder.fhirpy.reference("Observation", created.id).to_resource()["valueQuantity"]["value"] == 75
    criteria = f"patient={holder.patient_id}&identifier={OBS_SYSTEM}|once"
    body = _observation(holder.patient_id, 70, "once")
    first = session.post(
        f"{holder.smart.server.base_uri}Observation",
        json=body,
        headers={"Content-Type": "application/fhir+json", "If-None-Exist": criteria},
    )
    assert first.status_code == 201, first.text
    conditional = SyncFHIRClient(
        holder.fhirpy.url,
        authorization=holder.fhirpy.authorization,
        extra_headers={"If-None-Exist": criteria},
    )
    again = conditional.resource("Observation", **body)
    again.save()  # fhirpy sends no header of its own for this: the client's extra header carries it
    assert again.id == first.json()["id"]
    found = holder.fhirpy.resources("Observation").search(identifier=f"{OBS_SYSTEM}|once")
    assert len(found.search(patient=holder.patient_id).fetch_all()) == 1


def test_fhirclient_conditional_update_and_delete(holder: Holder) -> None:
    """fhirclient's session on PUT/DELETE [type]?criteria: create, update the one match, delete it."""
    session, base = holder.smart.server.session, holder.smart.server.base_uri
    criteria = f"Observation?patient={holder.patient_id}&identifier={OBS_SYSTEM}|c-1"
    headers = {"Content-Type": "application/fhir+json"}
    made = session.put(f"{base}{criteria}", json=_observation(holder.patient_id, 70, "c-1"), headers=headers)
    assert made.status_code == 201, made.text
    changed = session.put(
        f"{base}{criteria}", json=_observation(holder.patient_id, 71, "c-1"), headers=headers
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["id"] == made.json()["id"]
    read = Observation.read(made.json()["id"], holder.smart.server)
    assert read.valueQuantity.value == 71
    assert session.delete(f"{base}{criteria}").status_code in (200, 204)
    assert holder.smart.server.request_json(criteria).get("total") == 0


def test_unknown_parameters_refused_through_both_clients(holder: Holder) -> None:
    """A parameter an interaction does not take is 400 through either client (read, search, $everything)."""
    reference = holder.fhirpy.reference("Patient", holder.patient_id)
    with pytest.raises(OperationOutcome):
        holder.fhirpy.execute(f"Patient/{holder.patient_id}", method="get", params={"colour": "blue"})
    with pytest.raises(OperationOutcome):
        holder.fhirpy.resources("Observation").search(patient=holder.patient_id, colour="blue").fetch()
    assert reference.to_resource()["id"] == holder.patient_id
    session, base = holder.smart.server.session, holder.smart.server.base_uri
    for path in (
        f"Patient/{holder.patient_id}?colour=blue",
        f"Observation?patient={holder.patient_id}&colour=blue",
        f"Patient/{holder.patient_id}/$everything?colour=blue",
    ):
        assert session.get(f"{base}{path}").status_code == 400, path
    created = session.post(
        f"{base}Observation?colour=blue",
        json=_observation(holder.patient_id, 70),
        headers={"Content-Type": "application/fhir+json"},
    )
    assert created.status_code == 400


def test_include_iterate_follows_a_chain_within_a_bound(holder: Holder) -> None:
    """fhirpy's include(iterate=True) follows DocumentReference.relatesTo down a chain of six
    documents, four hops at most (ITERATE_ROUNDS after the first); fhirclient's session too."""
    author = holder.fhirpy.resource("Practitioner", name=[{"family": "Bernard"}])
    author.save()
    chain: list[str] = []
    for _ in range(6):
        body = _document(holder.patient_id, str(author.id))
        if chain:
            body["relatesTo"] = [
                {"code": "appends", "target": {"reference": f"DocumentReference/{chain[-1]}"}}
            ]
        document = holder.fhirpy.resource("DocumentReference", **body)
        document.save()
        chain.append(str(document.id))
    last = holder.fhirpy.resources("DocumentReference").search(patient=holder.patient_id, _id=chain[-1])
    raw = last.include("DocumentReference", "relatesto", iterate=True).fetch_raw()
    included = [e["resource"]["id"] for e in raw["entry"] if e["search"]["mode"] == "include"]
    assert included == chain[1:5][::-1]  # chain[4], [3], [2], [1]; the first is past the bound
    once = last.include("DocumentReference", "relatesto").fetch_raw()
    assert [e["resource"]["id"] for e in once["entry"] if e["search"]["mode"] == "include"] == [chain[4]]
    both = holder.smart.server.request_json(
        f"DocumentReference?patient={holder.patient_id}&_id={chain[-1]}"
        "&_include:iterate=DocumentReference:relatesto&_include:iterate=DocumentReference:author"
    )
    kinds = [(e["resource"]["resourceType"], e["search"]["mode"]) for e in both["entry"]]
    assert kinds.count(("Practitioner", "include")) == 1
    assert kinds.count(("DocumentReference", "include")) == 4
    response = holder.smart.server.session.get(
        f"{holder.smart.server.base_uri}DocumentReference",
        params={"patient": holder.patient_id, "_include:recurse": "DocumentReference:relatesto"},
    )
    assert response.status_code == 400
