"""Invalid FHIR is refused with a 4xx OperationOutcome and never stored (issue 11, item 3).

Each case was a 500, or was stored and then broke the record's ``$everything`` for standard
JSON parsers. After every refused write, ``$everything`` still parses with ``json.loads``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from starlette.testclient import TestClient

from carnet.api.app import Services
from carnet.api.fhir import parse_entries
from carnet.services import bundles, vault, writes
from minting import Mint
from outcomes import assert_outcome

INS = "urn:oid:1.2.250.1.213.1.4.10"
LOINC = "http://loinc.org"


@pytest.fixture
def patient(client: TestClient, auth: Mint) -> tuple[dict[str, str], str]:
    """A patient who opened their record: their headers and record id."""
    headers = auth(kind="patient", identifier=f"{INS}|1840399123456")
    body = {"resourceType": "Patient", "identifier": [{"system": INS, "value": "1840399123456"}]}
    created = client.post("/fhir/Patient", json=body, headers=headers)
    assert created.status_code == 201, created.text
    return headers, created.json()["id"]


def _observation(patient_id: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "29463-7"}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": "2024-05-01",
    }


def _document(patient_id: str, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "DocumentReference",
        "status": "current",
        "subject": {"reference": f"Patient/{patient_id}"},
        "content": [{"attachment": {"contentType": "text/plain", "data": "Ym9uam91cg=="}}],
    }
    body.update(changes)
    return body


def _splice(body: dict[str, Any], raw: str) -> bytes:
    """The JSON of ``body`` with ``raw`` (a JSON member written by hand) added at its end."""
    return (json.dumps(body).removesuffix("}") + ", " + raw + "}").encode()


def _everything_parses(client: TestClient, headers: dict[str, str], patient_id: str) -> int:
    response = client.get(f"/fhir/Patient/{patient_id}/$everything", headers=headers)
    assert response.status_code == 200, response.text
    return int(json.loads(response.content)["total"])


def test_lone_surrogate_resource_type_is_400(client: TestClient, patient: tuple[dict[str, str], str]) -> None:
    """A resourceType that is a lone UTF-16 surrogate (\\ud800) is refused with 400, not a 500."""
    headers, _ = patient
    response = client.post("/fhir/Observation", content=b'{"resourceType":"\\ud800"}', headers=headers)
    issue = assert_outcome(response, 400)
    assert "surrogate" in issue["diagnostics"]


def test_lone_surrogate_in_a_value_is_refused(
    client: TestClient, patient: tuple[dict[str, str], str]
) -> None:
    """A lone surrogate inside a string value is refused, and nothing is stored."""
    headers, pid = patient
    before = _everything_parses(client, headers, pid)
    content = _splice(_observation(pid), '"note": [{"text": "a\\udfffb"}]')
    assert_outcome(client.post("/fhir/Observation", content=content, headers=headers), 400)
    assert _everything_parses(client, headers, pid) == before


@pytest.mark.parametrize("meta", ['"x"', '{"profile": 1.5}', '{"profile": [1.5]}', "[]", '{"tag": "x"}'])
def test_document_reference_with_a_malformed_meta_is_4xx(
    client: TestClient, patient: tuple[dict[str, str], str], meta: str
) -> None:
    """A DocumentReference whose meta is not a Meta object is a 4xx OperationOutcome, not a 500."""
    headers, pid = patient
    content = _splice(_document(pid), f'"meta": {meta}')
    response = client.post("/fhir/DocumentReference", content=content, headers=headers)
    assert 400 <= response.status_code < 500, response.text
    assert_outcome(response, response.status_code)


@pytest.mark.parametrize("meta", ['"x"', '{"profile": 1.5}'])
def test_observation_with_a_malformed_meta_is_4xx(
    client: TestClient, patient: tuple[dict[str, str], str], meta: str
) -> None:
    """Any resource whose meta is not a Meta object is a 4xx OperationOutcome, not a 500."""
    headers, pid = patient
    content = _splice(_observation(pid), f'"meta": {meta}')
    response = client.post("/fhir/Observation", content=content, headers=headers)
    assert 400 <= response.status_code < 500, response.text
    assert_outcome(response, response.status_code)


@pytest.mark.parametrize(
    "member",
    [
        '"note": [{"text": "a\\u0000b"}]',
        '"note": [{"text": "bell\\u0007"}]',
        '"note": [{"text": "escape\\u001b[31m"}]',
        '"valueString": "nul\\u0000"',
        '"note\\u0000": [{"text": "key with a NUL"}]',
    ],
)
def test_control_characters_are_refused(
    client: TestClient, patient: tuple[dict[str, str], str], member: str
) -> None:
    """Strings with control characters other than tab, CR and LF are refused and not stored."""
    headers, pid = patient
    before = _everything_parses(client, headers, pid)
    response = client.post("/fhir/Observation", content=_splice(_observation(pid), member), headers=headers)
    issue = assert_outcome(response, response.status_code)
    assert 400 <= response.status_code < 500
    assert "control character" in issue["diagnostics"]
    assert _everything_parses(client, headers, pid) == before


def test_tab_cr_and_lf_are_kept(client: TestClient, patient: tuple[dict[str, str], str]) -> None:
    """Tab, carriage return and line feed are allowed in FHIR strings and read back as sent."""
    headers, pid = patient
    body = {**_observation(pid), "note": [{"text": "line 1\r\n\tline 2"}]}
    created = client.post("/fhir/Observation", json=body, headers=headers)
    assert created.status_code == 201, created.text
    read = client.get(f"/fhir/Observation/{created.json()['id']}", headers=headers)
    assert read.json()["note"][0]["text"] == "line 1\r\n\tline 2"


@pytest.mark.parametrize(
    "number",
    [
        "1E+400",
        "-1e400",
        "1e-400",
        "9" * 100_000,
        "1." + "1" * 5_000,
        "0.000000000000000000000000000000000001E-300",
    ],
)
def test_out_of_range_decimals_are_422(
    client: TestClient, patient: tuple[dict[str, str], str], number: str
) -> None:
    """A decimal beyond double range or bounded precision is refused with 422 naming the element."""
    headers, pid = patient
    before = _everything_parses(client, headers, pid)
    content = _splice(_observation(pid), f'"valueQuantity": {{"value": {number}, "unit": "kg"}}')
    issue = assert_outcome(client.post("/fhir/Observation", content=content, headers=headers), 422)
    assert "valueQuantity.value" in issue["diagnostics"]
    assert _everything_parses(client, headers, pid) == before


@pytest.mark.parametrize("number", ["2147483648", "-2147483649", "9" * 100_000])
def test_integers_beyond_32_bits_are_422(
    client: TestClient, patient: tuple[dict[str, str], str], number: str
) -> None:
    """A FHIR integer is 32-bit: a larger valueInteger (or a huge one) is refused with 422."""
    headers, pid = patient
    before = _everything_parses(client, headers, pid)
    content = _splice(_observation(pid), f'"valueInteger": {number}')
    issue = assert_outcome(client.post("/fhir/Observation", content=content, headers=headers), 422)
    assert "valueInteger" in issue["diagnostics"]
    assert _everything_parses(client, headers, pid) == before


@pytest.mark.parametrize("number", ["2147483647", "-2147483648", "0"])
def test_integers_within_32_bits_are_stored(
    client: TestClient, patient: tuple[dict[str, str], str], number: str
) -> None:
    """The 32-bit bounds themselves are valid FHIR integers and are stored as sent."""
    headers, pid = patient
    content = _splice(_observation(pid), f'"valueInteger": {number}')
    created = client.post("/fhir/Observation", content=content, headers=headers)
    assert created.status_code == 201, created.text
    assert (
        f'"valueInteger":{number}'
        in client.get(f"/fhir/Observation/{created.json()['id']}", headers=headers).text
    )


@pytest.mark.parametrize("number", ["1.50", "0.000001", "6.02214076E+23", "-273.15", "123456789012345678"])
def test_ordinary_decimals_keep_their_digits(
    client: TestClient, patient: tuple[dict[str, str], str], number: str
) -> None:
    """Decimals within range and precision are stored digit for digit and parse as standard JSON."""
    headers, pid = patient
    content = _splice(_observation(pid), f'"valueQuantity": {{"value": {number}, "unit": "kg"}}')
    created = client.post("/fhir/Observation", content=content, headers=headers)
    assert created.status_code == 201, created.text
    read = client.get(f"/fhir/Observation/{created.json()['id']}", headers=headers)
    assert f'"value":{number}' in read.text
    _everything_parses(client, headers, pid)


def test_invalid_string_inside_a_transaction_is_refused(
    client: TestClient, patient: tuple[dict[str, str], str]
) -> None:
    """A NUL inside a transaction entry's resource is refused before anything of the Bundle is stored."""
    headers, pid = patient
    before = _everything_parses(client, headers, pid)
    good = {"resource": _observation(pid), "request": {"method": "POST", "url": "Observation"}}
    bad = {"resource": {**_observation(pid), "note": [{"text": "x\u0000"}]}, "request": good["request"]}
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [good, bad]}
    response = client.post("/fhir", content=json.dumps(bundle), headers=headers)
    assert 400 <= response.status_code < 500, response.text
    assert _everything_parses(client, headers, pid) == before


def test_a_transaction_is_validated_before_its_write_transaction(
    client: TestClient,
    patient: tuple[dict[str, str], str],
    services: Services,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On SQLite valid POST entries are validated before the write (outside the writer lock), not again in it."""
    if not services.store.single_writer:
        pytest.skip("PostgreSQL writes transactions side by side: they are validated in them")
    headers, pid = patient
    validated: list[str] = []
    original = bundles.validate

    def counted(resource: dict[str, Any]) -> None:
        validated.append(str(resource.get("resourceType")))
        original(resource)

    def inside(resource: dict[str, Any]) -> None:
        raise AssertionError(f"{resource.get('resourceType')} validated again in the write transaction")

    monkeypatch.setattr(bundles, "validate", counted)
    monkeypatch.setattr(writes, "validate", inside)
    entry = {"resource": _observation(pid), "request": {"method": "POST", "url": "Observation"}}
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [entry, entry]}
    response = client.post("/fhir", content=json.dumps(bundle), headers=headers)
    assert response.status_code == 200, response.text
    assert validated == ["Observation", "Observation"]


def test_a_transactions_search_hashes_and_new_record_key_are_made_before_its_write_transaction(
    client: TestClient, auth: Mint, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On SQLite a transaction that opens a record (its Patient and two Observations naming it by
    the Bundle's fullUrl) has its record key and every entry's blind search hashes made before
    the write (outside the writer lock, giving way to its holder): none is made in it, and each
    resource is found by them."""
    if not services.store.single_writer:
        pytest.skip("PostgreSQL writes transactions side by side: their hashes are made in them")
    headers = auth(kind="patient", identifier=f"{INS}|2840399123457")
    written: list[tuple[str, bool]] = []
    original = writes.Writes._write

    def spy(self: writes.Writes, call: Any, **arguments: Any) -> Any:
        derived = arguments.get("derived")
        ready = (
            derived is not None
            and derived.hashes is not None
            and derived.patient_id == arguments["patient_id"]
        )
        written.append((arguments["resource_type"], ready))
        return original(self, call, **arguments)

    def inside(*_: Any, **__: Any) -> None:
        raise AssertionError("made in the write transaction")

    paused: list[int] = []
    monkeypatch.setattr(writes.Writes, "_write", spy)
    monkeypatch.setattr(vault.Vault, "create_key", inside)
    monkeypatch.setattr(services.store, "writer_first", lambda: paused.append(1))
    record = "urn:uuid:3f8a2b1c-0d4e-4f5a-9b6c-7d8e9f0a1b2c"
    person = {"resourceType": "Patient", "identifier": [{"system": INS, "value": "2840399123457"}]}
    weight, height = _observation("x"), _observation("x")
    height["code"] = {"coding": [{"system": LOINC, "code": "8302-2"}]}
    for observation in (weight, height):
        observation["subject"] = {"reference": record}
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": record, "resource": person, "request": {"method": "POST", "url": "Patient"}},
            *({"resource": r, "request": {"method": "POST", "url": "Observation"}} for r in (weight, height)),
        ],
    }
    response = client.post("/fhir", content=json.dumps(bundle), headers=headers)
    assert response.status_code == 200, response.text
    assert written == [("Patient", True), ("Observation", True), ("Observation", True)]
    assert len(paused) == 6  # before each entry's validation and its derivation: way given to the writer
    locations = [e["response"]["location"].split("/")[1] for e in response.json()["entry"]]
    found = client.get(
        f"/fhir/Observation?subject=Patient/{locations[0]}&code={LOINC}|8302-2", headers=headers
    )
    assert found.status_code == 200, found.text
    assert [e["resource"]["id"] for e in found.json()["entry"]] == [locations[2]]
    by_identifier = client.get(f"/fhir/Patient?identifier={INS}|2840399123457", headers=headers)
    assert [e["resource"]["id"] for e in by_identifier.json()["entry"]] == [locations[0]]


def test_an_entry_invalid_once_its_references_are_resolved_is_validated_in_the_call(
    client: TestClient, patient: tuple[dict[str, str], str], services: Services
) -> None:
    """Checked before the write as written: "p1" is a valid id, "Observation/<id>" (its resolution) is not.

    The entry is left to the call, which reports it with its position, and nothing is stored.
    """
    headers, pid = patient
    before = _everything_parses(client, headers, pid)
    first = {
        "fullUrl": "p1",
        "resource": _observation(pid),
        "request": {"method": "POST", "url": "Observation"},
    }
    second = {"resource": {**_observation(pid), "id": "p1"}, "request": first["request"]}
    entries = parse_entries({"entry": [first, second]})
    assert services.records.bundles.prepare(entries).valid == frozenset({0})
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [first, second]}
    response = client.post("/fhir", content=json.dumps(bundle), headers=headers)
    issue = assert_outcome(response, 422)
    assert issue["diagnostics"].startswith("Entry 1: Observation is not valid FHIR R4: id")
    assert _everything_parses(client, headers, pid) == before
