"""The ``sovereign`` profile's second professional confirms with their own token, never a typed name (API)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from carnet.api.app import Services, build_services, create_app
from carnet.settings import Settings
from journal_requests import GP, open_record, professional
from minting import Mint

COLLEAGUE = "810002222222"
REASON = "Patient inconscient aux urgences"


@pytest.fixture
def sovereign(settings: Settings) -> Iterator[tuple[TestClient, Services]]:
    """A server under the sovereign profile (break-glass needs a second professional)."""
    chosen = dataclasses.replace(settings, policy_profile="sovereign")
    services = build_services(chosen)
    with TestClient(create_app(chosen, services, background=False), base_url="http://testserver") as client:
        yield client, services
    services.store.engine.dispose()


def _confirmation(client: TestClient, auth: Mint, *, by: str, for_: str) -> str:
    answer = client.post(
        "/fhir/$confirm-break-glass",
        json={"resourceType": "Parameters", "parameter": [{"name": "professional", "valueString": for_}]},
        headers=professional(auth, by),
    )
    assert answer.status_code == 200, answer.text
    [token] = [p["valueString"] for p in answer.json()["parameter"] if p["name"] == "confirmation"]
    return str(token)


def test_a_confirmation_token_of_a_colleague_opens_the_emergency_read(
    sovereign: tuple[TestClient, Services], auth: Mint
) -> None:
    """Only the colleague's signed confirmation works; the journal names both professionals."""
    client, _ = sovereign
    patient_id, holder = open_record(client, auth, "1850775123456")

    def read(**headers: str) -> int:
        answer = client.get(
            f"/fhir/Patient/{patient_id}",
            headers=professional(
                auth, GP, **{"X-Carnet-Mode": "break_glass", "X-Carnet-Justification": REASON, **headers}
            ),
        )
        return answer.status_code

    assert read(**{"X-Carnet-Confirmed-By": COLLEAGUE}) == 400  # a typed name proves nothing
    assert read() in (403, 404)
    assert read(**{"X-Carnet-Confirmation": "garbage"}) == 403
    assert (
        read(**{"X-Carnet-Confirmation": _confirmation(client, auth, by=COLLEAGUE, for_="810009999999")})
        == 403
    )
    own = client.post(
        "/fhir/$confirm-break-glass",
        json={"resourceType": "Parameters", "parameter": [{"name": "professional", "valueString": GP}]},
        headers=professional(auth, GP),
    )
    assert own.status_code == 403
    assert (
        client.post("/fhir/$confirm-break-glass", json={}, headers=professional(auth, COLLEAGUE)).status_code
        == 400
    )
    assert read(**{"X-Carnet-Confirmation": _confirmation(client, auth, by=COLLEAGUE, for_=GP)}) == 200
    events = client.get(f"/fhir/AuditEvent?patient=Patient/{patient_id}", headers=holder).json()
    confirmers = {
        part.get("valueString")
        for entry in events.get("entry", [])
        for extension in entry["resource"].get("extension") or []
        for part in extension.get("extension") or []
        if part.get("url") == "confirmedBy"
    }
    assert confirmers == {COLLEAGUE}


def test_a_patient_cannot_confirm(sovereign: tuple[TestClient, Services], auth: Mint) -> None:
    """Only professionals confirm an emergency access."""
    client, _ = sovereign
    _, holder = open_record(client, auth, "1850775123457")
    answer = client.post(
        "/fhir/$confirm-break-glass",
        json={"resourceType": "Parameters", "parameter": [{"name": "professional", "valueString": GP}]},
        headers=holder,
    )
    assert answer.status_code == 403
