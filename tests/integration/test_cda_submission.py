"""CDA R2 documents sent alone to ``POST /fhir/DocumentReference/$from-cda``.

Every ANS CI-SIS example (external corpus) is accepted into the record of the INS it names,
indexed from its header and returned byte for byte; examples that name the same INS go into one
record, as they would in the DMP. Idempotency, replacement, whose record, media types and size
limits are checked on a document ``carnet.synthetic`` generates, so they run without the corpus;
hostile or malformed bodies get a 4xx OperationOutcome, never a 5xx.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from carnet.api.app import Services, create_app
from carnet.feeds.cda import CDADocument, Identifier, class_code_for, parse_cda
from carnet.settings import Settings
from carnet.synthetic import generate_population
from minting import Mint
from outcomes import assert_outcome
from paths import EXTERNAL

EXAMPLES = EXTERNAL / "ans-cisis-cda-examples" / "cda"
FROM_CDA = "/fhir/DocumentReference/$from-cda"
CDA = "application/hl7-cda+xml"
URI = "urn:ietf:rfc:3986"
CLASS = "urn:oid:1.2.250.1.213.1.1.4.1"
PS_NATIONAL_ID = "urn:oid:1.2.250.1.71.4.2.1"
TEST_NIR = "urn:oid:1.2.250.1.213.1.4.10"
SMALL_LIMIT = 4096
UUID = re.compile(r"[0-9A-Fa-f]{8}-(?:[0-9A-Fa-f]{4}-){3}[0-9A-Fa-f]{12}")


def _examples() -> list[Path]:
    if not EXAMPLES.is_dir():
        return []  # the tests that use them are ``external``: deselected, with one line in the summary
    return sorted(EXAMPLES / name for name in EXAMPLES.iterdir() if name.suffix == ".xml")


def _by_ins() -> dict[str, list[Path]]:
    """Group the examples by the INS they name (``urn:oid:<root>|<extension>``)."""
    groups: dict[str, list[Path]] = {}
    for path in _examples():
        ins = parse_cda(path.read_bytes()).ins
        key = f"urn:oid:{ins.root}|{ins.extension}" if ins else "none"
        groups.setdefault(key, []).append(path)
    return groups


GROUPS = _by_ins()


@functools.cache
def _generated_cda() -> bytes:
    """A consultation note (CDA level 3, about 7 KB) from ``carnet.synthetic``."""
    patient = next(iter(generate_population(1, seed=7, documents_per_patient=1)))
    for entry in patient.bundle["entry"]:
        resource = entry["resource"]
        if resource["resourceType"] == "Binary" and resource["contentType"] == "text/xml":
            return base64.b64decode(resource["data"])
    raise AssertionError("the generated patient has no CDA document")


def _ins_of(raw: bytes) -> str:
    """The INS a CDA names, as ``urn:oid:<root>|<extension>``."""
    ins = parse_cda(raw).ins
    assert ins is not None
    return f"urn:oid:{ins.root}|{ins.extension}"


def _replacing(parent: bytes) -> bytes:
    """A new version of ``parent``: another document id, version 2, and a relatedDocument RPLC."""
    parent_id = re.search(rb'<id root="([0-9.]+)" />', parent)
    assert parent_id is not None
    child = parent.replace(parent_id.group(0), b'<id root="2.25.1234567890123456789" />', 1)
    child = child.replace(b'<versionNumber value="1" />', b'<versionNumber value="2" />', 1)
    related = b'<relatedDocument typeCode="RPLC"><parentDocument>%s</parentDocument></relatedDocument>'
    return child.replace(b"<component>", related % parent_id.group(0) + b"<component>", 1)


def _open_record(client: TestClient, auth: Mint, ins: str) -> dict[str, str]:
    """Open the record of ``ins`` as its patient; return that patient's headers for a CDA body."""
    system, value = ins.split("|")
    headers = auth(kind="patient", identifier=ins)
    patient = {"resourceType": "Patient", "identifier": [{"system": system, "value": value}]}
    opened = client.post("/fhir/Patient", json=patient, headers=headers)
    assert opened.status_code == 201, opened.text
    return {**headers, "Content-Type": CDA}


def _unique_id(identifier: Identifier) -> str:
    """The XDS uniqueId of a CDA id as MHD writes it: ``root^extension``, or the root as a URI."""
    if identifier.extension:
        return f"{identifier.root}^{identifier.extension}"
    if UUID.fullmatch(identifier.root):
        return f"urn:uuid:{identifier.root.lower()}"
    return f"urn:oid:{identifier.root}"


def _codes(concept: dict[str, Any] | None) -> list[str]:
    return [coding["code"] for coding in (concept or {}).get("coding", [])]


def _metadata_problems(cda: CDADocument, raw: bytes, document: dict[str, Any]) -> list[str]:
    """List where a DocumentReference does not say what the CDA header says."""
    assert cda.id is not None
    assert cda.code is not None
    expected: dict[str, Any] = {
        "masterIdentifier": {"system": URI, "value": _unique_id(cda.id)},
        "status": "current",
        "type": [cda.code.code],
        "category": [str(class_code_for(cda.code.code, cda.code.code_system))],
        "securityLabel": [cda.confidentiality_code.code if cda.confidentiality_code else "N"],
        "authors": [(PS_NATIONAL_ID, author.national_id) for author in cda.authors],
        "facilityType": [cda.facility_type.code] if cda.facility_type else [],
        "practiceSetting": [cda.practice_setting.code] if cda.practice_setting else [],
        "has period start": bool(cda.service_period and cda.service_period.low),
        "attachment": ("text/xml", len(raw), cda.title, cda.language_code),
    }
    context = document.get("context", {})
    attachment = document["content"][0]["attachment"]
    actual: dict[str, Any] = {
        "masterIdentifier": document.get("masterIdentifier"),
        "status": document.get("status"),
        "type": _codes(document.get("type")),
        "category": [code for concept in document.get("category", []) for code in _codes(concept)],
        "securityLabel": [code for concept in document.get("securityLabel", []) for code in _codes(concept)],
        "authors": [
            (a["identifier"]["system"], a["identifier"]["value"]) for a in document.get("author", [])
        ],
        "facilityType": _codes(context.get("facilityType")),
        "practiceSetting": _codes(context.get("practiceSetting")),
        "has period start": "start" in context.get("period", {}),
        "attachment": (
            attachment.get("contentType"),
            attachment.get("size"),
            attachment.get("title"),
            attachment.get("language"),
        ),
    }
    problems = [
        f"{key}: expected {expected[key]!r}, got {actual[key]!r}"
        for key in expected
        if expected[key] != actual[key]
    ]
    if "data" in attachment or not str(attachment.get("url", "")).startswith("Binary/"):
        problems.append("the attachment does not point to a Binary")
    return problems


def _publish(client: TestClient, headers: dict[str, str], path: Path) -> list[str]:
    """Send one example, check its metadata and read its document back; list what went wrong."""
    raw = path.read_bytes()
    cda = parse_cda(raw)
    response = client.post(FROM_CDA, content=raw, headers=headers)
    if response.status_code != 201:
        return [f"{path.name}: {response.status_code} {response.text[:300]}"]
    problems = [f"{path.name}: {p}" for p in _metadata_problems(cda, raw, response.json())]
    if (
        not response.headers.get("location", "").endswith("/_history/1")
        or response.headers.get("etag") != 'W/"1"'
    ):
        problems.append(f"{path.name}: no Location or ETag of a create")
    url = response.json()["content"][0]["attachment"].get("url", "")
    retrieved = client.get(f"/fhir/{url}", headers=headers)
    if retrieved.content != raw:
        problems.append(f"{path.name}: the document came back changed ({len(retrieved.content)} bytes)")
    if retrieved.headers.get("content-type", "").split(";")[0] != "text/xml":
        problems.append(f"{path.name}: retrieved as {retrieved.headers.get('content-type')!r}")
    return problems


# -- every example --------------------------------------------------------------------------------


@pytest.mark.external
def test_every_example_names_an_ins() -> None:
    """Each ANS example names its patient's INS, so each has a record to go to."""
    assert "none" not in GROUPS
    assert sum(len(paths) for paths in GROUPS.values()) == len(_examples()) > 0


@pytest.mark.external
@pytest.mark.parametrize(
    "ins", sorted(GROUPS), ids=lambda ins: ins.removeprefix("urn:oid:1.2.250.1.213.1.4.")
)
def test_every_example_is_published_from_its_header(client: TestClient, auth: Mint, ins: str) -> None:
    """Each example is accepted, its metadata read from its header, and its bytes returned unchanged."""
    headers = _open_record(client, auth, ins)
    problems = [problem for path in GROUPS[ins] for problem in _publish(client, headers, path)]
    assert problems == []
    patient_id = client.get(f"/fhir/Patient?identifier={ins}", headers=headers).json()["entry"][0][
        "resource"
    ]["id"]
    found = client.get(f"/fhir/DocumentReference?patient={patient_id}&_summary=count", headers=headers).json()
    assert found["total"] == len(GROUPS[ins])


# -- idempotency and replacement --------------------------------------------------------------------


def test_resubmitting_a_document_is_idempotent(client: TestClient, auth: Mint) -> None:
    """Sending the same CDA again answers 200 with the same DocumentReference and stores nothing new."""
    raw = _generated_cda()
    headers = _open_record(client, auth, _ins_of(raw))
    first = client.post(FROM_CDA, content=raw, headers=headers)
    assert first.status_code == 201, first.text
    patient_id = first.json()["subject"]["reference"].removeprefix("Patient/")
    before = client.get(f"/fhir/Patient/{patient_id}/$everything", headers=headers).json()["total"]
    again = client.post(FROM_CDA, content=raw, headers=headers)
    assert (again.status_code, again.json()["id"]) == (200, first.json()["id"])
    after = client.get(f"/fhir/Patient/{patient_id}/$everything", headers=headers).json()["total"]
    assert after == before


def test_a_replacing_document_supersedes_its_parent(client: TestClient, auth: Mint) -> None:
    """A CDA whose relatedDocument RPLC names a document of the record makes that one superseded."""
    parent = _generated_cda()
    child = _replacing(parent)
    assert parse_cda(child).replaces == parse_cda(parent).id
    headers = _open_record(client, auth, _ins_of(parent))
    older = client.post(FROM_CDA, content=parent, headers=headers)
    assert older.status_code == 201, older.text
    assert "relatesTo" not in older.json()
    newer = client.post(FROM_CDA, content=child, headers=headers)
    assert newer.status_code == 201, newer.text
    older_id = older.json()["id"]
    assert newer.json()["relatesTo"] == [
        {"code": "replaces", "target": {"reference": f"DocumentReference/{older_id}"}}
    ]
    assert client.get(f"/fhir/DocumentReference/{older_id}", headers=headers).json()["status"] == "superseded"


# -- whose record ---------------------------------------------------------------------------------


def test_a_cda_whose_ins_has_no_record_is_422(client: TestClient, auth: Mint) -> None:
    """A CDA naming an INS that opens no record is refused with 422."""
    headers = _open_record(client, auth, f"{TEST_NIR}|180000000000011")
    response = client.post(FROM_CDA, content=_generated_cda(), headers=headers)
    issue = assert_outcome(response, 422)
    assert "no record for this patient's INS" in issue["diagnostics"]


def test_someone_elses_record_is_not_found_by_its_ins(client: TestClient, auth: Mint) -> None:
    """A CDA naming another patient's INS is refused as if that record did not exist."""
    _open_record(client, auth, _ins_of(_generated_cda()))
    stranger = _open_record(client, auth, f"{TEST_NIR}|180000000000011")
    response = client.post(FROM_CDA, content=_generated_cda(), headers=stranger)
    issue = assert_outcome(response, 422)
    assert "no record for this patient's INS" in issue["diagnostics"]


def test_a_cda_without_ins_is_422(client: TestClient, auth: Mint) -> None:
    """A ClinicalDocument whose recordTarget carries no INS is refused with 422."""
    headers = {**auth(kind="patient", identifier=f"{TEST_NIR}|279035121518989"), "Content-Type": CDA}
    bare = b'<ClinicalDocument xmlns="urn:hl7-org:v3"><id root="1.2.3"/></ClinicalDocument>'
    issue = assert_outcome(client.post(FROM_CDA, content=bare, headers=headers), 422)
    assert "INS" in issue["diagnostics"]


def test_an_anonymous_caller_gets_401(client: TestClient) -> None:
    """Without a token the endpoint answers 401 before it reads the body."""
    response = client.post(FROM_CDA, content=_generated_cda(), headers={"Content-Type": CDA})
    assert_outcome(response, 401)


# -- hostile and malformed bodies -------------------------------------------------------------------

HEAD = b'<?xml version="1.0" encoding="UTF-8"?>\n'
OPEN, CLOSE = b'<ClinicalDocument xmlns="urn:hl7-org:v3">', b"</ClinicalDocument>"
LAUGHS = b"".join(
    b'<!ENTITY lol%d "%s">' % (level, b"".join(b"&lol%d;" % (level - 1) for _ in range(10)))
    for level in range(1, 10)
)
HOSTILE = {
    "xxe": HEAD
    + b'<!DOCTYPE ClinicalDocument [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    + OPEN
    + b"<title>&xxe;</title>"
    + CLOSE,
    "billion-laughs": HEAD
    + b'<!DOCTYPE ClinicalDocument [<!ENTITY lol0 "lol">'
    + LAUGHS
    + b"]>"
    + OPEN
    + b"<title>&lol9;</title>"
    + CLOSE,
    "external-dtd": HEAD + b'<!DOCTYPE ClinicalDocument SYSTEM "http://127.0.0.1:9/cda.dtd">' + OPEN + CLOSE,
    "parameter-entity": HEAD
    + b'<!DOCTYPE ClinicalDocument [<!ENTITY % remote SYSTEM "http://127.0.0.1:9/x"> %remote;]>'
    + OPEN
    + CLOSE,
    "wrong-root": HEAD + b'<Bundle xmlns="http://hl7.org/fhir"><type value="document"/></Bundle>',
    "no-namespace": HEAD + b"<ClinicalDocument><id root='1.2.3'/></ClinicalDocument>",
    "not-xml": b"this is not XML at all",
    "truncated": HEAD + OPEN + b"<title>unfinished",
    "json-declared-as-xml": b'{"resourceType": "DocumentReference", "status": "current"}',
    "utf-16": "<ClinicalDocument xmlns='urn:hl7-org:v3'/>".encode("utf-16"),
    "latin-1": b'<?xml version="1.0" encoding="ISO-8859-1"?>' + OPEN + b"<title>\xe9</title>" + CLOSE,
    "empty": b"",
}


@pytest.fixture
def caller(auth: Mint) -> dict[str, str]:
    """A patient with a record-less token, sending CDA bodies."""
    return {**auth(kind="patient", identifier=f"{TEST_NIR}|279035121518989"), "Content-Type": CDA}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_or_malformed_xml_is_422(client: TestClient, caller: dict[str, str], name: str) -> None:
    """XXE, entity expansion, DTDs, a wrong root, non-XML and non-UTF-8 bodies get a 422 OperationOutcome."""
    assert_outcome(client.post(FROM_CDA, content=HOSTILE[name], headers=caller), 422)


@pytest.mark.parametrize("content_type", ["application/json", "application/fhir+json", "text/plain", ""])
def test_a_body_that_is_not_declared_as_xml_is_400(
    client: TestClient, caller: dict[str, str], content_type: str
) -> None:
    """A JSON or untyped body is refused with 400 naming the accepted content types."""
    headers = {**caller, "Content-Type": content_type}
    response = client.post(FROM_CDA, content=b'{"resourceType": "DocumentReference"}', headers=headers)
    issue = assert_outcome(response, 400)
    assert "application/hl7-cda+xml" in issue["diagnostics"]


@pytest.mark.parametrize("media_type", ["application/xml", "text/xml; charset=utf-8", CDA])
def test_each_xml_media_type_is_accepted(client: TestClient, auth: Mint, media_type: str) -> None:
    """application/xml, text/xml and application/hl7-cda+xml bodies are all read as CDA."""
    headers = {**_open_record(client, auth, _ins_of(_generated_cda())), "Content-Type": media_type}
    response = client.post(FROM_CDA, content=_generated_cda(), headers=headers)
    assert response.status_code == 201, response.text


@pytest.fixture
def small_client(settings: Settings, services: Services) -> Iterator[TestClient]:
    """The app with a 4 KiB body limit (``CARNET_MAX_BODY_BYTES=4096``)."""
    small = dataclasses.replace(settings, max_body_bytes=SMALL_LIMIT)
    app = create_app(small, dataclasses.replace(services, settings=small))
    with TestClient(app, base_url="http://testserver") as test_client:
        yield test_client


@pytest.mark.parametrize("streamed", [False, True], ids=["content-length", "chunked"])
def test_an_oversize_document_is_413(
    small_client: TestClient, caller: dict[str, str], streamed: bool
) -> None:
    """A CDA over CARNET_MAX_BODY_BYTES is refused with 413, whether its length is declared or not."""
    raw = _generated_cda()
    assert len(raw) > SMALL_LIMIT
    content: Any = iter([raw[:SMALL_LIMIT], raw[SMALL_LIMIT:]]) if streamed else raw
    assert_outcome(small_client.post(FROM_CDA, content=content, headers=caller), 413)
