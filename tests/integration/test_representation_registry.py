"""The registry of legal representatives: links made at the desk, journaled in the represented record.

A parent who holds a record of their own signs in (here with the demo page; through the OpenID
provider in test_oidc_representatives.py) and acts for their child's record as their
representative: INVISIBLE_REPRESENTANTS_LEGAUX stays hidden, and the child's journal names the
parent, in the representative mode.
"""

from __future__ import annotations

import base64
import re

import pytest
from starlette.testclient import TestClient
from typer.testing import CliRunner

from carnet.api.app import Services
from carnet.cli import app
from carnet.domain.errors import InvalidResource, NotFound, SignInRefused
from carnet.domain.principal import ActorKind, Identifier, Principal
from carnet.services.representations import account_key, record_key
from carnet.settings import Settings
from journal_requests import journal_of

INS = "urn:oid:1.2.250.1.213.1.4.10"
CLASS = "urn:oid:1.2.250.1.213.1.1.4.1"
VISIBILITY = "urn:oid:1.2.250.1.213.1.1.4.13"
DESK = Principal(kind=ActorKind.ADMIN, subject="cli:desk")


def _record(services: Services, nir: str, given: str) -> str:
    opener = Principal(kind=ActorKind.PATIENT, subject="t", identifier=Identifier(system=INS, value=nir))
    created = services.records.records(opener).create(
        {
            "resourceType": "Patient",
            "identifier": [{"system": INS, "value": nir}],
            "name": [{"family": "Durand", "given": [given]}],
        }
    )
    return created.stored.resource_id


def _document(services: Services, patient_id: str, label: str) -> str:
    holder = Principal(kind=ActorKind.PATIENT, subject="t", patient_id=patient_id)
    body = {
        "resourceType": "DocumentReference",
        "status": "current",
        "category": [{"coding": [{"system": CLASS, "code": "10"}]}],
        "subject": {"reference": f"Patient/{patient_id}"},
        "securityLabel": [{"coding": [{"system": VISIBILITY, "code": label}]}],
        "content": [{"attachment": {"contentType": "text/plain", "data": base64.b64encode(b"cr").decode()}}],
    }
    return services.records.records(holder).create(body).stored.resource_id


def test_a_link_is_made_claimed_and_ended_each_step_in_the_represented_journal(services: Services) -> None:
    """add → claim (once, with the right code) → remove; each an entry of the child's journal."""
    child = _record(services, "2150775000001", "Léa")
    registry = services.representations
    with pytest.raises(InvalidResource):
        registry.add(child, basis="uncle", name="X", by=DESK)
    link_id, code = registry.add(child, basis="parent", name="Marie Durand", by=DESK)
    assert code is not None
    assert [(r.name, r.basis, r.pending) for r in registry.of_record(child)] == [
        ("Marie Durand", "parent", True)
    ]
    parent = Principal(kind=ActorKind.REPRESENTATIVE, subject=account_key("abc"), display="Marie Durand")
    with pytest.raises(SignInRefused):
        registry.claim("AAAA-BBBB-CCCC-DDDD", account_key("abc"), by=parent)
    assert registry.claim(code.lower(), account_key("abc"), by=parent) == child
    with pytest.raises(SignInRefused):
        registry.claim(code, account_key("someone-else"), by=parent)
    assert registry.represented_by([account_key("abc")]) == [child]
    assert registry.of_record(child)[0].pending is False
    registry.remove(child, link_id, by=DESK)
    with pytest.raises(NotFound):
        registry.remove(child, link_id, by=DESK)
    assert registry.represented_by([account_key("abc")]) == []
    kept = [
        (e.action, e.actor_id, e.reasons)
        for e in journal_of(services, child)
        if e.resource_type == "Representation"
    ]
    assert kept == [
        ("represent-add", "cli:desk", ("basis:parent",)),
        ("represent-claim", account_key("abc"), ("basis:parent",)),
        ("represent-remove", "cli:desk", ("basis:parent",)),
    ]


def _csrf(client: TestClient, path: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).text)
    assert found is not None
    return found.group(1)


def test_a_parent_with_a_record_of_their_own_acts_for_their_child_and_is_journaled_as_themself(
    client: TestClient, services: Services
) -> None:
    """Own record first; switched to the child's: hidden documents stay hidden; the child's journal names the parent."""
    parent = _record(services, "2750775000009", "Marie")
    child = _record(services, "2150775000001", "Léa")
    shown = _document(services, child, "N")
    hidden = _document(services, child, "INVISIBLE_REPRESENTANTS_LEGAUX")
    services.representations.add(
        child, basis="parent", name="Marie Durand", by=DESK, representative_record=parent
    )
    signed = client.post(
        "/login",
        data={"csrf_token": _csrf(client, "/login"), "kind": "patient", "identifier": f"{INS}|2750775000009"},
        follow_redirects=False,
    )
    assert signed.status_code == 303
    home = client.get("/patient/")
    assert 'id="acting-for-banner"' in home.text  # "you also act for others", with the switch
    listing = client.get("/patient/switch")
    assert 'id="switch-own"' in listing.text
    assert "Léa Durand" in listing.text
    token = _csrf(client, "/patient/switch")
    assert client.post("/patient/switch", data={"csrf_token": token, "record": child}).status_code == 200
    documents = client.get("/patient/documents")
    assert "Vous agissez pour Léa Durand" in documents.text
    assert shown in documents.text
    assert hidden not in documents.text
    assert client.get(f"/patient/documents/{hidden}").status_code == 404
    representatives = client.get("/patient/representatives")
    assert "Marie Durand" in representatives.text
    assert "Autorité parentale" in representatives.text
    client.post("/patient/switch", data={"csrf_token": token, "record": parent})
    assert shown not in client.get("/patient/documents").text
    reads = [e for e in journal_of(services, child) if e.action != "represent-add" and e.actor_id != "t"]
    assert reads, "the parent's reads of the child's record are journaled"
    assert {(e.actor_id, e.mode) for e in reads} == {(f"patient:{parent}", "representative")}
    refused = [e for e in reads if e.decision == "deny"]
    assert any("invisible-to-representatives" in e.reasons for e in refused)


def test_a_wrong_claim_code_in_the_portal_is_a_403_and_a_right_one_adds_the_record(
    client: TestClient, services: Services
) -> None:
    """A signed-in patient types the desk's code: refused when wrong; then the child's record is theirs to switch to."""
    parent = _record(services, "2750775000009", "Marie")
    child = _record(services, "2150775000001", "Léa")
    _, code = services.representations.add(child, basis="tutelle", name="Marie Durand", by=DESK)
    client.post(
        "/login",
        data={"csrf_token": _csrf(client, "/login"), "kind": "patient", "identifier": f"{INS}|2750775000009"},
    )
    token = _csrf(client, "/patient/representatives")
    wrong = client.post("/patient/representatives", data={"csrf_token": token, "code": "nope"})
    assert wrong.status_code == 403
    assert 'id="claim-error"' in wrong.text
    claimed = client.post(
        "/patient/representatives", data={"csrf_token": token, "code": code}, follow_redirects=False
    )
    assert claimed.status_code == 303
    assert "Léa Durand" in client.get("/patient/switch").text
    assert services.representations.represented_by([record_key(parent)]) == [child]


def test_the_desk_adds_lists_and_removes_a_representation_with_the_cli(
    settings: Settings, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """carnet patient represent add|list|remove, by INS; an unknown basis or INS is exit 2."""
    child = _record(services, "2150775000001", "Léa")
    parent = _record(services, "2750775000009", "Marie")
    env = {
        "CARNET_DATA_DIR": str(settings.data_dir),
        "CARNET_KEY_DIR": str(settings.key_dir),
        "CARNET_DATABASE_URL": settings.database_url,
    }
    runner = CliRunner()
    base = ["patient", "represent"]
    bad = runner.invoke(app, [*base, "add", "--ins", "2150775000001", "--basis", "x", "--name", "M"], env=env)
    assert bad.exit_code == 2
    unknown = runner.invoke(
        app, [*base, "add", "--ins", "1999999999999", "--basis", "parent", "--name", "M"], env=env
    )
    assert unknown.exit_code == 2
    added = runner.invoke(
        app,
        [
            *base,
            "add",
            "--ins",
            "2150775000001",
            "--basis",
            "parent",
            "--name",
            "Marie Durand",
            "--representative-ins",
            "2750775000009",
        ],
        env=env,
    )
    assert added.exit_code == 0, added.output
    assert services.representations.represented_by([record_key(parent)]) == [child]
    coded = runner.invoke(
        app, [*base, "add", "--ins", "2150775000001", "--basis", "parent", "--name", "Paul Durand"], env=env
    )
    assert coded.exit_code == 0, coded.output
    assert "claim code" in coded.output
    listed = runner.invoke(app, [*base, "list", "--ins", "2150775000001"], env=env)
    assert "Marie Durand" in listed.output
    assert "pending" in listed.output
    link = listed.output.split("\t", 1)[0]
    removed = runner.invoke(app, [*base, "remove", "--ins", "2150775000001", "--link", link], env=env)
    assert removed.exit_code == 0, removed.output
    assert services.representations.represented_by([record_key(parent)]) == []


def test_a_link_ended_at_the_desk_stops_at_the_next_page(client: TestClient, services: Services) -> None:
    """The parent acting for the child: once the desk removes the link, the next page is her own record again."""
    parent = _record(services, "2750775000009", "Marie")
    child = _record(services, "2150775000001", "Léa")
    shown = _document(services, child, "N")
    link_id, _ = services.representations.add(
        child, basis="parent", name="Marie Durand", by=DESK, representative_record=parent
    )
    client.post(
        "/login",
        data={"csrf_token": _csrf(client, "/login"), "kind": "patient", "identifier": f"{INS}|2750775000009"},
    )
    token = _csrf(client, "/patient/switch")
    client.post("/patient/switch", data={"csrf_token": token, "record": child})
    assert shown in client.get("/patient/documents").text
    services.representations.remove(child, link_id, by=DESK)
    documents = client.get("/patient/documents")
    assert documents.status_code == 200
    assert shown not in documents.text
    assert "Léa Durand" not in documents.text
    assert client.post("/patient/switch", data={"csrf_token": token, "record": child}).status_code in (
        303,
        403,
    )
    assert shown not in client.get("/patient/documents").text
