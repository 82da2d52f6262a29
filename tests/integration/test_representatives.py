"""A legal representative signs in as themself and switches between the records they represent (portal)."""

from __future__ import annotations

import base64
import re

from starlette.testclient import TestClient

from minting import Mint

INS = "urn:oid:1.2.250.1.213.1.4.10"
CLASS = "urn:oid:1.2.250.1.213.1.1.4.1"
VISIBILITY = "urn:oid:1.2.250.1.213.1.1.4.13"


def _record(client: TestClient, auth: Mint, nir: str, given: str) -> tuple[str, dict[str, str]]:
    headers = auth(kind="patient", identifier=f"{INS}|{nir}")
    patient = {
        "resourceType": "Patient",
        "identifier": [{"system": INS, "value": nir}],
        "name": [{"family": "Durand", "given": [given]}],
    }
    answer = client.post("/fhir/Patient", json=patient, headers=headers)
    assert answer.status_code == 201, answer.text
    patient_id = str(answer.json()["id"])
    return patient_id, auth(kind="patient", patient=patient_id)


def _document(client: TestClient, patient_id: str, holder: dict[str, str], label: str) -> str:
    body = {
        "resourceType": "DocumentReference",
        "status": "current",
        "category": [{"coding": [{"system": CLASS, "code": "10"}]}],
        "subject": {"reference": f"Patient/{patient_id}"},
        "securityLabel": [{"coding": [{"system": VISIBILITY, "code": label}]}],
        "content": [{"attachment": {"contentType": "text/plain", "data": base64.b64encode(b"cr").decode()}}],
    }
    answer = client.post("/fhir/DocumentReference", json=body, headers=holder)
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def _csrf(client: TestClient, path: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).text)
    assert found is not None
    return found.group(1)


def test_a_parent_switches_between_their_children_and_sees_what_the_rules_allow(
    client: TestClient, auth: Mint
) -> None:
    """Signed in as themself, a parent acts on one child's record at a time; hidden documents stay hidden."""
    lea, lea_holder = _record(client, auth, "2150775000001", "Léa")
    hugo, _ = _record(client, auth, "1170775000002", "Hugo")
    stranger, _ = _record(client, auth, "1170775000003", "Zoé")
    shown = _document(client, lea, lea_holder, "N")
    hidden = _document(client, lea, lea_holder, "INVISIBLE_REPRESENTANTS_LEGAUX")
    signed = client.post(
        "/login",
        data={
            "csrf_token": _csrf(client, "/login"),
            "kind": "representative",
            "name": "Marie Durand",
            "represents": f"{INS}|2150775000001\n{INS}|1170775000002",
        },
        follow_redirects=False,
    )
    assert signed.status_code == 303
    assert signed.headers["location"] == "/patient/switch"
    listing = client.get("/patient/switch")
    assert listing.status_code == 200
    assert "Léa Durand" in listing.text
    assert "Hugo Durand" in listing.text
    assert "Zoé" not in listing.text
    token = _csrf(client, "/patient/switch")
    assert client.post("/patient/switch", data={"csrf_token": token, "record": stranger}).status_code == 403
    moved = client.post("/patient/switch", data={"csrf_token": token, "record": lea}, follow_redirects=False)
    assert moved.status_code == 303
    documents = client.get("/patient/documents")
    assert documents.status_code == 200
    assert "Vous agissez pour Léa Durand" in documents.text
    assert shown in documents.text
    assert hidden not in documents.text
    assert client.get(f"/patient/documents/{hidden}").status_code == 404
    client.post("/patient/switch", data={"csrf_token": token, "record": hugo})
    documents = client.get("/patient/documents")
    assert "Vous agissez pour Hugo Durand" in documents.text
    assert shown not in documents.text
    assert client.get(f"/patient/documents/{shown}").status_code == 404
