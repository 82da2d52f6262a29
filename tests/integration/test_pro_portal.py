"""The professional portal in-process: find by INS, ways in, record view, documents, break-glass."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

import carnet.web
from carnet.api.app import Services, build_services, create_app
from carnet.api.auth import issue_token
from carnet.demo import SeededPatient, seed_population
from carnet.domain.consent import ConsentKind, consent_for
from carnet.domain.principal import ActorKind, Principal
from carnet.services.record_status import close_record
from carnet.settings import Settings
from carnet.web.identities import demo_professionals

WEB = Path(carnet.web.__file__).parent
PDF = (
    b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj 2 0 obj<</Type/Pages/Count 0/Kids[]>>endobj\n"
    b"trailer<</Root 1 0 R>>\n%%EOF\n"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class World:
    """A seeded server in-process and its people."""

    client: TestClient
    patients: list[SeededPatient]
    physician: str
    pharmacist: str


@pytest.fixture
def world(settings: Settings, services: Services) -> Iterator[World]:
    """Two seeded patients; a physician and a pharmacist of the directory, not yet authorised."""
    patients = seed_population(services.records, patients=2, seed=2026)
    pros = demo_professionals(services.records)
    physician = next(p.practitioner_id for p in pros if p.profession == "10")
    pharmacist = next(p.practitioner_id for p in pros if p.profession == "21")
    with TestClient(create_app(settings, services), base_url="http://testserver") as client:
        yield World(client=client, patients=patients, physician=physician, pharmacist=pharmacist)


def _csrf(client: TestClient, path: str = "/login") -> str:
    page = client.get(path, headers={"Accept": "text/html"})
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found is not None, page.text[:500]
    return found.group(1)


def _sign_in(client: TestClient, practitioner: str) -> None:
    token = _csrf(client)
    answer = client.post(
        "/login",
        data={"csrf_token": token, "kind": "professional", "practitioner": practitioner},
        follow_redirects=False,
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == "/pro/"


def _declare_consent(client: TestClient, ins: str, kind: str = "authorisation") -> str:
    token = _csrf(client, "/pro/")
    answer = client.post(
        "/pro/access/consent",
        data={"csrf_token": token, "ins": ins, "kind": kind, "agreed": "yes"},
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text[:500]
    location = answer.headers["location"]
    assert location.startswith("/pro/patients/")
    return location.split("/")[3].split("?")[0]


def test_signed_out_professional_pages_go_to_login(world: World) -> None:
    """Without a session, /pro/ sends the browser to /login."""
    answer = world.client.get("/pro/", headers={"Accept": "text/html"}, follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login"


def test_search_offers_the_ways_in_then_consent_opens_the_record(world: World) -> None:
    """An unauthorised physician finds the record exists, declares consent, then sees the summary."""
    client = world.client
    _sign_in(client, world.physician)
    ins = world.patients[0].ins_value
    page = client.get("/pro/search", params={"ins": f"{ins[:5]} {ins[5:]}"})
    assert page.status_code == 200
    assert 'id="consent-form"' in page.text
    assert 'id="break-glass-form"' in page.text
    assert world.patients[0].display.split()[0] not in page.text  # nothing of the record is shown
    patient_id = _declare_consent(client, ins)
    assert patient_id == world.patients[0].patient_id
    summary = client.get(f"/pro/patients/{patient_id}?done=consent")
    assert summary.status_code == 200
    assert 'id="patient-identity"' in summary.text
    assert "<svg" in summary.text
    again = client.get("/pro/search", params={"ins": ins}, follow_redirects=False)
    assert again.headers["location"] == f"/pro/patients/{patient_id}"


def test_unknown_and_malformed_ins(world: World) -> None:
    """A malformed INS is a 422 with a plain message; an unknown one says no record has it."""
    _sign_in(world.client, world.physician)
    assert world.client.get("/pro/search", params={"ins": "12"}).status_code == 422
    assert world.client.get("/pro/search", params={"ins": "199999999999999"}).status_code == 404


def test_unauthorised_record_is_not_found(world: World) -> None:
    """A record the professional has no way into answers like an unknown page."""
    _sign_in(world.client, world.physician)
    answer = world.client.get(f"/pro/patients/{world.patients[1].patient_id}")
    assert answer.status_code == 404


def test_documents_viewer_and_content(world: World) -> None:
    """The document list links to a viewer rendering CDA safely and framing embedded PDFs."""
    client = world.client
    _sign_in(client, world.physician)
    patient_id = _declare_consent(client, world.patients[0].ins_value)
    listing = client.get(f"/pro/patients/{patient_id}/documents")
    assert listing.status_code == 200
    links = re.findall(
        rf'href="/pro/patients/{patient_id}/documents/([A-Za-z0-9\-.]+)" class="document-link"', listing.text
    )
    assert links
    seen_cda = seen_pdf = False
    for document_id in links:
        view = client.get(f"/pro/patients/{patient_id}/documents/{document_id}")
        assert view.status_code == 200
        assert "<script" not in view.text
        if '<article class="cda"' in view.text:
            seen_cda = True
        if "?part=embedded" in view.text:
            content = client.get(f"/pro/patients/{patient_id}/documents/{document_id}/content?part=embedded")
            assert content.status_code == 200
            assert content.content.startswith(b"%PDF")
            assert content.headers["content-type"] == "application/pdf"
            assert "default-src 'none'" in content.headers["content-security-policy"]
            seen_pdf = True
    assert seen_cda
    assert seen_pdf


def test_submit_archive_delete_own_pdf(world: World) -> None:
    """A physician submits a PDF with metadata, sees it, archives it and deletes it."""
    client = world.client
    _sign_in(client, world.physician)
    patient_id = _declare_consent(client, world.patients[0].ins_value)
    token = _csrf(client, f"/pro/patients/{patient_id}/documents/new")
    answer = client.post(
        f"/pro/patients/{patient_id}/documents/new",
        data={
            "csrf_token": token,
            "title": "Certificat de test",
            "class_code": "52",
            "type_code": "11488-4",
            "date": "2026-11-01",
        },
        files={"file": ("certificat.pdf", PDF, "application/pdf")},
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text[:800]
    location = answer.headers["location"]
    document_id = location.split("/")[5].split("?")[0]
    view = client.get(location)
    assert "Certificat de test" in view.text
    assert 'id="replace-link"' in view.text
    content = client.get(f"/pro/patients/{patient_id}/documents/{document_id}/content")
    assert content.content == PDF
    token = _csrf(client, f"/pro/patients/{patient_id}/documents")
    archived = client.post(
        f"/pro/patients/{patient_id}/documents/{document_id}/archive",
        data={"csrf_token": token},
        follow_redirects=False,
    )
    assert archived.status_code == 303
    listing = client.get(f"/pro/patients/{patient_id}/documents")
    assert "Certificat de test" not in listing.text
    assert "Certificat de test" in client.get(f"/pro/patients/{patient_id}/documents?archived=yes").text
    deleted = client.post(
        f"/pro/patients/{patient_id}/documents/{document_id}/delete",
        data={"csrf_token": token},
        follow_redirects=False,
    )
    assert deleted.status_code == 303
    assert client.get(f"/pro/patients/{patient_id}/documents/{document_id}").status_code == 404


def test_upload_refuses_other_files(world: World) -> None:
    """A file that is neither PDF nor CDA is refused with a plain message, nothing stored."""
    client = world.client
    _sign_in(client, world.physician)
    patient_id = _declare_consent(client, world.patients[0].ins_value)
    token = _csrf(client, f"/pro/patients/{patient_id}/documents/new")
    answer = client.post(
        f"/pro/patients/{patient_id}/documents/new",
        data={
            "csrf_token": token,
            "title": "x",
            "class_code": "10",
            "type_code": "11488-4",
            "date": "2026-01-01",
        },
        files={"file": ("x.exe", b"MZ\x90\x00", "application/octet-stream")},
    )
    assert answer.status_code == 422
    assert 'id="upload-error"' in answer.text


def test_break_glass_banner_on_every_page_until_ended(world: World) -> None:
    """Breaking the glass needs a justification; its banner shows on every pro page until ended."""
    client = world.client
    _sign_in(client, world.physician)
    ins = world.patients[1].ins_value
    patient_id = world.patients[1].patient_id
    token = _csrf(client, "/pro/")
    short = client.post(
        "/pro/access/break-glass", data={"csrf_token": token, "ins": ins, "justification": "x"}
    )
    assert short.status_code == 422
    answer = client.post(
        "/pro/access/break-glass",
        data={"csrf_token": token, "ins": ins, "justification": "Patient inconscient aux urgences"},
        follow_redirects=False,
    )
    assert answer.status_code == 303
    for path in ("/pro/", f"/pro/patients/{patient_id}", f"/pro/patients/{patient_id}/documents"):
        page = client.get(path)
        assert page.status_code == 200, path
        assert "break-glass-banner" in page.text, path
        assert "Patient inconscient aux urgences" in page.text
    assert client.get(f"/pro/patients/{patient_id}/documents/new").status_code == 403
    ended = client.post(
        f"/pro/patients/{patient_id}/end-emergency", data={"csrf_token": token}, follow_redirects=False
    )
    assert ended.status_code == 303
    assert "break-glass-banner" not in client.get("/pro/").text
    assert client.get(f"/pro/patients/{patient_id}").status_code == 404


def test_forms_need_the_csrf_token(world: World) -> None:
    """A POST without the session's CSRF token changes nothing and says so."""
    _sign_in(world.client, world.physician)
    answer = world.client.post(
        "/pro/access/consent", data={"ins": world.patients[0].ins_value, "agreed": "yes"}
    )
    assert answer.status_code == 403
    assert world.client.get(f"/pro/patients/{world.patients[0].patient_id}").status_code == 404


def test_become_treating_physician(world: World) -> None:
    """An authorised physician records, with the patient's agreement, that they are treating."""
    client = world.client
    _sign_in(client, world.physician)
    patient_id = _declare_consent(client, world.patients[0].ins_value)
    token = _csrf(client, f"/pro/patients/{patient_id}")
    answer = client.post(
        f"/pro/patients/{patient_id}/treating",
        data={"csrf_token": token, "agreed": "yes"},
        follow_redirects=False,
    )
    assert answer.status_code == 303
    page = client.get(answer.headers["location"])
    assert page.status_code == 200
    assert 'id="treating-form"' not in page.text


def test_summary_pdf_download(world: World) -> None:
    """The printable summary downloads as a PDF."""
    client = world.client
    _sign_in(client, world.physician)
    patient_id = _declare_consent(client, world.patients[0].ins_value)
    answer = client.get(f"/pro/patients/{patient_id}/summary.pdf")
    assert answer.status_code == 200
    assert answer.content.startswith(b"%PDF-")


def test_patients_are_not_professionals(world: World) -> None:
    """A signed-in patient gets a plain 403 page on the professional portal."""
    client = world.client
    token = _csrf(client)
    patient = world.patients[0]
    client.post(
        "/login",
        data={
            "csrf_token": token,
            "kind": "patient",
            "identifier": f"{patient.ins_system}|{patient.ins_value}",
        },
    )
    assert client.get("/pro/").status_code == 403


def test_blocked_professional_gets_nothing(world: World, services: Services) -> None:
    """A professional the patient blocked can neither declare consent nor break the glass."""
    client = world.client
    patient = world.patients[0]
    pro = next(p for p in demo_professionals(services.records) if p.practitioner_id == world.physician)
    holder = Principal(kind=ActorKind.PATIENT, subject="patient:test", patient_id=patient.patient_id)
    block = consent_for(ConsentKind.BLOCK, patient.patient_id, pro.idnps, now=datetime.now(UTC))
    services.records.records(holder).create(block)
    _sign_in(client, world.physician)
    token = _csrf(client, "/pro/")
    search = client.get("/pro/search", params={"ins": patient.ins_value})
    assert search.status_code == 403
    assert 'id="access-blocked"' in search.text
    assert "Le patient a bloqué votre accès à son dossier" in search.text
    assert 'id="consent-form"' not in search.text
    assert 'id="break-glass-form"' not in search.text
    consent = client.post(
        "/pro/access/consent", data={"csrf_token": token, "ins": patient.ins_value, "agreed": "yes"}
    )
    assert consent.status_code == 403
    assert 'id="access-blocked"' in consent.text
    glass = client.post(
        "/pro/access/break-glass",
        data={
            "csrf_token": token,
            "ins": patient.ins_value,
            "justification": "Arrêt cardiaque en salle d'attente",
        },
    )
    assert glass.status_code == 403
    assert 'id="access-error"' in glass.text
    assert client.get(f"/pro/patients/{patient.patient_id}").status_code == 404
    assert "break-glass-banner" not in client.get("/pro/").text


def test_a_closed_record_says_it_is_closed(world: World, services: Services) -> None:
    """Searching a closed record says it is closed and offers no consent or break-glass form."""
    patient = world.patients[0]
    holder = Principal(kind=ActorKind.PATIENT, subject="patient:test", patient_id=patient.patient_id)
    close_record(services.records, holder, patient.patient_id)
    _sign_in(world.client, world.physician)
    search = world.client.get("/pro/search", params={"ins": patient.ins_value})
    assert search.status_code == 403
    assert 'id="access-closed"' in search.text
    assert "Ce dossier est fermé" in search.text
    assert "pas encore autorisé" not in search.text
    assert 'id="consent-form"' not in search.text
    assert 'id="break-glass-form"' not in search.text


def test_break_glass_without_a_justification_says_so(
    world: World, services: Services, settings: Settings
) -> None:
    """The FHIR API answers a break-glass request without a justification with a 400 naming the header."""
    pro = next(p for p in demo_professionals(services.records) if p.practitioner_id == world.physician)
    token = issue_token(
        settings,
        {"kind": "professional", "sub": f"idnps:{pro.idnps}", "idnps": pro.idnps, "profession": "10"},
        now=datetime.now(UTC),
        lifetime=timedelta(hours=1),
    )
    headers = {"Authorization": f"Bearer {token}", "X-Carnet-Mode": "break_glass"}
    patient_id = world.patients[0].patient_id
    for justification in (None, "   "):
        sent = headers if justification is None else {**headers, "X-Carnet-Justification": justification}
        answer = world.client.get(f"/fhir/Patient/{patient_id}", headers=sent)
        assert answer.status_code == 400
        outcome = answer.json()
        assert outcome["resourceType"] == "OperationOutcome"
        assert "X-Carnet-Justification" in outcome["issue"][0]["diagnostics"]
    justified = world.client.get(
        f"/fhir/Patient/{patient_id}", headers={**headers, "X-Carnet-Justification": "Patient inconscient"}
    )
    assert justified.status_code == 200


def test_every_message_of_the_professional_portal_has_a_french_translation() -> None:
    """Each message of the professional templates and of carnet.web.pro has a French translation."""
    french = json.loads((WEB / "locales" / "fr.json").read_text(encoding="utf-8"))
    used: set[str] = set()
    for template in sorted((WEB / "templates" / "pro").glob("*.html")):
        text = template.read_text(encoding="utf-8")
        used.update(m.group(2) for m in re.finditer(r"""_\(\s*(["'])((?:(?!\1).)+)\1""", text))
    source = "".join((WEB / name).read_text(encoding="utf-8") for name in ("pro.py", "pro_submission.py"))
    pattern = r'(?:"error": |PageError\(\d+, |FormProblem\(|problem = |error = )\(?\s*"([^"]+)"'
    used.update(re.findall(pattern, source))
    assert len(used) > 80
    missing = sorted(message for message in used if message not in french)
    assert missing == []


def test_sovereign_break_glass_needs_a_second_professional(settings: Settings) -> None:
    """Under ``sovereign`` a colleague, signed in as themself, confirms; typed names and self-confirmation fail."""
    sovereign = dataclasses.replace(settings, policy_profile="sovereign")
    services = build_services(sovereign)
    try:
        [patient] = seed_population(services.records, patients=1, seed=2026)
        pros = [p for p in demo_professionals(services.records) if p.profession == "10"]
        physician, colleague = pros[0].practitioner_id, pros[1].idnps
        app = create_app(sovereign, services)
        with (
            TestClient(app, base_url="http://testserver") as client,
            TestClient(app, base_url="http://testserver") as other,
        ):
            _sign_in(other, pros[1].practitioner_id)
            other_token = _csrf(other, "/pro/confirm")
            mine = other.post("/pro/confirm", data={"csrf_token": other_token, "colleague": colleague})
            assert mine.status_code == 422  # nobody confirms their own emergency
            given = other.post("/pro/confirm", data={"csrf_token": other_token, "colleague": pros[0].idnps})
            assert given.status_code == 200
            confirmation = given.text.split('id="confirmation-token" readonly rows="6">', 1)[1].split("<", 1)[
                0
            ]
            for_someone_else = other.post(
                "/pro/confirm", data={"csrf_token": other_token, "colleague": "810000000099"}
            )
            misdirected = for_someone_else.text.split('id="confirmation-token" readonly rows="6">', 1)[
                1
            ].split("<", 1)[0]
            _sign_in(client, physician)
            page = client.get("/pro/search", params={"ins": patient.ins_value})
            assert 'id="confirmation"' in page.text
            token = _csrf(client, "/pro/")
            reason = "Patient inconscient aux urgences"

            def break_glass(confirmer: str) -> httpx.Response:
                return client.post(
                    "/pro/access/break-glass",
                    data={
                        "csrf_token": token,
                        "ins": patient.ins_value,
                        "justification": reason,
                        "confirmation": confirmer,
                    },
                    follow_redirects=False,
                )

            for confirmer in ("", colleague, "x", misdirected, confirmation[:-3] + "AAA"):
                refused = break_glass(confirmer)
                assert (confirmer, refused.status_code) == (confirmer, 422)
                assert "un second professionnel doit confirmer" in refused.text
                assert reason in refused.text  # what was written is kept
            assert client.get(f"/pro/patients/{patient.patient_id}").status_code == 404
            assert break_glass(confirmation).status_code == 303
            summary = client.get(f"/pro/patients/{patient.patient_id}")
            assert summary.status_code == 200
            assert f"Confirmé par le professionnel {colleague}" in summary.text
        with TestClient(create_app(sovereign, services), base_url="http://testserver") as client:
            token = _csrf(client)
            client.post(
                "/login",
                data={
                    "csrf_token": token,
                    "kind": "patient",
                    "identifier": f"{patient.ins_system}|{patient.ins_value}",
                },
            )
            timeline = client.get("/patient/access")
            assert f"Confirmé par le professionnel {colleague}" in timeline.text
        holder = Principal(kind=ActorKind.PATIENT, subject="t", patient_id=patient.patient_id)
        events = services.records.records(holder).search(
            "AuditEvent", [("patient", f"Patient/{patient.patient_id}")]
        )
        confirmers = {
            part.get("valueString")
            for event in events.resources
            for extension in event.get("extension") or []
            for part in extension.get("extension") or []
            if part.get("url") == "confirmedBy"
        }
        assert confirmers == {colleague}
    finally:
        services.store.engine.dispose()


def test_secure_messaging_between_patient_and_physician(
    world: World, settings: Settings, services: Services
) -> None:
    """The physician writes, the patient is notified and answers with a file the message carries; both see it."""
    patient = world.patients[0]
    doctor = world.client
    _sign_in(doctor, world.physician)
    patient_id = _declare_consent(doctor, patient.ins_value)
    empty = doctor.get(f"/pro/patients/{patient_id}/messages")
    assert empty.status_code == 200
    assert 'id="no-messages"' in empty.text
    token = _csrf(doctor, f"/pro/patients/{patient_id}/messages")
    sent = doctor.post(
        f"/pro/patients/{patient_id}/messages",
        data={"csrf_token": token, "text": "Vos résultats sont normaux. Bonne journée."},
        follow_redirects=False,
    )
    assert sent.status_code == 303
    blank = doctor.post(f"/pro/patients/{patient_id}/messages", data={"csrf_token": token, "text": "  "})
    assert blank.status_code == 422
    assert "Écrivez le message avant de l&#39;envoyer." in blank.text
    with TestClient(create_app(settings, services), base_url="http://testserver") as me:
        login = _csrf(me)
        identifier = f"{patient.ins_system}|{patient.ins_value}"
        me.post("/login", data={"csrf_token": login, "kind": "patient", "identifier": identifier})
        inbox = me.get("/patient/messages").text
        assert "Vos résultats sont normaux. Bonne journée." in inbox
        assert "vous a écrit" in inbox
        assert "vous a écrit." in me.get("/patient/notifications").text
        pro = next(p for p in demo_professionals(services.records) if p.practitioner_id == world.physician)
        answer = me.post(
            "/patient/messages",
            data={
                "csrf_token": _csrf(me, "/patient/messages"),
                "to": pro.idnps,
                "text": "Merci docteur !",
                "title": "Ordonnance du kiné",
            },
            files={"file": ("kine.pdf", PDF, "application/pdf")},
            follow_redirects=False,
        )
        assert answer.status_code == 303
        assert "Ordonnance du kiné" not in me.get("/patient/documents").text  # carried, not filed yet
        stranger = me.post(
            "/patient/messages",
            data={"csrf_token": _csrf(me, "/patient/messages"), "to": "899999999999", "text": "Bonjour"},
        )
        assert stranger.status_code == 422
    conversation = doctor.get(f"/pro/patients/{patient_id}/messages").text
    assert "Merci docteur !" in conversation
    assert "Ordonnance du kiné" in conversation
    holder = Principal(kind=ActorKind.PATIENT, subject="t", patient_id=patient_id)
    events = services.records.records(holder).search(
        "AuditEvent", [("patient", f"Patient/{patient_id}"), ("_count", "500")]
    )
    written = [
        e
        for e in events.resources
        if e["action"] == "C"
        and any("Communication/" in str((x.get("what") or {}).get("reference")) for x in e["entity"])
    ]
    assert len(written) == 2


def test_the_record_summary_lists_blood_pressure_once_in_french_numbers(world: World) -> None:
    """The professional's summary tells blood pressure as one systolic / diastolic row, with decimal commas."""
    _sign_in(world.client, world.physician)
    patient_id = _declare_consent(world.client, world.patients[0].ins_value)
    summary = world.client.get(f"/pro/patients/{patient_id}").text
    table = summary.split('id="measures"')[1].split("</table>")[0]
    assert table.count("Tension artérielle") == 1
    assert "Pression diastolique" not in table
    assert re.search(r"<td>\d+ / \d+ mmHg</td>", table) is not None
    assert "mm[Hg]" not in summary
    assert re.search(r"<td>\d+\.\d+ ", table) is None
