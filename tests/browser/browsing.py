"""Helpers of the browser tests: the live server's description, axe-core, screenshots."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from fpdf import FPDF
from playwright.sync_api import Browser, BrowserContext, Page

from carnet.demo import SeededPatient
from carnet.web.identities import DemoProfessional
from smtp_sink import Mailbox

HERE = Path(__file__).resolve().parent
AXE = HERE / "node_modules" / "axe-core" / "axe.min.js"
ARTIFACTS = HERE / "artifacts"
#: The WCAG 2.0 and 2.1 success criteria of levels A and AA (RGAA 4 builds on them).
WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


@dataclass(frozen=True, slots=True, kw_only=True)
class LiveServer:
    """A running ``carnet serve`` and what the tests need to know about it."""

    url: str
    data_dir: Path
    key_dir: Path
    log: Path
    worker_log: Path
    patients: tuple[SeededPatient, ...]
    professionals: tuple[DemoProfessional, ...]
    mailbox: Mailbox

    def physicians(self) -> list[DemoProfessional]:
        """The directory's physicians (TRE_G15 profession 10), who may read every class."""
        return [p for p in self.professionals if p.profession == "10"]


def open_context(browser: Browser, base_url: str) -> BrowserContext:
    """A fresh browser profile (one person's cookies), French, pointed at ``base_url``.

    axe-core is added to every page as an init script: sent to the browser once per profile
    rather than with every page (which cost a third of a second each). ``bypass_csp``: the
    portals forbid inline scripts, and axe-core is one.
    """
    made = browser.new_context(base_url=base_url, locale="fr-FR", bypass_csp=True)
    made.set_default_timeout(15_000)
    made.add_init_script(script=_axe_source())
    return made


@cache
def _axe_source() -> str:
    if not AXE.is_file():
        pytest.fail(
            f"axe-core is missing ({AXE}); install it with `npm ci --prefix tests/browser` "
            "(`make test` and .ci/run do)."
        )
    return AXE.read_text("utf-8")


def _describe(violation: dict[str, Any]) -> str:
    targets = [", ".join(node.get("target", [])) for node in violation.get("nodes", [])][:5]
    return (
        f"- {violation['id']} ({violation.get('impact')}): {violation['help']}\n"
        f"  {violation.get('helpUrl', '')}\n" + "".join(f"    at {t}\n" for t in targets)
    )


def assert_accessible(page: Page) -> None:
    """Run axe-core on the page (WCAG 2.0/2.1 A and AA) and fail with a list of the violations."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.add_script_tag(content=_axe_source())
    result: dict[str, Any] = page.evaluate(
        "(tags) => axe.run(document, {runOnly: {type: 'tag', values: tags}, resultTypes: ['violations']})",
        WCAG_TAGS,
    )
    violations = result["violations"]
    if violations:
        listing = "".join(_describe(v) for v in violations)
        pytest.fail(f"{len(violations)} accessibility violation(s) on {page.url}:\n{listing}", pytrace=False)


def screenshot(page: Page, name: str) -> Path:
    """Save a full-page screenshot as ``tests/browser/artifacts/<name>.png`` and return its path."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def check(page: Page, shot: str | None = None) -> None:
    """Check the page now shown: no server error, accessible (axe); optionally save a screenshot."""
    title = page.title()
    assert "500" not in title, f"{page.url} shows a server error"
    assert_accessible(page)
    if shot is not None:
        screenshot(page, shot)


def visit(page: Page, path: str, shot: str | None = None, *, status: int = 200) -> None:
    """Go to ``path``, expect ``status``, and :func:`check` the page."""
    response = page.goto(path)
    assert response is not None
    assert response.status == status, f"{path}: {response.status}"
    check(page, shot)


def _submit(page: Page, button: str, landing: str) -> None:
    """Submit a sign-in form and fail readably when it does not land on ``landing``."""
    with page.expect_navigation():
        page.click(button)
    if landing not in page.url:
        shown = " ".join(page.locator("main").inner_text().split())[:400]
        pytest.fail(f"Signing in did not reach {landing}: the browser is on {page.url}, which says: {shown}")
    check(page)


def pdf_file(folder: Path, text: str = "Certificat medical de test") -> Path:
    """Write a one-page PDF saying ``text`` (Latin-1) in ``folder`` and return its path."""
    document = FPDF()
    document.add_page()
    document.set_font("Helvetica", size=14)
    document.cell(0, 10, text)
    path = folder / "certificat.pdf"
    path.write_bytes(bytes(document.output()))
    return path


def sign_in_professional(page: Page, professional: DemoProfessional) -> None:
    """Sign in on /login as a professional of the directory; lands on the professional portal."""
    visit(page, "/login")
    page.select_option("#login-professional", professional.practitioner_id)
    _submit(page, "#login-professional-submit", "/pro/")


def sign_in_patient(page: Page, patient: SeededPatient) -> None:
    """Sign in on /login as a seeded patient; lands on the patient portal."""
    visit(page, "/login")
    page.select_option("#login-patient", f"{patient.ins_system}|{patient.ins_value}")
    _submit(page, "#login-patient-submit", "/patient/")


def search_patient(page: Page, ins: str) -> None:
    """Search a record by INS on the professional portal (the record, or the ways in, is shown)."""
    visit(page, "/pro/")
    page.fill("#ins", ins)
    page.click("#search-submit")
    page.wait_for_load_state()
    check(page)


def declare_consent(page: Page, patient: SeededPatient, *, treating: bool = False) -> None:
    """From the search, record that the patient agrees (as authorised, or as treating physician)."""
    search_patient(page, patient.ins_value)
    if treating:
        page.check("#kind-treating")
    page.check("#consent-agreed")
    page.click("#consent-submit")
    page.wait_for_url(f"**/pro/patients/{patient.patient_id}*")
    check(page)
