"""Helpers for the tests that store the external FHIR data and read it back.

JSON is parsed losslessly (``parse_float=Decimal``) and compared strictly: a decimal matches
only the same digits (``1.50`` is not ``1.5``), and ``True`` is not ``1``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx2
import orjson
from starlette.testclient import TestClient

from carnet.domain.resources import (
    SUPPORTED_TYPES,
    is_compartment_type,
    patient_references,
)
from paths import EXTERNAL

SYNTHEA_BUNDLES = EXTERNAL / "synthea-fhir-r4-smart" / "bundles"
HL7_EXAMPLES = EXTERNAL / "hl7-fhir-r4-examples" / "resources"

#: The identifier system of the records the tests open for themselves.
TEST_SYSTEM = "urn:carnet:test"

#: Server-set fields of ``meta``; the rest of ``meta`` is kept as submitted.
SERVER_META = ("versionId", "lastUpdated")

Mint = Callable[..., dict[str, str]]


def loads(data: bytes | str) -> Any:
    """Parse JSON keeping decimals exact."""
    return json.loads(data, parse_float=Decimal)


def load(path: Path) -> Any:
    """Read a JSON file keeping decimals exact."""
    return loads(path.read_bytes())


def _decimal(value: Any) -> orjson.Fragment:
    if isinstance(value, Decimal):
        return orjson.Fragment(str(value).encode())
    raise TypeError(f"{type(value).__name__} is not JSON")


def dumps(value: Any) -> bytes:
    """Serialise JSON, writing decimals with their own digits."""
    return orjson.dumps(value, default=_decimal)


def synthea_bundles() -> list[Path]:
    """Return every Synthea bundle file, sorted by name (the directory is listed, not globbed)."""
    return sorted(SYNTHEA_BUNDLES / name for name in SYNTHEA_BUNDLES.iterdir() if name.suffix == ".json")


def spread(paths: Sequence[Path], count: int) -> list[Path]:
    """Pick ``count`` paths evenly across a sorted list (deterministic)."""
    if count >= len(paths):
        return list(paths)
    return [paths[(i * len(paths)) // count] for i in range(count)]


def hl7_examples() -> list[Path]:
    """Return every HL7 example file, sorted by name."""
    return sorted(HL7_EXAMPLES / name for name in HL7_EXAMPLES.iterdir() if name.suffix == ".json")


def differences(expected: Any, actual: Any, path: str = "$") -> list[str]:
    """List where ``actual`` differs from ``expected`` (types strict, decimals digit for digit)."""
    if type(expected) is not type(actual):
        return [f"{path}: expected {expected!r}, got {actual!r}"]
    if isinstance(expected, dict):
        out = []
        for key in expected.keys() | actual.keys():
            if key not in actual:
                out.append(f"{path}.{key}: missing")
            elif key not in expected:
                out.append(f"{path}.{key}: unexpected {actual[key]!r}"[:300])
            else:
                out.extend(differences(expected[key], actual[key], f"{path}.{key}"))
        return out
    if isinstance(expected, list):
        if len(expected) != len(actual):
            return [f"{path}: {len(expected)} items expected, got {len(actual)}"]
        return [
            d
            for i, (e, a) in enumerate(zip(expected, actual, strict=True))
            for d in differences(e, a, f"{path}[{i}]")
        ]
    if isinstance(expected, Decimal):
        return [] if str(expected) == str(actual) else [f"{path}: expected {expected}, got {actual}"]
    return [] if expected == actual else [f"{path}: expected {expected!r}, got {actual!r}"[:300]]


def round_trip_differences(submitted: Mapping[str, Any], stored: Mapping[str, Any]) -> list[str]:
    """Compare a stored resource to what was submitted: equal but for ``id`` and server-set ``meta``."""

    def body(resource: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in resource.items() if k not in ("id", "meta")}

    def client_meta(resource: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in (resource.get("meta") or {}).items() if k not in SERVER_META}

    problems = differences(body(submitted), body(stored))
    problems += differences(client_meta(submitted), client_meta(stored), "$.meta")
    if not isinstance(stored.get("meta"), dict) or not stored["meta"].get("versionId"):
        problems.append("$.meta.versionId: missing")
    return problems


def replace_strings(node: Any, mapping: Mapping[str, str]) -> Any:
    """Return a copy of ``node`` with every string equal to a key of ``mapping`` replaced."""
    if isinstance(node, dict):
        return {k: replace_strings(v, mapping) for k, v in node.items()}
    if isinstance(node, list):
        return [replace_strings(v, mapping) for v in node]
    if isinstance(node, str):
        return mapping.get(node, node)
    return node


def point_patients_at(node: Any, patient_id: str) -> Any:
    """Return a copy with every relative ``Patient/<anything>`` reference pointing at ``patient_id``."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "reference" and isinstance(value, str) and value.startswith("Patient/"):
                out[key] = f"Patient/{patient_id}"
            else:
                out[key] = point_patients_at(value, patient_id)
        return out
    if isinstance(node, list):
        return [point_patients_at(v, patient_id) for v in node]
    return node


def walk_strings(node: Any) -> Iterator[tuple[str, str]]:
    """Yield ``(key, string)`` for every string value in a JSON tree (``key`` is the nearest property)."""
    stack: list[tuple[str, Any]] = [("", node)]
    while stack:
        key, value = stack.pop()
        if isinstance(value, dict):
            stack.extend(value.items())
        elif isinstance(value, list):
            stack.extend((key, v) for v in value)
        elif isinstance(value, str):
            yield key, value


def post(client: TestClient, url: str, body: Any, headers: Mapping[str, str]) -> httpx2.Response:
    """POST a JSON body written losslessly."""
    return client.post(url, content=dumps(body), headers=dict(headers))


def body_of(response: httpx2.Response) -> Any:
    """Parse a response body losslessly."""
    return loads(response.content)


def is_outcome(response: httpx2.Response) -> bool:
    """Tell whether a response carries an OperationOutcome with at least one issue."""
    try:
        body = body_of(response)
    except ValueError:
        return False
    return (
        isinstance(body, dict) and body.get("resourceType") == "OperationOutcome" and bool(body.get("issue"))
    )


def identifier_tokens(patient: Mapping[str, Any]) -> list[str]:
    """Return ``system|value`` of every identifier of a Patient that has both."""
    return [
        f"{ident['system']}|{ident['value']}"
        for ident in patient.get("identifier") or []
        if isinstance(ident, dict) and ident.get("system") and ident.get("value")
    ]


def open_record(client: TestClient, mint: Mint, **fields: Any) -> tuple[str, dict[str, str]]:
    """Create a fresh Patient as its patient; return its id and that patient's headers."""
    value = uuid.uuid4().hex
    headers = mint(kind="patient", identifier=f"{TEST_SYSTEM}|{value}")
    patient = {"resourceType": "Patient", "identifier": [{"system": TEST_SYSTEM, "value": value}], **fields}
    response = post(client, "/fhir/Patient", patient, headers)
    assert response.status_code == 201, response.text
    return str(body_of(response)["id"]), headers


# -- Synthea ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredBundle:
    """A Synthea bundle as the server stored it."""

    name: str
    patient_id: str
    headers: dict[str, str]
    #: ``(resource type, server id)`` → the submitted resource with references resolved.
    expected: dict[tuple[str, str], dict[str, Any]]


def store_synthea(client: TestClient, mint: Mint, path: Path) -> StoredBundle:
    """POST one Synthea transaction bundle as its patient; map its urn:uuid references to server ids."""
    bundle = load(path)
    entries = bundle["entry"]
    patient = next(e["resource"] for e in entries if e["resource"]["resourceType"] == "Patient")
    headers = mint(kind="patient", identifier=identifier_tokens(patient)[0])
    response = post(client, "/fhir", bundle, headers)
    assert response.status_code == 200, f"{path.name}: {response.status_code} {response.text[:500]}"
    reply = body_of(response)
    assert reply["type"] == "transaction-response"
    assert len(reply["entry"]) == len(entries)
    mapping: dict[str, str] = {}
    placed: list[tuple[str, str]] = []
    for sent, answer in zip(entries, reply["entry"], strict=True):
        assert answer["response"]["status"].startswith("201"), answer
        rtype, rid, history, version = answer["response"]["location"].split("/")
        assert (rtype, history, version) == (sent["resource"]["resourceType"], "_history", "1")
        mapping[sent["fullUrl"]] = f"{rtype}/{rid}"
        placed.append((rtype, rid))
    expected = {
        key: replace_strings(sent["resource"], mapping) for key, sent in zip(placed, entries, strict=True)
    }
    patient_id = next(rid for rtype, rid in placed if rtype == "Patient")
    return StoredBundle(name=path.name, patient_id=patient_id, headers=headers, expected=expected)


def everything_differences(client: TestClient, stored: StoredBundle) -> list[str]:
    """Read a stored bundle's record with ``$everything``; list every difference from what was sent."""
    response = client.get(f"/fhir/Patient/{stored.patient_id}/$everything", headers=stored.headers)
    if response.status_code != 200:
        return [f"{stored.name}: $everything answered {response.status_code} {response.text[:300]}"]
    found = {
        (e["resource"]["resourceType"], e["resource"]["id"]): e["resource"]
        for e in body_of(response)["entry"]
    }
    problems = [f"{stored.name}: {key} not returned" for key in stored.expected.keys() - found.keys()]
    problems += [
        f"{stored.name}: {key} returned but not sent" for key in found.keys() - stored.expected.keys()
    ]
    for key in stored.expected.keys() & found.keys():
        problems += [
            f"{stored.name} {key}: {d}" for d in round_trip_differences(stored.expected[key], found[key])
        ]
    return problems


# -- HL7 examples -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class PostedExample:
    """One HL7 example as posted, with the server's answer."""

    name: str
    resource_type: str
    #: The resource as posted (references to Patients rewritten to the record's id).
    sent: dict[str, Any]
    headers: dict[str, str]
    response: httpx2.Response
    #: True when the example had no usable identifier and one was added to open the record.
    identifier_added: bool = False

    @property
    def is_journal(self) -> bool:
        """An AuditEvent: only Carnet's journal writes them (405 for a client)."""
        return self.resource_type == "AuditEvent"

    @property
    def must_be_refused(self) -> bool:
        """A clinical resource whose compartment paths cite no local Patient has no record to go in."""
        return (
            self.resource_type != "Patient"
            and is_compartment_type(self.resource_type)
            and not any(patient_references(self.sent))
        )


def storable_examples() -> list[Path]:
    """Return the non-Bundle HL7 examples of a type the server stores."""
    out = []
    for path in hl7_examples():
        resource_type = path.name.split("-", 1)[0]
        if resource_type != "Bundle" and resource_type in SUPPORTED_TYPES:
            out.append(path)
    return out


def post_example(client: TestClient, mint: Mint, path: Path, taken: set[str]) -> PostedExample:
    """POST one HL7 example into a record of its own (a Patient example *is* the record).

    ``taken`` holds the identifiers of records already opened: two examples share an SSN, and
    an identifier opens one record only, so the second uses another of its identifiers, or a new one.
    """
    resource = load(path)
    resource_type = resource["resourceType"]
    added = False
    if resource_type == "Patient":
        tokens = [t for t in identifier_tokens(resource) if t not in taken]
        token = tokens[0] if tokens else None
        if token is None:
            added = True
            value = uuid.uuid4().hex
            resource = {
                **resource,
                "identifier": [*resource.get("identifier", []), {"system": TEST_SYSTEM, "value": value}],
            }
            token = f"{TEST_SYSTEM}|{value}"
        taken.add(token)
        headers = mint(kind="patient", identifier=token)
        sent = resource
    else:
        patient_id, headers = open_record(client, mint)
        sent = point_patients_at(resource, patient_id)
    response = post(client, f"/fhir/{resource_type}", sent, headers)
    return PostedExample(
        name=path.name,
        resource_type=resource_type,
        sent=sent,
        headers=headers,
        response=response,
        identifier_added=added,
    )
