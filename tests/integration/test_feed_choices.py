"""The patient decides each feed (issue 13 item 5): accept, ask me first, refuse, and the inbox.

The "Done when" of the issue: a patient who chose "ask me first" for a lab sees the pending
result in the portal, refuses it, and the record holds nothing of it; accepting stores it as if
just received; a refused feed gets an application reject and nothing is kept.
"""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime

import pytest
from starlette.testclient import TestClient

from carnet.api.app import Services
from carnet.demo import SeededPatient, seed_population
from carnet.domain.feeds import FeedKind
from carnet.domain.principal import ActorKind, Principal
from carnet.services.feed_inbox import FeedChoice
from carnet.synthetic.hl7v2 import hl7v2_message

NOW = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)
CDA_TEMPLATE = """<?xml version="1.0" encoding="UTF-8"?>
<ClinicalDocument xmlns="urn:hl7-org:v3">
  <typeId root="2.16.840.1.113883.1.3" extension="POCD_HD000040"/>
  <id root="{doc_id}"/>
  <code code="11502-2" codeSystem="2.16.840.1.113883.6.1" displayName="CR d'examens biologiques"/>
  <title>Bilan lipidique {marker}</title>
  <effectiveTime value="20261206090000+0100"/>
  <confidentialityCode code="N" codeSystem="2.16.840.1.113883.5.25"/>
  <languageCode code="fr-FR"/>
  <recordTarget><patientRole><id root="{ins_root}" extension="{ins}"/></patientRole></recordTarget>
  <component><nonXMLBody><text mediaType="text/plain" representation="B64">{body}</text></nonXMLBody></component>
</ClinicalDocument>
"""


@pytest.fixture
def patient(services: Services) -> SeededPatient:
    """One synthetic patient of the demo population."""
    return seed_population(services.records, patients=1, seed=2026)[0]


def _csrf(text: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', text)
    assert found is not None
    return found.group(1)


def _sign_in(client: TestClient, patient: SeededPatient) -> str:
    token = _csrf(client.get("/login").text)
    identifier = f"{patient.ins_system}|{patient.ins_value}"
    done = client.post(
        "/login",
        data={"csrf_token": token, "kind": "patient", "identifier": identifier},
        follow_redirects=False,
    )
    assert done.status_code == 303
    return _csrf(client.get("/patient/").text)


def _cda(patient: SeededPatient, doc_id: str, marker: str) -> bytes:
    return CDA_TEMPLATE.format(
        doc_id=doc_id,
        marker=marker,
        ins_root=patient.ins_system.removeprefix("urn:oid:"),
        ins=patient.ins_value,
        body=base64.b64encode(f"Cholestérol {marker}".encode()).decode(),
    ).encode()


def _result(patient: SeededPatient, number: int, marker: str, *, level3: str | None = None) -> bytes:
    """A lab's ORU; ``level3``: the marker of a second document (the report as a level 3 CDA)."""
    cda = _cda(patient, f"2.25.77{number}", marker)
    return hl7v2_message(
        cda,
        second=_cda(patient, f"2.25.88{number}", level3) if level3 else None,
        ins=(patient.ins_system.removeprefix("urn:oid:"), patient.ins_value),
        type_code="11502-2",
        type_label="CR d'examens biologiques",
        control_id=f"LAB-{number}",
        sent_at=NOW,
        flags={"ACK_RECEPTION": True},
    )


def _holder(patient: SeededPatient) -> Principal:
    return Principal(kind=ActorKind.PATIENT, subject="holder", patient_id=patient.patient_id)


def _titles(services: Services, patient: SeededPatient) -> list[str]:
    records = services.records.records(_holder(patient))
    found = records.search(
        "DocumentReference", [("patient", f"Patient/{patient.patient_id}"), ("_count", "500")]
    )
    return [str(d["content"][0]["attachment"].get("title")) for d in found.resources]


def test_ask_first_then_refuse_in_the_portal_leaves_nothing(
    client: TestClient, services: Services, patient: SeededPatient
) -> None:
    """Ask me first: the lab's result waits in the portal inbox; refused there, nothing of it is in the record or the inbox."""
    secret = services.feeds.add(
        "lab-77", name="Laboratoire 77", kind=FeedKind.HL7V2, classes=frozenset({"10"})
    ).secret
    csrf = _sign_in(client, patient)
    page = client.get("/patient/feeds")
    assert page.status_code == 200
    assert "Laboratoire 77" in page.text
    saved = client.post(
        "/patient/feeds/choice",
        data={"csrf_token": csrf, "feed": "lab-77", "choice": "ask"},
        follow_redirects=False,
    )
    assert saved.status_code == 303
    receipt = services.hl7v2.receive("lab-77", _result(patient, 1, "SECRET-MARKER"))
    assert receipt.error is None
    assert receipt.outcome == "pending"
    assert receipt.business is not None
    assert b"ACK_RECEPTION_DMP" in receipt.business
    assert not any("SECRET-MARKER" in t for t in _titles(services, patient))
    inbox = client.get("/patient/feeds")
    assert "Bilan lipidique SECRET-MARKER" in inbox.text
    (offer_id,) = re.findall(r'id="offer-([0-9a-f]+)"', inbox.text)
    refused = client.post(
        f"/patient/feeds/offers/{offer_id}/decline", data={"csrf_token": csrf}, follow_redirects=False
    )
    assert refused.status_code == 303
    assert "SECRET-MARKER" not in client.get("/patient/feeds").text
    assert not any("SECRET-MARKER" in t for t in _titles(services, patient))
    with services.store.session() as session:
        assert session.offers(patient.patient_id) == []
    assert services.hl7v2.dead_letters(every=True) == []
    # The refusal leaves its own journal entry: which feed offered which class, when — no content.
    events = services.records.records(_holder(patient)).search(
        "AuditEvent", [("patient", f"Patient/{patient.patient_id}"), ("_count", "500")]
    )
    (declined,) = [
        e
        for e in events.resources
        if any(c.get("code") == "feed-offer-decline" for c in e.get("subtype", []))
    ]
    queries = [base64.b64decode(e["query"]).decode() for e in declined["entity"] if "query" in e]
    assert len(queries) == 1
    assert queries[0].startswith("feed=lab-77&class=10&offered=")
    assert [e["what"]["reference"] for e in declined["entity"] if "what" in e] == [
        f"Patient/{patient.patient_id}"
    ]
    assert "SECRET-MARKER" not in json.dumps(declined)
    assert "Bilan" not in json.dumps(declined)
    journal = client.get("/patient/access?kind=mine").text
    assert "a refusé un document en attente de votre décision" in journal
    assert "(proposé : Comptes rendus)" in journal
    # The sender learns of the refusal: its message's answer is now an application reject.
    answer = client.get("/feeds/lab-77/hl7v2/LAB-1", headers={"Authorization": f"Bearer {secret}"})
    assert answer.status_code == 200
    assert b"MSA|AE|LAB-1" in answer.content
    resent = services.hl7v2.receive("lab-77", _result(patient, 1, "SECRET-MARKER"))
    assert b"MSA|AE|LAB-1" in resent.ack
    assert services.feed_inbox.pending(_holder(patient)) == []
    assert (
        client.get("/feeds/lab-77/hl7v2/NOPE", headers={"Authorization": f"Bearer {secret}"}).status_code
        == 404
    )


def test_ask_first_then_accept_stores_it_as_if_just_received(
    client: TestClient, services: Services, patient: SeededPatient
) -> None:
    """Accepted from the inbox, the result is in the record, authored by the lab feed; the inbox is empty."""
    services.feeds.add("lab-77", name="Laboratoire 77", kind=FeedKind.HL7V2, classes=frozenset({"10"}))
    services.feed_inbox.choose(_holder(patient), "lab-77", FeedChoice.ASK)
    assert services.hl7v2.receive("lab-77", _result(patient, 2, "ACCEPTED")).outcome == "pending"
    csrf = _sign_in(client, patient)
    (offer_id,) = re.findall(r'id="offer-([0-9a-f]+)"', client.get("/patient/feeds").text)
    accepted = client.post(
        f"/patient/feeds/offers/{offer_id}/accept", data={"csrf_token": csrf}, follow_redirects=False
    )
    assert accepted.status_code == 303
    assert "Bilan lipidique ACCEPTED" in _titles(services, patient)
    assert services.feed_inbox.pending(_holder(patient)) == []


def test_refused_feed_gets_an_application_reject_and_nothing_is_kept(
    services: Services, patient: SeededPatient
) -> None:
    """Refuse: the sender gets AE, no document, no offer, no dead letter; accept again: stored at once."""
    services.feeds.add("lab-77", name="Laboratoire 77", kind=FeedKind.HL7V2, classes=frozenset({"10"}))
    services.feed_inbox.choose(_holder(patient), "lab-77", FeedChoice.REFUSE)
    refused = services.hl7v2.receive("lab-77", _result(patient, 3, "REFUSED"))
    assert refused.error is not None
    assert b"MSA|AE|" in refused.ack
    assert services.hl7v2.dead_letters(every=True) == []
    assert services.feed_inbox.pending(_holder(patient)) == []
    assert not any("REFUSED" in t for t in _titles(services, patient))
    services.feed_inbox.choose(_holder(patient), "lab-77", FeedChoice.ACCEPT)
    assert services.hl7v2.receive("lab-77", _result(patient, 4, "LATER")).outcome == "stored"
    settings = {s.feed.feed_id: s for s in services.feed_inbox.settings(_holder(patient))}
    assert settings["lab-77"].choice is FeedChoice.ACCEPT
    assert settings["lab-77"].chosen


def test_defaults_follow_the_profile(services: Services, patient: SeededPatient) -> None:
    """Without a choice, fr-dmp accepts (as the law does): the result is stored at once, and the setting says it is the default."""
    services.feeds.add("lab-77", name="Laboratoire 77", kind=FeedKind.HL7V2, classes=frozenset({"10"}))
    (setting,) = services.feed_inbox.settings(_holder(patient))
    assert (setting.choice, setting.chosen) == (FeedChoice.ACCEPT, False)
    assert services.hl7v2.receive("lab-77", _result(patient, 5, "DEFAULT")).outcome == "stored"


def test_another_patient_cannot_see_or_decide_my_offers(services: Services, patient: SeededPatient) -> None:
    """An offer is found only in its own record: another patient's accept or decline finds nothing."""
    services.feeds.add("lab-77", name="Laboratoire 77", kind=FeedKind.HL7V2, classes=frozenset({"10"}))
    services.feed_inbox.choose(_holder(patient), "lab-77", FeedChoice.ASK)
    services.hl7v2.receive("lab-77", _result(patient, 6, "MINE"))
    (offer,) = services.feed_inbox.pending(_holder(patient))
    stranger = Principal(kind=ActorKind.PATIENT, subject="other", patient_id="another-record")
    from carnet.domain.errors import NotFound

    with pytest.raises(NotFound):
        services.feed_inbox.decline(stranger, offer.offer_id)
    with pytest.raises(NotFound):
        services.feed_inbox.accept(stranger, offer.offer_id)
    assert len(services.feed_inbox.pending(_holder(patient))) == 1


def test_the_documents_of_one_message_each_wait_or_are_refused_together(
    services: Services, patient: SeededPatient
) -> None:
    """An ORU with a level 1 and a level 3 CDA: ask me first, each waits in the inbox (one ZAM, N),
    and each is accepted on its own; refused, the sender gets one AE and nothing of either is kept."""
    services.feeds.add("lab-77", name="Laboratoire 77", kind=FeedKind.HL7V2, classes=frozenset({"10"}))
    services.feed_inbox.choose(_holder(patient), "lab-77", FeedChoice.ASK)
    receipt = services.hl7v2.receive("lab-77", _result(patient, 7, "NIV1", level3="NIV3"))
    assert (receipt.outcome, receipt.error, receipt.document_ids) == ("pending", None, ())
    assert receipt.business is not None
    assert receipt.business.count(b"^^expandedYes-NoIndicator") == 3
    assert b"|N^^expandedYes-NoIndicator" in receipt.business
    offers = services.feed_inbox.pending(_holder(patient))
    assert sorted(str(o.title) for o in offers) == ["Bilan lipidique NIV1", "Bilan lipidique NIV3"]
    for offer in offers:
        services.feed_inbox.accept(_holder(patient), offer.offer_id)
    assert {"Bilan lipidique NIV1", "Bilan lipidique NIV3"} <= set(_titles(services, patient))
    services.feed_inbox.choose(_holder(patient), "lab-77", FeedChoice.REFUSE)
    refused = services.hl7v2.receive("lab-77", _result(patient, 8, "NON1", level3="NON3"))
    assert refused.error is not None
    assert b"MSA|AE|LAB-8" in refused.ack
    assert services.feed_inbox.pending(_holder(patient)) == []
    assert services.hl7v2.dead_letters(every=True) == []
    assert not any("NON" in t for t in _titles(services, patient))
