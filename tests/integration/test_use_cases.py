"""The use cases of services/, done through the FHIR operations and through the portals.

Each use case (close, reopen, authorise, block, name a treating physician, withdraw, oppose,
mask, unmask, a professional declaring the patient's consent) is done once through the API on
one patient and once through the portal on another: both ways must leave the same resource
(ids, dates and the patient aside) and exactly one journal entry named after the operation.
SQLite and PostgreSQL (the ``services`` fixture).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from starlette.testclient import TestClient

from carnet.api.app import Services, build_services, create_app
from carnet.demo import SeededPatient, seed_population
from carnet.domain.consent import KIND_SYSTEM
from carnet.domain.errors import Conflict
from carnet.domain.journal import Entry
from carnet.domain.principal import ActorKind, Principal
from carnet.domain.resources import RECORD_STATUS_EXTENSION
from carnet.services import entry_edits
from carnet.settings import Settings
from carnet.web.identities import demo_professionals
from minting import Mint

DOCTOR = "810001234567"


@dataclass(frozen=True, slots=True, kw_only=True)
class World:
    """Two seeded patients: ``api`` acts through /fhir, ``web`` through the patient portal."""

    services: Services
    api: SeededPatient
    web: SeededPatient
    client: TestClient
    portal: TestClient
    bearer: dict[str, str]
    csrf: dict[str, str]


def _csrf(client: TestClient, path: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).text)
    assert found is not None, path
    return found.group(1)


def _sign_in(client: TestClient, patient: SeededPatient) -> str:
    """Sign in to the patient portal; return the session's CSRF token (read before any use case)."""
    token = _csrf(client, "/login")
    identifier = f"{patient.ins_system}|{patient.ins_value}"
    answer = client.post(
        "/login",
        data={"csrf_token": token, "kind": "patient", "identifier": identifier},
        follow_redirects=False,
    )
    assert answer.status_code == 303
    return _csrf(client, "/patient/")


@pytest.fixture
def world(settings: Settings, services: Services, auth: Mint) -> Iterator[World]:
    """The app in-process, a patient with an API token and a patient signed in to the portal."""
    api, web = seed_population(services.records, patients=2, seed=2026)
    app = create_app(settings, services, background=False)
    with TestClient(app) as client, TestClient(app) as portal:
        token = _sign_in(portal, web)
        yield World(
            services=services,
            api=api,
            web=web,
            client=client,
            portal=portal,
            bearer=auth(kind="patient", patient=api.patient_id),
            csrf={"web": token},
        )


def _entries(services: Services, patient_id: str) -> list[Entry]:
    with services.store.session() as session:
        key = services.records.vault.key(session, patient_id, services.records.clock())
        rows = session.journal_of(patient_id, limit=10_000, newest_first=False)
        return [services.journal.open(key, row).entry for row in rows]


class Journal:
    """Counts a record's journal entries, to return those a use case added."""

    def __init__(self, services: Services, patient_id: str) -> None:
        self.services = services
        self.patient_id = patient_id
        self.seen = len(_entries(services, patient_id))

    def added(self) -> list[tuple[str, str, str]]:
        """The (action, decision, outcome) of the entries added since the last call."""
        entries = _entries(self.services, self.patient_id)
        added = entries[self.seen :]
        self.seen = len(entries)
        return [(e.action, e.decision, e.outcome) for e in added]


def _operation(world: World, path: str, parameters: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    body = orjson.dumps({"resourceType": "Parameters", "parameter": parameters}) if parameters else None
    answer = world.client.post(f"/fhir/{path}", headers=world.bearer, content=body)
    assert answer.status_code == 200, answer.text
    parsed: dict[str, Any] = answer.json()
    assert parsed["resourceType"] == "Parameters"
    return parsed


def _returned(parameters: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [p["resource"] for p in parameters["parameter"] if p["name"] == "return"]


def _post(world: World, path: str, **form: str) -> None:
    data = {"csrf_token": world.csrf["web"], **form}
    answer = world.portal.post(path, data=data, follow_redirects=False)
    assert answer.status_code == 303, answer.text[:300]


def _read(world: World, patient: SeededPatient, resource_type: str, resource_id: str) -> dict[str, Any]:
    holder = Principal(kind=ActorKind.PATIENT, subject="t", patient_id=patient.patient_id)
    return world.services.records.records(holder).read(resource_type, resource_id).resource or {}


def _consents(world: World, patient: SeededPatient) -> list[dict[str, Any]]:
    holder = Principal(kind=ActorKind.PATIENT, subject="t", patient_id=patient.patient_id)
    found = world.services.records.records(holder).search(
        "Consent", [("patient", f"Patient/{patient.patient_id}"), ("_count", "1000")]
    )
    return found.resources


def _kind(consent: Mapping[str, Any]) -> str:
    return next(c["code"] for cat in consent["category"] for c in cat["coding"] if c["system"] == KIND_SYSTEM)


def _choice(consent: Mapping[str, Any]) -> dict[str, Any]:
    """A Consent without what differs between two patients: id, meta, patient, date recorded."""
    return {k: v for k, v in consent.items() if k not in ("id", "meta", "patient", "dateTime")}


def _status(patient: Mapping[str, Any]) -> tuple[Any, list[Any]]:
    return patient.get("active"), [
        e for e in patient.get("extension") or [] if e["url"] == RECORD_STATUS_EXTENSION
    ]


def test_close_and_reopen_the_same_way_through_the_api_and_the_portal(world: World) -> None:
    """$close / $reopen and the portal's close / reopen leave the same Patient, one entry each."""
    api, web = Journal(world.services, world.api.patient_id), Journal(world.services, world.web.patient_id)
    closed = _returned(_operation(world, f"Patient/{world.api.patient_id}/$close"))
    assert api.added() == [("$close", "permit", "ok")]
    _post(world, "/patient/close", confirm="1")
    assert web.added() == [("$close", "permit", "ok")]
    by_api = _read(world, world.api, "Patient", world.api.patient_id)
    by_portal = _read(world, world.web, "Patient", world.web.patient_id)
    assert _status(closed[0]) == _status(by_api) == _status(by_portal)
    assert _status(by_api) == (False, [{"url": RECORD_STATUS_EXTENSION, "valueCode": "closed"}])
    api.added(), web.added()  # the test's own reads

    _operation(world, f"Patient/{world.api.patient_id}/$reopen")
    assert api.added() == [("$reopen", "permit", "ok")]
    world.csrf["web"] = _sign_in(world.portal, world.web)  # closing signed the holder out
    web.added()  # the home page read on signing in
    _post(world, "/patient/reopen")
    assert web.added() == [("$reopen", "permit", "ok")]
    by_api = _read(world, world.api, "Patient", world.api.patient_id)
    by_portal = _read(world, world.web, "Patient", world.web.patient_id)
    assert _status(by_api) == _status(by_portal) == (True, [])


@pytest.mark.parametrize(
    ("kind", "operation"),
    [
        ("authorisation", "$authorise"),
        ("block", "$block"),
        ("treating-physician", "$declare-treating-physician"),
    ],
)
def test_a_choice_then_its_withdrawal_the_same_way_both_ways(world: World, kind: str, operation: str) -> None:
    """Authorising, blocking, naming a treating physician, then withdrawing: same Consents, one entry each."""
    api, web = Journal(world.services, world.api.patient_id), Journal(world.services, world.web.patient_id)
    parameters = [
        {"name": "professional", "valueIdentifier": {"system": "urn:oid:1.2.250.1.71.4.2.1", "value": DOCTOR}}
    ]
    if kind == "authorisation":
        parameters.append({"name": "until", "valueDate": "2030-06-30"})
    created = _returned(_operation(world, f"Patient/{world.api.patient_id}/{operation}", parameters))[0]
    assert api.added() == [(operation, "permit", "ok")]
    form = {"kind": kind, "idnps": DOCTOR}
    if kind == "authorisation":
        form["until"] = "2030-06-30"
    _post(world, "/patient/care-team", **form)
    assert web.added() == [(operation, "permit", "ok")]
    mine = [c for c in _consents(world, world.web) if _kind(c) == kind and c["status"] == "active"]
    assert len(mine) == 1
    assert _choice(created) == _choice(mine[0])
    assert _kind(created) == kind
    web.added()  # the test's own search

    withdrawn = _returned(_operation(world, f"Consent/{created['id']}/$withdraw"))[0]
    assert api.added() == [("$withdraw", "permit", "ok")]
    _post(world, f"/patient/care-team/{mine[0]['id']}/revoke")
    assert web.added() == [("$withdraw", "permit", "ok")]
    after = _read(world, world.web, "Consent", mine[0]["id"])
    assert withdrawn["status"] == after["status"] == "inactive"
    assert _choice(withdrawn) == _choice(after)


def test_oppositions_the_same_way_both_ways(world: World) -> None:
    """$set-oppositions and the portal's choices page record the same oppositions, then lift them."""
    api, web = Journal(world.services, world.api.patient_id), Journal(world.services, world.web.patient_id)
    both = [{"name": "break-glass", "valueBoolean": True}, {"name": "regulation", "valueBoolean": True}]
    created = _returned(_operation(world, f"Patient/{world.api.patient_id}/$set-oppositions", both))
    assert api.added() == [("$set-oppositions", "permit", "ok")]
    _post(world, "/patient/choices/oppositions", break_glass="1", regulation="1")
    assert web.added() == [("$set-oppositions", "permit", "ok")]
    active = [
        _choice(c)
        for c in _consents(world, world.web)
        if c["status"] == "active" and "opposition" in _kind(c)
    ]
    assert sorted(orjson.dumps(_choice(c)) for c in created) == sorted(orjson.dumps(c) for c in active)
    assert {_kind(c) for c in created} == {"opposition-break-glass", "opposition-regulation"}
    web.added()  # the test's own search

    lifted = _returned(
        _operation(
            world,
            f"Patient/{world.api.patient_id}/$set-oppositions",
            [{"name": "break-glass", "valueBoolean": False}],
        )
    )
    assert [(_kind(c), c["status"]) for c in lifted] == [("opposition-break-glass", "inactive")]
    _post(world, "/patient/choices/oppositions", regulation="1")
    assert api.added() == [("$set-oppositions", "permit", "ok")]
    assert web.added() == [("$set-oppositions", "permit", "ok")]
    left = {
        _kind(c) for c in _consents(world, world.web) if c["status"] == "active" and "opposition" in _kind(c)
    }
    assert left == {"opposition-regulation"}


def _first_document(world: World, patient: SeededPatient) -> str:
    holder = Principal(kind=ActorKind.PATIENT, subject="t", patient_id=patient.patient_id)
    found = world.services.records.records(holder).search(
        "DocumentReference", [("patient", f"Patient/{patient.patient_id}"), ("status", "current")]
    )
    return str(found.resources[0]["id"])


def _labels(document: Mapping[str, Any]) -> list[str]:
    return sorted(
        c["code"] for label in document.get("securityLabel") or [] for c in label.get("coding") or []
    )


def test_mask_and_unmask_the_same_way_both_ways(world: World) -> None:
    """$mask / $unmask and the portal's visibility switch set the same labels, one entry each."""
    mine, theirs = _first_document(world, world.api), _first_document(world, world.web)
    api, web = Journal(world.services, world.api.patient_id), Journal(world.services, world.web.patient_id)
    masked = _returned(_operation(world, f"DocumentReference/{mine}/$mask"))[0]
    assert api.added() == [("$mask", "permit", "ok")]
    _post(world, f"/patient/documents/{theirs}/visibility", masked="1")
    assert web.added() == [("$mask", "permit", "ok")]
    assert "MASQUE_PS" in _labels(masked)
    assert _labels(masked) == _labels(_read(world, world.web, "DocumentReference", theirs))
    web.added()  # the test's own read

    _operation(world, f"DocumentReference/{mine}/$unmask")
    assert api.added() == [("$unmask", "permit", "ok")]
    _post(world, f"/patient/documents/{theirs}/visibility", masked="0")
    assert web.added() == [("$unmask", "permit", "ok")]
    by_api = _labels(_read(world, world.api, "DocumentReference", mine))
    assert "MASQUE_PS" not in by_api
    assert by_api == _labels(_read(world, world.web, "DocumentReference", theirs))


def test_a_professional_declares_the_patients_consent_the_same_way_both_ways(
    world: World, auth: Mint
) -> None:
    """A physician's $authorise without parameters and the professional portal's declaration make the same Consent."""
    physician = next(p for p in demo_professionals(world.services.records) if p.profession == "10")
    claims = {
        "kind": "professional",
        "idnps": physician.idnps,
        "profession": "10",
        "specialty": physician.specialty,
    }
    api, web = Journal(world.services, world.api.patient_id), Journal(world.services, world.web.patient_id)
    answer = world.client.post(
        f"/fhir/Patient/{world.api.patient_id}/$authorise",
        headers=auth(**{k: v for k, v in claims.items() if v}),
    )
    assert answer.status_code == 200, answer.text
    created = _returned(answer.json())[0]
    assert api.added() == [("$authorise", "permit", "ok")]
    with TestClient(world.client.app) as pro:
        token = _csrf(pro, "/login")
        pro.post(
            "/login",
            data={"csrf_token": token, "kind": "professional", "practitioner": physician.practitioner_id},
        )
        token = _csrf(pro, "/pro/")
        answer = pro.post(
            "/pro/access/consent",
            data={"csrf_token": token, "ins": world.web.ins_value, "kind": "authorisation", "agreed": "yes"},
            follow_redirects=False,
        )
        assert answer.status_code == 303
    assert web.added() == [("$authorise", "permit", "ok")]
    declared = [c for c in _consents(world, world.web) if _kind(c) == "authorisation"]
    assert [_choice(c) for c in declared] == [_choice(created)]


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("Patient/unknown-record/$close", None, 404),
        ("Consent/unknown-consent/$withdraw", None, 404),
        ("DocumentReference/unknown-document/$mask", None, 404),
        ("Patient/{pid}/$block", None, 400),
        ("Patient/{pid}/$block", {"resourceType": "Patient"}, 400),
        (
            "Patient/{pid}/$block",
            {"resourceType": "Parameters", "parameter": [{"name": "professional", "valueString": "x"}]},
            400,
        ),
        (
            "Patient/{pid}/$authorise",
            {
                "resourceType": "Parameters",
                "parameter": [
                    {"name": "professional", "valueString": DOCTOR},
                    {"name": "until", "valueDate": "soon"},
                ],
            },
            400,
        ),
        ("Patient/{pid}/$set-oppositions", {"resourceType": "Parameters", "parameter": []}, 400),
        (
            "Patient/{pid}/$set-oppositions",
            {"resourceType": "Parameters", "parameter": [{"name": "regulation", "valueString": "yes"}]},
            400,
        ),
        (
            "DocumentReference/{doc}/$mask",
            {"resourceType": "Parameters", "parameter": [{"name": "professional", "valueString": DOCTOR}]},
            400,
        ),
    ],
)
def test_bad_operations_answer_an_operation_outcome(
    world: World, path: str, body: dict[str, Any] | None, status: int
) -> None:
    """Unknown targets answer 404, malformed or unsupported parameters 400: an OperationOutcome, never a 500."""
    target = path.format(pid=world.api.patient_id, doc=_first_document(world, world.api))
    content = orjson.dumps(body) if body is not None else None
    answer = world.client.post(f"/fhir/{target}", headers=world.bearer, content=content)
    assert answer.status_code == status, answer.text
    assert answer.json()["resourceType"] == "OperationOutcome"


def test_others_cannot_use_the_operations(world: World, auth: Mint) -> None:
    """Another patient's $close and an employer's $mask are refused (404 / 403), and nothing changes."""
    other = auth(kind="patient", patient=world.web.patient_id)
    answer = world.client.post(f"/fhir/Patient/{world.api.patient_id}/$close", headers=other)
    assert answer.status_code == 404
    employer = auth(kind="employer", sub="employer:1")
    document = _first_document(world, world.api)
    assert world.client.post(f"/fhir/DocumentReference/{document}/$mask", headers=employer).status_code in (
        403,
        404,
    )
    assert _status(_read(world, world.api, "Patient", world.api.patient_id))[0] is not False
    assert "MASQUE_PS" not in _labels(_read(world, world.api, "DocumentReference", document))


def test_the_capability_statement_lists_the_operations(world: World) -> None:
    """/fhir/metadata names each operation on its resource type."""
    statement = world.client.get("/fhir/metadata").json()
    named = {
        (r["type"], o["name"]) for r in statement["rest"][0]["resource"] for o in r.get("operation") or []
    }
    expected = {
        ("Patient", "close"),
        ("Patient", "reopen"),
        ("Patient", "authorise"),
        ("Patient", "block"),
        ("Patient", "declare-treating-physician"),
        ("Patient", "set-oppositions"),
        ("Consent", "withdraw"),
        ("DocumentReference", "mask"),
        ("DocumentReference", "unmask"),
    }
    assert expected <= named


def test_a_physician_becomes_treating_physician_the_same_way_both_ways(world: World, auth: Mint) -> None:
    """An authorised physician's $declare-treating-physician and the portal's button make the same Consent."""
    physician = next(p for p in demo_professionals(world.services.records) if p.profession == "10")
    claims = {
        "kind": "professional",
        "idnps": physician.idnps,
        "profession": "10",
        "specialty": physician.specialty,
    }
    headers = auth(**{k: v for k, v in claims.items() if v})
    assert (
        world.client.post(f"/fhir/Patient/{world.api.patient_id}/$authorise", headers=headers).status_code
        == 200
    )
    api = Journal(world.services, world.api.patient_id)
    answer = world.client.post(
        f"/fhir/Patient/{world.api.patient_id}/$declare-treating-physician", headers=headers
    )
    assert answer.status_code == 200, answer.text
    created = _returned(answer.json())[0]
    assert api.added() == [("$declare-treating-physician", "permit", "ok")]
    with TestClient(world.client.app) as pro:
        token = _csrf(pro, "/login")
        pro.post(
            "/login",
            data={"csrf_token": token, "kind": "professional", "practitioner": physician.practitioner_id},
        )
        token = _csrf(pro, "/pro/")
        declared = pro.post(
            "/pro/access/consent",
            data={"csrf_token": token, "ins": world.web.ins_value, "kind": "authorisation", "agreed": "yes"},
            follow_redirects=False,
        )
        assert declared.status_code == 303
        web = Journal(world.services, world.web.patient_id)
        answer = pro.post(
            f"/pro/patients/{world.web.patient_id}/treating",
            data={"csrf_token": token, "agreed": "yes"},
            follow_redirects=False,
        )
        assert answer.headers["location"].endswith("?done=treating")
    assert web.added() == [("$declare-treating-physician", "permit", "ok")]
    treating = [c for c in _consents(world, world.web) if _kind(c) == "treating-physician"]
    assert [_choice(c) for c in treating] == [_choice(created)]


def test_sovereign_mask_from_one_professional_the_same_way_both_ways(settings: Settings, auth: Mint) -> None:
    """Under ``sovereign``, $mask with a professional and the portal's masked-from form write the same extension."""
    sovereign = dataclasses.replace(settings, policy_profile="sovereign")
    services = build_services(sovereign)
    try:
        api_patient, web_patient = seed_population(services.records, patients=2, seed=2026)
        app = create_app(sovereign, services, background=False)
        with TestClient(app) as client, TestClient(app) as portal:
            token = _sign_in(portal, web_patient)
            world = World(
                services=services,
                api=api_patient,
                web=web_patient,
                client=client,
                portal=portal,
                bearer=auth(kind="patient", patient=api_patient.patient_id),
                csrf={"web": token},
            )
            mine, theirs = _first_document(world, api_patient), _first_document(world, web_patient)
            api, web = Journal(services, api_patient.patient_id), Journal(services, web_patient.patient_id)
            named = [{"name": "professional", "valueString": DOCTOR}]
            masked = _returned(_operation(world, f"DocumentReference/{mine}/$mask", named))[0]
            assert api.added() == [("$mask", "permit", "ok")]
            _post(world, f"/patient/documents/{theirs}/masked-from", idnps=DOCTOR)
            assert web.added() == [("$mask", "permit", "ok")]
            expected = {
                "url": "https://carnet.health/fhir/StructureDefinition/masked-from",
                "valueIdentifier": {"system": "urn:oid:1.2.250.1.71.4.2.1", "value": DOCTOR},
            }
            assert expected in masked["extension"]
            assert expected in _read(world, web_patient, "DocumentReference", theirs)["extension"]
            web.added()  # the test's own read
            unmasked = _returned(_operation(world, f"DocumentReference/{mine}/$unmask", named))[0]
            _post(world, f"/patient/documents/{theirs}/masked-from", idnps=DOCTOR, action="remove")
            assert (api.added(), web.added()) == (
                [("$unmask", "permit", "ok")],
                [("$unmask", "permit", "ok")],
            )
            assert expected not in unmasked.get("extension", [])
            assert expected not in _read(world, web_patient, "DocumentReference", theirs).get("extension", [])
    finally:
        services.store.engine.dispose()


def test_editing_a_profile_entry_is_one_call(world: World) -> None:
    """edit_entry writes at the version seen (one 'update' entry); a stale version changes nothing."""
    holder = Principal(kind=ActorKind.PATIENT, subject="t", patient_id=world.api.patient_id)
    found = world.services.records.records(holder).search(
        "Observation", [("patient", f"Patient/{world.api.patient_id}")]
    )
    stored = found.entries[0]
    journal = Journal(world.services, world.api.patient_id)

    def noted(resource: Mapping[str, Any]) -> dict[str, Any]:
        return {**resource, "note": [{"text": "Confirmed by the patient"}]}

    edited = entry_edits.edit_entry(
        world.services.records,
        holder,
        "Observation",
        stored.resource_id,
        version=stored.version_id,
        change=noted,
    )
    assert edited.version_id == stored.version_id + 1
    assert [a for a, _, _ in journal.added()] == ["update"]
    with pytest.raises(Conflict):
        entry_edits.edit_entry(
            world.services.records,
            holder,
            "Observation",
            stored.resource_id,
            version=stored.version_id,
            change=noted,
        )
    assert [a for a, _, _ in journal.added()] == ["update"]
    again = world.services.records.records(holder).read("Observation", stored.resource_id)
    assert again.version_id == edited.version_id
