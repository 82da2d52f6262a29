"""The browser-test machinery itself: Chromium, the live server, axe-core, screenshots."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page

from browser.browsing import LiveServer, assert_accessible, screenshot


def test_live_server_serves_the_api(page: Page, live_server: LiveServer) -> None:
    """The subprocess server answers the browser with the FHIR CapabilityStatement."""
    response = page.goto("/fhir/metadata")
    assert response is not None
    assert response.status == 200
    assert "CapabilityStatement" in page.content()
    assert len(live_server.patients) > 0


def test_axe_reports_violations(page: Page) -> None:
    """axe-core runs in the page and an inaccessible page fails with a readable list."""
    page.set_content("<html><body><img src='data:image/png;base64,'><input></body></html>")
    with pytest.raises(pytest.fail.Exception, match="image-alt"):
        assert_accessible(page)


def test_axe_passes_an_accessible_page(page: Page) -> None:
    """A small well-formed page passes the WCAG 2.1 AA checks, and a screenshot is saved."""
    page.set_content(
        "<!doctype html><html lang='fr'><head><title>Essai</title></head>"
        "<body><main><h1>Bonjour</h1><p>Texte lisible.</p></main></body></html>"
    )
    assert_accessible(page)
    assert screenshot(page, "infrastructure").stat().st_size > 0
