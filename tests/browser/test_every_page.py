"""Every GET page of both portals, in French and in English, passes axe-core (WCAG 2.1 A/AA).

No page makes a request to another origin (every request the browser makes is recorded).
Each page is also saved as a screenshot, ``tests/browser/artifacts/<portal>-<page>-<lang>.png``.
One signed-in walk per portal visits every page in French, then again in English. The seeded
records hold CDA documents only (levels 1 and 3): each walk adds the PDF whose viewer it checks.
"""

from __future__ import annotations

import re
from pathlib import Path

from playwright.sync_api import BrowserContext, Page

from browser.browsing import (
    LiveServer,
    check,
    pdf_file,
    screenshot,
    search_patient,
    sign_in_patient,
    sign_in_professional,
    visit,
)

LANGUAGES = ("fr", "en")
#: A well-formed INS that no seeded record has (the population's NIRs start with 1 or 2).
UNKNOWN_INS = "300000000000000"
PATIENT_DOCUMENT = re.compile(r"/patient/documents/([A-Za-z0-9\-.]+)$")
PRO_DOCUMENT = re.compile(r"/documents/([A-Za-z0-9\-.]+)$")
SUBMITTED = re.compile(r"/documents/[A-Za-z0-9\-.]+\?done=submitted$")


def _record_requests(page: Page) -> list[str]:
    """Collect the URL of every request the browser makes from now on (pages, styles, frames…)."""
    requested: list[str] = []
    page.context.on("request", lambda request: requested.append(request.url))
    return requested


def _assert_no_third_party(requested: list[str], origin: str) -> None:
    """Every network request went to the portal's own origin.

    Requests that never leave the browser (``data:``, ``blob:``, and Chromium's own PDF viewer
    at ``chrome-extension:``) are not network requests and are left aside.
    """
    network = [u for u in requested if u.split(":", 1)[0] in ("http", "https", "ws", "wss")]
    assert network, "no request was recorded"
    elsewhere = sorted({u for u in network if not u.startswith(origin + "/")})
    assert elsewhere == [], f"requests to other origins: {elsewhere[:10]}"


def _choose(page: Page, language: str, then: str) -> None:
    """Choose the portals' language (the ``carnet_lang`` cookie) and land on ``then``."""
    response = page.goto(f"/language/{language}?next={then}")
    assert response is not None
    assert response.status == 200
    assert page.locator("html").get_attribute("lang") == language


def _hrefs(page: Page, selector: str) -> list[str]:
    links: list[str] = page.locator(selector).evaluate_all("links => links.map(a => a.getAttribute('href'))")
    return links


def _one_of_each(context: BrowserContext, urls: list[str], kinds: dict[str, str]) -> dict[str, str]:
    """Fetch pages with the browser's cookies until one of each kind is found: ``{kind: url}``.

    ``kinds`` maps a kind to a regular expression its page's HTML matches; the first kind that
    matches wins, so the most specific kinds come first.
    """
    found: dict[str, str] = {}
    for url in urls:
        html = context.request.get(url).text()
        kind = next((k for k, pattern in kinds.items() if re.search(pattern, html)), None)
        if kind is not None:
            found.setdefault(kind, url)
        if len(found) == len(kinds):
            break
    missing = sorted(set(kinds) - set(found))
    assert missing == [], f"no document of kind {missing} among {len(urls)} documents"
    return found


def test_every_patient_page_is_accessible(page: Page, live_server: LiveServer, tmp_path: Path) -> None:
    """Each page of the patient portal, with a document viewer of each kind, has no WCAG 2.1 A/AA violation."""
    requested = _record_requests(page)
    sign_in_patient(page, live_server.patients[0])
    visit(page, "/patient/documents")
    listed = [h for h in _hrefs(page, "main a[href^='/patient/documents/']") if PATIENT_DOCUMENT.match(h)]
    documents = _one_of_each(
        page.context,
        [h for h in listed if not h.endswith("/new")],
        {"cda1": r'<iframe class="document-frame" src="[^"]+\?part=pdf"', "cda3": r'<div class="cda"'},
    )
    for language in LANGUAGES:

        def shot(name: str, language: str = language) -> str:
            return f"patient-{name}-{language}"

        _choose(page, language, "/patient/")
        check(page, shot("home"))
        visit(page, "/patient/documents", shot("documents"))
        visit(page, "/patient/documents?class=10", shot("documents-class"))
        for kind, url in documents.items():
            visit(page, url, shot(f"document-{kind}"))
        visit(page, "/patient/documents/new", shot("upload"))
        page.fill("#upload-title", f"Ordonnance scannée ({language})")
        page.set_input_files("#upload-file", str(pdf_file(tmp_path)))
        page.click("#upload-submit")
        page.wait_for_url(PATIENT_DOCUMENT)
        check(page, shot("document-pdf"))
        assert page.locator("iframe.document-frame").count() == 1
        visit(page, "/patient/profile")
        # The add forms are folded in <details>; axe skips what is hidden, so unfold them first.
        page.evaluate("() => document.querySelectorAll('details').forEach(d => { d.open = true; })")
        check(page, shot("profile"))
        for kind in ("MedicationStatement", "Observation", "RelatedPerson"):
            edit = _hrefs(page, f"a[href^='/patient/profile/{kind}/'][href$='/edit']")
            assert edit, f"the profile offers no {kind} to change"
            visit(page, edit[0], shot(f"profile-edit-{kind.lower()}"))
            visit(page, "/patient/profile")
        for name, path in (
            ("care-team", "/patient/care-team"),
            ("choices", "/patient/choices"),
            ("feeds", "/patient/feeds"),
            ("reimbursements", "/patient/reimbursements"),
            ("reimbursements-medicines", "/patient/reimbursements?kind=medicine"),
            ("studies", "/patient/studies"),
            ("apps", "/patient/apps"),
            ("messages", "/patient/messages"),
            ("notifications", "/patient/notifications"),
            ("search", "/patient/search?q=compte"),
            # The scanned prescription's title lacks these words; its PDF text has them.
            ("search-content", "/patient/search?q=certificat+medical"),
            ("access", "/patient/access"),
            ("access-mine", "/patient/access?kind=mine"),
        ):
            visit(page, path, shot(name))
            if name == "search-content":
                assert page.locator(".found-in-content").count() >= 1, "the PDF's text was not searched"
        proofs = _hrefs(page, "a[href$='/verify']")
        assert proofs, "the access history lists no entry to verify"
        visit(page, proofs[0], shot("verify"))
        visit(page, "/patient/export", shot("export"))
        visit(page, "/patient/close", shot("close"))
    _assert_no_third_party(requested, live_server.url)


def test_every_professional_page_is_accessible(page: Page, live_server: LiveServer, tmp_path: Path) -> None:
    """Each page of the professional portal, from the search to a break-glass access, has no violation.

    In each language the professional meets the ways into a record it may not read yet: it
    declares the patient's consent to the first record (French) and breaks the glass on another.
    """
    # The flows of test_flows.py use the first physicians and patients 1 to 4 for their own ends.
    professional = live_server.physicians()[-1]
    patient, emergency = live_server.patients[0], live_server.patients[2]
    base = f"/pro/patients/{patient.patient_id}"
    requested = _record_requests(page)
    sign_in_professional(page, professional)
    for language in LANGUAGES:

        def shot(name: str, language: str = language) -> str:
            return f"pro-{name}-{language}"

        _choose(page, language, "/login")
        check(page, f"login-{language}")
        visit(page, "/login?q=pharmacie", f"login-search-{language}")
        visit(page, "/pro/", shot("search"))
        visit(page, "/pro/messages", shot("inbox"))
        visit(page, "/pro/search?ins=12345", shot("search-invalid"), status=422)
        visit(page, f"/pro/search?ins={UNKNOWN_INS}", shot("search-unknown"), status=404)

        search_patient(page, patient.ins_value)  # checks the page it lands on
        if language == LANGUAGES[0]:
            screenshot(page, shot("access"))
            page.check("#consent-agreed")
            page.click("#consent-submit")
            page.wait_for_url(f"**{base}*")
            check(page)
        screenshot(page, shot("summary"))
        visit(page, f"{base}/documents", shot("documents"))
        visit(page, f"{base}/reimbursements", shot("reimbursements"))
        visit(page, f"{base}/documents?category=10&archived=yes", shot("documents-filtered"))
        listed = [h for h in _hrefs(page, "a.document-link") if PRO_DOCUMENT.search(h)]
        documents = _one_of_each(
            page.context, listed, {"cda1": r"\?part=embedded", "cda3": r'<article class="cda"'}
        )
        for kind, url in documents.items():
            visit(page, url, shot(f"document-{kind}"))
        visit(page, f"{base}/documents/new", shot("submit"))
        page.set_input_files("#file", str(pdf_file(tmp_path)))
        page.fill("#title", f"Certificat ({language})")
        page.select_option("#class_code", "52")
        page.select_option("#type_code", "11488-4")
        page.click("#upload-submit")
        page.wait_for_url(SUBMITTED)
        check(page, shot("document-pdf"))
        replace = page.locator("#replace-link").get_attribute("href")
        assert replace is not None
        visit(page, replace, shot("replace"))
        visit(page, f"{base}/documents/00000000-0000-0000-0000-000000000000", shot("not-found"), status=404)

        search_patient(page, emergency.ins_value)
        screenshot(page, shot("access-emergency"))
        page.fill("#justification", "Patient inconscient admis aux urgences (essai d'accessibilité)")
        page.click("#break-glass-submit")
        page.wait_for_url(f"**/pro/patients/{emergency.patient_id}")
        check(page, shot("break-glass-summary"))
        visit(page, f"/pro/patients/{emergency.patient_id}/documents", shot("break-glass-documents"))
        visit(page, "/pro/", shot("break-glass-search"))
        page.locator(".break-glass-banner button[type='submit']").click()
        page.wait_for_url("**/pro/")
    _assert_no_third_party(requested, live_server.url)
