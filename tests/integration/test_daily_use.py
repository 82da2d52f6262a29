"""Easier daily use: the patient's menu in four groups, the demo sign-in lists narrowed by a search."""

from __future__ import annotations

import re

import pytest
from starlette.testclient import TestClient

from carnet.api.app import Services
from carnet.demo import SeededPatient, seed_population
from carnet.web.identities import demo_professionals

PAGES = {
    "/patient/documents": "record",
    "/patient/profile": "record",
    "/patient/reimbursements": "record",
    "/patient/search": "record",
    "/patient/export": "record",
    "/patient/messages": "messages",
    "/patient/notifications": "messages",
    "/patient/access": "accesses",
    "/patient/care-team": "accesses",
    "/patient/apps": "accesses",
    "/patient/feeds": "accesses",
    "/patient/choices": "settings",
    "/patient/studies": "settings",
    "/patient/close": "settings",
}


@pytest.fixture
def patient(services: Services) -> SeededPatient:
    """One synthetic patient of the demo population."""
    return seed_population(services.records, patients=1, seed=2026)[0]


def _csrf(client: TestClient, path: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).text)
    assert found is not None
    return found.group(1)


def _nav(page: str) -> str:
    return page.split('id="patient-nav"')[1].split("</nav>")[0]


def test_the_patient_menu_is_four_groups_and_the_current_groups_pages(
    client: TestClient, patient: SeededPatient
) -> None:
    """Five entries on the first row; the second row lists the current group's pages, the current one marked."""
    identifier = f"{patient.ins_system}|{patient.ins_value}"
    client.post(
        "/login", data={"csrf_token": _csrf(client, "/login"), "kind": "patient", "identifier": identifier}
    )
    home = _nav(client.get("/patient/").text)
    first_row = home.split('class="nav-groups"')[1].split("</ul>")[0]
    assert first_row.count("<li>") == 5
    assert 'id="nav-pages"' not in home
    reachable: set[str] = set()
    for path, group in PAGES.items():
        nav = _nav(client.get(path).text)
        assert f'id="nav-group-{group}" aria-current="true"' in nav, path
        pages = nav.split('id="nav-pages"')[1]
        assert f'href="{path}"' in pages
        assert re.search(rf'href="{re.escape(path)}" id="nav-[a-z-]+" aria-current="page"', pages), path
        assert pages.count("<li>") <= 5
        reachable |= set(re.findall(r'href="(/patient/[^"]*)"', nav))
    assert set(PAGES) <= reachable  # every page still one group away
    client.get("/language/en?next=/patient/")
    english = _nav(client.get("/patient/care-team").text)
    assert ">My accesses<" in english
    assert ">Who accessed my record<" in english
    assert ">Mes accès<" in _nav(client.get("/language/fr?next=/patient/access").text)


def test_the_demo_lists_are_searchable_and_grouped(
    client: TestClient, services: Services, patient: SeededPatient
) -> None:
    """?q= narrows both lists (accents and case ignored); professionals come grouped by profession."""
    everyone = client.get("/login").text
    assert "<optgroup label=" in everyone
    family = patient.display.split()[-1]
    narrowed = client.get(f"/login?q={family.upper()}").text
    assert patient.display in narrowed
    assert 'id="login-found"' in narrowed
    pharmacist = next(p for p in demo_professionals(services.records) if p.profession == "21")
    by_city = client.get("/login", params={"q": f"{pharmacist.display.split()[-1]} {pharmacist.city}"}).text
    options = re.findall(
        r'<option value="([^"]+)">', by_city.split('id="login-professional"')[1].split("</select>")[0]
    )
    assert pharmacist.practitioner_id in options
    assert len(options) < len(
        re.findall(r"<option ", everyone.split('id="login-professional"')[1].split("</select>")[0])
    )
    nobody = client.get("/login?q=zzzzqqq").text
    assert "Aucun patient ne correspond." in nobody
    assert "Aucun professionnel ne correspond." in nobody
    assert 'id="login-find-reset"' in nobody
