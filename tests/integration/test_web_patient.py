"""The patient portal, in-process: sign-in, every page in both languages, CSRF, headers, masking, upload."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute
from starlette.testclient import TestClient

from carnet.api.app import Services, create_app
from carnet.demo import SeededPatient, seed_population
from carnet.domain.errors import AccessDenied, NotFound, PreconditionFailed
from carnet.domain.policy import AccessMode
from carnet.domain.principal import ActorKind, Principal
from carnet.services.writes import Writes
from carnet.settings import Mode, Settings
from carnet.web import login, patient_documents, patient_feeds, patient_journal, patient_profile, pro
from carnet.web import patient as patient_portal
from carnet.web.headers import CSP
from carnet.web.identities import demo_professionals

PAGES = [
    "/patient/",
    "/patient/notifications",
    "/patient/messages",
    "/patient/search?kind=document",
    "/patient/documents",
    "/patient/documents/new",
    "/patient/profile",
    "/patient/reimbursements",
    "/patient/care-team",
    "/patient/choices",
    "/patient/studies",
    "/patient/access",
    "/patient/export",
    "/patient/close",
]
DOCTOR = "810001234567"
DOCTOR_PRINCIPAL = Principal(
    kind=ActorKind.PROFESSIONAL,
    subject=f"idnps:{DOCTOR}",
    professional_id=DOCTOR,
    profession="10",
    specialty="SM54",
)
PDF = b"%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"
WEB = Path(__file__).resolve().parents[2] / "src" / "carnet" / "web"


@pytest.fixture
def patient(services: Services) -> SeededPatient:
    """One synthetic patient of the demo population, with documents and the professionals' directory."""
    return seed_population(services.records, patients=1, seed=2026)[0]


def csrf(page_text: str) -> str:
    """Return the CSRF token embedded in a page's forms."""
    found = re.search(r'name="csrf_token" value="([^"]+)"', page_text)
    assert found is not None
    return found.group(1)


def sign_in(client: TestClient, patient: SeededPatient) -> str:
    """Sign in as ``patient`` through the login form; return the session's CSRF token."""
    token = csrf(client.get("/login").text)
    identifier = f"{patient.ins_system}|{patient.ins_value}"
    response = client.post(
        "/login",
        data={"csrf_token": token, "kind": "patient", "identifier": identifier},
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/patient/"
    return csrf(client.get("/patient/").text)


def document_ids(client: TestClient) -> list[str]:
    """Return the ids of the documents listed on the documents page."""
    return re.findall(r'id="doc-([^"]+)"', client.get("/patient/documents").text)


def labels(services: Services, patient: SeededPatient, document_id: str) -> list[str]:
    """Return the security-label codes of a document, read as its holder."""
    holder = Principal(kind=ActorKind.PATIENT, subject="t", patient_id=patient.patient_id)
    resource = services.records.records(holder).read("DocumentReference", document_id).resource or {}
    return [c["code"] for label in resource.get("securityLabel") or [] for c in label.get("coding") or []]


@pytest.fixture
def signed_in(client: TestClient, patient: SeededPatient) -> str:
    """A client signed in as the patient; returns the CSRF token."""
    return sign_in(client, patient)


def test_login_page_lists_demo_patients_and_professionals(client: TestClient, patient: SeededPatient) -> None:
    """The demo sign-in page offers the seeded patient and the directory's professionals."""
    page = client.get("/login")
    assert page.status_code == 200
    assert patient.display in page.text
    assert page.text.count('name="practitioner"') == 1
    assert re.search(r'<option value="[^"]+">Dr ', page.text) is not None


def test_every_page_renders_in_french_and_english(client: TestClient, signed_in: str) -> None:
    """Every patient page answers 200 with lang="fr" by default and lang="en" once English is chosen."""
    for path in PAGES:
        page = client.get(path)
        assert (path, page.status_code) == (path, 200)
        assert '<html lang="fr">' in page.text
        assert "Aller au contenu principal" in page.text
    switched = client.get("/language/en?next=/patient/documents", follow_redirects=False)
    assert switched.headers["location"] == "/patient/documents"
    for path in PAGES:
        page = client.get(path)
        assert (path, page.status_code) == (path, 200)
        assert '<html lang="en">' in page.text
        assert "Skip to main content" in page.text


def test_each_document_page_renders(client: TestClient, signed_in: str) -> None:
    """Every seeded document opens in the viewer (CDA level 3 rendered, level 1 showing its PDF)."""
    ids = document_ids(client)
    assert len(ids) >= 5
    shown = [client.get(f"/patient/documents/{i}") for i in ids]
    assert [r.status_code for r in shown] == [200] * len(ids)
    assert any('class="cda"' in r.text for r in shown)
    framed = [re.search(r'<iframe class="document-frame" src="([^"]+)"', r.text) for r in shown]
    source = next(m.group(1) for m in framed if m is not None)
    content = client.get(source)
    assert content.status_code == 200
    assert content.headers["content-type"] == "application/pdf"
    assert content.content.startswith(b"%PDF")


def test_pages_carry_the_security_headers_and_cookie_flags(
    client: TestClient, patient: SeededPatient
) -> None:
    """Portal pages send the strict CSP and companions; the session cookie is HttpOnly and SameSite=Strict."""
    page = client.get("/login")
    assert page.headers["content-security-policy"] == CSP
    assert "script-src 'self'" in CSP
    assert "unsafe-inline" not in CSP
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "same-origin"
    assert page.headers["cache-control"] == "no-store"
    cookie = page.headers["set-cookie"].lower()
    assert "httponly" in cookie
    assert "samesite=strict" in cookie
    assert "secure" not in cookie  # development mode serves plain HTTP
    api = client.get("/fhir/metadata")
    assert "content-security-policy" not in api.headers


def test_post_without_csrf_token_is_refused_and_changes_nothing(
    client: TestClient, services: Services, patient: SeededPatient, signed_in: str
) -> None:
    """A form posted without the session's token gets a plain-language 403 and the document stays as it was."""
    document_id = document_ids(client)[0]
    before = labels(services, patient, document_id)
    missing = client.post(f"/patient/documents/{document_id}/visibility", data={"masked": "1"})
    assert missing.status_code == 403
    assert "rien n&#39;a été modifié" in missing.text
    wrong = client.post(
        f"/patient/documents/{document_id}/visibility", data={"masked": "1", "csrf_token": signed_in + "x"}
    )
    assert wrong.status_code == 403
    assert labels(services, patient, document_id) == before


def test_cross_site_origin_is_refused(client: TestClient, signed_in: str) -> None:
    """A form with the right token but posted from another site is refused."""
    response = client.post(
        "/patient/choices/oppositions",
        data={"csrf_token": signed_in, "break_glass": "1"},
        headers={"Origin": "https://evil.example"},
    )
    assert response.status_code == 403


def test_every_portal_form_checks_its_csrf_token(client: TestClient, signed_in: str) -> None:
    """Every POST route of the portals answers 403 to a form without a token."""
    routers = [
        login.router,
        patient_portal.router,
        patient_documents.router,
        patient_feeds.router,
        patient_journal.router,
        patient_profile.router,
        pro.router,
    ]
    posts = [
        route.path
        for router in routers
        for route in router.routes
        if isinstance(route, APIRoute) and "POST" in route.methods
    ]
    assert {"/patient/documents", "/pro/access/break-glass"} <= set(posts)
    for path in posts:
        url = re.sub(r"\{[^}]+\}", "x1", path)
        assert (path, client.post(url, data={"a": "b"}).status_code) == (path, 403)


def test_masking_hides_the_document_from_an_authorised_professional(
    client: TestClient, services: Services, signed_in: str
) -> None:
    """Once the patient masks a document, the professional they authorised no longer reads it."""
    added = client.post(
        "/patient/care-team", data={"csrf_token": signed_in, "kind": "authorisation", "idnps": DOCTOR}
    )
    assert added.status_code == 200
    assert DOCTOR in client.get("/patient/care-team").text
    document_id = document_ids(client)[0]
    doctor = services.records.records(DOCTOR_PRINCIPAL)
    assert doctor.read("DocumentReference", document_id).resource_id == document_id
    masked = client.post(
        f"/patient/documents/{document_id}/visibility", data={"csrf_token": signed_in, "masked": "1"}
    )
    assert masked.status_code == 200
    assert 'id="unmask"' in masked.text
    with pytest.raises(NotFound):
        services.records.records(DOCTOR_PRINCIPAL).read("DocumentReference", document_id)
    client.post(f"/patient/documents/{document_id}/visibility", data={"csrf_token": signed_in, "masked": "0"})
    assert (
        services.records.records(DOCTOR_PRINCIPAL).read("DocumentReference", document_id).resource_id
        == document_id
    )


def test_upload_a_pdf_then_view_it(client: TestClient, signed_in: str) -> None:
    """An uploaded PDF becomes a document of class 90 whose content reads back byte for byte."""
    response = client.post(
        "/patient/documents",
        data={"csrf_token": signed_in, "title": "Mon bilan sportif"},
        files={"file": ("bilan.pdf", PDF, "application/pdf")},
        follow_redirects=False,
    )
    assert response.status_code == 303
    page = client.get(response.headers["location"])
    assert page.status_code == 200
    assert "Mon bilan sportif" in page.text
    source = re.search(r'<iframe class="document-frame" src="([^"]+)"', page.text)
    assert source is not None
    content = client.get(source.group(1))
    assert content.content == PDF
    assert content.headers["content-security-policy"].startswith("default-src 'none'")
    listed = client.get("/patient/documents?class=90").text
    assert "Mon bilan sportif" in listed


def test_upload_refuses_a_file_that_is_no_pdf_or_image(client: TestClient, signed_in: str) -> None:
    """An HTML file is not stored; the form says which files are accepted."""
    response = client.post(
        "/patient/documents",
        data={"csrf_token": signed_in, "title": "Piège"},
        files={"file": ("x.pdf", b"<script>alert(1)</script>", "application/pdf")},
    )
    assert response.status_code == 422
    assert "Seuls les fichiers PDF, JPEG et PNG" in response.text


def test_profile_entries_are_added_and_removed(client: TestClient, signed_in: str) -> None:
    """An allergy, a measure, a directive and a trusted person added on the profile page show there."""
    for form in (
        {"kind": "allergy", "text": "Pollen de bouleau", "criticality": "low"},
        {"kind": "measure", "measure": "weight", "value": "71,5", "date": "2026-01-02"},
        {"kind": "directive", "text": "Pas d'acharnement thérapeutique."},
        {"kind": "contact", "role": "trusted", "family": "Martin", "given": "Léa", "phone": "0600000000"},
    ):
        assert client.post("/patient/profile", data={"csrf_token": signed_in, **form}).status_code == 200
    page = client.get("/patient/profile").text
    for text in ("Pollen de bouleau", "71,5", "Pas d&#39;acharnement thérapeutique.", "Léa Martin"):
        assert text in page
    entry = re.search(r'action="(/patient/profile/AllergyIntolerance/[^"]+/delete)"', page)
    assert entry is not None
    client.post(entry.group(1), data={"csrf_token": signed_in})
    assert "Pollen de bouleau" not in client.get("/patient/profile").text
    bad = client.post("/patient/profile", data={"csrf_token": signed_in, "kind": "allergy", "text": ""})
    assert "Indiquez l&#39;allergie" in bad.text


def stored(
    services: Services, patient: SeededPatient, resource_type: str, resource_id: str
) -> tuple[int, dict[str, Any]]:
    """Return the version and content of one resource of the record, read as its holder."""
    holder = Principal(kind=ActorKind.PATIENT, subject="t", patient_id=patient.patient_id)
    found = services.records.records(holder).read(resource_type, resource_id)
    return found.version_id, found.resource or {}


def edit_link(client: TestClient, resource_type: str, text: str = "") -> str:
    """Return the edit path of the first profile entry of ``resource_type`` whose row shows ``text``."""
    for row in re.findall(r"<tr>.*?</tr>", client.get("/patient/profile").text, re.S):
        found = re.search(rf'href="(/patient/profile/{resource_type}/[^"]+/edit)"', row)
        if found and text in row:
            return found.group(1)
    raise AssertionError(f"no edit link for {resource_type} {text!r}")


def edit_form(client: TestClient, path: str) -> dict[str, str]:
    """Return the fields of an edit form as the page fills them in (inputs, selects, textareas)."""
    page = client.get(path)
    assert page.status_code == 200
    form = page.text.split('id="edit-form"')[1].split("</form>")[0]
    fields = dict(re.findall(r'<input[^>]*name="([a-z0-9_]+)"[^>]*value="([^"]*)"', form))
    fields.update(re.findall(r'<textarea[^>]*name="([a-z0-9]+)"[^>]*>([^<]*)</textarea>', form))
    for name, options in re.findall(r'<select[^>]*name="([a-z0-9]+)">(.*?)</select>', form, re.S):
        chosen = re.search(r'<option value="([^"]*)" selected', options)
        fields[name] = chosen.group(1) if chosen else ""
    return {name: value.replace("&#39;", "'") for name, value in fields.items()}


def test_profile_entries_are_edited_in_place(
    client: TestClient, services: Services, patient: SeededPatient, signed_in: str
) -> None:
    """An entry of each kind opens in an edit form with its values and saves a new version."""
    for form in (
        {"kind": "allergy", "text": "Pollen de bouleau", "criticality": "low"},
        {"kind": "measure", "measure": "weight", "value": "71,5", "date": "2026-01-02"},
        {"kind": "directive", "text": "Pas d'acharnement thérapeutique."},
        {"kind": "contact", "role": "trusted", "family": "Martin", "given": "Léa", "phone": "0600000000"},
    ):
        client.post("/patient/profile", data={"csrf_token": signed_in, **form})
    changes = [
        ("AllergyIntolerance", "Pollen de bouleau", {"text": "Pollen de graminées", "criticality": "high"}),
        ("Observation", "71,5", {"value": "72,25"}),
        ("Consent", "acharnement", {"text": "Je refuse tout acharnement thérapeutique."}),
        ("RelatedPerson", "Martin", {"given": "Léonie", "role": "emergency"}),
    ]
    for resource_type, shown, change in changes:
        path = edit_link(client, resource_type, shown)
        form = edit_form(client, path)
        assert form["version"] == "1"
        if resource_type == "Observation":
            assert form["value"] == "71,5"  # a French decimal, as the profile shows it
        saved = client.post(path, data={**form, **change}, follow_redirects=False)
        assert (resource_type, saved.status_code) == (resource_type, 303)
        assert saved.headers["location"].startswith("/patient/profile#section-")
        version, _ = stored(services, patient, resource_type, path.split("/")[4])
        assert (resource_type, version) == (resource_type, 2)
    page = client.get("/patient/profile").text
    for text in ("Pollen de graminées", "72,25", "Je refuse tout acharnement", "Léonie Martin"):
        assert text in page
    assert "Pollen de bouleau" not in page
    assert "Votre profil médical a été mis à jour." in page


def test_editing_keeps_what_the_form_left_untouched(
    client: TestClient, services: Services, patient: SeededPatient, signed_in: str
) -> None:
    """Changing only a condition's status keeps the coding a professional wrote, and the author."""
    path = edit_link(client, "Condition")
    resource_id = path.split("/")[4]
    _, before = stored(services, patient, "Condition", resource_id)
    form = edit_form(client, path)
    status = "resolved" if form["status"] != "resolved" else "active"
    client.post(path, data={**form, "status": status})
    version, after = stored(services, patient, "Condition", resource_id)
    assert version == 2
    assert after["clinicalStatus"]["coding"][0]["code"] == status
    assert after["code"] == before["code"]
    assert after.get("recorder") == before.get("recorder")
    unchanged = client.post(path, data=edit_form(client, path), follow_redirects=False)
    assert unchanged.status_code == 303
    assert stored(services, patient, "Condition", resource_id)[0] == 2  # nothing to save: no new version


def test_edit_without_csrf_token_is_refused_and_changes_nothing(
    client: TestClient, services: Services, patient: SeededPatient, signed_in: str
) -> None:
    """An edit posted without the session's token gets the 403 page and the entry stays as it was."""
    path = edit_link(client, "MedicationStatement")
    before = stored(services, patient, "MedicationStatement", path.split("/")[4])
    form = edit_form(client, path)
    del form["csrf_token"]
    refused = client.post(path, data={**form, "text": "Autre chose"})
    assert refused.status_code == 403
    assert "rien n&#39;a été modifié" in refused.text
    assert stored(services, patient, "MedicationStatement", path.split("/")[4]) == before


def test_edit_of_a_stale_version_asks_to_reload(
    client: TestClient, services: Services, patient: SeededPatient, signed_in: str
) -> None:
    """A form showing an older version than the stored one changes nothing and asks to reload."""
    path = edit_link(client, "Immunization")
    resource_id = path.split("/")[4]
    first, second = edit_form(client, path), edit_form(client, path)
    assert (
        client.post(path, data={**first, "detail": "Rappel fait"}, follow_redirects=False).status_code == 303
    )
    stale = client.post(path, data={**second, "detail": "Autre remarque"})
    assert stale.status_code == 409
    assert 'id="edit-conflict"' in stale.text
    assert "modifié entre-temps" in stale.text
    version, resource = stored(services, patient, "Immunization", resource_id)
    assert version == 2
    assert resource["note"] == [{"text": "Rappel fait"}]


def test_a_conflict_found_when_saving_asks_to_reload(
    client: TestClient, signed_in: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A change that loses the race to another one (If-Match refused on save) is a 409 page, not a 500."""
    path = edit_link(client, "MedicationStatement")
    form = edit_form(client, path)

    def raced(*args: object, **kwargs: object) -> None:
        raise PreconditionFailed("MedicationStatement/x is at version 2, not 1.")

    monkeypatch.setattr(Writes, "update", raced)  # the write inside the edit use case
    response = client.post(path, data={**form, "detail": "1 comprimé le soir"})
    assert response.status_code == 409
    assert 'id="edit-conflict"' in response.text


def test_a_refused_edit_shows_a_plain_message(
    client: TestClient, signed_in: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the policy refuses the change, the page says so in plain words."""
    path = edit_link(client, "MedicationStatement")
    form = edit_form(client, path)

    def refused(*args: object, **kwargs: object) -> None:
        raise AccessDenied("update of MedicationStatement refused by policy.")

    monkeypatch.setattr(Writes, "update", refused)
    response = client.post(path, data={**form, "detail": "1 comprimé le soir"})
    assert response.status_code == 403
    assert "Vous ne pouvez pas modifier cet élément" in response.text


def test_an_invalid_edit_says_what_to_fix(
    client: TestClient, services: Services, patient: SeededPatient, signed_in: str
) -> None:
    """A value that is not a number, or an emptied name, is shown back with the message; nothing is saved."""
    client.post(
        "/patient/profile",
        data={
            "csrf_token": signed_in,
            "kind": "measure",
            "measure": "weight",
            "value": "70",
            "date": "2026-01-02",
        },
    )
    path = edit_link(client, "Observation", "70")
    form = edit_form(client, path)
    response = client.post(path, data={**form, "value": "soixante-dix"})
    assert response.status_code == 422
    assert "Indiquez la valeur sous forme de nombre." in response.text
    assert 'value="soixante-dix"' in response.text
    assert stored(services, patient, "Observation", path.split("/")[4])[0] == 1
    condition = edit_link(client, "Condition")
    emptied = client.post(condition, data={**edit_form(client, condition), "text": ""})
    assert emptied.status_code == 422
    assert "Indiquez la maladie." in emptied.text


def test_a_carnet_choice_has_no_edit_form(client: TestClient, signed_in: str) -> None:
    """A Consent that is a Carnet choice (an opposition) is not a profile entry: 404."""
    client.post("/patient/choices/oppositions", data={"csrf_token": signed_in, "break_glass": "1"})
    consents = client.get("/patient/export/record.json").json()["entry"]
    choice = next(e["resource"]["id"] for e in consents if e["resource"]["resourceType"] == "Consent")
    assert client.get(f"/patient/profile/Consent/{choice}/edit").status_code == 404
    assert client.get("/patient/profile/Patient/x1/edit").status_code == 404


def test_care_team_block_and_revoke(client: TestClient, services: Services, signed_in: str) -> None:
    """A blocked professional reads nothing; withdrawing the block lets the authorisation work again."""
    client.post(
        "/patient/care-team", data={"csrf_token": signed_in, "kind": "authorisation", "idnps": DOCTOR}
    )
    client.post("/patient/care-team", data={"csrf_token": signed_in, "kind": "block", "idnps": DOCTOR})
    document_id = document_ids(client)[0]
    with pytest.raises(NotFound):
        services.records.records(DOCTOR_PRINCIPAL).read("DocumentReference", document_id)
    page = client.get("/patient/care-team").text
    block = re.search(r'<ul class="plain" id="list-block">.*?action="([^"]+/revoke)"', page, re.S)
    assert block is not None
    client.post(block.group(1), data={"csrf_token": signed_in})
    assert (
        services.records.records(DOCTOR_PRINCIPAL).read("DocumentReference", document_id).resource_id
        == document_id
    )


def test_oppositions_are_saved_as_consents(client: TestClient, signed_in: str) -> None:
    """Opposing break-glass is remembered; unticking withdraws it."""
    client.post("/patient/choices/oppositions", data={"csrf_token": signed_in, "break_glass": "1"})
    page = client.get("/patient/choices").text
    assert re.search(r'id="oppose-break-glass" name="break_glass" value="1" checked', page)
    assert not re.search(r'id="oppose-regulation" name="regulation" value="1" checked', page)
    client.post("/patient/choices/oppositions", data={"csrf_token": signed_in})
    assert (
        "checked"
        not in client.get("/patient/choices").text.split('id="oppositions-form"')[1].split("</form>")[0]
    )


def test_access_timeline_shows_the_professional_and_verifies(
    client: TestClient, services: Services, signed_in: str
) -> None:
    """A professional's reads are one visit in plain words, a stranger's refusal names no record; proofs verify."""
    client.post(
        "/patient/care-team", data={"csrf_token": signed_in, "kind": "authorisation", "idnps": DOCTOR}
    )
    document_id = document_ids(client)[0]
    title = re.search(rf'id="doc-{document_id}">([^<]+)<', client.get("/patient/documents").text)
    assert title is not None
    # Only the patient's own visits so far (the record was opened by its holder under another sign-in).
    assert 'id="no-access"' in client.get("/patient/access").text
    doctor = services.records.records(DOCTOR_PRINCIPAL)
    doctor.read("DocumentReference", document_id)
    doctor.read("DocumentReference", document_id)
    stranger = Principal(kind=ActorKind.PATIENT, subject="patient:someone-else", patient_id="someone-else")
    with pytest.raises(NotFound):
        services.records.records(stranger).read("DocumentReference", document_id)
    page = client.get("/patient/access").text
    assert "someone-else" not in page
    notable = page.split('id="notable-visits"')[1].split("</ul>\n")[0]
    assert "Une personne connectée comme un autre patient s&#39;est vu refuser l&#39;accès" in notable
    timeline = page.split('id="access-timeline"')[1]
    visits = re.findall(r'<li class="visit mode-[^"]+" id="visit-[^"]+">.*?</details>', timeline, re.S)
    assert len(visits) == 1
    assert "a consulté 1 document" in visits[0]
    assert title.group(1) in visits[0]
    assert DOCTOR in visits[0]
    assert "Les heures sont celles de Paris (Europe/Paris)." in page
    mine = client.get("/patient/access?kind=mine").text
    assert mine.count('class="visit mode-mine"') >= 1
    verify = re.search(r'href="(/patient/access/[^"]+/verify)"', visits[0])
    assert verify is not None
    proof = client.get(verify.group(1))
    assert proof.status_code == 200
    assert 'id="proof-verified"' in proof.text


def test_access_history_filters_and_raw_export(
    client: TestClient, services: Services, signed_in: str
) -> None:
    """Filters narrow the visits by person and kind; the raw AuditEvents download as a FHIR Bundle."""
    client.post(
        "/patient/care-team", data={"csrf_token": signed_in, "kind": "authorisation", "idnps": DOCTOR}
    )
    document_id = document_ids(client)[0]
    services.records.records(DOCTOR_PRINCIPAL).read("DocumentReference", document_id)
    page = client.get("/patient/access").text
    people = re.findall(r'<option value="([0-9a-f]{12})">([^<]+)</option>', page)
    assert len(people) == 1
    assert people[0][1].endswith(", médecin généraliste")
    by_doctor = client.get(f"/patient/access?who={people[0][0]}&period=7").text
    assert by_doctor.count('class="visit mode-authorised"') == 1
    assert 'id="no-access"' in client.get("/patient/access?kind=emergency").text
    assert client.get("/patient/access?kind=nonsense&period=x").status_code == 200
    client.get("/language/en?next=/patient/access")
    english = client.get("/patient/access").text
    assert "general practitioner, read 1 document" in english
    export = client.get("/patient/access/export.json")
    assert export.status_code == 200
    assert export.headers["content-type"].startswith("application/fhir+json")
    bundle = json.loads(export.content)
    assert bundle["resourceType"] == "Bundle"
    assert bundle["total"] == len(bundle["entry"]) > 3
    assert all(e["resource"]["resourceType"] == "AuditEvent" for e in bundle["entry"])
    assert any(e["resource"]["agent"][0]["who"]["identifier"]["value"] == DOCTOR for e in bundle["entry"])


def test_export_gives_the_record_as_a_bundle(
    client: TestClient, patient: SeededPatient, signed_in: str
) -> None:
    """The export is a FHIR collection Bundle holding the Patient and the documents."""
    response = client.get("/patient/export/record.json")
    assert response.status_code == 200
    assert "attachment" in response.headers["content-disposition"]
    bundle = json.loads(response.content)
    types = {e["resource"]["resourceType"] for e in bundle["entry"]}
    assert bundle["type"] == "collection"
    assert {"Patient", "DocumentReference"} <= types


def test_closing_needs_confirmation_then_signs_out(client: TestClient, signed_in: str) -> None:
    """Closing without ticking the box changes nothing; with it the record is marked closed."""
    refused = client.post("/patient/close", data={"csrf_token": signed_in})
    assert refused.status_code == 422
    closed = client.post(
        "/patient/close", data={"csrf_token": signed_in, "confirm": "1"}, follow_redirects=False
    )
    assert closed.headers["location"] == "/login"
    assert client.get("/patient/", follow_redirects=False).headers["location"] == "/login"


def test_signed_out_visitor_is_sent_to_the_login_page(client: TestClient) -> None:
    """A patient page without a session redirects to /login."""
    response = client.get("/patient/documents", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/login"


def test_unknown_page_is_a_plain_language_404(client: TestClient) -> None:
    """An unknown portal path answers an HTML page in plain words, not an OperationOutcome."""
    response = client.get("/patient/nowhere/at/all")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "Cette page n&#39;existe pas" in response.text
    assert response.headers["content-security-policy"] == CSP


def test_another_patients_document_is_a_404(client: TestClient, services: Services, signed_in: str) -> None:
    """A document id of another record answers exactly like an unknown one."""
    other = seed_population(services.records, patients=2, seed=2026)[1]
    holder = Principal(kind=ActorKind.PATIENT, subject="o", patient_id=other.patient_id)
    found = services.records.records(holder).search(
        "DocumentReference", [("patient", f"Patient/{other.patient_id}"), ("_count", "1")]
    )
    response = client.get(f"/patient/documents/{found.entries[0].resource_id}")
    assert response.status_code == 404
    assert "Cette page n&#39;existe pas" in response.text


def test_a_forced_error_shows_no_stack_trace(
    settings: Settings, services: Services, patient: SeededPatient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unexpected exception becomes a plain 500 page without any traceback."""
    with TestClient(create_app(settings, services), raise_server_exceptions=False) as client:
        sign_in(client, patient)

        def broken(*args: object, **kwargs: object) -> None:
            raise RuntimeError("secret internals /etc/passwd")

        monkeypatch.setattr(services.records, "records", broken)
        response = client.get("/patient/documents")
    assert response.status_code == 500
    assert "Traceback" not in response.text
    assert "secret internals" not in response.text
    assert "Un problème est survenu" in response.text


def test_production_mode_offers_no_demo_sign_in(settings: Settings, services: Services) -> None:
    """In production mode the login page says sign-in is not configured and refuses the demo form."""
    production = dataclasses.replace(settings, mode=Mode.PRODUCTION)
    with TestClient(create_app(production, services), base_url="https://testserver") as client:
        page = client.get("/login")
        assert 'id="signin-not-configured"' in page.text
        assert "secure" in page.headers["set-cookie"].lower()
        assert 'name="csrf_token"' not in page.text
        refused = client.post("/login", data={"kind": "patient", "identifier": "a|b"})
    assert refused.status_code == 403


def test_api_clients_still_get_json_at_the_root(client: TestClient) -> None:
    """``/`` answers JSON to API clients and redirects browsers to the sign-in page."""
    assert client.get("/").json()["fhir"] == "/fhir/metadata"
    browser = client.get("/", headers={"Accept": "text/html"}, follow_redirects=False)
    assert browser.headers["location"] == "/login"


def test_every_message_of_the_patient_portal_has_a_french_translation() -> None:
    """Each _("…") of the shared and patient templates has an entry in the French catalog."""
    french = json.loads((WEB / "locales" / "fr.json").read_text(encoding="utf-8"))
    used: set[str] = set()
    templates = [WEB / "templates" / name for name in ("base.html", "error.html", "login.html")]
    templates += sorted((WEB / "templates" / "patient").glob("*.html"))
    for template in templates:
        text = template.read_text(encoding="utf-8")
        # Either quote: attributes call _('…') inside double quotes.
        used.update(m.group(2) for m in re.finditer(r"""_\(\s*(["'])((?:(?!\1).)+)\1""", text))
    assert len(used) > 150
    missing = sorted(message for message in used if message not in french)
    assert missing == []


def test_a_copied_session_cookie_stops_working_at_sign_out(
    client: TestClient, settings: Settings, services: Services, signed_in: str
) -> None:
    """Signing out ends the session for good: a copy of its cookie made before is signed out too."""
    with TestClient(create_app(settings, services), base_url="http://testserver") as thief:
        thief.cookies.update(dict(client.cookies))
        assert thief.get("/patient/", follow_redirects=False).status_code == 200
        out = client.post("/logout", data={"csrf_token": signed_in}, follow_redirects=False)
        assert out.status_code == 303
        stolen = thief.get("/patient/", follow_redirects=False)
        assert stolen.status_code == 303
        assert stolen.headers["location"] == "/login"
        assert thief.get("/patient/documents", follow_redirects=False).status_code == 303


def test_profile_speaks_french_and_shows_blood_pressure_once(client: TestClient, signed_in: str) -> None:
    """No English status, no UCUM code, decimal commas; blood pressure is one figure, charts match tables."""
    page = client.get("/patient/profile").text
    for english in ("Resolved", "(completed)", "mm[Hg]", ">Cel<", "(Cel)"):
        assert english not in page
    assert "Guérie" in page
    assert "terminé" in page
    assert re.search(r"<td>\d+,\d+</td>", page) is not None
    assert re.search(r"<td>\d+\.\d+</td>", page) is None
    assert page.count('id="measure-blood-pressure"') == 1
    assert 'id="measure-85354-9/' not in page
    assert "Tension artérielle (mmHg)" in page
    for figure in re.findall(r'<figure class="measure".*?</figure>', page, re.S):
        charted = re.search(r"<desc>(\d+) mesures", figure)
        rows = len(re.findall(r"<tr><td>", figure))
        if charted is not None:
            assert int(charted.group(1)) == rows


def test_the_portals_have_a_favicon(client: TestClient) -> None:
    """Every page links the icon, which is served; /favicon.ico leads to it."""
    assert '<link rel="icon" href="/static/favicon.svg"' in client.get("/login").text
    icon = client.get("/static/favicon.svg")
    assert icon.status_code == 200
    assert icon.headers["content-type"].startswith("image/svg+xml")
    redirect = client.get("/favicon.ico", follow_redirects=False)
    assert (redirect.status_code, redirect.headers["location"]) == (301, "/static/favicon.svg")


def test_the_directory_is_searched_by_name_rpps_or_city(
    client: TestClient, services: Services, signed_in: str
) -> None:
    """The care team's directory narrows to the professionals matching a name, an RPPS number or a city."""
    everyone = re.findall(r'<option value="(\d+)"', client.get("/patient/care-team").text)
    pros = {p.idnps: p for p in demo_professionals(services.records)}
    assert set(everyone) == set(pros)
    someone = next(p for p in pros.values() if p.city)
    family = someone.display.split()[-1]
    for words in (family.lower(), someone.idnps[-6:], someone.city or ""):
        page = client.get("/patient/care-team", params={"q": words}).text
        found = re.findall(r'<option value="(\d+)"', page)
        assert someone.idnps in found
        assert 0 < len(found) <= len(everyone)
        assert 'id="directory-found"' in page
    nobody = client.get("/patient/care-team", params={"q": "zzzz-nobody"}).text
    assert re.findall(r'<option value="(\d+)"', nobody) == []
    assert "0 professionnel(s) trouvé(s)" in nobody


def test_search_finds_documents_and_profile_by_word_kind_date_and_author(
    client: TestClient, signed_in: str
) -> None:
    """Words (any case, no accents needed), a kind, a period and an author narrow what is found."""
    assert 'id="search-results"' not in client.get("/patient/search").text
    listing = client.get("/patient/documents").text
    title = re.search(r'id="doc-[^"]+">([^<]+)<', listing)
    assert title is not None
    word = max(title.group(1).replace("&#39;", "'").split(), key=len)
    shouting = word.upper().replace("É", "E").replace("È", "E")
    found = client.get("/patient/search", params={"q": shouting}).text
    assert title.group(1) in found
    assert 'href="/patient/documents/' in found
    profile = client.get("/patient/search", params={"q": "paracetamol", "kind": "treatment"}).text
    assert "PARACÉTAMOL" in profile
    assert 'href="/patient/profile#section-treatment"' in profile
    assert 'href="/patient/documents/' not in profile
    every_document = client.get("/patient/search", params={"kind": "document"}).text
    shown = len(re.findall(r'href="/patient/documents/', every_document))
    assert shown >= 5
    old = client.get("/patient/search", params={"kind": "document", "until": "1990-01-01"}).text
    assert 'id="no-results"' in old
    nobody = client.get("/patient/search", params={"kind": "document", "author": "zzz-personne"}).text
    assert 'id="no-results"' in nobody
    assert client.get("/patient/search", params={"since": "not-a-date", "kind": "bogus"}).status_code == 200


def test_notification_centre_lists_notices_unread_then_read(
    client: TestClient, services: Services, patient: SeededPatient, signed_in: str
) -> None:
    """A break-glass access appears in the notification centre, unread, counted at home; read once marked."""
    assert 'id="no-notices"' in client.get("/patient/notifications").text
    emergency = services.records.records(
        DOCTOR_PRINCIPAL, mode=AccessMode.BREAK_GLASS, justification="Patient inconscient aux urgences"
    )
    emergency.read("Patient", patient.patient_id)
    page = client.get("/patient/notifications").text
    notices = re.findall(r'<li class="card notice unread[^"]*" id="notice-([^"]+)"', page)
    assert len(notices) == 1
    assert "a ouvert votre dossier en urgence (bris de glace)" in page
    assert "Patient inconscient" not in page  # the justification is read in the access history only
    assert "Vous avez 1 notification(s) non lue(s)." in client.get("/patient/").text
    client.post("/patient/notifications/read", data={"csrf_token": signed_in, "id": notices[0]})
    page = client.get("/patient/notifications").text
    assert 'class="card notice unread' not in page
    assert f'id="notice-{notices[0]}"' in page
    assert 'id="unread-notices"' not in client.get("/patient/").text
    emergency.read("Patient", patient.patient_id)
    client.post("/patient/notifications/read", data={"csrf_token": signed_in})
    assert 'class="card notice unread' not in client.get("/patient/notifications").text
    stranger = client.post("/patient/notifications/read", data={"csrf_token": "wrong"})
    assert stranger.status_code == 403
