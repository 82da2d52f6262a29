"""Bad input never gives a 500: each kind of malformed request gets its 4xx and an OperationOutcome."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from starlette.testclient import TestClient

from carnet.api.app import Services, create_app
from carnet.api.auth import issue_token
from carnet.domain.errors import ConfigurationError
from carnet.settings import Settings, load
from minting import Mint
from outcomes import assert_outcome

INS = "urn:oid:1.2.250.1.213.1.4.10"
LOINC = "http://loinc.org"
SMALL_LIMIT = 4096


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Record:
    """A patient's record opened through the API, with one Observation in it."""

    headers: dict[str, str]
    patient_id: str
    observation_id: str

    def observation(self, **changes: Any) -> dict[str, Any]:
        """Return a valid Observation of this record, with ``changes`` applied."""
        body: dict[str, Any] = {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": LOINC, "code": "29463-7"}]},
            "subject": {"reference": f"Patient/{self.patient_id}"},
            "effectiveDateTime": "2024-05-01",
        }
        body.update(changes)
        return body


@pytest.fixture
def record(client: TestClient, auth: Mint) -> Record:
    """A patient who opened their record and wrote one Observation."""
    headers = auth(kind="patient", identifier=f"{INS}|1840399123456")
    patient = {"resourceType": "Patient", "identifier": [{"system": INS, "value": "1840399123456"}]}
    created = client.post("/fhir/Patient", json=patient, headers=headers)
    assert created.status_code == 201, created.text
    opened = Record(headers=headers, patient_id=created.json()["id"], observation_id="")
    made = client.post("/fhir/Observation", json=opened.observation(), headers=headers)
    assert made.status_code == 201, made.text
    return dataclasses.replace(opened, observation_id=made.json()["id"])


@pytest.fixture
def small_client(settings: Settings, services: Services) -> Iterator[TestClient]:
    """The app with a 4 KiB body limit (``CARNET_MAX_BODY_BYTES=4096``)."""
    small = dataclasses.replace(settings, max_body_bytes=SMALL_LIMIT)
    app = create_app(small, dataclasses.replace(services, settings=small))
    with TestClient(app, base_url="http://testserver") as test_client:
        yield test_client


def _post_raw(client: TestClient, record: Record, content: bytes, path: str = "/fhir/Observation") -> Any:
    return client.post(path, content=content, headers=record.headers)


# -- the body ---------------------------------------------------------------------------------


def test_malformed_json_is_400(client: TestClient, record: Record) -> None:
    """A body that is not JSON is refused with 400 invalid."""
    issue = assert_outcome(_post_raw(client, record, b'{"resourceType": "Observation",'), 400)
    assert issue["code"] == "invalid"


@pytest.mark.parametrize("content", [b"[]", b'[{"resourceType": "Observation"}]', b"3", b'"x"', b"null"])
def test_json_that_is_not_an_object_is_400(client: TestClient, record: Record, content: bytes) -> None:
    """A JSON array or scalar body is refused with 400."""
    assert_outcome(_post_raw(client, record, content), 400)


def test_empty_body_is_400(client: TestClient, record: Record) -> None:
    """A create without a body is refused with 400."""
    assert_outcome(_post_raw(client, record, b""), 400)


def test_duplicate_json_keys_are_400(client: TestClient, record: Record) -> None:
    """An object repeating a key is refused rather than silently keeping one value."""
    content = b'{"resourceType": "Observation", "status": "final", "status": "amended"}'
    issue = assert_outcome(_post_raw(client, record, content), 400)
    assert "status" in issue["diagnostics"]


@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", "application/fhir+xml"])
def test_wrong_content_type_is_400(client: TestClient, record: Record, content_type: str) -> None:
    """A body that is not declared as FHIR JSON is refused with 400 (Carnet does not use 415)."""
    headers = {**record.headers, "Content-Type": content_type}
    response = client.post("/fhir/Observation", content=json.dumps(record.observation()), headers=headers)
    issue = assert_outcome(response, 400)
    assert content_type in issue["diagnostics"]


def test_deeply_nested_json_is_400(client: TestClient, record: Record) -> None:
    """Ten thousand levels of nesting are refused with 400, not a recursion crash."""
    assert_outcome(_post_raw(client, record, b"[" * 10_000 + b"]" * 10_000), 400)
    assert_outcome(_post_raw(client, record, b'{"a":' * 10_000 + b"1" + b"}" * 10_000), 400)


def test_nesting_beyond_the_validator_is_400(client: TestClient, record: Record) -> None:
    """Nesting that parses but would exhaust the validator's recursion (300 levels) is refused."""
    extension: dict[str, Any] = {"url": "http://example.org/x", "valueString": "leaf"}
    for _ in range(150):
        extension = {"url": "http://example.org/x", "extension": [extension]}
    body = record.observation(extension=[extension])
    response = client.post("/fhir/Observation", content=json.dumps(body), headers=record.headers)
    issue = assert_outcome(response, 400)
    assert "nested" in issue["diagnostics"]


def test_integer_beyond_4300_digits_is_422(client: TestClient, record: Record) -> None:
    """An integer too long for Python's int() is a validation error, not a crash."""
    content = json.dumps(record.observation()).removesuffix("}") + ', "valueInteger": ' + "9" * 5000 + "}"
    issue = assert_outcome(_post_raw(client, record, content.encode()), 422)
    assert "valueInteger" in issue["diagnostics"]


def test_decimal_beyond_64_bits_keeps_its_digits(client: TestClient, record: Record) -> None:
    """A 30-digit decimal written without a point is stored and read back digit for digit."""
    digits = "123456789012345678901234567890"
    content = json.dumps(record.observation()).removesuffix("}")
    content += ', "valueQuantity": {"value": ' + digits + ', "unit": "mmol/L"}}'
    created = _post_raw(client, record, content.encode())
    assert created.status_code == 201, created.text
    read = client.get(f"/fhir/Observation/{created.json()['id']}", headers=record.headers)
    assert f'"value":{digits}' in read.text


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_are_400(client: TestClient, record: Record, constant: str) -> None:
    """NaN and the infinities are not JSON numbers and are refused with 400."""
    content = json.dumps(record.observation()).removesuffix("}")
    content += ', "valueQuantity": {"value": ' + constant + "}}"
    issue = assert_outcome(_post_raw(client, record, content.encode()), 400)
    assert constant.lstrip("-") in issue["diagnostics"]


def test_invalid_utf8_is_400(client: TestClient, record: Record) -> None:
    """Bytes that are not UTF-8 are refused with 400."""
    content = json.dumps(record.observation(status="final")).encode().replace(b"final", b"fin\xff\xfeal")
    issue = assert_outcome(_post_raw(client, record, content), 400)
    assert "UTF-8" in issue["diagnostics"]


def test_oversize_body_is_413(small_client: TestClient, record: Record) -> None:
    """A body over CARNET_MAX_BODY_BYTES, by its Content-Length, is refused with 413."""
    body = record.observation(note=[{"text": "x" * SMALL_LIMIT}])
    response = small_client.post("/fhir/Observation", content=json.dumps(body), headers=record.headers)
    issue = assert_outcome(response, 413)
    assert "CARNET_MAX_BODY_BYTES" in issue["diagnostics"]


def test_oversize_chunked_body_is_413(small_client: TestClient, record: Record) -> None:
    """A body over the limit sent without a Content-Length is cut off while streaming, with 413."""
    chunks = iter([b'{"resourceType": "Observation", "note": [{"text": "', b"x" * SMALL_LIMIT, b'"}]}'])
    response = small_client.post("/fhir/Observation", content=chunks, headers=record.headers)
    assert_outcome(response, 413)


def test_body_under_the_limit_is_accepted(small_client: TestClient, record: Record) -> None:
    """The limit refuses only what exceeds it: a small Observation is still created."""
    response = small_client.post("/fhir/Observation", json=record.observation(), headers=record.headers)
    assert response.status_code == 201, response.text


def test_body_limit_is_configured_by_environment() -> None:
    """CARNET_MAX_BODY_BYTES sets Settings.max_body_bytes; a non-number stops start-up."""
    assert load({"CARNET_MAX_BODY_BYTES": "4096"}).max_body_bytes == 4096
    with pytest.raises(ConfigurationError, match="CARNET_MAX_BODY_BYTES"):
        load({"CARNET_MAX_BODY_BYTES": "4k"})


# -- resource types, resources and ids -------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/fhir/Foo/1"),
        ("GET", "/fhir/Foo?patient=x"),
        ("GET", "/fhir/Bundle/1"),
        ("DELETE", "/fhir/Foo/1"),
    ],
)
def test_unknown_resource_type_is_404(client: TestClient, record: Record, method: str, path: str) -> None:
    """A type the server does not serve is 404 not-found on every interaction."""
    issue = assert_outcome(client.request(method, path, headers=record.headers), 404)
    assert issue["code"] == "not-found"


def test_create_of_unknown_resource_type_is_404(client: TestClient, record: Record) -> None:
    """Posting a resource of an unknown type to its own URL is 404, like every other interaction."""
    response = client.post("/fhir/Foo", json={"resourceType": "Foo"}, headers=record.headers)
    assert_outcome(response, 404)


def test_resource_type_mismatch_with_url_is_400(client: TestClient, record: Record) -> None:
    """A body of one type sent to another type's URL is 400, on create and on update."""
    posted = client.post("/fhir/Condition", json=record.observation(), headers=record.headers)
    assert "Observation" in assert_outcome(posted, 400)["diagnostics"]
    body = record.observation(id=record.observation_id)
    put = client.put(f"/fhir/Condition/{record.observation_id}", json=body, headers=record.headers)
    assert_outcome(put, 400)


def test_invalid_resource_is_422(client: TestClient, record: Record) -> None:
    """A resource that does not validate against FHIR R4 is 422 with the element named."""
    body = record.observation(status=3, effectiveDateTime="yesterday")
    issue = assert_outcome(client.post("/fhir/Observation", json=body, headers=record.headers), 422)
    assert issue["code"] == "structure"
    assert "status" in issue["diagnostics"]


def test_wrong_json_type_is_named_in_json_words(client: TestClient, record: Record) -> None:
    """A number where an object belongs is reported as "a number", never as a Python class."""
    body = record.observation(subject=3.5)
    issue = assert_outcome(client.post("/fhir/Observation", json=body, headers=record.headers), 422)
    assert "got a number" in issue["diagnostics"]


@pytest.mark.parametrize("content_type", ["text/😀", "text/é", "plain"])
def test_binary_content_type_unfit_for_a_header_is_served_as_octet_stream(
    client: TestClient, record: Record, content_type: str
) -> None:
    """A Binary whose contentType (a FHIR code: any Unicode) cannot be a header is served as octets."""
    binary = {
        "resourceType": "Binary",
        "contentType": content_type,
        "data": "Ym9uam91cg==",
        "securityContext": {"reference": f"Patient/{record.patient_id}"},
    }
    created = client.post("/fhir/Binary", json=binary, headers=record.headers)
    assert created.status_code == 201, created.text
    headers = {"Authorization": record.headers["Authorization"]}
    raw = client.get(f"/fhir/Binary/{created.json()['id']}", headers=headers)
    assert raw.status_code == 200, raw.text
    assert raw.headers["content-type"] == "application/octet-stream"
    assert raw.content == b"bonjour"


@pytest.mark.parametrize("bad_id", ["a_b", "x" * 65, "%00", "%E2%82%AC", "a%20b", "a%2Cb"])
def test_bad_id_is_400(client: TestClient, record: Record, bad_id: str) -> None:
    """An id outside FHIR's [A-Za-z0-9-.]{1,64} is 400 on read, update and delete."""
    url = f"/fhir/Observation/{bad_id}"
    assert_outcome(client.get(url, headers=record.headers), 400)
    assert_outcome(client.put(url, json=record.observation(id="x"), headers=record.headers), 400)
    assert_outcome(client.delete(url, headers=record.headers), 400)


@pytest.mark.parametrize("body_id", ["other-id", None])
def test_put_with_id_not_matching_url_is_400(client: TestClient, record: Record, body_id: str | None) -> None:
    """An update whose body id differs from the URL, or is missing, is 400."""
    body = record.observation(id=body_id) if body_id else record.observation()
    response = client.put(f"/fhir/Observation/{record.observation_id}", json=body, headers=record.headers)
    issue = assert_outcome(response, 400)
    assert issue["expression"] == ["id"]


def test_put_to_unknown_id_is_404(client: TestClient, record: Record) -> None:
    """Ids are server-assigned: an update to an id that does not exist is 404, never a create."""
    body = record.observation(id="not-created-yet")
    response = client.put("/fhir/Observation/not-created-yet", json=body, headers=record.headers)
    issue = assert_outcome(response, 404)
    assert "POST" in issue["diagnostics"]


# -- versions and preconditions ---------------------------------------------------------------


def test_stale_if_match_is_412(client: TestClient, record: Record) -> None:
    """An update with an If-Match of a superseded version is 412, and the record keeps version 2."""
    url = f"/fhir/Observation/{record.observation_id}"
    body = record.observation(id=record.observation_id, status="amended")
    first = client.put(url, json=body, headers={**record.headers, "If-Match": 'W/"1"'})
    assert first.status_code == 200, first.text
    replay = client.put(url, json=body, headers={**record.headers, "If-Match": 'W/"1"'})
    issue = assert_outcome(replay, 412)
    assert issue["code"] == "conflict"
    assert client.get(url, headers=record.headers).json()["meta"]["versionId"] == "2"


@pytest.mark.parametrize(
    "etag", [b"garbage", b'W/"x"', 'W/"²"'.encode("latin-1"), b'W/"' + b"9" * 5000 + b'"', b""]
)
def test_garbage_if_match_is_400(client: TestClient, record: Record, etag: bytes) -> None:
    """An If-Match that is not a version ETag is 400."""
    body = record.observation(id=record.observation_id)
    headers: dict[str, str | bytes] = {**record.headers, "If-Match": etag}
    response = client.put(f"/fhir/Observation/{record.observation_id}", json=body, headers=headers)
    assert_outcome(response, 400)


def test_if_none_exist_matching_two_resources_is_412(client: TestClient, record: Record) -> None:
    """A conditional create whose criteria match two resources is 412 and creates nothing."""
    second = client.post("/fhir/Observation", json=record.observation(), headers=record.headers)
    assert second.status_code == 201, second.text
    headers = {**record.headers, "If-None-Exist": f"code={LOINC}|29463-7"}
    issue = assert_outcome(client.post("/fhir/Observation", json=record.observation(), headers=headers), 412)
    assert "2" in issue["diagnostics"]
    search = client.get(f"/fhir/Observation?patient={record.patient_id}", headers=record.headers)
    assert search.json()["total"] == 2


@pytest.mark.parametrize("version", ["abc", "1.5", "²", "-1", "9" * 30])
def test_vread_of_a_version_that_is_not_a_number_is_404(
    client: TestClient, record: Record, version: str
) -> None:
    """A vread of a version that is not a (storable) number is 404: no such version exists."""
    response = client.get(
        f"/fhir/Observation/{record.observation_id}/_history/{version}", headers=record.headers
    )
    assert_outcome(response, 404)


# -- search -----------------------------------------------------------------------------------


def test_search_across_patients_is_400(client: TestClient, record: Record) -> None:
    """An Observation search without a patient is 400, explaining that the record is patient-centred."""
    issue = assert_outcome(client.get("/fhir/Observation?status=final", headers=record.headers), 400)
    assert "patient" in issue["diagnostics"]


def test_unknown_search_parameter_is_400_naming_it(client: TestClient, record: Record) -> None:
    """An unsupported search parameter is 400 not-supported, naming the parameter."""
    response = client.get(
        f"/fhir/Observation?patient={record.patient_id}&colour=blue", headers=record.headers
    )
    issue = assert_outcome(response, 400)
    assert issue["code"] == "not-supported"
    assert "colour" in issue["diagnostics"]


def test_unknown_search_parameter_with_lenient_handling_is_200(client: TestClient, record: Record) -> None:
    """With Prefer: handling=lenient the unknown parameter is ignored and reported in an outcome entry."""
    headers = {**record.headers, "Prefer": "handling=lenient"}
    response = client.get(f"/fhir/Observation?patient={record.patient_id}&colour=blue", headers=headers)
    assert response.status_code == 200, response.text
    bundle = response.json()
    outcomes = [e for e in bundle["entry"] if e["search"]["mode"] == "outcome"]
    assert [e["resource"]["resourceType"] for e in outcomes] == ["OperationOutcome"]
    assert "colour" in outcomes[0]["resource"]["issue"][0]["diagnostics"]
    assert bundle["total"] == 1


def test_unknown_modifier_is_400(client: TestClient, record: Record) -> None:
    """A modifier Carnet does not implement is 400 not-supported, naming it."""
    response = client.get(
        f"/fhir/Observation?patient={record.patient_id}&code:below=29463", headers=record.headers
    )
    issue = assert_outcome(response, 400)
    assert "code:below" in issue["diagnostics"]


@pytest.mark.parametrize(
    "value",
    [
        "yesterday",
        "2024-13",
        "2024-02-30",
        "ge",
        "gt2024-05-01T25:00",
        "9999-12-31",
        "0001-01-01T00:00+01:00",
    ],
)
def test_bad_date_value_is_400(client: TestClient, record: Record, value: str) -> None:
    """A date search value that is not a placeable FHIR date is 400 naming the value."""
    response = client.get(
        f"/fhir/Observation?patient={record.patient_id}&date={value.replace('+', '%2B')}",
        headers=record.headers,
    )
    assert assert_outcome(response, 400)["code"] == "invalid"


@pytest.mark.parametrize("value", ["ten", "-1", "1.5", "", "²", "١٠"])
def test_count_that_is_not_a_whole_number_is_400(client: TestClient, record: Record, value: str) -> None:
    """A _count that is not ASCII digits is 400."""
    response = client.get(
        f"/fhir/Observation?patient={record.patient_id}&_count={value}", headers=record.headers
    )
    issue = assert_outcome(response, 400)
    assert "_count" in issue["diagnostics"]


def test_huge_count_is_capped(client: TestClient, record: Record) -> None:
    """A 5,000-digit _count is capped at the maximum page, not passed to int()."""
    response = client.get(
        f"/fhir/Observation?patient={record.patient_id}&_count={'9' * 5000}", headers=record.headers
    )
    assert response.status_code == 200, response.text
    assert response.json()["total"] == 1


def test_search_post_takes_a_form(client: TestClient, record: Record) -> None:
    """POST _search reads form parameters (no python-multipart needed) and refuses a JSON body."""
    form = {**record.headers, "Content-Type": "application/x-www-form-urlencoded"}
    found = client.post("/fhir/Observation/_search", content=f"patient={record.patient_id}", headers=form)
    assert found.status_code == 200, found.text
    assert found.json()["total"] == 1
    refused = client.post("/fhir/Observation/_search", content=b"{}", headers=record.headers)
    assert_outcome(refused, 400)


@pytest.mark.parametrize("query", ["patient=a/b", "patient=_index", "_count=²", "_since=never", "colour=red"])
def test_bad_history_parameters_are_400(client: TestClient, record: Record, query: str) -> None:
    """A type history with a malformed patient, _count, _since or an unknown parameter is 400."""
    assert_outcome(client.get(f"/fhir/Observation/_history?{query}", headers=record.headers), 400)


# -- routes and methods -----------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/nowhere", "/fhir/Observation/x/y/z/w", "/fhir//Observation"])
def test_unknown_route_is_404(client: TestClient, record: Record, path: str) -> None:
    """A path that is no endpoint is 404 with an OperationOutcome."""
    assert_outcome(client.get(path, headers=record.headers), 404)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PATCH", "/fhir/metadata"),
        ("DELETE", "/fhir/metadata"),
        ("PUT", "/fhir/metadata"),
        ("PUT", "/fhir/Observation/x/_history"),
    ],
)
def test_wrong_method_is_405(client: TestClient, record: Record, method: str, path: str) -> None:
    """A method an endpoint does not take is 405 with an OperationOutcome."""
    assert_outcome(client.request(method, path, headers=record.headers), 405)


@pytest.mark.parametrize("kind", ["transaction-response", "searchset", None])
def test_bundle_that_is_not_a_transaction_or_batch_is_400(
    client: TestClient, record: Record, kind: str | None
) -> None:
    """POST /fhir takes only transaction and batch Bundles."""
    response = client.post("/fhir", json={"resourceType": "Bundle", "type": kind}, headers=record.headers)
    assert_outcome(response, 400)


@pytest.mark.parametrize(
    "entry",
    [
        {},
        {"request": "GET"},
        {"request": {"method": "PATCH", "url": "Patient/x"}},
        {"request": {"method": "POST"}},
    ],
)
def test_malformed_bundle_entry_is_400(client: TestClient, record: Record, entry: dict[str, Any]) -> None:
    """A transaction entry without a usable request is 400 naming the entry."""
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [entry]}
    issue = assert_outcome(client.post("/fhir", json=bundle, headers=record.headers), 400)
    assert "Entry 0" in issue["diagnostics"]


# -- who is asking ----------------------------------------------------------------------------


def _expired_token(settings: Settings) -> str:
    return issue_token(
        settings,
        {"kind": "patient", "sub": "patient:late"},
        now=datetime.now(UTC) - timedelta(hours=2),
        lifetime=timedelta(hours=1),
    )


@pytest.mark.parametrize("token", ["none", "not-bearer", "garbage", "expired", "alien-kind"])
def test_missing_or_invalid_token_is_401(
    client: TestClient, record: Record, settings: Settings, auth: Mint, token: str
) -> None:
    """No token, a malformed one, an expired one or an unknown actor kind is 401 with WWW-Authenticate."""
    headers = {
        "none": {},
        "not-bearer": {"Authorization": "Basic dXNlcjpwYXNz"},
        "garbage": {"Authorization": "Bearer not.a.jwt"},
        "expired": {"Authorization": f"Bearer {_expired_token(settings)}"},
        "alien-kind": {"Authorization": auth(kind="alien")["Authorization"]},
    }[token]
    response = client.get(f"/fhir/Observation/{record.observation_id}", headers=headers)
    issue = assert_outcome(response, 401)
    assert issue["code"] == "login"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_anonymous_bad_body_is_401_not_400(client: TestClient) -> None:
    """An anonymous caller learns nothing about its body: authentication is checked first."""
    response = client.post("/fhir/Observation", content=b"{bad", headers={"Content-Type": "application/json"})
    assert_outcome(response, 401)


def test_employer_is_403_on_read_but_metadata_is_public(
    client: TestClient, record: Record, auth: Mint
) -> None:
    """An employer token is refused with 403 on a read, whether or not the resource exists."""
    employer = auth(kind="employer")
    assert client.get("/fhir/metadata", headers=employer).status_code == 200
    existing = client.get(f"/fhir/Observation/{record.observation_id}", headers=employer)
    assert assert_outcome(existing, 403)["code"] == "forbidden"
    assert_outcome(client.get("/fhir/Observation/does-not-exist", headers=employer), 403)
    assert_outcome(client.get(f"/fhir/Patient/{record.patient_id}/$everything", headers=employer), 403)
