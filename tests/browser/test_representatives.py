"""A parent signs in as themself and switches between two children's records, in Chromium, at desktop and phone widths."""

from __future__ import annotations

from playwright.sync_api import Page

from browser.browsing import LiveServer, check, visit


def test_a_parent_switches_to_each_childs_record(page: Page, live_server: LiveServer) -> None:
    """The switcher lists both records; the banner names the one acted on; every page passes axe."""
    first, second = live_server.patients[0], live_server.patients[1]
    visit(page, "/login")
    page.fill("#login-rep-name", "Marie Durand")
    page.fill(
        "#login-rep-records",
        f"{first.ins_system}|{first.ins_value}\n{second.ins_system}|{second.ins_value}",
    )
    with page.expect_navigation():
        page.click("#login-representative-submit")
    assert page.url.endswith("/patient/switch")
    check(page, "representative-switch")
    listing = page.locator("#switch-list").inner_text()
    assert first.display.split()[0] in listing
    assert second.display.split()[0] in listing
    for patient in (first, second):
        visit(page, "/patient/switch")
        with page.expect_navigation():
            page.get_by_role("button", name=patient.display.split()[0]).first.click()
        assert page.url.endswith("/patient/")
        banner = page.locator("#acting-for-banner").inner_text()
        assert patient.display.split()[0] in banner
        check(page)
        visit(page, "/patient/documents")
    page.set_viewport_size({"width": 390, "height": 844})
    visit(page, "/patient/switch", "representative-switch-phone")
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= 390
    # In English too, at desktop and phone widths.
    page.goto("/language/en?next=/patient/switch")
    check(page, "representative-switch-phone-en")
    with page.expect_navigation():
        page.get_by_role("button", name=first.display.split()[0]).first.click()
    assert "as their legal representative" in page.locator("#acting-for-banner").inner_text()
    check(page, "representative-home-phone-en")
    page.set_viewport_size({"width": 1200, "height": 800})
    visit(page, "/patient/switch", "representative-switch-en")
