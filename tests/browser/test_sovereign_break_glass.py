"""Under the sovereign profile, an emergency access needs a second professional's own confirmation, in Chromium.

``carnet serve`` with CARNET_MODE=production and CARNET_POLICY_PROFILE=sovereign; both
professionals sign in at the real OpenID provider (PSC claims, JWE ID tokens), each in a browser
profile of their own. The nurse, signed in as herself, confirms the GP's emergency access
(``/pro/confirm``); the GP pastes the confirmation into the break-glass form and reads the record,
which a typed name or no confirmation does not open. The record's journal names both.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from playwright.sync_api import Browser, Page

from browser.browsing import check, open_context
from carnet.api.app import build_services
from carnet.demo import SeededPatient, seed_population
from carnet.settings import Settings
from journal_requests import journal_of
from oidc_provider import GP, NURSE, TestProvider, production_env, serving
from smtp_sink import free_port

REASON = "Patient inconscient aux urgences, sans proche joignable"


@dataclass(frozen=True, slots=True, kw_only=True)
class Emergency:
    """The served Carnet, its provider, and the record nobody authorised."""

    url: str
    provider: TestProvider
    settings: Settings
    patient: SeededPatient


@pytest.fixture(scope="module")
def emergency(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emergency]:
    """One record (no authorisation), the provider, then ``carnet serve`` in production under ``sovereign``."""
    root = tmp_path_factory.mktemp("sovereign")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    settings = Settings(data_dir=root / "data", key_dir=root / "keys", policy_profile="sovereign")
    provider = TestProvider(root, carnet_url=url, carnet_key_dir=settings.key_dir)
    services = build_services(settings)
    try:
        patient = seed_population(services.records, patients=1, seed=23)[0]
    finally:
        services.store.engine.dispose()
    provider.start()
    env = production_env(root, port, provider)
    env["CARNET_POLICY_PROFILE"] = "sovereign"
    try:
        with serving(env, root, port):
            yield Emergency(url=url, provider=provider, settings=settings, patient=patient)
    finally:
        provider.stop()


def _sign_in(page: Page, emergency: Emergency, account: str) -> None:
    page.goto("/login")
    page.click("#login-oidc")
    page.wait_for_url(f"{emergency.provider.issuer}/interaction/**")
    page.select_option("#account", account)
    page.click("#provider-submit")
    if account == NURSE:  # she works in two structures: she chooses one
        page.wait_for_selector("#structure-form")
        page.check("#structure-1")
        page.click("#structure-submit")
    page.wait_for_url(f"{emergency.url}/pro/")


def test_a_colleagues_own_confirmation_opens_the_emergency_read(
    browser: Browser, emergency: Emergency
) -> None:
    """No confirmation or a forged one: refused; the nurse's signed confirmation: the GP reads; both journaled."""
    nurse_context = open_context(browser, emergency.url)
    gp_context = open_context(browser, emergency.url)
    try:
        nurse, gp = nurse_context.new_page(), gp_context.new_page()
        _sign_in(nurse, emergency, NURSE)
        _sign_in(gp, emergency, GP)
        gp.goto(f"/pro/search?ins={emergency.patient.ins_value}")
        assert gp.locator("#confirmation").is_visible()
        check(gp, "sovereign-break-glass-form")
        gp.fill("#justification", REASON)
        gp.fill("#confirmation", "810009876543")  # a typed identifier proves nothing
        with gp.expect_response(lambda r: r.url.endswith("/pro/access/break-glass")) as refused:
            gp.click("#break-glass-submit")
        assert refused.value.status == 422
        nurse.goto("/pro/confirm")
        check(nurse)
        nurse.fill("#colleague", "810001234567")
        nurse.click("#confirm-submit")
        confirmation = nurse.locator("#confirmation-token").input_value()
        assert confirmation
        check(nurse, "sovereign-confirmation")
        gp.fill("#justification", REASON)
        gp.fill("#confirmation", confirmation)
        gp.click("#break-glass-submit")
        gp.wait_for_url(f"{emergency.url}/pro/patients/{emergency.patient.patient_id}")
        assert "Confirmé par le professionnel 810009876543" in gp.locator("body").inner_text()
        check(gp, "sovereign-break-glass-read")
    finally:
        nurse_context.close()
        gp_context.close()
    services = build_services(emergency.settings)
    try:
        entries = journal_of(services, emergency.patient.patient_id)
    finally:
        services.store.engine.dispose()
    emergency_reads = [e for e in entries if e.mode == "break_glass" and e.decision == "permit"]
    assert emergency_reads
    assert {(e.actor_id, e.confirmed_by, e.justification) for e in emergency_reads} == {
        ("810001234567", "810009876543", REASON)
    }
