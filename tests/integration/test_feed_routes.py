"""The patient's choice on every feed route (issue 13 items 3, 4, 5, 6): ITI-105, ITI-65, $from-cda,
a pharmacy's MedicationDispense and a device feed's measures.

"Ask me first" puts what the feed sent in the patient's inbox (202 with an OperationOutcome saying
it waits) instead of refusing it; "refuse" keeps nothing; the journal says which feed offered which
class, when — never the content.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest
from starlette.testclient import TestClient
from test_feed_choices import CDA_TEMPLATE, _holder, _sign_in

from carnet.api.app import Services
from carnet.demo import SeededPatient, seed_population
from carnet.domain.documents import SIMPLIFIED_PUBLISH_PROFILE
from carnet.domain.feeds import FeedKind
from carnet.services.feed_inbox import FeedChoice
from minting import Mint

FROM_CDA = "/fhir/DocumentReference/$from-cda"
CLASS = "urn:oid:1.2.250.1.213.1.1.4.1"
MHD = "https://profiles.ihe.net/ITI/MHD/StructureDefinition/"
UCUM = "http://unitsofmeasure.org"
MEASURES = (
    "https://interop.esante.gouv.fr/ig/fhir/mesures/StructureDefinition/mesures-bundle-flux-alimentation"
)


@pytest.fixture
def patient(services: Services) -> SeededPatient:
    """One synthetic patient of the demo population."""
    return seed_population(services.records, patients=1, seed=2027)[0]


def _cda(patient: SeededPatient, number: int, marker: str) -> bytes:
    return CDA_TEMPLATE.format(
        doc_id=f"2.25.88{number}",
        marker=marker,
        ins_root=patient.ins_system.removeprefix("urn:oid:"),
        ins=patient.ins_value,
        body=base64.b64encode(f"Résultat {marker}".encode()).decode(),
    ).encode()


def _publish(patient: SeededPatient, number: int, marker: str) -> dict[str, Any]:
    return {
        "resourceType": "DocumentReference",
        "meta": {"profile": [SIMPLIFIED_PUBLISH_PROFILE]},
        "status": "current",
        "masterIdentifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:oid:2.25.99{number}"},
        "category": [{"coding": [{"system": CLASS, "code": "10"}]}],
        "subject": {"identifier": {"system": patient.ins_system, "value": patient.ins_value}},
        "content": [
            {
                "attachment": {
                    "contentType": "text/plain",
                    "title": f"Compte rendu {marker}",
                    "data": base64.b64encode(marker.encode()).decode(),
                }
            }
        ],
    }


def _provide_bundle(patient: SeededPatient, number: int, marker: str) -> dict[str, Any]:
    """An ITI-65 Provide Document Bundle: SubmissionSet, DocumentReference, Binary, Patient by INS."""
    document = _publish(patient, number, marker)
    data = document["content"][0]["attachment"].pop("data")
    document["content"][0]["attachment"]["url"] = "urn:uuid:0b1d0000-0000-4000-8000-00000000000b"
    document["subject"] = {"reference": "urn:uuid:0b1d0000-0000-4000-8000-00000000000p"}
    del document["meta"]
    return {
        "resourceType": "Bundle",
        "meta": {"profile": [MHD + "IHE.MHD.Minimal.ProvideBundle"]},
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:0b1d0000-0000-4000-8000-00000000000s",
                "resource": {"resourceType": "List", "status": "current", "mode": "working"},
                "request": {"method": "POST", "url": "List"},
            },
            {
                "fullUrl": "urn:uuid:0b1d0000-0000-4000-8000-00000000000d",
                "resource": document,
                "request": {"method": "POST", "url": "DocumentReference"},
            },
            {
                "fullUrl": "urn:uuid:0b1d0000-0000-4000-8000-00000000000b",
                "resource": {"resourceType": "Binary", "contentType": "text/plain", "data": data},
                "request": {"method": "POST", "url": "Binary"},
            },
            {
                "fullUrl": "urn:uuid:0b1d0000-0000-4000-8000-00000000000p",
                "resource": {
                    "resourceType": "Patient",
                    "identifier": [{"system": patient.ins_system, "value": patient.ins_value}],
                },
            },
        ],
    }


def _everything(services: Services, patient: SeededPatient) -> str:
    """Every resource of the record, as the patient reads it, in one string."""
    records = services.records.records(_holder(patient))
    found = records.search(
        "DocumentReference", [("patient", f"Patient/{patient.patient_id}"), ("_count", "500")]
    )
    titles = [str(d["content"][0]["attachment"].get("title")) for d in found.resources]
    dispenses = records.search("MedicationDispense", [("patient", f"Patient/{patient.patient_id}")])
    return repr(titles) + repr(dispenses.resources)


def _feed_entries(services: Services, patient: SeededPatient, feed_id: str) -> list[dict[str, Any]]:
    """The patient's journal (AuditEvents) entries of one feed."""
    records = services.records.records(_holder(patient))
    found = records.search("AuditEvent", [("patient", f"Patient/{patient.patient_id}"), ("_count", "200")])
    return [e for e in found.resources if feed_id in repr(e.get("agent"))]


def test_ask_first_holds_iti105_iti65_and_from_cda_in_the_inbox(
    client: TestClient, services: Services, auth: Mint, patient: SeededPatient
) -> None:
    """Ask me first: each route answers 202 (ITI-65: the entry 202) saying it waits; the inbox lists them, the record has none."""
    services.feeds.add("hosp-1", name="Hôpital Un", kind=FeedKind.CDA, classes=frozenset({"10"}))
    services.feed_inbox.choose(_holder(patient), "hosp-1", FeedChoice.ASK)
    feed = auth(kind="feed", feed="hosp-1")

    published = client.post(
        "/fhir/DocumentReference", json=_publish(patient, 1, "ITI105-WAITS"), headers=feed
    )
    assert published.status_code == 202, published.text
    outcome = published.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["severity"] == "information"
    assert "decide first" in outcome["issue"][0]["diagnostics"]

    cda = client.post(
        FROM_CDA, content=_cda(patient, 2, "CDA-WAITS"), headers={**feed, "Content-Type": "application/xml"}
    )
    assert cda.status_code == 202, cda.text

    bundle = client.post("/fhir", json=_provide_bundle(patient, 3, "ITI65-WAITS"), headers=feed)
    assert bundle.status_code == 200, bundle.text
    statuses = [e["response"]["status"] for e in bundle.json()["entry"]]
    assert statuses[1] == "202 Accepted"
    assert "decide first" in bundle.json()["entry"][1]["response"]["outcome"]["issue"][0]["diagnostics"]

    waiting = {o.title for o in services.feed_inbox.pending(_holder(patient))}
    assert waiting == {"Compte rendu ITI105-WAITS", "Bilan lipidique CDA-WAITS", "Compte rendu ITI65-WAITS"}
    assert "WAITS" not in _everything(services, patient)
    # The journal: which feed offered which class, when — never the content.
    offered = _feed_entries(services, patient, "hosp-1")
    assert len(offered) == 3
    for entry in offered:
        text = repr(entry)
        assert "WAITS" not in text
        queries = [base64.b64decode(e["query"]).decode() for e in entry.get("entity") or [] if e.get("query")]
        assert queries == ["class=10"]
        assert entry["recorded"]

    # Refused in the portal: nothing of it stays; accepted: stored as if just received.
    csrf = _sign_in(client, patient)
    offers = {o.title: o.offer_id for o in services.feed_inbox.pending(_holder(patient))}
    client.post(
        f"/patient/feeds/offers/{offers['Compte rendu ITI105-WAITS']}/decline",
        data={"csrf_token": csrf},
        follow_redirects=False,
    )
    client.post(
        f"/patient/feeds/offers/{offers['Compte rendu ITI65-WAITS']}/accept",
        data={"csrf_token": csrf},
        follow_redirects=False,
    )
    record = _everything(services, patient)
    assert "ITI105-WAITS" not in record
    assert "Compte rendu ITI65-WAITS" in record
    assert [o.title for o in services.feed_inbox.pending(_holder(patient))] == ["Bilan lipidique CDA-WAITS"]


def test_accepted_and_refused_feeds_on_the_fhir_routes(
    client: TestClient, services: Services, auth: Mint, patient: SeededPatient
) -> None:
    """Accepted (fr-dmp's default): ITI-65 stores its document (201); refused: 403 saying so, nothing kept, no offer."""
    services.feeds.add("hosp-2", name="Hôpital Deux", kind=FeedKind.CDA, classes=frozenset({"10"}))
    feed = auth(kind="feed", feed="hosp-2")
    stored = client.post("/fhir", json=_provide_bundle(patient, 4, "ITI65-STORED"), headers=feed)
    assert stored.status_code == 200, stored.text
    entry = stored.json()["entry"][1]["response"]
    assert entry["status"] == "201"
    assert entry["location"].startswith("DocumentReference/")
    assert "Compte rendu ITI65-STORED" in _everything(services, patient)

    services.feed_inbox.choose(_holder(patient), "hosp-2", FeedChoice.REFUSE)
    refused = client.post("/fhir/DocumentReference", json=_publish(patient, 5, "REFUSED"), headers=feed)
    assert refused.status_code == 403
    assert "refuses this feed" in refused.json()["issue"][0]["diagnostics"]
    cda = client.post(
        FROM_CDA, content=_cda(patient, 6, "REFUSED"), headers={**feed, "Content-Type": "application/xml"}
    )
    assert cda.status_code == 403
    assert "REFUSED" not in _everything(services, patient)
    assert services.feed_inbox.pending(_holder(patient)) == []

    malformed = _provide_bundle(patient, 7, "BROKEN")
    malformed["entry"][2]["fullUrl"] = "urn:uuid:elsewhere"
    answer = client.post("/fhir", json=malformed, headers=feed)
    assert answer.status_code == 422
    assert "names no Binary" in answer.json()["issue"][0]["diagnostics"]


def _dispense(patient: SeededPatient, label: str) -> dict[str, Any]:
    return {
        "resourceType": "MedicationDispense",
        "status": "completed",
        "medicationCodeableConcept": {
            "coding": [
                {"system": "urn:oid:1.2.250.1.215.200.1.1.1", "code": "3400930000000", "display": label}
            ],
            "text": label,
        },
        "subject": {"identifier": {"system": patient.ins_system, "value": patient.ins_value}},
        "quantity": {"value": 2, "unit": "boîte"},
        "whenHandedOver": "2026-12-01T10:00:00+01:00",
        "performer": [{"actor": {"display": "Pharmacie du Port"}}],
    }


def test_a_pharmacy_feed_writes_medication_dispenses_within_its_classes_and_the_choice(
    client: TestClient, services: Services, auth: Mint, patient: SeededPatient
) -> None:
    """A class-43 pharmacy: 201 and the dispense is under Recently dispensed; a feed without 43: 403; ask first: 202, then accepted."""
    services.feeds.add(
        "pharma-1", name="Pharmacie du Port", kind=FeedKind.DISPENSATION, classes=frozenset({"43"})
    )
    services.feeds.add("lab-x", name="Labo X", kind=FeedKind.CDA, classes=frozenset({"10"}))
    pharmacy = auth(kind="feed", feed="pharma-1")
    created = client.post(
        "/fhir/MedicationDispense", json=_dispense(patient, "AMOXICILLINE 1 g"), headers=pharmacy
    )
    assert created.status_code == 201, created.text
    wrong = client.post(
        "/fhir/MedicationDispense", json=_dispense(patient, "WRONG"), headers=auth(kind="feed", feed="lab-x")
    )
    assert wrong.status_code == 403
    csrf = _sign_in(client, patient)
    assert csrf
    profile = client.get("/patient/profile").text
    assert "AMOXICILLINE 1 g" in profile
    assert "WRONG" not in _everything(services, patient)

    services.feed_inbox.choose(_holder(patient), "pharma-1", FeedChoice.ASK)
    waits = client.post(
        "/fhir/MedicationDispense", json=_dispense(patient, "DOLIPRANE 1000"), headers=pharmacy
    )
    assert waits.status_code == 202
    assert "DOLIPRANE" not in _everything(services, patient)
    (offer,) = services.feed_inbox.pending(_holder(patient))
    assert (offer.class_code, offer.title) == ("43", "DOLIPRANE 1000")
    services.feed_inbox.accept(_holder(patient), offer.offer_id)
    assert "DOLIPRANE 1000" in _everything(services, patient)


def _blood_pressure(patient: SeededPatient, systolic: int, diastolic: int) -> dict[str, Any]:
    def component(code: str, value: int) -> dict[str, Any]:
        return {
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "valueQuantity": {"value": value, "unit": "mm[Hg]", "system": UCUM, "code": "mm[Hg]"},
        }

    observation = {
        "resourceType": "Observation",
        "status": "final",
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
        "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
        "subject": {"reference": f"Patient/{patient.patient_id}"},
        "effectiveDateTime": f"2026-12-0{1 + systolic % 5}T08:00:00+01:00",
        "component": [component("8480-6", systolic), component("8462-4", diastolic)],
    }
    return {
        "resourceType": "Bundle",
        "meta": {"profile": [MEASURES]},
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:5d1c8f4e-0000-4000-8000-0000000000a1",
                "resource": observation,
                "request": {"method": "POST", "url": "Observation"},
            }
        ],
    }


def _heart_rate(patient: SeededPatient) -> dict[str, Any]:
    bundle = _blood_pressure(patient, 120, 80)
    observation = bundle["entry"][0]["resource"]
    del observation["component"]
    observation["code"] = {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]}
    observation["valueQuantity"] = {"value": 72, "unit": "/min", "system": UCUM, "code": "/min"}
    return bundle


def test_a_device_feed_writes_its_measure_types_into_the_charts_as_the_patient_chose(
    client: TestClient, services: Services, auth: Mint, patient: SeededPatient
) -> None:
    """A device feed for blood pressure: its measures appear in the profile chart; heart rate (not registered) 403; ask: 202 then accepted; refuse: 403."""
    services.feeds.add(
        "tensio-1", name="Tensiomètre connecté", kind=FeedKind.MEASURES, classes=frozenset({"85354-9"})
    )
    device = auth(kind="feed", feed="tensio-1")
    first = client.post("/fhir", json=_blood_pressure(patient, 133, 86), headers=device)
    assert first.status_code == 200, first.text
    assert first.json()["entry"][0]["response"]["status"] == "201"
    again = client.post("/fhir", json=_blood_pressure(patient, 133, 86), headers=device)
    assert again.json()["entry"][0]["response"]["status"] == "200"  # the same measure, stored once
    not_registered = client.post("/fhir", json=_heart_rate(patient), headers=device)
    assert not_registered.status_code == 403
    # As a plain create (not the measures flux), a feed is refused as on every other route.
    plain = _blood_pressure(patient, 139, 88)["entry"][0]["resource"]
    assert client.post("/fhir/Observation", json=plain, headers=device).status_code == 403

    services.feed_inbox.choose(_holder(patient), "tensio-1", FeedChoice.ASK)
    waits = client.post("/fhir", json=_blood_pressure(patient, 141, 92), headers=device)
    assert waits.status_code == 202, waits.text
    (offer,) = services.feed_inbox.pending(_holder(patient))
    assert offer.class_code == "85354-9"
    _sign_in(client, patient)
    # The inbox names the waiting measures by what they are, in the reader's language, not by LOINC.
    client.cookies.set("carnet_lang", "fr")
    waiting = client.get("/patient/feeds").text
    entry = waiting[waiting.index(f'id="offer-{offer.offer_id}"') :].split("</li>", 1)[0]
    assert "<strong>Tension artérielle</strong>" in entry
    assert "85354-9" not in entry.replace(offer.offer_id, "")
    client.cookies.set("carnet_lang", "en")
    waiting = client.get("/patient/feeds").text
    entry = waiting[waiting.index(f'id="offer-{offer.offer_id}"') :].split("</li>", 1)[0]
    assert "<strong>Blood pressure</strong>" in entry
    client.cookies.delete("carnet_lang")
    profile = client.get("/patient/profile").text
    assert "133 / 86" in profile
    assert "141 / 92" not in profile
    services.feed_inbox.accept(_holder(patient), offer.offer_id)
    services.feed_inbox.choose(_holder(patient), "tensio-1", FeedChoice.REFUSE)
    assert client.post("/fhir", json=_blood_pressure(patient, 150, 95), headers=device).status_code == 403
    profile = client.get("/patient/profile").text
    assert "141 / 92" in profile
    assert "150 / 95" not in profile
    assert profile.count('class="chart measure-chart"') >= 1
    assert services.feed_inbox.pending(_holder(patient)) == []


def test_a_device_feed_registers_measure_types_only(services: Services) -> None:
    """Kind measures takes the profiles' LOINC codes, other kinds DMP classCodes; anything else is a clear 4xx."""
    from carnet.domain.errors import InvalidRequest

    with pytest.raises(InvalidRequest, match="measure types"):
        services.feeds.add("tensio-2", name="T", kind=FeedKind.MEASURES, classes=frozenset({"10"}))
    with pytest.raises(InvalidRequest, match="measure types"):
        services.feeds.add("lab-y", name="L", kind=FeedKind.CDA, classes=frozenset({"85354-9"}))
    assert services.feeds.add("tensio-3", name="T", kind=FeedKind.MEASURES, classes=frozenset({"2708-6"}))
