"""A pharmacy's own dispensation documents (issue 13 item 3): through the feed routes, read into "Recently dispensed".

A pharmacy feed registered for class 43 sends the structured dispensation CDA (as ``carnet
generate --dispensations`` writes it) over HL7 v2 and as ITI-65; its medicines appear under the
current treatments of the patient's profile, with the pharmacy; a malformed one is refused whole
(AE and a dead letter; 422) and nothing of it is stored; a feed not registered for 43 is refused.
"""

from __future__ import annotations

import base64
import functools
from datetime import UTC, datetime
from typing import Any

import pytest
from starlette.testclient import TestClient
from test_feed_choices import _holder, _sign_in

from carnet.api.app import Services
from carnet.demo import SeededPatient, seed_population
from carnet.domain.feeds import FeedKind
from carnet.feeds.cda import parse_cda
from carnet.feeds.dispensation import read_dispensation
from carnet.synthetic import generate_population
from carnet.synthetic.hl7v2 import hl7v2_message
from minting import Mint

NOW = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)
MHD = "https://profiles.ihe.net/ITI/MHD/StructureDefinition/"


@functools.cache
def dispensation(seed: int = 5) -> bytes:
    """The structured dispensation ``carnet generate --dispensations`` writes for a patient of ``seed``."""
    generated = next(iter(generate_population(1, seed=seed, documents_per_patient=8, dispensations=True)))
    for entry in generated.bundle["entry"]:
        resource = entry["resource"]
        if resource["resourceType"] == "Binary" and b'code="60590-7"' in base64.b64decode(resource["data"]):
            return base64.b64decode(resource["data"])
    raise AssertionError("no structured dispensation generated")


@pytest.fixture
def patient(services: Services) -> SeededPatient:
    """One synthetic patient of the demo population."""
    return seed_population(services.records, patients=1, seed=2028)[0]


def _for(patient: SeededPatient, raw: bytes, marker: str) -> bytes:
    """The generated dispensation made the patient's (their INS), of 1 December 2026, its own id and medicine names."""
    ins = parse_cda(raw).ins
    assert ins is not None
    assert ins.extension is not None
    doc_id = parse_cda(raw).id
    assert doc_id is not None
    out = raw.replace(ins.extension.encode(), patient.ins_value.encode())
    out = out.replace(f'root="{doc_id.root}"'.encode(), f'root="{doc_id.root}{len(marker)}"'.encode(), 1)
    for item in read_dispensation(raw):  # handed over recently, under a name of its own
        out = out.replace(item.day.strftime("%Y%m%d").encode(), b"20261201")
        out = out.replace(
            b"<name>" + item.label.encode(), b"<name>" + marker.encode() + b" " + item.label.encode()
        )
    return out


def _dispensed(client: TestClient) -> str:
    profile = client.get("/patient/profile")
    assert profile.status_code == 200
    start = profile.text.index('id="dispensed-title"')
    return profile.text[start : start + 4000]


def _dispensations(services: Services, patient: SeededPatient) -> int:
    """How many dispensation documents (60593-1) the record holds."""
    records = services.records.records(_holder(patient))
    query = [("patient", f"Patient/{patient.patient_id}"), ("type", "http://loinc.org|60593-1")]
    return len(records.search("DocumentReference", query).resources)


def _root(raw: bytes) -> str:
    found = parse_cda(raw).id
    assert found is not None
    return str(found.root)


def _provide(patient: SeededPatient, raw: bytes) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "meta": {"profile": [MHD + "IHE.MHD.Minimal.ProvideBundle"]},
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:5e700000-0000-4000-8000-000000000001",
                "resource": {"resourceType": "List", "status": "current", "mode": "working"},
            },
            {
                "fullUrl": "urn:uuid:5e700000-0000-4000-8000-000000000002",
                "resource": {
                    "resourceType": "DocumentReference",
                    "status": "current",
                    "masterIdentifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:oid:{_root(raw)}"},
                    "type": {"coding": [{"system": "http://loinc.org", "code": "60593-1"}]},
                    "category": [{"coding": [{"system": "urn:oid:1.2.250.1.213.1.1.4.1", "code": "43"}]}],
                    "subject": {"identifier": {"system": patient.ins_system, "value": patient.ins_value}},
                    "content": [
                        {
                            "attachment": {
                                "contentType": "text/xml",
                                "url": "urn:uuid:5e700000-0000-4000-8000-000000000003",
                                "title": "Dispensation",
                            }
                        }
                    ],
                },
            },
            {
                "fullUrl": "urn:uuid:5e700000-0000-4000-8000-000000000003",
                "resource": {
                    "resourceType": "Binary",
                    "contentType": "text/xml",
                    "data": base64.b64encode(raw).decode(),
                },
            },
        ],
    }


def test_a_pharmacy_feed_sends_dispensations_over_hl7v2_and_iti65_into_recently_dispensed(
    client: TestClient, services: Services, auth: Mint, patient: SeededPatient
) -> None:
    """HL7 v2: AA, the medicine under Recently dispensed with the pharmacy; ITI-65: 201, the same; malformed: AE / 422, nothing stored."""
    services.feeds.add(
        "pharma-77",
        name="Pharmacie 77",
        kind=FeedKind.DISPENSATION,
        classes=frozenset({"43"}),
        sender="DPI-HOPITAL^HOPITAL-A",
    )
    before = _dispensations(services, patient)
    raw = _for(patient, dispensation(), "HL7V2")
    ins = (patient.ins_system.removeprefix("urn:oid:"), patient.ins_value)
    message = hl7v2_message(
        raw,
        ins=ins,
        type_code="60593-1",
        type_label="Dispensation médicamenteuse",
        sent_at=NOW,
        control_id="PH-1",
    )
    receipt = services.hl7v2.receive("pharma-77", message)
    assert receipt.error is None, receipt.error
    assert receipt.outcome == "stored"
    _sign_in(client, patient)
    shown = _dispensed(client)
    item = read_dispensation(raw)[0]
    assert item.label in shown
    assert str(item.pharmacy) in shown
    assert "(pharmacy)" in shown or "(pharmacie)" in shown

    by_mhd = _for(patient, dispensation(6), "ITI65")
    sent = client.post("/fhir", json=_provide(patient, by_mhd), headers=auth(kind="feed", feed="pharma-77"))
    assert sent.status_code == 200, sent.text
    assert sent.json()["entry"][1]["response"]["status"] == "201"
    assert read_dispensation(by_mhd)[0].label in _dispensed(client)

    malformed = _for(patient, dispensation(7), "BROKEN").replace(
        b'codeSystem="1.2.250.1.215.200.1.1.1"', b'codeSystem="1.2.3"'
    )
    bad = hl7v2_message(
        malformed,
        ins=ins,
        type_code="60593-1",
        type_label="Dispensation médicamenteuse",
        sent_at=NOW,
        control_id="PH-2",
    )
    refused = services.hl7v2.receive("pharma-77", bad)
    assert refused.error is not None
    assert b"MSA|AE|PH-2" in refused.ack
    assert any(letter.control_id == "PH-2" for letter in services.hl7v2.dead_letters())
    answer = client.post(
        "/fhir", json=_provide(patient, malformed), headers=auth(kind="feed", feed="pharma-77")
    )
    assert answer.status_code == 422, answer.text
    assert "CIP" in answer.json()["issue"][0]["diagnostics"]
    assert "BROKEN" not in _dispensed(client)
    assert _dispensations(services, patient) == before + 2  # the HL7 v2 and the ITI-65 ones


def test_a_feed_not_registered_for_dispensations_is_refused(
    client: TestClient, services: Services, auth: Mint, patient: SeededPatient
) -> None:
    """A lab (class 10) sending a dispensation: 403 on ITI-65, AE on HL7 v2; nothing stored."""
    services.feeds.add("lab-77", name="Labo 77", kind=FeedKind.HL7V2, classes=frozenset({"10"}))
    raw = _for(patient, dispensation(), "WRONG")
    sent = client.post("/fhir", json=_provide(patient, raw), headers=auth(kind="feed", feed="lab-77"))
    assert sent.status_code == 403
    ins = (patient.ins_system.removeprefix("urn:oid:"), patient.ins_value)
    message = hl7v2_message(
        raw,
        ins=ins,
        type_code="60593-1",
        type_label="Dispensation médicamenteuse",
        sent_at=NOW,
        control_id="L-1",
    )
    assert b"MSA|AE|L-1" in services.hl7v2.receive("lab-77", message).ack
    _sign_in(client, patient)
    assert "WRONG" not in _dispensed(client)
