"""Every main page of both portals fits a phone (390×844): no sideways scrolling, axe-core clean.

Each page is visited in French and in English at the size of a common phone, checked by
axe-core, and measured: the document must be no wider than the screen. Folded ``<details>``
are unfolded first, so what they hold is measured (and checked) too. Screenshots are saved as
``tests/browser/artifacts/phone-<page>-<lang>.png``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from email.message import Message
from pathlib import Path

from playwright.sync_api import BrowserContext, Page

from browser.browsing import (
    ARTIFACTS,
    LiveServer,
    check,
    declare_consent,
    pdf_file,
    sign_in_patient,
    sign_in_professional,
)

NewContext = Callable[[], BrowserContext]

PHONE = {"width": 390, "height": 844}
LANGUAGES = ("fr", "en")
PATIENT_PAGES = (
    ("home", "/patient/"),
    ("search", "/patient/search?q=compte"),
    ("notifications", "/patient/notifications"),
    ("messages", "/patient/messages"),
    ("documents", "/patient/documents"),
    ("upload", "/patient/documents/new"),
    ("profile", "/patient/profile"),
    ("reimbursements", "/patient/reimbursements"),
    ("care-team", "/patient/care-team"),
    ("apps", "/patient/apps"),
    ("feeds", "/patient/feeds"),
    ("choices", "/patient/choices"),
    ("studies", "/patient/studies"),
    ("access", "/patient/access"),
    ("access-mine", "/patient/access?kind=mine"),
    ("export", "/patient/export"),
    ("close", "/patient/close"),
)


def docs_image(name: str) -> Path | None:
    """Where to save a screenshot for the README: ``$CARNET_DOCS_IMG/<name>`` (``make screenshots``)."""
    folder = os.environ.get("CARNET_DOCS_IMG")
    if not folder:
        return None
    Path(folder).mkdir(parents=True, exist_ok=True)
    return Path(folder) / name


def _overflow(page: Page) -> list[str]:
    """The elements wider than the screen that make the page scroll sideways (empty: it fits)."""
    found: list[str] = page.evaluate(
        """() => {
            const width = document.documentElement.clientWidth;
            if (document.documentElement.scrollWidth <= width) return [];
            const wide = [];
            for (const element of document.querySelectorAll('body *')) {
                const box = element.getBoundingClientRect();
                if (box.right > width + 1 && box.width > 0) {
                    wide.push(element.tagName.toLowerCase() + (element.id ? '#' + element.id : '')
                        + (element.className && typeof element.className === 'string' ? '.' + element.className.split(' ').join('.') : '')
                        + ' ' + Math.round(box.right) + 'px');
                }
            }
            return wide.slice(0, 8);
        }"""
    )
    return found


def _fits(page: Page, path: str, shot: str) -> None:
    """Open ``path``, unfold its details, check it with axe-core and fail if it scrolls sideways."""
    response = page.goto(path)
    assert response is not None
    assert response.status < 400, f"{path}: {response.status}"
    page.evaluate("() => document.querySelectorAll('details').forEach(d => { d.open = true; })")
    check(page, shot)
    wide = _overflow(page)
    assert wide == [], f"{path} scrolls sideways on a {PHONE['width']}px-wide phone: {wide}"


def test_every_patient_page_fits_a_phone(page: Page, live_server: LiveServer) -> None:
    """The patient portal's pages, a document and a proof fit 390 px in French and English."""
    page.set_viewport_size(PHONE)
    sign_in_patient(page, live_server.patients[0])
    for language in LANGUAGES:
        page.goto(f"/language/{language}?next=/patient/")
        for name, path in PATIENT_PAGES:
            _fits(page, path, f"phone-patient-{name}-{language}")
        # Item 2 of issue 17: human units, decimal commas in French, no English left in French.
        page.goto("/patient/profile")
        shown = page.locator("main").inner_text()
        assert "mm[Hg]" not in shown
        assert "(!)" not in shown
        if language == "fr":
            assert "Resolved" not in shown
            assert "(completed)" not in shown
        page.goto("/patient/documents")
        document = page.locator("a[id^='doc-']").first.get_attribute("href")
        assert document is not None
        _fits(page, document, f"phone-patient-document-{language}")
        page.goto("/patient/access?kind=mine")
        proof = page.locator("a[href$='/verify']").first.get_attribute("href")
        assert proof is not None
        _fits(page, proof, f"phone-patient-verify-{language}")


def test_every_professional_page_fits_a_phone(page: Page, live_server: LiveServer) -> None:
    """The professional portal's search, ways in, record, documents and submission fit 390 px."""
    page.set_viewport_size(PHONE)
    # Patient 0 and this physician are used by no flow that expects the physician unauthorised.
    patient = live_server.patients[0]
    professional = live_server.physicians()[-2]
    for language in LANGUAGES:
        page.goto(f"/language/{language}?next=/login")
        _fits(page, "/login", f"phone-login-{language}")
        _fits(page, "/login?q=pharmacie", f"phone-login-search-{language}")
    sign_in_professional(page, professional)
    page.goto("/language/fr?next=/pro/")
    _fits(page, f"/pro/search?ins={patient.ins_value}", "phone-pro-ways-in-fr")
    declare_consent(page, patient)
    base = f"/pro/patients/{patient.patient_id}"
    for language in LANGUAGES:
        page.goto(f"/language/{language}?next=/pro/")
        _fits(page, "/pro/", f"phone-pro-search-{language}")
        _fits(page, base, f"phone-pro-record-{language}")
        _fits(page, f"{base}/documents", f"phone-pro-documents-{language}")
        _fits(page, f"{base}/documents/new", f"phone-pro-submit-{language}")
        _fits(page, f"{base}/messages", f"phone-pro-messages-{language}")
        _fits(page, "/pro/messages", f"phone-pro-inbox-{language}")
        _fits(page, f"{base}/reimbursements", f"phone-pro-reimbursements-{language}")
        document = page.goto(f"{base}/documents")
        assert document is not None
        link = page.locator("a.document-link").first.get_attribute("href")
        assert link is not None
        _fits(page, link, f"phone-pro-document-{language}")


def test_a_visit_of_a_hundred_accesses_fits_one_phone_screen(
    page: Page, new_context: NewContext, live_server: LiveServer
) -> None:
    """A professional's 100 accesses in one sitting are one visit, told in words on one phone screen."""
    patient = live_server.patients[0]
    professional = live_server.physicians()[-3]
    pro_page = new_context().new_page()
    sign_in_professional(pro_page, professional)
    declare_consent(pro_page, patient)
    base = f"/pro/patients/{patient.patient_id}"
    pro_page.goto(f"{base}/documents")
    links = [h for h in pro_page.locator("a.document-link").evaluate_all("els => els.map(e => e.href)") if h]
    assert links
    for index in range(100):
        answer = pro_page.request.get(links[index % len(links)])
        assert answer.status == 200

    page.set_viewport_size(PHONE)
    sign_in_patient(page, patient)
    page.goto("/patient/access")
    who = page.locator("#filter-who option", has_text=professional.display).get_attribute("value")
    assert who
    _fits(page, f"/patient/access?who={who}", "phone-patient-access-hundred")
    page.goto(f"/patient/access?who={who}")
    visits = page.locator("li.visit")
    assert visits.count() == 1
    visit = visits.first
    assert "a consulté" in visit.inner_text()
    box = visit.bounding_box()
    assert box is not None
    assert box["height"] <= PHONE["height"], f"the visit is {box['height']}px high"
    visit.screenshot(
        path=str(docs_image("access-history-visit.png") or ARTIFACTS / "access-history-visit.png")
    )
    steps = visit.locator(".visit-steps li")
    assert steps.count() >= 100
    page.goto("/patient/access")
    page.screenshot(
        path=str(docs_image("access-history-phone.png") or ARTIFACTS / "access-history-phone.png"),
        full_page=True,
    )


def _png(folder: Path) -> Path:
    """A small PNG image (a 2×2 grey square) to send with a message."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\x00" + b"\x80\x80\x80" * 2 for _ in range(2))
    image = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )
    path = folder / "exercices.png"
    path.write_bytes(image)
    return path


def test_messaging_between_a_physician_and_the_patient(
    page: Page, new_context: NewContext, live_server: LiveServer
) -> None:
    """Both ways, French then English, desktop and phone: inbox and unread count, e-mail, files filed by each side."""
    patient = live_server.patients[0]
    professional = live_server.physicians()[-4]
    pro_page = new_context().new_page()
    pro_page.set_viewport_size({"width": 1200, "height": 800})
    sign_in_professional(pro_page, professional)
    declare_consent(pro_page, patient)
    base = f"/pro/patients/{patient.patient_id}"
    _fits(pro_page, f"{base}/messages", "pro-messages-empty")
    pro_page.fill(
        "#message-text", "Bonjour, vos analyses sont normales. Pensez à refaire la prise de sang dans un an."
    )
    pro_page.click("#message-submit")
    pro_page.wait_for_url(f"**{base}/messages*")
    check(pro_page)

    # The patient, on a phone, in French: told, reads, answers with a PDF the message carries.
    page.set_viewport_size(PHONE)
    sign_in_patient(page, patient)
    page.goto("/language/fr?next=/patient/")
    _fits(page, "/patient/notifications", "phone-patient-notifications-message")
    page.goto("/patient/messages")
    page.select_option("#message-to", professional.idnps)
    page.fill("#message-text", "Merci docteur. Voici l'ordonnance du kinésithérapeute.")
    page.fill("#message-title", "Ordonnance du kinésithérapeute")
    page.set_input_files("#message-file", str(pdf_file(ARTIFACTS)))
    page.click("#message-submit")
    page.wait_for_url("**/patient/messages")
    _fits(page, "/patient/messages", "phone-patient-messages-conversation")
    assert page.locator("#messages li.message").count() >= 2
    assert "analyses sont normales" in page.locator("#messages").inner_text()
    assert "Fichier joint : Ordonnance du kinésithérapeute" in page.locator("#messages").inner_text()
    page.screenshot(
        path=str(docs_image("messaging-patient-phone.png") or ARTIFACTS / "messaging.png"), full_page=True
    )

    # The physician's e-mail names nobody; home, menu and inbox count the message unread (desktop).
    def for_physician(message: Message) -> bool:
        return f"{professional.idnps[1:]}@mssante.example" in str(message.get("To", ""))

    mail = live_server.mailbox.wait_for(for_physician, timeout=60).as_string()
    assert "/pro/messages" in mail
    assert patient.display.split()[-1] not in mail
    assert "kinésithérapeute" not in mail
    pro_page.goto("/language/fr?next=/pro/")
    pro_page.goto("/pro/")
    assert "1 message(s) non lu(s)" in pro_page.locator("#home-unread").inner_text()
    check(pro_page, "pro-home-unread")
    _fits(pro_page, "/pro/messages", "pro-inbox-fr")
    assert "1 non lu(s)" in pro_page.locator("#inbox").inner_text()
    pro_page.click("#inbox a")
    pro_page.wait_for_url(f"**{base}/messages")
    check(pro_page, "pro-conversation-fr")
    assert "Ordonnance du kinésithérapeute" in pro_page.locator("#messages").inner_text()
    pro_page.goto("/pro/messages")
    assert "Aucun message non lu." in pro_page.locator("#inbox-summary").inner_text()
    pro_page.goto(f"{base}/messages")
    pro_page.screenshot(
        path=str(docs_image("messaging-professional.png") or ARTIFACTS / "messaging-pro.png"), full_page=True
    )
    # The physician files the patient's PDF into the record as a document of their choosing.
    pro_page.locator("form.file-form select[name=class]").first.select_option("10")
    with pro_page.expect_navigation():
        pro_page.locator("form.file-form button").first.click()
    assert f"{base}/documents/" in pro_page.url
    check(pro_page)

    # English, both sides; the physician answers with an image the patient files herself (phone).
    pro_page.goto(f"/language/en?next={base}/messages")
    pro_page.set_viewport_size(PHONE)
    _fits(pro_page, f"{base}/messages", "phone-pro-conversation-en")
    assert "Filed in the record:" in pro_page.locator("#messages").inner_text()
    pro_page.fill("#message-text", "Here are the exercises, twice a day.")
    pro_page.fill("#message-title", "Exercises")
    pro_page.set_input_files("#message-file", str(_png(ARTIFACTS)))
    pro_page.click("#message-submit")
    pro_page.wait_for_url(f"**{base}/messages*")
    check(pro_page, "phone-pro-message-sent-en")
    _fits(pro_page, "/pro/messages", "phone-pro-inbox-en")
    page.goto("/language/en?next=/patient/messages")
    _fits(page, "/patient/messages", "phone-patient-messages-en")
    assert "Filed in your record:" in page.locator("#messages").inner_text()
    with page.expect_navigation():
        page.locator("button[id^='file-']").first.click()
    assert "/patient/documents/" in page.url
    check(page, "phone-patient-filed-en")
    _fits(page, "/patient/documents", "phone-patient-documents-after-filing-en")
    assert "Exercises" in page.locator("main").inner_text()
    # Search in one's own record reaches the text of the PDF the physician filed (item 8).
    _fits(page, "/patient/search?q=certificat+medical", "phone-patient-search-content-en")
    assert "In the document:" in page.locator("#search-results").inner_text()
    page.set_viewport_size({"width": 1200, "height": 800})
    page.goto("/language/fr?next=/patient/messages")
    check(page, "patient-messages-desktop-fr")


def test_representative_switching_fits_a_phone(page: Page, live_server: LiveServer) -> None:
    """A parent signed in as themself switches to a child's record on a phone (the README's picture)."""
    first, second = live_server.patients[0], live_server.patients[1]
    page.set_viewport_size(PHONE)
    page.goto("/login")
    page.fill("#login-rep-name", "Marie Durand")
    page.fill(
        "#login-rep-records",
        f"{first.ins_system}|{first.ins_value}\n{second.ins_system}|{second.ins_value}",
    )
    with page.expect_navigation():
        page.click("#login-representative-submit")
    _fits(page, "/patient/switch", "phone-representative-switch")
    with page.expect_navigation():
        page.get_by_role("button", name=second.display.split()[0]).first.click()
    _fits(page, "/patient/", "phone-representative-home")
    assert second.display.split()[0] in page.locator("#acting-for-banner").inner_text()
    page.screenshot(
        path=str(
            docs_image("representative-acting-for-phone.png") or ARTIFACTS / "representative-acting.png"
        ),
        full_page=False,
    )
