"""A professional signs in through the OpenID provider in Chromium, with CARNET_MODE=production.

``carnet serve`` runs in production mode (no demonstration identities) trusting a real
``oidc-provider`` configured like Pro Santé Connect (tests/oidc_provider.py): the browser goes
to the provider, signs in there, comes back with an encrypted ID token Carnet decrypts and
verifies, and opens the record of a patient who authorised this professional.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from playwright.sync_api import Browser

from browser.browsing import check, open_context
from carnet.api.app import build_services
from carnet.demo import SeededPatient, seed_population
from carnet.domain.consent import ConsentKind, consent_for
from carnet.domain.principal import ActorKind, Principal
from carnet.settings import Settings
from oidc_provider import GP, TestProvider, production_env, serving
from smtp_sink import free_port


@dataclass(frozen=True, slots=True, kw_only=True)
class ProductionServer:
    """``carnet serve`` in production mode, its provider, and the patient who authorised the GP."""

    url: str
    provider: TestProvider
    patient: SeededPatient


@pytest.fixture(scope="module")
def production(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProductionServer]:
    """Seed a record authorising the GP, start the provider, then ``carnet serve`` in production mode."""
    root = tmp_path_factory.mktemp("production")
    data_dir, key_dir = root / "data", root / "keys"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    provider = TestProvider(root, carnet_url=url, carnet_key_dir=key_dir)
    services = build_services(Settings(data_dir=data_dir, key_dir=key_dir))
    try:
        patient = seed_population(services.records, patients=1, seed=7)[0]
        holder = Principal(kind=ActorKind.PATIENT, subject="patient:t", patient_id=patient.patient_id)
        services.records.records(holder).create(
            consent_for(ConsentKind.AUTHORISATION, patient.patient_id, "810001234567", now=datetime.now(UTC))
        )
    finally:
        services.store.engine.dispose()
    provider.start()
    try:
        with serving(production_env(root, port, provider), root, port):
            yield ProductionServer(url=url, provider=provider, patient=patient)
    finally:
        provider.stop()


def test_a_professional_signs_in_with_the_provider_and_reads_a_record(
    browser: Browser, production: ProductionServer
) -> None:
    """Sign in through the provider (JWE ID token, PSC claims), land on /pro/, open the authorised record."""
    context = open_context(browser, production.url)
    try:
        page = context.new_page()
        page.goto("/login")
        assert page.locator("#login-patient-form").count() == 0  # no demonstration identities
        check(page, "sign-in-production")
        page.click("#login-oidc")
        page.wait_for_url(f"{production.provider.issuer}/interaction/**")
        page.select_option("#account", GP)
        page.click("#provider-submit")
        page.wait_for_url(f"{production.url}/pro/")
        assert "Claire MARTIN" in page.locator("body").inner_text()
        check(page)
        response = page.goto(f"/pro/patients/{production.patient.patient_id}")
        assert response is not None
        assert response.status == 200
        assert page.locator("#patient-identity").is_visible()
        check(page, "sign-in-production-record")
    finally:
        context.close()


def test_a_downgraded_sign_in_shows_why_it_was_refused(
    browser: Browser, production: ProductionServer
) -> None:
    """Below eidas1 at the provider: back on Carnet's sign-in page with a plain-language refusal, not signed in."""
    context = open_context(browser, production.url)
    try:
        page = context.new_page()
        page.goto("/login")
        page.click("#login-oidc")
        page.wait_for_url(f"{production.provider.issuer}/interaction/**")
        page.select_option("#account", GP)
        page.select_option("#acr", "eidas0")
        with page.expect_response(lambda r: "/login/oidc/callback" in r.url) as answer:
            page.click("#provider-submit")
        assert answer.value.status == 401
        assert "carte CPS" in page.locator("#login-error").inner_text()
        check(page)
        assert page.goto("/pro/") is not None
        assert "/login" in page.url
    finally:
        context.close()
