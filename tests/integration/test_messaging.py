"""Secure messaging both ways: the professional's inbox and e-mail, files carried and filed by either side."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from starlette.testclient import TestClient

from carnet.api.app import Services, create_app
from carnet.demo import SeededPatient, seed_population
from carnet.domain.principal import ActorKind, Principal
from carnet.notify.messages import render
from carnet.services.notifications import NoticeEvent, Notifier
from carnet.settings import Settings
from carnet.web.identities import DemoProfessional, demo_professionals

PDF = (
    b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj 2 0 obj<</Type/Pages/Count 0/Kids[]>>endobj\n"
    b"trailer<</Root 1 0 R>>\n%%EOF\n"
)
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


@dataclass(frozen=True, slots=True, kw_only=True)
class Pair:
    """A patient signed in on one client, a physician of their care team on another."""

    me: TestClient
    doctor: TestClient
    patient: SeededPatient
    physician: DemoProfessional


def _csrf(client: TestClient, path: str = "/login") -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).text)
    assert found is not None
    return found.group(1)


@pytest.fixture
def pair(settings: Settings, services: Services) -> Iterator[Pair]:
    """The patient authorised the physician (in the portal); both signed in."""
    patient = seed_population(services.records, patients=1, seed=2026)[0]
    physician = next(p for p in demo_professionals(services.records) if p.profession == "10")
    app = create_app(settings, services)
    with (
        TestClient(app, base_url="http://testserver") as me,
        TestClient(app, base_url="http://testserver") as doc,
    ):
        identifier = f"{patient.ins_system}|{patient.ins_value}"
        me.post("/login", data={"csrf_token": _csrf(me), "kind": "patient", "identifier": identifier})
        me.post(
            "/patient/care-team",
            data={"csrf_token": _csrf(me, "/patient/"), "kind": "authorisation", "idnps": physician.idnps},
        )
        doc.post(
            "/login",
            data={
                "csrf_token": _csrf(doc),
                "kind": "professional",
                "practitioner": physician.practitioner_id,
            },
        )
        yield Pair(me=me, doctor=doc, patient=patient, physician=physician)


def _write(me: TestClient, to: str, text: str, file: tuple[str, bytes, str] | None = None, **extra: str):  # type: ignore[no-untyped-def]
    return me.post(
        "/patient/messages",
        data={"csrf_token": _csrf(me, "/patient/messages"), "to": to, "text": text, **extra},
        files={"file": file} if file else None,
        follow_redirects=False,
    )


def _outbox_to_professionals(services: Services, patient_id: str) -> list[tuple[str | None, str]]:
    notifier = Notifier(vault=services.records.vault, clock=lambda: datetime.now(UTC), new_id=str)
    found = []
    with services.store.session() as session:
        for message in session.outbox_messages(patient_id):
            delivery = notifier.open_message(session, message)
            if delivery.notice.event is NoticeEvent.PATIENT_MESSAGE:
                email = (
                    render(
                        delivery,
                        sender="carnet@example.org",
                        base_url="https://carnet.example",
                        sent_at=delivery.notice.at,
                    )
                    if delivery.to
                    else None
                )
                found.append((delivery.to, email.as_string() if email else ""))
    return found


def test_the_professional_is_told_reads_and_the_unread_count_falls(pair: Pair, services: Services) -> None:
    """A patient's message: the physician's home and inbox count it unread, an e-mail says only that one waits."""
    doctor, physician = pair.doctor, pair.physician
    assert 'id="no-threads"' in doctor.get("/pro/messages").text
    assert 'id="home-unread"' not in doctor.get("/pro/").text
    assert _write(pair.me, physician.idnps, "Bonjour docteur, j'ai toujours mal au genou.").status_code == 303
    assert _write(pair.me, physician.idnps, "Et je tousse depuis hier.").status_code == 303
    home = doctor.get("/pro/").text
    assert "2 message(s) non lu(s) de vos patients." in home
    inbox = doctor.get("/pro/messages").text
    assert pair.patient.display.split()[-1] in inbox  # the writer named to the physician
    assert "2 non lu(s)" in inbox
    patient_id = re.search(r'href="/pro/patients/([^/"]+)/messages"', inbox).group(1)  # type: ignore[union-attr]
    # The e-mail goes to the directory's address, and names neither the patient nor what was written.
    mails = _outbox_to_professionals(services, patient_id)
    assert len(mails) == 2
    to, body = mails[0]
    assert to is not None
    assert to.endswith("@mssante.example")
    assert "https://carnet.example/pro/messages" in body
    for secret in (pair.patient.display.split()[-1], "genou", "tousse", pair.patient.ins_value):
        assert secret not in body
    # The patient's notification centre does not list what was told to the professional.
    assert "genou" not in pair.me.get("/patient/notifications").text
    assert "Un patient vous a" not in pair.me.get("/patient/notifications").text
    conversation = doctor.get(f"/pro/patients/{patient_id}/messages").text
    assert "mal au genou" in conversation
    assert 'id="nav-unread"' not in doctor.get("/pro/messages").text
    assert "Aucun message non lu." in doctor.get("/pro/messages").text
    doctor.get("/language/en?next=/pro/messages")
    assert "No unread message." in doctor.get("/pro/messages").text


def test_files_are_carried_then_filed_by_either_side(pair: Pair, services: Services) -> None:
    """A file stays in its message (sealed with it) until the patient or the physician files it as a document."""
    me, doctor = pair.me, pair.doctor
    sent = _write(
        me,
        pair.physician.idnps,
        "Voici l'ordonnance du kiné.",
        ("kine.pdf", PDF, "application/pdf"),
        title="Ordonnance kiné",
    )
    assert sent.status_code == 303
    assert "Ordonnance kiné" not in me.get("/patient/documents").text
    patient_id = re.search(r'href="/pro/patients/([^/"]+)/messages"', doctor.get("/pro/messages").text).group(
        1
    )  # type: ignore[union-attr]
    conversation = doctor.get(f"/pro/patients/{patient_id}/messages").text
    message_id = re.search(r'id="attachment-([^"]+)"', conversation).group(1)  # type: ignore[union-attr]
    opened = doctor.get(f"/pro/patients/{patient_id}/messages/{message_id}/attachment")
    assert opened.status_code == 200
    assert opened.content == PDF
    assert opened.headers["content-type"] == "application/pdf"
    assert "default-src 'none'" in opened.headers["content-security-policy"]
    token = _csrf(doctor, f"/pro/patients/{patient_id}/messages")
    bad = doctor.post(
        f"/pro/patients/{patient_id}/messages/{message_id}/file",
        data={"csrf_token": token, "class": "77", "type": "x"},
    )
    assert bad.status_code == 422
    filed = doctor.post(
        f"/pro/patients/{patient_id}/messages/{message_id}/file",
        data={"csrf_token": token, "class": "10", "type": "11488-4"},
        follow_redirects=False,
    )
    assert filed.status_code == 303
    document_id = filed.headers["location"].rsplit("/", 1)[1]
    holder = Principal(kind=ActorKind.PATIENT, subject="t", patient_id=patient_id)
    document = services.records.records(holder).read("DocumentReference", document_id).resource or {}
    assert document["context"]["related"] == [{"reference": f"Communication/{message_id}"}]
    assert document["author"][0]["identifier"]["value"] == pair.physician.idnps
    again = doctor.post(
        f"/pro/patients/{patient_id}/messages/{message_id}/file",
        data={"csrf_token": token, "class": "10", "type": "11488-4"},
        follow_redirects=False,
    )
    assert again.headers["location"].endswith(document_id)  # filed once
    assert "Ordonnance kiné" in me.get("/patient/documents").text
    assert f'href="/patient/documents/{document_id}"' in me.get("/patient/messages").text
    # The physician answers with an image; the patient files it into their own documents.
    reply = doctor.post(
        f"/pro/patients/{patient_id}/messages",
        data={"csrf_token": token, "text": "Voici le schéma des exercices.", "title": "Exercices"},
        files={"file": ("exercices.png", PNG, "image/png")},
        follow_redirects=False,
    )
    assert reply.status_code == 303
    page = me.get("/patient/messages").text
    reply_id = re.search(r'id="file-([^"]+)"', page).group(1)  # type: ignore[union-attr]
    assert me.get(f"/patient/messages/{reply_id}/attachment").content == PNG
    mine = me.post(
        f"/patient/messages/{reply_id}/file",
        data={"csrf_token": _csrf(me, "/patient/messages")},
        follow_redirects=False,
    )
    assert mine.status_code == 303
    assert "Exercices" in me.get("/patient/documents").text
    events = (
        services.records.records(holder)
        .search("AuditEvent", [("patient", f"Patient/{patient_id}"), ("_count", "1000")])
        .resources
    )
    created = [
        e
        for e in events
        if e["action"] == "C"
        and any(
            "DocumentReference/" in str((x.get("what") or {}).get("reference")) for x in e.get("entity") or []
        )
    ]
    assert len(created) >= 2  # each filing journaled


def test_bad_files_and_unknown_messages_are_refused(pair: Pair) -> None:
    """A text file is refused (422, nothing sent); an unknown message's file or filing is a 404."""
    me = pair.me
    refused = _write(me, pair.physician.idnps, "Bonjour", ("note.txt", b"hello", "text/plain"))
    assert refused.status_code == 422
    assert "Seuls les fichiers PDF, JPEG et PNG peuvent être envoyés." in refused.text
    assert 'id="no-messages"' in me.get("/patient/messages").text
    assert me.get("/patient/messages/unknown-id/attachment").status_code == 404
    assert me.get("/patient/messages/..%2F..%2Fetc/attachment").status_code == 404
    token = _csrf(me, "/patient/messages")
    assert me.post("/patient/messages/unknown-id/file", data={"csrf_token": token}).status_code == 404
    assert _write(me, pair.physician.idnps, "Sans pièce jointe").status_code == 303
    plain = re.search(r'id="message-([^"]+)"', me.get("/patient/messages").text).group(1)  # type: ignore[union-attr]
    assert me.get(f"/patient/messages/{plain}/attachment").status_code == 404
    assert me.post(f"/patient/messages/{plain}/file", data={"csrf_token": token}).status_code == 404
