"""End-to-end flows in Chromium against the real server: patients and professionals together.

Every page a flow visits is checked with axe-core (WCAG 2.1 A/AA); the main pages are saved as
screenshots in ``tests/browser/artifacts/``. Each flow uses its own seeded patient and its own
professionals, so that the flows do not depend on each other's order.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from email.message import Message
from pathlib import Path

from playwright.sync_api import BrowserContext, Page, expect

from browser.browsing import (
    LiveServer,
    check,
    declare_consent,
    pdf_file,
    screenshot,
    search_patient,
    sign_in_patient,
    sign_in_professional,
    visit,
)
from carnet.demo import SeededPatient

NewContext = Callable[[], BrowserContext]
DOCUMENT_LINK = re.compile(r"/documents/([A-Za-z0-9\-.]+)$")


def _patient_page(new_context: NewContext, patient: SeededPatient, path: str, shot: str) -> Page:
    """A page in a new browser profile, the patient signed in and at ``path`` (checked, saved as ``shot``)."""
    page = new_context().new_page()
    sign_in_patient(page, patient)
    visit(page, path, shot)
    return page


def _pro_document_ids(page: Page, patient_id: str) -> list[str]:
    visit(page, f"/pro/patients/{patient_id}/documents")
    hrefs = page.locator("a.document-link").evaluate_all("links => links.map(a => a.getAttribute('href'))")
    return [m.group(1) for h in hrefs if (m := DOCUMENT_LINK.search(h))]


def _patient_document_ids(page: Page) -> list[str]:
    visit(page, "/patient/documents")
    hrefs = page.locator("main a[href^='/patient/documents/']").evaluate_all(
        "links => links.map(a => a.getAttribute('href'))"
    )
    return [m.group(1) for h in hrefs if (m := DOCUMENT_LINK.search(h)) and m.group(1) != "new"]


def test_professional_submits_and_views_documents(
    page: Page, live_server: LiveServer, tmp_path: Path
) -> None:
    """A physician opens a record with the patient's consent, reads a CDA, submits and archives a PDF."""
    patient = live_server.patients[0]
    physician = live_server.physicians()[0]
    visit(page, "/login", "login")
    sign_in_professional(page, physician)
    screenshot(page, "pro-search")
    search_patient(page, patient.ins_value)
    expect(page.locator("#consent-form")).to_be_visible()
    screenshot(page, "pro-access")
    page.check("#consent-agreed")
    page.click("#consent-submit")
    page.wait_for_url(f"**/pro/patients/{patient.patient_id}*")
    check(page, "pro-summary")
    expect(page.locator("#patient-identity")).to_contain_text(patient.ins_value)
    expect(page.locator("#measure-charts svg").first).to_be_visible()
    document_ids = _pro_document_ids(page, patient.patient_id)
    screenshot(page, "pro-documents")
    assert document_ids
    visit(page, f"/pro/patients/{patient.patient_id}/documents/{document_ids[0]}", "pro-document")
    page.click("#nav-submit")
    page.wait_for_url("**/documents/new")
    check(page, "pro-upload")
    page.set_input_files("#file", str(pdf_file(tmp_path)))
    page.fill("#title", "Certificat de sport")
    page.select_option("#class_code", "52")
    page.select_option("#type_code", "11488-4")
    page.click("#upload-submit")
    page.wait_for_url(re.compile(r".*/documents/[A-Za-z0-9\-.]+\?done=submitted$"))
    check(page, "pro-document-submitted")
    expect(page.locator("h1")).to_have_text("Certificat de sport")
    expect(page.locator("iframe.document-frame")).to_be_visible()
    submitted = DOCUMENT_LINK.search(page.url.split("?")[0])
    assert submitted is not None
    visit(page, f"/pro/patients/{patient.patient_id}/documents")
    page.locator(f"form[action$='/documents/{submitted.group(1)}/archive'] button").click()
    page.wait_for_url("**/documents?done=archived")
    check(page)
    expect(page.locator("#documents")).not_to_contain_text("Certificat de sport")


def test_language_switch(page: Page, live_server: LiveServer) -> None:
    """The language switch turns the professional portal from French to English and back."""
    sign_in_professional(page, live_server.physicians()[1])
    expect(page.locator("html")).to_have_attribute("lang", "fr")
    expect(page.locator("h1")).to_have_text("Trouver un patient")
    page.click("#language-en")
    page.wait_for_load_state()
    check(page, "pro-search-en")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.locator("h1")).to_have_text("Find a patient")
    page.click("#language-fr")
    page.wait_for_load_state()
    expect(page.locator("h1")).to_have_text("Trouver un patient")


def _break_glass(page: Page, patient: SeededPatient, justification: str) -> None:
    search_patient(page, patient.ins_value)
    page.fill("#justification", justification)
    page.click("#break-glass-submit")
    page.wait_for_url(f"**/pro/patients/{patient.patient_id}")
    check(page)


def test_break_glass_banner_and_patient_timeline(new_context: NewContext, live_server: LiveServer) -> None:
    """A professional breaks the glass: a banner on every page, and the patient sees the access."""
    patient = live_server.patients[1]
    physician = live_server.physicians()[2]
    page = new_context().new_page()
    sign_in_professional(page, physician)
    _break_glass(page, patient, "Patient inconscient admis aux urgences")
    screenshot(page, "pro-break-glass")
    expect(page.locator(".break-glass-banner")).to_contain_text("Patient inconscient admis aux urgences")
    for path in ("/pro/", f"/pro/patients/{patient.patient_id}/documents"):
        visit(page, path)
        expect(page.locator(".break-glass-banner")).to_be_visible()
    page.locator(".break-glass-banner button[type='submit']").click()
    page.wait_for_url("**/pro/")
    check(page)
    expect(page.locator(".break-glass-banner")).to_have_count(0)

    patient_page = _patient_page(new_context, patient, "/patient/access", "patient-access")
    emergency = patient_page.locator("#notable-visits li.visit.mode-break-glass")
    expect(emergency).to_have_count(1)
    expect(emergency.first).to_contain_text(physician.display)
    expect(emergency.first).to_contain_text("Patient inconscient admis aux urgences")
    expect(emergency.first).to_contain_text("a consulté")


def test_break_glass_sends_an_email(new_context: NewContext, live_server: LiveServer) -> None:
    """After a break-glass access the patient gets an e-mail, which never carries the justification."""
    patient = live_server.patients[4]
    address = f"patient-{patient.ins_value}@example.org"
    patient_page = _patient_page(new_context, patient, "/patient/choices", "patient-choices")
    patient_page.fill("#notify-email", address)
    patient_page.locator("#notifications-form button[type='submit']").click()
    patient_page.wait_for_url("**/patient/choices")
    check(patient_page)

    page = new_context().new_page()
    sign_in_professional(page, live_server.physicians()[6])
    _break_glass(page, patient, "Détresse respiratoire, patient non communicant")

    def is_notice(message: Message) -> bool:
        return address in str(message.get("To", ""))

    notice = live_server.mailbox.wait_for(is_notice, timeout=30)
    assert "respiratoire" not in notice.as_string()  # free text may be clinical: never e-mailed


def test_masked_document_hidden_except_from_treating_physician(
    new_context: NewContext, live_server: LiveServer
) -> None:
    """A patient masks a document: an authorised professional no longer sees it, the treating physician does."""
    patient = live_server.patients[2]
    treating, other = live_server.physicians()[3], live_server.physicians()[4]
    treating_page, other_page, patient_page = (new_context().new_page() for _ in range(3))
    sign_in_professional(treating_page, treating)
    declare_consent(treating_page, patient, treating=True)
    sign_in_professional(other_page, other)
    declare_consent(other_page, patient)
    before = _pro_document_ids(other_page, patient.patient_id)

    sign_in_patient(patient_page, patient)
    shared = [d for d in _patient_document_ids(patient_page) if d in before]
    assert shared, "the patient and the professional see no document in common"
    masked = shared[0]
    visit(patient_page, f"/patient/documents/{masked}", "patient-document")
    patient_page.locator(
        f"form[action='/patient/documents/{masked}/visibility'] button[type='submit']"
    ).click()
    patient_page.wait_for_url(f"**/patient/documents/{masked}")
    check(patient_page)

    assert masked not in _pro_document_ids(other_page, patient.patient_id)
    visit(other_page, f"/pro/patients/{patient.patient_id}/documents/{masked}", status=404)
    assert masked in _pro_document_ids(treating_page, patient.patient_id)
    visit(treating_page, f"/pro/patients/{patient.patient_id}/documents/{masked}")


def test_blocked_professional_gets_nothing(new_context: NewContext, live_server: LiveServer) -> None:
    """A professional the patient blocked can neither declare consent nor break the glass."""
    patient = live_server.patients[3]
    blocked = live_server.physicians()[5]
    patient_page = _patient_page(new_context, patient, "/patient/care-team", "patient-care-team")
    page = new_context().new_page()
    patient_page.check("#care-kind-block")
    patient_page.fill("#care-idnps", blocked.idnps)
    patient_page.click("#care-submit")
    patient_page.wait_for_url("**/patient/care-team")
    check(patient_page)
    expect(patient_page.locator("#list-block")).to_contain_text(blocked.idnps)

    sign_in_professional(page, blocked)
    search_patient(page, patient.ins_value)
    # Told they are blocked, with no form that could only fail.
    expect(page.locator("#access-blocked")).to_be_visible()
    expect(page.locator("#consent-form")).to_have_count(0)
    expect(page.locator("#break-glass-form")).to_have_count(0)
    visit(page, f"/pro/patients/{patient.patient_id}", status=404)
    expect(page.locator(".break-glass-banner")).to_have_count(0)
    # The same in English, on a phone.
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"/language/en?next=/pro/search?ins={patient.ins_value}")
    expect(page.locator("#access-blocked")).to_be_visible()
    assert page.locator("html").get_attribute("lang") == "en"
    expect(page.locator("#consent-form")).to_have_count(0)
    check(page, "pro-blocked-phone-en")


def test_a_closed_record_is_said_closed_to_professionals(
    new_context: NewContext, live_server: LiveServer
) -> None:
    """Issue 17 item 4: a record its holder closed is said closed — no consent form, no break-glass."""
    patient = live_server.patients[5]
    doctor = live_server.physicians()[4]
    patient_page = _patient_page(new_context, patient, "/patient/close", "patient-close")
    page = new_context().new_page()
    patient_page.check("#close-confirm")
    patient_page.click("#close-submit")
    patient_page.wait_for_url("**/login*")
    try:
        sign_in_professional(page, doctor)
        search_patient(page, patient.ins_value)
        expect(page.locator("#access-closed")).to_be_visible()
        expect(page.locator("#access-closed")).to_contain_text(patient.ins_value)
        expect(page.locator("#consent-form")).to_have_count(0)
        expect(page.locator("#break-glass-form")).to_have_count(0)
        visit(page, f"/pro/patients/{patient.patient_id}", status=404)
        # The same in English, on a phone.
        page.set_viewport_size({"width": 390, "height": 844})
        page.goto(f"/language/en?next=/pro/search?ins={patient.ins_value}")
        assert page.locator("html").get_attribute("lang") == "en"
        expect(page.locator("h1")).to_contain_text("This record is closed")
        expect(page.locator("#break-glass-form")).to_have_count(0)
        check(page, "pro-closed-phone-en")
    finally:
        # The holder reopens it: the other browser tests share this server.
        sign_in_patient(patient_page, patient)
        visit(patient_page, "/patient/close", "patient-close")
        patient_page.click("#reopen-submit")
        patient_page.wait_for_url("**/patient/")
    search_patient(page, patient.ins_value)
    expect(page.locator("#access-closed")).to_have_count(0)
