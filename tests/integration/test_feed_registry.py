"""The feed registry and the rule of issue 13 item 6: a feed writes only through the feed routes,
only its registered classes, and the same rule holds on every route."""

from __future__ import annotations

import base64
import functools
from typing import Any

import pytest
from starlette.testclient import TestClient
from typer.testing import CliRunner

from carnet.api.app import Services
from carnet.cli import app as cli
from carnet.domain.documents import SIMPLIFIED_PUBLISH_PROFILE
from carnet.domain.errors import AccessDenied, Conflict, InvalidRequest, NotFound, Unauthenticated
from carnet.domain.feeds import FeedKind, FeedStatus, parse_classes
from carnet.feeds.cda import class_code_for, parse_cda
from carnet.settings import Settings
from carnet.synthetic import generate_population
from minting import Mint

FROM_CDA = "/fhir/DocumentReference/$from-cda"
CLASS = "urn:oid:1.2.250.1.213.1.1.4.1"


@functools.cache
def _cda() -> bytes:
    """A generated CDA document (level 3) naming a test INS."""
    patient = next(iter(generate_population(1, seed=13, documents_per_patient=1)))
    for entry in patient.bundle["entry"]:
        resource = entry["resource"]
        if resource["resourceType"] == "Binary" and resource["contentType"] == "text/xml":
            return base64.b64decode(resource["data"])
    raise AssertionError("the generated patient has no CDA document")


def _class_of(raw: bytes) -> str:
    code = parse_cda(raw).code
    assert code is not None
    found = class_code_for(code.code, code.code_system)
    assert found is not None
    return str(found)


def _open_record(client: TestClient, auth: Mint, raw: bytes) -> str:
    ins = parse_cda(raw).ins
    assert ins is not None
    assert ins.extension is not None
    system = f"urn:oid:{ins.root}"
    headers = auth(kind="patient", identifier=f"{system}|{ins.extension}")
    patient = {"resourceType": "Patient", "identifier": [{"system": system, "value": ins.extension}]}
    opened = client.post("/fhir/Patient", json=patient, headers=headers)
    assert opened.status_code == 201, opened.text
    return str(opened.json()["id"])


def _publish_body(patient_id: str, class_code: str, unique: str) -> dict[str, Any]:
    return {
        "resourceType": "DocumentReference",
        "meta": {"profile": [SIMPLIFIED_PUBLISH_PROFILE]},
        "status": "current",
        "masterIdentifier": {"system": "urn:ietf:rfc:3986", "value": unique},
        "category": [{"coding": [{"system": CLASS, "code": class_code}]}],
        "subject": {"reference": f"Patient/{patient_id}"},
        "content": [{"attachment": {"contentType": "text/plain", "data": base64.b64encode(b"CR").decode()}}],
    }


def test_registry_adds_lists_pauses_and_refuses_duplicates(services: Services) -> None:
    """A feed is registered once with its classes, listed, paused and resumed; its secret is never stored."""
    registry = services.feeds
    made = registry.add("lab-77", name="Laboratoire 77", kind=FeedKind.HL7V2, classes=parse_classes("10,11"))
    assert made.feed.classes == frozenset({"10", "11"})
    assert made.secret not in made.feed.secret_hash
    assert [f.feed_id for f in registry.list()] == ["lab-77"]
    with pytest.raises(Conflict):
        registry.add("lab-77", name="Other", kind=FeedKind.CDA, classes=frozenset({"10"}))
    assert registry.authenticate("lab-77", made.secret).feed_id == "lab-77"
    with pytest.raises(Unauthenticated):
        registry.authenticate("lab-77", "not-the-secret")
    assert registry.set_status("lab-77", FeedStatus.PAUSED).status is FeedStatus.PAUSED
    with pytest.raises(AccessDenied):
        registry.authenticate("lab-77", made.secret)
    assert registry.set_status("lab-77", FeedStatus.ACTIVE).is_active
    with pytest.raises(NotFound):
        registry.set_status("nobody", FeedStatus.PAUSED)


def test_registry_refuses_bad_ids_and_classes() -> None:
    """Feed ids are simple names and classes are DMP classCodes; anything else is a clear 4xx error."""
    with pytest.raises(InvalidRequest, match="classCode"):
        parse_classes("10,99")
    with pytest.raises(InvalidRequest, match="classCode"):
        parse_classes(" , ")


def test_feed_writes_only_through_feed_routes_and_only_its_classes(
    client: TestClient, services: Services, auth: Mint
) -> None:
    """A class-X feed gets 403 on plain POST, 201 on ITI-105 and $from-cda; a feed of another class is refused on both."""
    raw = _cda()
    class_code = _class_of(raw)
    other = "60" if class_code != "60" else "10"
    patient_id = _open_record(client, auth, raw)
    services.feeds.add("hospital-a", name="Hôpital A", kind=FeedKind.CDA, classes=frozenset({class_code}))
    services.feeds.add("insurer", name="Assurance Maladie", kind=FeedKind.CNAM, classes=frozenset({other}))
    feed = auth(kind="feed", feed="hospital-a")
    wrong = auth(kind="feed", feed="insurer", feed_categories=[class_code])  # the token's claim is ignored

    plain = _publish_body(patient_id, class_code, "urn:oid:1.2.250.99.1")
    del plain["meta"]
    assert client.post("/fhir/DocumentReference", json=plain, headers=feed).status_code == 403
    assert (
        client.post("/fhir", json=_bundle(plain), headers=feed)
        .json()["entry"][0]["response"]["status"]
        .startswith("403")
    )
    smuggled = {**feed, "X-Carnet-Mode": "feed"}
    assert client.post("/fhir/DocumentReference", json=plain, headers=smuggled).status_code == 400

    published = _publish_body(patient_id, class_code, "urn:oid:1.2.250.99.2")
    assert client.post("/fhir/DocumentReference", json=published, headers=wrong).status_code == 403
    assert client.post("/fhir/DocumentReference", json=published, headers=feed).status_code == 201
    cda_headers = {"Content-Type": "application/hl7-cda+xml"}
    assert client.post(FROM_CDA, content=raw, headers={**wrong, **cda_headers}).status_code == 403
    assert client.post(FROM_CDA, content=raw, headers={**feed, **cda_headers}).status_code == 201
    # Feeds never read, not even what they wrote.
    assert client.get(f"/fhir/DocumentReference?patient={patient_id}", headers=feed).status_code == 403


def test_unregistered_or_paused_feed_writes_nothing(
    client: TestClient, services: Services, auth: Mint
) -> None:
    """A feed token naming no registered feed gets 401; a paused feed gets 403 until resumed."""
    raw = _cda()
    class_code = _class_of(raw)
    patient_id = _open_record(client, auth, raw)
    body = _publish_body(patient_id, class_code, "urn:oid:1.2.250.99.3")
    ghost = auth(kind="feed", feed="ghost", feed_categories=[class_code])
    assert client.post("/fhir/DocumentReference", json=body, headers=ghost).status_code == 401
    services.feeds.add("lab", name="Lab", kind=FeedKind.CDA, classes=frozenset({class_code}))
    services.feeds.set_status("lab", FeedStatus.PAUSED)
    lab = auth(kind="feed", feed="lab")
    assert client.post("/fhir/DocumentReference", json=body, headers=lab).status_code == 403
    services.feeds.set_status("lab", FeedStatus.ACTIVE)
    assert client.post("/fhir/DocumentReference", json=body, headers=lab).status_code == 201


def test_cli_adds_lists_and_pauses_feeds(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """carnet feeds add prints the secret once; list shows the feed; pause marks it paused."""
    monkeypatch.setenv("CARNET_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("CARNET_KEY_DIR", str(settings.key_dir))
    monkeypatch.setenv("CARNET_DATABASE_URL", settings.effective_database_url)
    runner = CliRunner()
    added = runner.invoke(
        cli, ["feeds", "add", "cnam", "--name", "Assurance Maladie", "--kind", "cnam", "--classes", "60"]
    )
    assert added.exit_code == 0, added.output
    assert runner.invoke(cli, ["feeds", "pause", "cnam"]).exit_code == 0
    listed = runner.invoke(cli, ["feeds", "list"])
    assert "cnam" in listed.output
    assert "paused" in listed.output
    bad = runner.invoke(cli, ["feeds", "add", "x", "--name", "X", "--kind", "cda", "--classes", "77"])
    assert bad.exit_code == 1


def _bundle(resource: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [{"resource": resource, "request": {"method": "POST", "url": "DocumentReference"}}],
    }
