"""A parent signs in through the patients' OpenID provider and acts for her child, in Chromium, with CARNET_MODE=production.

``carnet serve`` in production mode (no demonstration identities), its patients signing in at a
real ``oidc-provider``. The desk registered the mother as her daughter's representative
(``carnet.services.representations``, with her own record's INS); she signs in at the provider,
lands on her own record, switches to her daughter's, and does not see the document marked
INVISIBLE_REPRESENTANTS_LEGAUX. The daughter's journal names the mother's own identity.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from playwright.sync_api import Browser

from browser.browsing import check, open_context
from carnet.api.app import Services, build_services
from carnet.domain.principal import ActorKind, Identifier, Principal
from carnet.services.identity_links import Traits, subject_identifier
from carnet.settings import Settings
from journal_requests import journal_of
from oidc_provider import (
    PARENT,
    PARENT_CLAIMS,
    TestProvider,
    production_env,
    serving,
)
from smtp_sink import free_port

NIR = "urn:oid:1.2.250.1.213.1.4.10"
CLASS = "urn:oid:1.2.250.1.213.1.1.4.1"
VISIBILITY = "urn:oid:1.2.250.1.213.1.1.4.13"


@dataclass(frozen=True, slots=True, kw_only=True)
class Family:
    """The production server, its provider, and the family's records and documents."""

    url: str
    provider: TestProvider
    settings: Settings
    mother: str
    child: str
    shown: str
    hidden: str


def _create(
    services: Services, resource: dict[str, object], *, nir: str | None = None, patient: str | None = None
) -> str:
    opener = Principal(
        kind=ActorKind.PATIENT,
        subject="desk",
        patient_id=patient,
        identifier=Identifier(system=NIR, value=nir) if nir else None,
    )
    return services.records.records(opener).create(resource).stored.resource_id


def _patient(nir: str, given: str, birth: str) -> dict[str, object]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": NIR, "value": nir}],
        "name": [{"family": "Durand", "given": [given]}],
        "birthDate": birth,
        "gender": "female",
    }


def _document(services: Services, patient_id: str, label: str, title: str) -> str:
    body = {
        "resourceType": "DocumentReference",
        "status": "current",
        "description": title,
        "category": [{"coding": [{"system": CLASS, "code": "10"}]}],
        "subject": {"reference": f"Patient/{patient_id}"},
        "securityLabel": [{"coding": [{"system": VISIBILITY, "code": label}]}],
        "content": [{"attachment": {"contentType": "text/plain", "data": base64.b64encode(b"cr").decode()}}],
    }
    return _create(services, body, patient=patient_id)


@pytest.fixture(scope="module")
def family(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Family]:
    """Seed the mother's and daughter's records and the desk's link, then start the provider and ``carnet serve``."""
    root = tmp_path_factory.mktemp("family")
    data_dir, key_dir = root / "data", root / "keys"  # as production_env has them
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    provider = TestProvider(root, carnet_url=url, carnet_key_dir=key_dir)
    settings = Settings(data_dir=data_dir, key_dir=key_dir)
    services = build_services(settings)
    try:
        mother = _create(services, _patient("2810675000002", "Marie", "1981-06-02"), nir="2810675000002")
        child = _create(services, _patient("2150775000001", "Léa", "2015-07-01"), nir="2150775000001")
        shown = _document(services, child, "N", "Compte rendu visible")
        hidden = _document(services, child, "INVISIBLE_REPRESENTANTS_LEGAUX", "Compte rendu confidentiel")
        # The mother linked her provider account to her own record on an earlier visit.
        services.identity_links.link(
            subject_identifier(provider.issuer, PARENT),
            Traits.of(PARENT_CLAIMS),
            Identifier(system=NIR, value="2810675000002"),
        )
        desk = Principal(kind=ActorKind.ADMIN, subject="cli:desk")
        services.representations.add(
            child, basis="parent", name="Marie Durand", by=desk, representative_record=mother
        )
    finally:
        services.store.engine.dispose()
    provider.start()
    try:
        with serving(production_env(root, port, provider, patients=True), root, port):
            yield Family(
                url=url,
                provider=provider,
                settings=settings,
                mother=mother,
                child=child,
                shown=shown,
                hidden=hidden,
            )
    finally:
        provider.stop()


def test_a_parent_signs_in_with_the_provider_and_acts_for_her_child(browser: Browser, family: Family) -> None:
    """Provider sign-in → own record → switch to the child's → the hidden document is absent; journaled as the mother."""
    context = open_context(browser, family.url)
    try:
        page = context.new_page()
        page.goto("/login")
        assert page.locator("#login-patient-form").count() == 0  # no demonstration identities
        page.click("#login-patient-oidc")
        page.wait_for_url(f"{family.provider.issuer}/interaction/**")
        page.select_option("#account", PARENT)
        page.click("#provider-submit")
        page.wait_for_url(f"{family.url}/patient/")
        assert page.locator("#acting-for-banner").is_visible()
        check(page)
        page.click("#switch-record")
        page.wait_for_url(f"{family.url}/patient/switch")
        check(page, "oidc-parent-switch")
        with page.expect_navigation():
            page.get_by_role("button", name="Léa Durand").click()
        assert "Léa Durand" in page.locator("#acting-for-banner").inner_text()
        page.goto("/patient/documents")
        listing = page.locator("main").inner_text()
        assert "Compte rendu visible" in listing
        assert "Compte rendu confidentiel" not in listing
        check(page, "oidc-parent-child-documents")
        response = page.goto(f"/patient/documents/{family.hidden}")
        assert response is not None
        assert response.status == 404
        page.goto("/patient/representatives")
        assert "Marie Durand" in page.locator("#representatives-table").inner_text()
        check(page, "oidc-parent-representatives")
    finally:
        context.close()
    services = build_services(family.settings)
    try:
        entries = [e for e in journal_of(services, family.child) if e.actor_id not in ("desk", "cli:desk")]
    finally:
        services.store.engine.dispose()
    account = "oidc:" + subject_identifier(family.provider.issuer, PARENT).value
    assert entries
    assert {(e.actor_id, e.mode) for e in entries} == {(account, "representative")}
    assert {e.actor_display for e in entries} == {"Marie DURAND"}
    assert any("invisible-to-representatives" in e.reasons for e in entries if e.decision == "deny")
