"""A reimbursement history (CNAM-HR) sent to ``$from-cda``: stored when it reads, refused whole when not."""

from __future__ import annotations

import base64
import functools
from datetime import UTC, datetime

import hl7
import httpx
from starlette.testclient import TestClient

from carnet.api.app import Services
from carnet.domain.documents import SIMPLIFIED_PUBLISH_PROFILE
from carnet.domain.feeds import FeedKind
from carnet.feeds.cda import parse_cda
from carnet.synthetic import generate_population
from carnet.synthetic.hl7v2 import SendingSystem, hl7v2_message
from minting import Mint
from outcomes import assert_outcome

FROM_CDA = "/fhir/DocumentReference/$from-cda"


@functools.cache
def _history() -> bytes:
    """The CNAM-HR document ``carnet generate --cnam-hr`` writes for one patient."""
    patient = next(iter(generate_population(1, seed=3, cnam_hr=True)))
    binaries = {entry["fullUrl"]: entry["resource"] for entry in patient.bundle["entry"]}
    for entry in patient.bundle["entry"]:
        resource = entry["resource"]
        if (
            resource["resourceType"] == "DocumentReference"
            and resource["type"]["coding"][0]["code"] == "REMB"
        ):
            return base64.b64decode(binaries[resource["content"][0]["attachment"]["url"]]["data"])
    raise AssertionError("no reimbursement history generated")


def _open_record(client: TestClient, auth: Mint, raw: bytes) -> tuple[dict[str, str], str]:
    ins = parse_cda(raw).ins
    assert ins is not None
    assert ins.extension is not None
    headers = auth(kind="patient", identifier=f"urn:oid:{ins.root}|{ins.extension}")
    patient = {
        "resourceType": "Patient",
        "identifier": [{"system": f"urn:oid:{ins.root}", "value": ins.extension}],
    }
    opened = client.post("/fhir/Patient", json=patient, headers=headers)
    assert opened.status_code == 201, opened.text
    return {**headers, "Content-Type": "application/hl7-cda+xml"}, str(opened.json()["id"])


def _documents(client: TestClient, headers: dict[str, str], patient_id: str) -> int:
    found = client.get(
        f"/fhir/DocumentReference?patient=Patient/{patient_id}",
        headers={"Authorization": headers["Authorization"]},
    )
    assert found.status_code == 200, found.text
    return len(found.json().get("entry", []))


def test_a_malformed_cnam_hr_is_a_422_and_nothing_is_stored(client: TestClient, auth: Mint) -> None:
    """A CNAM-HR without its vaccinations section gets a 422 OperationOutcome naming it; the record holds no document."""
    raw = _history()
    headers, patient_id = _open_record(client, auth, raw)
    start = raw.index(b'<code code="11369-6"')
    broken = raw[:start] + raw[start:].replace(b'code="11369-6"', b'code="00000-0"', 1)
    issue = assert_outcome(client.post(FROM_CDA, content=broken, headers=headers), 422)
    assert "11369-6" in issue["diagnostics"]
    assert _documents(client, headers, patient_id) == 0


def test_a_well_formed_cnam_hr_is_stored(client: TestClient, auth: Mint) -> None:
    """The generated CNAM-HR is accepted as a class-60 document of the record."""
    raw = _history()
    headers, patient_id = _open_record(client, auth, raw)
    created = client.post(FROM_CDA, content=raw, headers=headers)
    assert created.status_code == 201, created.text
    assert created.json()["category"][0]["coding"][0]["code"] == "60"
    assert _documents(client, headers, patient_id) == 1


def test_over_hl7v2_a_malformed_cnam_hr_is_an_application_error_and_a_good_one_is_stored(
    client: TestClient, services: Services, auth: Mint
) -> None:
    """The insurer's HL7 v2 feed: a CNAM-HR missing a section is ACKed AE (dead-lettered, nothing stored); the whole one AA."""
    raw = _history()
    headers, patient_id = _open_record(client, auth, raw)
    ins = parse_cda(raw).ins
    assert ins is not None
    assert ins.extension is not None
    registered = services.feeds.add(
        "cnam",
        name="Assurance Maladie",
        kind=FeedKind.CNAM,
        classes=frozenset({"60"}),
        sender=f"{SendingSystem().application}^{SendingSystem().facility}",
    )

    def send(cda: bytes, control_id: str) -> str:
        message = hl7v2_message(
            cda,
            ins=(ins.root, str(ins.extension)),
            type_code="REMB",
            type_label="Données de remboursement",
            control_id=control_id,
            sent_at=datetime(2026, 12, 6, 9, 0, tzinfo=UTC),
        )
        answer = client.post(
            "/feeds/cnam/hl7v2",
            content=message,
            headers={"Authorization": f"Bearer {registered.secret}", "Content-Type": "application/hl7-v2"},
        )
        return str(hl7.parse(answer.content.decode("utf-8").split("\rMSH")[0]).segment("MSA")[1])

    start = raw.index(b'<code code="46264-8"')
    broken = raw[:start] + raw[start:].replace(b'code="46264-8"', b'code="00000-0"', 1)
    assert send(broken, "R1") == "AE"
    assert _documents(client, headers, patient_id) == 0
    assert [letter.control_id for letter in services.hl7v2.dead_letters()] == ["R1"]
    assert send(raw, "R2") == "AA"
    assert _documents(client, headers, patient_id) == 1


def test_over_iti_105_the_insurer_feed_gets_the_same_check(
    client: TestClient, services: Services, auth: Mint
) -> None:
    """A CNAM feed's Simplified Publish (ITI-105) of a CNAM-HR with an undated medicine is 422 and stores nothing; the whole one is 201."""
    raw = _history()
    headers, patient_id = _open_record(client, auth, raw)
    services.feeds.add("cnam-http", name="Assurance Maladie", kind=FeedKind.CNAM, classes=frozenset({"60"}))
    feed = auth(kind="feed", feed="cnam-http")

    def publish(content: bytes, unique: str) -> httpx.Response:
        body = {
            "resourceType": "DocumentReference",
            "meta": {"profile": [SIMPLIFIED_PUBLISH_PROFILE]},
            "masterIdentifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:oid:1.2.250.1.999.{unique}"},
            "status": "current",
            "type": {"coding": [{"system": "urn:oid:1.2.250.1.213.1.1.4.12", "code": "REMB"}]},
            "category": [{"coding": [{"system": "urn:oid:1.2.250.1.213.1.1.4.1", "code": "60"}]}],
            "subject": {"reference": f"Patient/{patient_id}"},
            "content": [
                {"attachment": {"contentType": "text/xml", "data": base64.b64encode(content).decode()}}
            ],
        }
        return client.post("/fhir/DocumentReference", json=body, headers=feed)

    dispensed = raw.index(b'<performer typeCode="PRF"><time value=')
    undated = raw[:dispensed] + raw[dispensed:].replace(b"<time value=", b'<time nullFlavor="UNK" v=', 1)
    issue = assert_outcome(publish(undated, "1"), 422)
    assert "10160-0" in issue["diagnostics"]
    assert _documents(client, headers, patient_id) == 0
    created = publish(raw, "2")
    assert created.status_code == 201, created.text
    assert _documents(client, headers, patient_id) == 1
