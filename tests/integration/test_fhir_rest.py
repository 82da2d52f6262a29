"""The FHIR R4 REST interactions, end to end on a real database."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from minting import Mint

INS = "urn:oid:1.2.250.1.213.1.4.10"
LOINC = "http://loinc.org"


class Record:
    """A patient's record opened through the API, with their headers."""

    def __init__(self, client: TestClient, auth: Mint, nir: str) -> None:
        self.client = client
        self.headers = auth(kind="patient", identifier=f"{INS}|{nir}")
        patient = {
            "resourceType": "Patient",
            "identifier": [{"system": INS, "value": nir}],
            "name": [{"family": "Martin", "given": ["Léa"]}],
            "birthDate": "1984-03-12",
        }
        response = client.post("/fhir/Patient", json=patient, headers=self.headers)
        assert response.status_code == 201, response.text
        self.id: str = response.json()["id"]
        self.headers = auth(kind="patient", patient=self.id)

    def post(self, resource: dict[str, Any], **headers: str) -> Any:
        """POST a resource and return the response."""
        return self.client.post(
            f"/fhir/{resource['resourceType']}", json=resource, headers={**self.headers, **headers}
        )

    def get(self, path: str, **headers: str) -> Any:
        """GET a path under /fhir."""
        return self.client.get(f"/fhir/{path}", headers={**self.headers, **headers})

    def observation(self, code: str, when: str, value: float = 1.0, status: str = "final") -> dict[str, Any]:
        """Build an Observation in this record."""
        return {
            "resourceType": "Observation",
            "status": status,
            "category": [
                {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                            "code": "vital-signs",
                        }
                    ]
                }
            ],
            "code": {"coding": [{"system": LOINC, "code": code}]},
            "subject": {"reference": f"Patient/{self.id}"},
            "effectiveDateTime": when,
            "valueQuantity": {"value": value, "unit": "kg"},
        }


@pytest.fixture
def record(client: TestClient, auth: Mint) -> Record:
    """A fresh patient record."""
    return Record(client, auth, "2840312345678")


def test_metadata_lists_what_is_implemented(client: TestClient) -> None:
    """The CapabilityStatement is public, R4, and declares transaction, batch and $everything."""
    body = client.get("/fhir/metadata").json()
    assert body["resourceType"] == "CapabilityStatement"
    assert body["fhirVersion"] == "4.0.1"
    rest = body["rest"][0]
    assert {i["code"] for i in rest["interaction"]} == {"transaction", "batch"}
    observation = next(r for r in rest["resource"] if r["type"] == "Observation")
    assert {"code", "date", "status", "category", "patient"} <= {
        p["name"] for p in observation["searchParam"]
    }
    assert not any(r["type"] == "MedicinalProduct" for r in rest["resource"])


def test_create_assigns_id_and_version(record: Record) -> None:
    """The server ignores a client id, assigns its own, and returns ETag and Location."""
    resource = record.observation("29463-7", "2024-01-01")
    resource["id"] = "client-chosen"
    response = record.post(resource)
    assert response.status_code == 201
    body = response.json()
    assert body["id"] != "client-chosen"
    assert body["meta"]["versionId"] == "1"
    assert response.headers["etag"] == 'W/"1"'
    assert response.headers["location"].endswith(f"/Observation/{body['id']}/_history/1")


def test_decimal_digits_survive(record: Record) -> None:
    """A decimal 72.50 is returned as 72.50, not 72.5."""
    response = record.client.post(
        "/fhir/Observation",
        content=(
            '{"resourceType":"Observation","status":"final","code":{"text":"poids"},'
            f'"subject":{{"reference":"Patient/{record.id}"}},"valueQuantity":{{"value":72.50}}}}'
        ).encode(),
        headers=record.headers,
    )
    oid = response.json()["id"]
    raw = record.get(f"Observation/{oid}").content
    assert b'"value":72.50' in raw


def test_update_with_if_match(record: Record) -> None:
    """An update with the current ETag makes version 2; a stale one gets 412."""
    created = record.post(record.observation("29463-7", "2024-01-01")).json()
    created["status"] = "amended"
    url = f"/fhir/Observation/{created['id']}"
    ok = record.client.put(url, json=created, headers={**record.headers, "If-Match": 'W/"1"'})
    assert ok.status_code == 200
    assert ok.json()["meta"]["versionId"] == "2"
    stale = record.client.put(url, json=created, headers={**record.headers, "If-Match": 'W/"1"'})
    assert stale.status_code == 412
    assert stale.json()["resourceType"] == "OperationOutcome"


def test_vread_and_history(record: Record) -> None:
    """Every version stays readable and the history lists them newest first, deletion included."""
    created = record.post(record.observation("29463-7", "2024-01-01", 70)).json()
    oid = created["id"]
    created["valueQuantity"]["value"] = 71
    record.client.put(f"/fhir/Observation/{oid}", json=created, headers=record.headers)
    assert record.client.delete(f"/fhir/Observation/{oid}", headers=record.headers).status_code == 204
    assert record.get(f"Observation/{oid}").status_code == 410
    assert record.get(f"Observation/{oid}/_history/1").json()["valueQuantity"]["value"] == 70
    assert record.get(f"Observation/{oid}/_history/2").json()["valueQuantity"]["value"] == 71
    assert record.get(f"Observation/{oid}/_history/3").status_code == 410
    history = record.get(f"Observation/{oid}/_history").json()
    assert [e["request"]["method"] for e in history["entry"]] == ["DELETE", "PUT", "POST"]
    type_history = record.get(f"Observation/_history?patient=Patient/{record.id}").json()
    assert type_history["total"] == 3


def test_type_history_needs_a_patient(record: Record) -> None:
    """History of a clinical type across records is refused with 400."""
    response = record.get("Observation/_history")
    assert response.status_code == 400


def test_conditional_create(record: Record) -> None:
    """If-None-Exist returns the existing resource instead of a duplicate."""
    resource = record.observation("29463-7", "2024-01-01")
    resource["identifier"] = [{"system": "urn:lab", "value": "A-1"}]
    first = record.post(resource, **{"If-None-Exist": "identifier=urn:lab|A-1"})
    second = record.post(resource, **{"If-None-Exist": "identifier=urn:lab|A-1"})
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("code=29463-7", ["a", "b"]),
        (f"code={LOINC}|8302-2", ["c"]),
        (f"code={LOINC}|", ["a", "b", "c"]),
        ("code=29463-7,8302-2", ["a", "b", "c"]),
        ("date=2024-01", ["a"]),
        ("date=ge2024-02-01", ["b", "c"]),
        ("date=lt2024-02-01", ["a"]),
        ("date=gt2024-02-10T00:00:00Z", ["b", "c"]),  # b is the whole day of 2024-02-10
        ("date=gt2024-02-10", ["c"]),
        ("status=preliminary", ["c"]),
        ("category=vital-signs&code=29463-7&date=le2024-02-10", ["a", "b"]),
    ],
)
def test_search_parameters(record: Record, query: str, expected: list[str]) -> None:
    """Token and date parameters select the right resources, as a searchset Bundle."""
    made = {
        "a": record.post(record.observation("29463-7", "2024-01-15")).json()["id"],
        "b": record.post(record.observation("29463-7", "2024-02-10")).json()["id"],
        "c": record.post(record.observation("8302-2", "2024-03-01", status="preliminary")).json()["id"],
    }
    body = record.get(f"Observation?patient={record.id}&{query}").json()
    assert body["type"] == "searchset"
    found = sorted(k for k, v in made.items() if v in {e["resource"]["id"] for e in body.get("entry", [])})
    assert found == expected
    assert body["total"] == len(expected)


def test_paging_and_sort(record: Record) -> None:
    """_count pages with next/previous links; _sort=date orders by effective date."""
    for day in range(1, 8):
        record.post(record.observation("29463-7", f"2024-01-{day:02d}", value=day))
    first = record.get(f"Observation?patient={record.id}&_sort=date&_count=3").json()
    assert [e["resource"]["valueQuantity"]["value"] for e in first["entry"]] == [1, 2, 3]
    assert first["total"] == 7
    links = {link["relation"]: link["url"] for link in first["link"]}
    assert "previous" not in links
    second = record.client.get(
        links["next"].split("/fhir/", 1)[1].join(["/fhir/", ""]), headers=record.headers
    ).json()
    assert [e["resource"]["valueQuantity"]["value"] for e in second["entry"]] == [4, 5, 6]
    assert {link["relation"] for link in second["link"]} == {"self", "next", "previous"}
    descending = record.get(f"Observation?patient={record.id}&_sort=-date&_count=2").json()
    assert [e["resource"]["valueQuantity"]["value"] for e in descending["entry"]] == [7, 6]
    counted = record.get(f"Observation?patient={record.id}&_summary=count").json()
    assert counted["total"] == 7
    assert "entry" not in counted


def test_search_by_id_and_last_updated(record: Record) -> None:
    """_id and _lastUpdated work inside a record."""
    oid = record.post(record.observation("29463-7", "2024-01-01")).json()["id"]
    record.post(record.observation("29463-7", "2024-01-02"))
    assert record.get(f"Observation?patient={record.id}&_id={oid}").json()["total"] == 1
    assert record.get(f"Observation?patient={record.id}&_lastUpdated=ge2020-01-01").json()["total"] == 2
    assert record.get(f"Observation?patient={record.id}&_lastUpdated=lt2020-01-01").json()["total"] == 0


def test_unsupported_parameter_is_reported(record: Record) -> None:
    """An unknown parameter is a 400 naming it; lenient handling warns in an outcome entry."""
    strict = record.get(f"Observation?patient={record.id}&colour=blue")
    assert strict.status_code == 400
    assert "colour" in strict.json()["issue"][0]["diagnostics"]
    lenient = record.get(f"Observation?patient={record.id}&colour=blue", Prefer="handling=lenient")
    assert lenient.status_code == 200
    outcome = [e for e in lenient.json()["entry"] if e["search"]["mode"] == "outcome"]
    assert "colour" in outcome[0]["resource"]["issue"][0]["diagnostics"]


def test_cross_patient_search_is_refused(record: Record) -> None:
    """Searching a clinical type without a patient answers 400 with an explanation."""
    response = record.get("Observation?code=29463-7")
    assert response.status_code == 400
    assert "patient-centred" in response.json()["issue"][0]["diagnostics"]


def test_patient_lookup_by_identifier(record: Record, client: TestClient, auth: Mint) -> None:
    """Patient?identifier= finds the caller's own record by INS, and nobody else's."""
    own = record.get(f"Patient?identifier={INS}|2840312345678").json()
    assert [e["resource"]["id"] for e in own["entry"]] == [record.id]
    stranger = auth(kind="patient", identifier=f"{INS}|1010101010101")
    other = client.get(f"/fhir/Patient?identifier={INS}|2840312345678", headers=stranger).json()
    assert other["total"] == 0


def test_transaction_resolves_references_atomically(client: TestClient, auth: Mint) -> None:
    """A transaction creates the record and its resources with urn:uuid references resolved; a bad entry rolls back all."""
    headers = auth(kind="patient", identifier=f"{INS}|1770599000011")
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:11111111-1111-1111-1111-111111111111",
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"text": "poids"},
                    "subject": {"reference": "urn:uuid:22222222-2222-2222-2222-222222222222"},
                },
                "request": {"method": "POST", "url": "Observation"},
            },
            {
                "fullUrl": "urn:uuid:22222222-2222-2222-2222-222222222222",
                "resource": {
                    "resourceType": "Patient",
                    "identifier": [{"system": INS, "value": "1770599000011"}],
                },
                "request": {"method": "POST", "url": "Patient"},
            },
        ],
    }
    broken = {
        **bundle,
        "entry": [
            *bundle["entry"],
            {
                "request": {"method": "POST", "url": "Observation"},
                "resource": {"resourceType": "Observation"},
            },
        ],
    }
    assert client.post("/fhir", json=broken, headers=headers).status_code == 422
    assert client.get(f"/fhir/Patient?identifier={INS}|1770599000011", headers=headers).json()["total"] == 0
    response = client.post("/fhir", json=bundle, headers=headers)
    assert response.status_code == 200, response.text
    entries = response.json()["entry"]
    assert [e["response"]["status"] for e in entries] == ["201", "201"]
    patient_id = entries[1]["response"]["location"].split("/")[1]
    obs_id = entries[0]["response"]["location"].split("/")[1]
    headers = auth(kind="patient", patient=patient_id)
    observation = client.get(f"/fhir/Observation/{obs_id}", headers=headers).json()
    assert observation["subject"]["reference"] == f"Patient/{patient_id}"


def test_batch_reports_each_entry(record: Record) -> None:
    """A batch processes entries independently and reports failures with an OperationOutcome."""
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {
                "resource": record.observation("29463-7", "2024-01-01"),
                "request": {"method": "POST", "url": "Observation"},
            },
            {
                "resource": {"resourceType": "Observation"},
                "request": {"method": "POST", "url": "Observation"},
            },
            {"request": {"method": "GET", "url": f"Observation?patient={record.id}"}},
        ],
    }
    body = record.client.post("/fhir", json=bundle, headers=record.headers).json()
    assert body["type"] == "batch-response"
    statuses = [e["response"]["status"] for e in body["entry"]]
    assert statuses == ["201", "422", "200"]
    assert body["entry"][1]["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert body["entry"][2]["resource"]["total"] == 1


def test_everything_returns_the_record(record: Record) -> None:
    """$everything returns the Patient first and every resource of the record, plus cited directory entries."""
    practitioner = record.client.post(
        "/fhir/Practitioner",
        json={"resourceType": "Practitioner", "name": [{"family": "Bernard"}]},
        headers=record.headers,
    ).json()
    observation = record.observation("29463-7", "2024-01-01")
    observation["performer"] = [{"reference": f"Practitioner/{practitioner['id']}"}]
    record.post(observation)
    body = record.get(f"Patient/{record.id}/$everything").json()
    types = [e["resource"]["resourceType"] for e in body["entry"]]
    assert types == ["Patient", "Observation", "Practitioner"]


def test_other_patients_record_is_invisible(record: Record, client: TestClient, auth: Mint) -> None:
    """Another patient gets 404 on reads and 403 on searches of this record: nothing leaks."""
    oid = record.post(record.observation("29463-7", "2024-01-01")).json()["id"]
    other = Record(client, auth, "1990101000022")
    assert other.get(f"Observation/{oid}").status_code == 404
    assert other.get(f"Observation/{oid}/_history/1").status_code == 404
    assert other.get(f"Patient/{record.id}/$everything").status_code == 404
    assert other.get(f"Observation?patient={record.id}").status_code == 403
    unknown = "00000000-0000-0000-0000-000000000000"
    absent = other.get(f"Observation/{unknown}")
    hidden = other.get(f"Observation/{oid}")
    assert (hidden.status_code, hidden.text.replace(oid, unknown)) == (absent.status_code, absent.text)


def test_admin_never_reads_content(record: Record, client: TestClient, auth: Mint) -> None:
    """An administrator's token reads nothing clinical."""
    oid = record.post(record.observation("29463-7", "2024-01-01")).json()["id"]
    admin = auth(kind="admin")
    assert client.get(f"/fhir/Observation/{oid}", headers=admin).status_code == 404
    assert client.get(f"/fhir/Observation?patient={record.id}", headers=admin).status_code == 403


def test_employer_is_refused(record: Record, client: TestClient, auth: Mint) -> None:
    """An employer's token is refused everywhere, directory included."""
    employer = auth(kind="employer")
    assert client.get(f"/fhir/Observation?patient={record.id}", headers=employer).status_code == 403
    assert client.get("/fhir/Practitioner", headers=employer).status_code == 403


def test_transaction_resolves_relative_references_to_absolute_full_urls(
    client: TestClient, auth: Mint
) -> None:
    """A reference "Patient/a2" resolves to the entry whose fullUrl is http://…/Patient/a2; If-None-Exist may name its type."""
    headers = auth(kind="patient", identifier=f"{INS}|1770599000099")
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "http://example.org/fhir/Patient/a2",
                "resource": {
                    "resourceType": "Patient",
                    "identifier": [{"system": INS, "value": "1770599000099"}],
                },
                "request": {
                    "method": "POST",
                    "url": "Patient",
                    "ifNoneExist": f"Patient?identifier={INS}|1770599000099",
                },
            },
            {
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"text": "taille"},
                    "subject": {"reference": "Patient/a2"},
                },
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }
    response = client.post("/fhir", json=bundle, headers=headers)
    assert response.status_code == 200, response.text
    patient_id = response.json()["entry"][0]["response"]["location"].split("/")[1]
    obs_id = response.json()["entry"][1]["response"]["location"].split("/")[1]
    observation = client.get(
        f"/fhir/Observation/{obs_id}", headers=auth(kind="patient", patient=patient_id)
    ).json()
    assert observation["subject"]["reference"] == f"Patient/{patient_id}"
