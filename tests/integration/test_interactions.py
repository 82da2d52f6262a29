"""The FHIR interactions clients expect (issue 19): PATCH, conditional update and delete, paged
``$everything``, unknown parameters refused everywhere, XML refused with 406, and a
CapabilityStatement that says exactly what the routes do."""

from __future__ import annotations

from typing import Any

from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from records import Mint, open_record

LOINC = "http://loinc.org"


def observation(patient_id: str, code: str = "8867-4", value: float = 72, **more: Any) -> dict[str, Any]:
    """A heart-rate-like Observation of a record."""
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "valueQuantity": {"value": value, "unit": "/min"},
        **more,
    }


def create(client: TestClient, headers: dict[str, str], resource: dict[str, Any]) -> dict[str, Any]:
    """POST a resource; return what was stored."""
    response = client.post(f"/fhir/{resource['resourceType']}", json=resource, headers=headers)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def test_fhir_xml_is_refused_with_406(client: TestClient, auth: Mint) -> None:
    """Accept: application/fhir+xml or _format=xml gets 406 and an OperationOutcome, on every route."""
    patient_id, headers = open_record(client, auth)
    for extra, url in (
        ({"Accept": "application/fhir+xml"}, f"/fhir/Patient/{patient_id}"),
        ({"Accept": "application/xml+fhir"}, "/fhir/metadata"),
        ({}, f"/fhir/Patient/{patient_id}?_format=xml"),
        ({}, f"/fhir/Observation?patient={patient_id}&_format=application/fhir+xml"),
    ):
        response = client.get(url, headers={**headers, **extra})
        assert response.status_code == 406, url
        assert response.json()["resourceType"] == "OperationOutcome"
        assert "JSON" in response.json()["issue"][0]["diagnostics"]
    both = client.get(
        f"/fhir/Patient/{patient_id}",
        headers={**headers, "Accept": "application/fhir+xml, application/fhir+json;q=0.9"},
    )
    assert both.status_code == 200
    assert both.json()["id"] == patient_id


def test_unknown_parameters_are_refused_by_every_interaction(client: TestClient, auth: Mint) -> None:
    """Create, read, update, delete, vread and transaction refuse a parameter they do not take (400)."""
    patient_id, headers = open_record(client, auth)
    stored = create(client, headers, observation(patient_id))
    oid = stored["id"]
    refused = [
        client.post(f"/fhir/Observation?code={LOINC}|8867-4", json=observation(patient_id), headers=headers),
        client.get(f"/fhir/Observation/{oid}?foo=1", headers=headers),
        client.put(
            f"/fhir/Observation/{oid}?bar=2", json={**observation(patient_id), "id": oid}, headers=headers
        ),
        client.get(f"/fhir/Observation/{oid}/_history/1?x=y", headers=headers),
        client.post(
            "/fhir?x=1", json={"resourceType": "Bundle", "type": "batch", "entry": []}, headers=headers
        ),
        client.delete(f"/fhir/Observation/{oid}?baz=3", headers=headers),
    ]
    for response in refused:
        assert response.status_code == 400, response.request.url
        assert response.json()["resourceType"] == "OperationOutcome"
    # Nothing was created, changed or deleted by the refused requests.
    found = client.get(f"/fhir/Observation?patient={patient_id}", headers=headers).json()
    assert found["total"] == 1
    assert (
        client.get(f"/fhir/Observation/{oid}?_format=json", headers=headers).json()["meta"]["versionId"]
        == "1"
    )


def test_json_patch_fhirpath_patch_and_merge_patch(client: TestClient, auth: Mint) -> None:
    """The three patch forms change the current version; a stale If-Match and an id change are refused."""
    patient_id, headers = open_record(client, auth)
    oid = create(client, headers, observation(patient_id))["id"]
    url = f"/fhir/Observation/{oid}"
    json_patch = client.patch(
        url,
        json=[
            {"op": "test", "path": "/status", "value": "final"},
            {"op": "replace", "path": "/valueQuantity/value", "value": 80},
        ],
        headers={**headers, "Content-Type": "application/json-patch+json"},
    )
    assert json_patch.status_code == 200, json_patch.text
    assert json_patch.json()["valueQuantity"]["value"] == 80
    assert json_patch.headers["etag"] == 'W/"2"'
    fhirpath = {
        "resourceType": "Parameters",
        "parameter": [
            {
                "name": "operation",
                "part": [
                    {"name": "type", "valueCode": "replace"},
                    {"name": "path", "valueString": "Observation.status"},
                    {"name": "value", "valueCode": "amended"},
                ],
            },
            {
                "name": "operation",
                "part": [
                    {"name": "type", "valueCode": "add"},
                    {"name": "path", "valueString": "Observation"},
                    {"name": "name", "valueString": "effectiveDateTime"},
                    {"name": "value", "valueDateTime": "2024-05-01T10:00:00+02:00"},
                ],
            },
        ],
    }
    patched = client.patch(url, json=fhirpath, headers={**headers, "If-Match": 'W/"2"'})
    assert patched.status_code == 200, patched.text
    assert patched.json()["status"] == "amended"
    assert patched.json()["effectiveDateTime"] == "2024-05-01T10:00:00+02:00"
    merged = client.patch(
        url,
        json={"effectiveDateTime": None, "valueQuantity": {"value": 75}},
        headers={**headers, "Content-Type": "application/merge-patch+json"},
    )
    assert merged.status_code == 200, merged.text
    assert "effectiveDateTime" not in merged.json()
    assert merged.json()["valueQuantity"] == {"value": 75, "unit": "/min"}
    stale = client.patch(url, json={"status": "final"}, headers={**headers, "If-Match": 'W/"1"'})
    assert stale.status_code == 412
    failed_test = client.patch(
        url,
        json=[{"op": "test", "path": "/status", "value": "final"}, {"op": "remove", "path": "/code"}],
        headers={**headers, "Content-Type": "application/json-patch+json"},
    )
    assert failed_test.status_code == 400
    renamed = client.patch(
        url,
        json=[{"op": "replace", "path": "/id", "value": "other"}],
        headers={**headers, "Content-Type": "application/json-patch+json"},
    )
    assert renamed.status_code == 400
    invalid = client.patch(url, json={"status": 12}, headers=headers)
    assert invalid.status_code == 422  # not valid R4 once patched
    history = client.get(f"{url}/_history", headers=headers).json()
    assert history["total"] == 4  # the refused patches wrote nothing


def test_conditional_update_and_delete(client: TestClient, auth: Mint) -> None:
    """PUT [type]?criteria creates when none matches, updates the one match, and is 412 for several;
    DELETE [type]?criteria deletes the one match."""
    patient_id, headers = open_record(client, auth)
    ident = {"system": "urn:example:obs", "value": "hr-1"}
    criteria = f"/fhir/Observation?patient={patient_id}&identifier=urn:example:obs|hr-1"
    first = client.put(criteria, json=observation(patient_id, identifier=[ident]), headers=headers)
    assert first.status_code == 201, first.text
    oid = first.json()["id"]
    second = client.put(criteria, json=observation(patient_id, value=90, identifier=[ident]), headers=headers)
    assert second.status_code == 200, second.text
    assert second.json()["id"] == oid
    assert second.json()["valueQuantity"]["value"] == 90
    assert second.json()["meta"]["versionId"] == "2"
    create(client, headers, observation(patient_id, identifier=[ident]))
    several = client.put(criteria, json=observation(patient_id, identifier=[ident]), headers=headers)
    assert several.status_code == 412
    assert client.delete(criteria, headers=headers).status_code == 412
    assert client.put("/fhir/Observation", json=observation(patient_id), headers=headers).status_code == 400
    only = f"/fhir/Observation?patient={patient_id}&identifier=urn:example:obs|hr-2"
    oid2 = create(client, headers, observation(patient_id, identifier=[{**ident, "value": "hr-2"}]))["id"]
    assert client.delete(only, headers=headers).status_code == 204
    assert client.get(f"/fhir/Observation/{oid2}", headers=headers).status_code == 410
    assert client.delete(only, headers=headers).status_code == 204  # nothing matches any more


def test_everything_pages_with_count_type_and_since(client: TestClient, auth: Mint) -> None:
    """$everything takes _count with next links that walk the whole record, _type and _since."""
    patient_id, headers = open_record(client, auth)
    for value in range(5):
        create(client, headers, observation(patient_id, value=60 + value))
    create(
        client,
        headers,
        {
            "resourceType": "Condition",
            "subject": {"reference": f"Patient/{patient_id}"},
            "code": {"text": "asthme"},
        },
    )
    url = f"/fhir/Patient/{patient_id}/$everything"
    whole = client.get(url, headers=headers).json()
    assert whole["total"] == 7
    seen: list[str] = []
    page = client.get(f"{url}?_count=3", headers=headers).json()
    pages = 1
    while True:
        assert page["total"] == 7
        seen += [e["resource"]["id"] for e in page["entry"]]
        following = [link["url"] for link in page["link"] if link["relation"] == "next"]
        if not following:
            break
        page = client.get(following[0].removeprefix("http://testserver"), headers=headers).json()
        pages += 1
    assert pages == 3
    assert seen == [e["resource"]["id"] for e in whole["entry"]]
    typed = client.get(f"{url}?_type=Condition,Patient", headers=headers).json()
    assert sorted(e["resource"]["resourceType"] for e in typed["entry"]) == ["Condition", "Patient"]
    last = max(e["resource"]["meta"]["lastUpdated"] for e in whole["entry"])
    since = client.get(url, params={"_since": last}, headers=headers).json()
    assert [e["resource"]["resourceType"] for e in since["entry"]] == ["Condition"]
    assert client.get(f"{url}?_count=two", headers=headers).status_code == 400
    assert client.get(f"{url}?_elements=id", headers=headers).status_code == 400


def test_summary_and_elements_on_read_and_search(client: TestClient, auth: Mint) -> None:
    """_summary=true|text|data and _elements cut reads and search results, tagged SUBSETTED."""
    patient_id, headers = open_record(client, auth)
    oid = create(
        client,
        headers,
        observation(
            patient_id, note=[{"text": "à jeun"}], text={"status": "generated", "div": "<div>72</div>"}
        ),
    )["id"]
    url = f"/fhir/Observation/{oid}"

    def keys(query: str) -> set[str]:
        response = client.get(f"{url}?{query}", headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        assert any(t["code"] == "SUBSETTED" for t in body["meta"]["tag"])
        return set(body)

    assert "note" not in keys("_summary=true")
    assert {"code", "status", "valueQuantity", "subject"} <= keys("_summary=true")
    assert keys("_summary=text") == {"resourceType", "id", "meta", "text", "status"}
    assert keys("_summary=data") == {
        "resourceType",
        "id",
        "meta",
        "status",
        "code",
        "subject",
        "valueQuantity",
        "note",
    }
    assert keys("_elements=valueQuantity") == {"resourceType", "id", "meta", "status", "valueQuantity"}
    whole = client.get(url, headers=headers).json()
    assert "tag" not in whole["meta"]
    assert "note" in whole
    found = client.get(f"/fhir/Observation?patient={patient_id}&_elements=code", headers=headers).json()
    assert set(found["entry"][0]["resource"]) == {"resourceType", "id", "meta", "status", "code"}
    summarised = client.get(f"/fhir/Observation?patient={patient_id}&_summary=true", headers=headers).json()
    assert "note" not in summarised["entry"][0]["resource"]
    assert client.get(f"{url}?_summary=count", headers=headers).status_code == 400
    assert (
        client.get(f"/fhir/Observation?patient={patient_id}&_summary=all", headers=headers).status_code == 400
    )


def test_include_and_revinclude_within_the_record(client: TestClient, auth: Mint) -> None:
    """_include follows a reference of the matches; _revinclude brings what points to them, both in the record."""
    patient_id, headers = open_record(client, auth)
    first = create(client, headers, observation(patient_id, value=70))
    second = create(client, headers, observation(patient_id, value=71))
    other_id, other_headers = open_record(client, auth)
    create(client, other_headers, observation(other_id))
    with_patient = client.get(
        f"/fhir/Observation?patient={patient_id}&_id={second['id']}&_include=Observation:subject",
        headers=headers,
    ).json()
    modes = {(e["resource"]["resourceType"], e["search"]["mode"]) for e in with_patient["entry"]}
    assert modes == {("Observation", "match"), ("Patient", "include")}
    assert with_patient["total"] == 1
    patients = client.get(
        f"/fhir/Patient?_id={patient_id}&_revinclude=Observation:subject", headers=headers
    ).json()
    included = sorted(e["resource"]["id"] for e in patients["entry"] if e["search"]["mode"] == "include")
    assert included == sorted([first["id"], second["id"]])  # the other record's Observation is not there
    bad = [
        "/fhir/Observation?patient={p}&_include=Observation:code",
        "/fhir/Observation?patient={p}&_include=Condition:subject",
        "/fhir/Observation?patient={p}&_include=*",
    ]
    for url in bad:
        assert client.get(url.format(p=patient_id), headers=headers).status_code == 400, url


def _routes(client: TestClient) -> set[tuple[str, str]]:
    """Every (method, path) under /fhir, the included routers' routes included."""
    app: Any = client.app
    found: set[tuple[str, str]] = set()
    for route in app.routes:
        inner: list[tuple[str, Any]] = [("", route)]
        if hasattr(route, "original_router"):  # FastAPI's included router
            inner = [(str(route.include_context.prefix), r) for r in route.original_router.routes]
        for prefix, candidate in inner:
            if isinstance(candidate, APIRoute) and (prefix + candidate.path).startswith("/fhir"):
                found |= {(method, prefix + candidate.path) for method in candidate.methods}
    return found


def test_capability_statement_says_what_the_routes_do(client: TestClient) -> None:
    """Each interaction the CapabilityStatement declares has its route, and each FHIR route is declared."""
    routes = _routes(client)
    statement = client.get("/fhir/metadata").json()
    rest = statement["rest"][0]
    methods = {
        "read": ("GET", "/fhir/{resource_type}/{resource_id}"),
        "vread": ("GET", "/fhir/{resource_type}/{resource_id}/_history/{version_id}"),
        "update": ("PUT", "/fhir/{resource_type}/{resource_id}"),
        "patch": ("PATCH", "/fhir/{resource_type}/{resource_id}"),
        "delete": ("DELETE", "/fhir/{resource_type}/{resource_id}"),
        "history-instance": ("GET", "/fhir/{resource_type}/{resource_id}/_history"),
        "history-type": ("GET", "/fhir/{resource_type}/_history"),
        "create": ("POST", "/fhir/{resource_type}"),
        "search-type": ("GET", "/fhir/{resource_type}"),
    }
    declared = {i["code"] for r in rest["resource"] for i in r["interaction"]}
    assert declared <= set(methods)
    for code in declared:
        assert methods[code] in routes, code
    assert {methods[code] for code in declared} == set(methods.values())  # every one is declared
    generic = {(m, p) for m, p in routes if p.startswith("/fhir/{resource_type}")}
    searches_and_conditionals = {
        ("POST", "/fhir/{resource_type}/_search"),
        ("PUT", "/fhir/{resource_type}"),
        ("DELETE", "/fhir/{resource_type}"),
    }
    assert generic == set(methods.values()) | searches_and_conditionals  # no route goes undeclared
    observation_entry = next(r for r in rest["resource"] if r["type"] == "Observation")
    assert observation_entry["conditionalUpdate"] is True
    assert ("PUT", "/fhir/{resource_type}") in routes
    assert observation_entry["conditionalDelete"] == "single"
    assert ("DELETE", "/fhir/{resource_type}") in routes
    assert {"transaction", "batch"} == {i["code"] for i in rest["interaction"]}
    assert ("POST", "/fhir") in routes
    assert ("GET", "/fhir/Patient/{patient_id}/$everything") in routes
    everything = next(o for o in rest["operation"] if o["name"] == "everything")
    for parameter in ("_count", "_type", "_since"):
        assert parameter in everything["documentation"]
    assert statement["format"] == ["application/fhir+json", "json"]
    assert "406" in rest["documentation"]
    for said in ("_totalMethod", ":iterate", "_summary", "_elements", "_include", "_revinclude"):
        assert said in rest["documentation"], said  # each exercised by tests/integration/test_fhir_clients.py
    assert set(statement["patchFormat"]) == {
        "application/json-patch+json",
        "application/fhir+json",
        "application/merge-patch+json",
    }
