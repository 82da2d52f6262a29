"""FHIR Bulk Data $export over HTTP: a patient's own export round-trips; a study's export is pseudonymised."""

from __future__ import annotations

import re
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from starlette.testclient import TestClient

from carnet.api.app import Services, build_services, create_app
from carnet.settings import Settings
from carnet.synthetic import generate_population
from minting import Mint
from research_population import approved_study, load

ASYNC = {"Prefer": "respond-async"}
_REFERENCE = re.compile(r"^([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})$")


def _wait(client: TestClient, location: str, headers: dict[str, str]) -> dict[str, Any]:
    """Poll a status URL until the manifest comes (202 carries X-Progress meanwhile)."""
    for _ in range(600):
        status = client.get(location, headers=headers)
        if status.status_code == 200:
            return dict(status.json())
        assert status.status_code == 202, status.text[:300]
        assert status.headers["X-Progress"]
        time.sleep(0.05)
    raise AssertionError("the export did not finish")


def _files(client: TestClient, manifest: dict[str, Any], headers: dict[str, str]) -> list[dict[str, Any]]:
    out = []
    for item in manifest["output"]:
        response = client.get(item["url"], headers=headers)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/fhir+ndjson")
        lines = [orjson.loads(line) for line in response.content.splitlines() if line]
        assert len(lines) == item["count"]
        assert {r["resourceType"] for r in lines} == {item["type"]}
        out.extend(lines)
    return out


def _kick_off(client: TestClient, url: str, headers: dict[str, str]) -> str:
    response = client.get(url, headers={**headers, **ASYNC})
    assert response.status_code == 202, response.text[:300]
    return response.headers["Content-Location"]


def _canonical(resource: dict[str, Any]) -> bytes:
    """A resource without its server-assigned id and meta, every reference's id blanked."""

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items() if k not in ("id", "meta")}
        if isinstance(value, list):
            return [walk(v) for v in value]
        if isinstance(value, str) and _REFERENCE.match(value):
            return _REFERENCE.sub(r"\1/*", value)
        return value

    return orjson.dumps(walk(resource), option=orjson.OPT_SORT_KEYS)


@pytest.fixture
def fresh(tmp_path: Path, settings: Settings) -> Iterator[TestClient]:
    """A second, empty Carnet (its own database; the key directory shared so the test's tokens verify)."""
    other = Settings(
        data_dir=tmp_path / "fresh",
        key_dir=settings.key_dir,
        database_url=f"sqlite:///{tmp_path / 'fresh' / 'carnet.sqlite3'}",
        api_rate_per_minute=6_000_000,
        api_burst=100_000,
    )
    wired = build_services(other)
    with TestClient(create_app(other, wired), base_url="http://testserver") as client:
        yield client
    wired.store.engine.dispose()


def test_own_export_round_trips_into_a_fresh_store(client: TestClient, auth: Mint, fresh: TestClient) -> None:
    """A patient's $export, imported into a fresh store and exported again, gives identical resources."""
    item = next(iter(generate_population(1, 11, documents_per_patient=2, professionals=30)))
    system, value = item.ins
    opened = client.post(
        "/fhir", content=item.to_json(), headers=auth(kind="patient", identifier=f"{system}|{value}")
    )
    assert opened.status_code == 200, opened.text[:300]
    headers = auth(kind="patient", identifier=f"{system}|{value}")
    manifest = _wait(client, _kick_off(client, "/fhir/Patient/$export", headers), headers)
    exported = _files(client, manifest, headers)
    assert {"Patient", "DocumentReference", "Binary", "Observation"} <= {r["resourceType"] for r in exported}
    # Import: one transaction, each resource POSTed under a urn:uuid its references point to.
    urns = {f"{r['resourceType']}/{r['id']}": f"urn:uuid:{uuid.uuid4()}" for r in exported}

    def relink(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: relink(v) for k, v in node.items() if k not in ("id", "meta")}
        if isinstance(node, list):
            return [relink(v) for v in node]
        return urns.get(node, node) if isinstance(node, str) else node

    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": urns[f"{r['resourceType']}/{r['id']}"],
                "resource": relink(r),
                "request": {"method": "POST", "url": r["resourceType"]},
            }
            for r in exported
        ],
    }
    imported = fresh.post(
        "/fhir", content=orjson.dumps(bundle), headers=auth(kind="patient", identifier=f"{system}|{value}")
    )
    assert imported.status_code == 200, imported.text[:500]
    again_headers = auth(kind="patient", identifier=f"{system}|{value}")
    again = _files(
        fresh,
        _wait(fresh, _kick_off(fresh, "/fhir/Patient/$export", again_headers), again_headers),
        again_headers,
    )
    assert Counter(map(_canonical, again)) == Counter(map(_canonical, exported))
    assert len(again) == len(exported)


def test_study_export_over_http(client: TestClient, auth: Mint, services: Services) -> None:
    """A researcher kicks off Group/{study}/$export, polls, and downloads pseudonymised NDJSON; DELETE cancels."""
    approved_study(services, privacy={"k": 2, "maxSuppression": 0.0})
    load(client, auth, 6, choose=False)
    researcher = auth(kind="researcher", sub="researcher:1")
    manifest = _wait(
        client,
        _kick_off(client, "/fhir/Group/s1/$export?_type=Condition,Observation", researcher),
        researcher,
    )
    resources = _files(client, manifest, researcher)
    assert {r["resourceType"] for r in resources} <= {"Patient", "Condition", "Observation"}
    assert manifest["requiresAccessToken"] is True
    assert [r for r in resources if {"identifier", "name", "birthDate", "address", "telecom"} & set(r)] == []
    # Another caller sees nothing of it; its owner cancels it and the files are gone.
    location = manifest["output"][0]["url"]
    assert client.get(location, headers=auth(kind="researcher", sub="researcher:2")).status_code == 404
    status_url = location.replace("$export-file", "$export-status").rsplit("/", 1)[0]
    assert client.delete(status_url, headers=researcher).status_code == 202
    assert client.get(location, headers=researcher).status_code == 404
    assert client.get(status_url, headers=researcher).status_code == 409


@pytest.mark.parametrize(
    ("url", "prefer", "status"),
    [
        ("/fhir/$export?study=s1", False, 400),
        ("/fhir/$export?study=nope", True, 404),
        ("/fhir/Group/waiting/$export", True, 403),
        ("/fhir/Group/s1/$export?_type=Binary", True, 400),
        ("/fhir/Group/s1/$export?_typeFilter=Observation%3Fcode%3Dhttp://loinc.org%7C1", True, 400),
        ("/fhir/Group/s1/$export?_typeFilter=Observation%3Fstatus%3Dfinal", True, 400),
        ("/fhir/Group/s1/$export?_since=soon", True, 400),
        ("/fhir/Group/s1/$export?_elements=id", True, 400),
        ("/fhir/$export-status/unknown", False, 404),
        ("/fhir/$export-file/unknown/x", False, 400),
    ],
)
def test_bad_bulk_requests_are_4xx(
    client: TestClient, auth: Mint, services: Services, url: str, prefer: bool, status: int
) -> None:
    """A kick-off without respond-async, for an unknown or unapproved study, or out of scope is a 4xx OperationOutcome."""
    approved_study(services, data={"types": ["Observation"], "codes": ["http://loinc.org|29463-7"]})
    from research_population import ADMIN, registration

    services.studies.register(ADMIN, "waiting", registration())
    headers = {**auth(kind="researcher", sub="researcher:1"), **(ASYNC if prefer else {})}
    response = client.get(url, headers=headers)
    assert (response.status_code, response.json()["resourceType"]) == (status, "OperationOutcome")
    assert "Content-Location" not in response.headers


def test_studies_registry_over_the_api(client: TestClient, auth: Mint) -> None:
    """An administrator PUTs a study, the DPO approves it over the API; a patient sees it only once approved."""
    from research_population import registration

    admin, dpo = auth(kind="admin", sub="admin:1"), auth(kind="dpo", sub="dpo:1")
    patient = auth(kind="patient", identifier="urn:oid:1.2.250.1.213.1.4.10|255081416802538")
    body = orjson.dumps(registration())
    assert client.put("/fhir/ResearchStudy/s9", content=body, headers=patient).status_code == 403
    created = client.put("/fhir/ResearchStudy/s9", content=body, headers=admin)
    assert (created.status_code, created.json()["resourceType"]) == (201, "ResearchStudy")
    assert client.get("/fhir/ResearchStudy/s9", headers=patient).status_code == 404  # not approved yet
    assert client.get("/fhir/ResearchStudy", headers=patient).json()["total"] == 0
    assert client.post("/fhir/ResearchStudy/s9/$approve", headers=admin).status_code == 403
    approved = client.post("/fhir/ResearchStudy/s9/$approve", headers=dpo)
    assert (approved.status_code, approved.json()["status"]) == (200, "approved")
    seen = client.get("/fhir/ResearchStudy", headers=patient).json()
    assert [e["resource"]["id"] for e in seen["entry"]] == ["s9"]
    bad = [
        client.put("/fhir/ResearchStudy/s10", content=b"{not json", headers=admin),
        client.put("/fhir/ResearchStudy/s10", content=orjson.dumps({"title": "x"}), headers=admin),
        client.put("/fhir/ResearchStudy/s9", content=body, headers=admin),  # taken
        client.post("/fhir/ResearchStudy/nope/$approve", headers=dpo),
    ]
    assert [(r.status_code // 100, r.json()["resourceType"]) for r in bad] == [(4, "OperationOutcome")] * 4
    withdrawn = client.post("/fhir/ResearchStudy/s9/$withdraw", headers=dpo)
    assert (withdrawn.status_code, withdrawn.json()["status"]) == (200, "withdrawn")
