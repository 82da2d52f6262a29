"""The patient's access history over the whole journal: pages of whole visits, filters kept."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from starlette.testclient import TestClient

from carnet.api.app import Services
from carnet.demo import SeededPatient, seed_population
from carnet.domain.principal import ActorKind, Principal
from carnet.web.access_visits import Access, Visit
from carnet.web.identities import demo_professionals
from carnet.web.patient_journal import VISITS_PER_PAGE, page_of_visits

DOCTOR = "810001234567"


def _pro(idnps: str, profession: str) -> Principal:
    return Principal(
        kind=ActorKind.PROFESSIONAL, subject=f"idnps:{idnps}", professional_id=idnps, profession=profession
    )


@pytest.fixture
def patient(services: Services) -> SeededPatient:
    """One synthetic patient of the demo population."""
    return seed_population(services.records, patients=1, seed=2026)[0]


def sign_in(client: TestClient, patient: SeededPatient) -> str:
    """Sign in as ``patient`` through the demo form; return the session's CSRF token."""
    token = re.findall(r'name="csrf_token" value="([^"]+)"', client.get("/login").text)[0]
    identifier = f"{patient.ins_system}|{patient.ins_value}"
    client.post("/login", data={"csrf_token": token, "kind": "patient", "identifier": identifier})
    return re.findall(r'name="csrf_token" value="([^"]+)"', client.get("/patient/").text)[0]


def _visits(page_text: str) -> list[str]:
    return re.findall(r'<li class="visit mode-[^"]+" id="visit-([^"]+)">', page_text)


def test_history_pages_through_more_than_a_thousand_entries(
    client: TestClient, services: Services, patient: SeededPatient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """1,230 accesses in 41 visits: every visit is on exactly one page, whole; who and kind filters page too."""
    token = sign_in(client, patient)
    other = next(
        p for p in demo_professionals(services.records) if p.idnps != DOCTOR and p.profession != "10"
    )
    NURSE = other.idnps  # noqa: N806
    for idnps in (DOCTOR, NURSE):
        client.post("/patient/care-team", data={"csrf_token": token, "kind": "authorisation", "idnps": idnps})
    document_id = re.findall(r'id="doc-([^"]+)"', client.get("/patient/documents").text)[0]
    gate = services.records.gate
    start = datetime.now(UTC) - timedelta(days=60)
    now = [start]
    monkeypatch.setattr(gate, "clock", lambda: now[0])
    doctor, nurse = (
        services.records.records(_pro(DOCTOR, "10")),
        services.records.records(_pro(NURSE, other.profession or "60")),
    )
    # 40 visits of the doctor, 30 reads each a minute apart, two hours between visits; the nurse once.
    for visit in range(40):
        for read in range(30):
            now[0] = start + timedelta(hours=2 * visit, minutes=read)
            doctor.read("DocumentReference", document_id)
    now[0] = start + timedelta(hours=2 * 40)
    for _ in range(30):
        nurse.read("DocumentReference", document_id)
    monkeypatch.undo()
    pages, seen, path = 0, [], "/patient/access"
    while True:
        text = client.get(path).text
        pages += 1
        seen += _visits(text)
        older = re.search(r'href="(/patient/access\?[^"]*before=[^"]+)" id="access-older"', text)
        if older is None:
            break
        path = older.group(1).replace("&amp;", "&")
        assert 'id="access-newest"' in client.get(path).text
    assert pages == 2  # 41 visits of others at 30 a page
    assert len(seen) == len(set(seen)) == 41
    first = client.get("/patient/access").text
    assert len(_visits(first)) == VISITS_PER_PAGE
    assert "a consulté 1 document" in first  # each visit read one document, 30 times: whole, not cut
    people = re.findall(r'<option value="([0-9a-f]{12})">([^<]+)</option>', first)
    assert len(people) == 2
    nurse_key = next(key for key, name in people if name.startswith(NURSE))
    doctor_key = next(key for key, name in people if name.startswith(DOCTOR))
    only_nurse = client.get(f"/patient/access?who={nurse_key}").text
    assert len(_visits(only_nurse)) == 1
    assert 'id="access-older"' not in only_nurse
    doctor_pages = client.get(f"/patient/access?who={doctor_key}&kind=authorised").text
    assert len(_visits(doctor_pages)) == VISITS_PER_PAGE
    older = re.search(r'href="(/patient/access\?[^"]+)" id="access-older"', doctor_pages)
    assert older is not None
    assert f"who={doctor_key}" in older.group(1)
    assert len(_visits(client.get(older.group(1).replace("&amp;", "&")).text)) == 10
    assert client.get("/patient/access?before=garbage").status_code == 200


def _access(ident: str, at: datetime, who: str) -> Access:
    return Access(
        id=ident,
        recorded=at,
        who=who,
        who_id=who,
        actor_kind="professional",
        profession="10",
        specialty=None,
        mode="normal",
        action="read",
        refused=False,
        reasons=(),
        justification=None,
        confirmed_by=None,
        targets=(),
        by_me=False,
    )


def test_a_page_never_cuts_a_visit_that_straddles_its_boundary() -> None:
    """A long visit of one person overlapping shorter ones of another stays whole on one page."""
    base = datetime(2026, 1, 1, tzinfo=UTC)
    entries = [_access(f"a{i}", base + timedelta(minutes=10 * i), "A") for i in range(30)]  # 5 hours
    entries += [_access(f"b{i}", base + timedelta(hours=i, minutes=5), "B") for i in range(5)]
    entries += [_access(f"c{i}", base - timedelta(days=1, hours=i), "C") for i in range(5)]
    entries.sort(key=lambda a: a.recorded, reverse=True)

    def fetch(until: datetime | None) -> list[Access]:
        return [a for a in entries if until is None or a.recorded <= until][:4]

    def keeps(_: Visit) -> bool:
        return True

    first = page_of_visits(fetch, keeps, want=1, batch=4)
    # The long visit is whole on the first page, with every visit of B that overlaps it; C is older.
    assert sorted(len(v.accesses) for v in first.visits) == [1, 1, 1, 1, 1, 30]
    assert first.older == base
    rest = [a for a in entries if first.older is not None and a.recorded < first.older]
    shown = {a.id for v in first.visits for a in v.accesses}
    assert shown | {a.id for a in rest} == {a.id for a in entries}
    assert not shown & {a.id for a in rest}
    assert {a.id for a in rest} == {f"c{i}" for i in range(5)}
