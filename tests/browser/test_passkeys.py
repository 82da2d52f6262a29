"""A patient enrols a passkey and signs in with it in Chromium (a virtual authenticator over CDP).

``carnet serve`` runs without any patient OpenID provider, at ``http://localhost``
(a WebAuthn relying-party id must be a host name, and localhost is a secure context). The desk
has issued an enrolment code; Chromium's virtual authenticator (``WebAuthn.enable``,
``WebAuthn.addVirtualAuthenticator``) creates the passkey and answers the sign-in, through the
page's own script (static/passkeys.js) and the real ``webauthn`` checks on the server.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
from playwright.sync_api import Browser, BrowserContext, Page

from browser.browsing import check, open_context
from carnet.api.app import build_services
from carnet.demo import seed_population
from carnet.domain.principal import ActorKind, Principal
from carnet.settings import Settings
from served import wait_until_up
from smtp_sink import free_port


@dataclass(frozen=True, slots=True)
class Desk:
    """The served Carnet and the enrolment code the desk gave the patient."""

    url: str
    code: str
    #: A representation claim code for the same record (a parent without a record of their own).
    claim: str


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Desk]:
    """One seeded record, its enrolment code, then ``carnet serve`` at localhost."""
    root = tmp_path_factory.mktemp("passkeys")
    data_dir, key_dir = root / "data", root / "keys"
    port = free_port()
    url = f"http://localhost:{port}"
    services = build_services(Settings(data_dir=data_dir, key_dir=key_dir))
    try:
        patient = seed_population(services.records, patients=1, seed=11)[0]
        code = services.patient_accounts.issue_enrolment(patient.patient_id)
        desk_agent = Principal(kind=ActorKind.ADMIN, subject="cli:desk")
        _, claim = services.representations.add(
            patient.patient_id, basis="parent", name="Marie Martin", by=desk_agent
        )
    finally:
        services.store.engine.dispose()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARNET_")}
    env.update(
        CARNET_DATA_DIR=str(data_dir),
        CARNET_KEY_DIR=str(key_dir),
        CARNET_HOST="127.0.0.1",
        CARNET_PORT=str(port),
        CARNET_BASE_URL=f"{url}/fhir",
    )
    log = root / "server.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "carnet", "serve"], env=env, stdout=output, stderr=subprocess.STDOUT
        )
    try:
        wait_until_up(process, f"http://127.0.0.1:{port}/fhir/metadata", log)
        yield Desk(url=url, code=code, claim=claim or "")
    finally:
        process.terminate()
        process.wait(timeout=10)


def _virtual_authenticator(page: Page, context: BrowserContext) -> None:
    """Chromium's virtual authenticator answers the page's passkey requests (CDP WebAuthn)."""
    cdp = context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
                "automaticPresenceSimulation": True,
            }
        },
    )


@contextmanager
def _passkey_page(browser: Browser, desk: Desk) -> Iterator[Page]:
    """A page in a fresh browser profile whose passkey requests the virtual authenticator answers."""
    context = open_context(browser, desk.url)
    try:
        page = context.new_page()
        _virtual_authenticator(page, context)
        yield page
    finally:
        context.close()


def _enrol(page: Page, code: str) -> None:
    """Type the desk's code on the enrolment page, create the passkey, wait for the recovery codes."""
    page.fill("#enrol-code", code)
    page.click("#enrol-submit")
    page.click("#register-submit")
    page.wait_for_selector("#recovery-codes")


def _sign_out_then_in_with_the_passkey(page: Page, desk: Desk) -> None:
    """From the portal: sign out, then sign in again with the passkey alone, back on the portal."""
    page.click("#logout")
    page.wait_for_url(f"{desk.url}/login")
    page.goto("/login/patient/account")
    page.click("#passkey-submit")
    page.wait_for_url(f"{desk.url}/patient/")
    assert page.locator("#logout").is_visible()


def test_a_representative_without_a_record_enrols_with_the_claim_code(browser: Browser, desk: Desk) -> None:
    """The desk's claim code on the enrolment page: a passkey, recovery codes and the account number (axe-clean); then acting for the record."""
    with _passkey_page(browser, desk) as page:
        page.goto("/login/patient/account")
        _enrol(page, desk.claim)
        assert page.locator("#representative-account code").inner_text().startswith("rep-")
        check(page)
        page.click("#signed-in-continue")
        page.wait_for_url(f"{desk.url}/patient/")
        check(page)
        _sign_out_then_in_with_the_passkey(page, desk)


def test_a_patient_enrols_a_passkey_then_signs_in_with_it(browser: Browser, desk: Desk) -> None:
    """Enrolment code, passkey by the virtual authenticator, recovery codes; passkey sign-in; then managing the means."""
    with _passkey_page(browser, desk) as page:
        page.goto("/login")
        page.click("#login-patient-account")
        check(page)
        _enrol(page, desk.code)
        assert page.locator("#recovery-codes li").count() == 10
        check(page)
        page.click("#signed-in-continue")
        page.wait_for_url(f"{desk.url}/patient/")
        _sign_out_then_in_with_the_passkey(page, desk)
        _manage_sign_in_means(page, desk)


def _manage_sign_in_means(page: Page, desk: Desk) -> None:
    """On /patient/sign-in: add a second passkey, remove the first, draw new recovery codes (axe-clean)."""
    page.click("#nav-group-settings")
    page.click("#nav-sign-in")
    page.wait_for_url(f"{desk.url}/patient/sign-in")
    assert page.locator("#passkeys-table tbody tr").count() == 1
    check(page, "sign-in-means")
    page.click("#register-submit")
    page.wait_for_selector("#passkey-remove-2")
    assert "Votre nouvelle clé d'accès est ajoutée." in page.locator("#flash").inner_text()
    page.click("#passkey-remove-1")
    page.wait_for_selector("#flash")
    assert page.locator("#passkeys-table tbody tr").count() == 1
    page.click("#passkey-remove-1")  # the last way in: refused, said why
    page.wait_for_selector("#means-error")
    assert page.locator("#passkeys-table tbody tr").count() == 1
    check(page)
    page.click("#recovery-submit")
    page.wait_for_selector("#recovery-codes")
    assert page.locator("#recovery-codes li").count() == 10
    check(page, "sign-in-means-recovery")
    page.click("#signed-in-continue")
    page.wait_for_url(f"{desk.url}/patient/sign-in")
