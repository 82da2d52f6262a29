"""Hypothesis strategies shared by the property tests.

Sections, each usable on its own:

* **Vocabulary** — resource types, FHIR ids, version ids: valid, invalid and hostile values.
* **JSON** — arbitrary JSON values, JSON-ish text, raw bytes, nesting bombs.
* **Resources** — FHIR-looking resources of several types, and mutations that break them.
* **Bundles** — transaction and batch Bundles with ``urn:uuid`` references and broken entries.
* **URLs** — paths under ``/fhir`` and query strings, percent-encoded or raw.
* **Requests** — whole HTTP requests for the API fuzzer (:func:`api_requests`), aimed at a
  :class:`World` (the ids and tokens that exist on the server under test).

Strategies that need to aim at existing data take a :class:`World`; the others take nothing.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from hypothesis import strategies as st

INS = "urn:oid:1.2.250.1.213.1.4.10"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
RPPS = "urn:oid:1.2.250.1.71.4.2.1"

# -- Vocabulary -------------------------------------------------------------------------------------

#: Types Carnet stores, record (compartment) and directory types alike.
VALID_TYPES = (
    "Patient",
    "Observation",
    "Condition",
    "Encounter",
    "MedicationRequest",
    "AllergyIntolerance",
    "Immunization",
    "DocumentReference",
    "Procedure",
    "DiagnosticReport",
    "Consent",
    "Practitioner",
    "Organization",
    "Location",
    "Medication",
)
#: Names that are not types Carnet serves: unknown, mis-cased, R4-but-unsupported, path words.
INVALID_TYPES = (
    "Foo",
    "patient",
    "OBSERVATION",
    "Bundle",
    "OperationOutcome",
    "Parameters",
    "MedicinalProduct",
    "_history",
    "_search",
    "$everything",
    "metadata",
    "Observation ",
    "Patient.",
)

_ID_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-."
#: Strings that are not FHIR ids: wrong characters, too long, traversal, control and wide characters.
HOSTILE_IDS = (
    "a_b",
    "x" * 65,
    "..",
    ".",
    "a/b",
    "a b",
    "%00",
    "\x00",
    "é",
    "😀",
    "'; DROP TABLE resources; --",
    "_directory",
    "_index",
    "Patient/1",
    "1,2",
    "a|b",
    "-1",
    "9" * 40,
)

valid_ids = st.text(alphabet=_ID_CHARS, min_size=1, max_size=64)
hostile_ids = st.sampled_from(HOSTILE_IDS) | st.text(max_size=70)
resource_types = st.sampled_from(VALID_TYPES) | st.sampled_from(INVALID_TYPES) | st.text(max_size=12)
version_ids = (
    st.integers(0, 5).map(str)
    | st.sampled_from(["abc", "1.5", "-1", "²", "١", "0001", "9" * 30, "9" * 5000, "2147483648", ""])
    | st.text(max_size=8)
)
printable_ascii = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40)

# -- JSON -------------------------------------------------------------------------------------------

#: Keys FHIR resources use, so random objects sometimes land on real elements.
FHIR_KEYS = (
    "resourceType",
    "id",
    "meta",
    "text",
    "extension",
    "identifier",
    "status",
    "code",
    "coding",
    "system",
    "value",
    "subject",
    "patient",
    "reference",
    "effectiveDateTime",
    "period",
    "start",
    "end",
    "valueQuantity",
    "valueInteger",
    "category",
    "name",
    "contained",
    "entry",
    "request",
    "resource",
    "fullUrl",
    "url",
    "method",
)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(["", "Patient/", "urn:uuid:", "2024-02-30", "1e999", "\u0000", "\ud7ff"])
)
json_keys = st.sampled_from(FHIR_KEYS) | st.text(max_size=10)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(json_keys, children, max_size=4),
    max_leaves=12,
)


@st.composite
def nesting_bombs(draw: st.DrawFn) -> bytes:
    """JSON nested from a few levels to far past any recursion limit."""
    depth = draw(st.sampled_from([50, 99, 100, 101, 150, 300, 999, 1000, 5000, 20_000]))
    opener, closer = draw(st.sampled_from([(b"[", b"]"), (b'{"a":', b"}"), (b'{"extension":[', b"]}")]))
    inner = b"1" if opener == b'{"a":' else b""
    return opener * depth + inner + closer * depth


#: Number literals at and past the edges of Python and orjson.
NUMBER_LITERALS = (
    "9" * 19,
    "-" + "9" * 30,
    "9" * 5000,
    "1e999999",
    "-0",
    "0.0000000000000000000001",
    "NaN",
    "Infinity",
    "-Infinity",
    "1E400",
    "2147483648",
)


@st.composite
def jsonish_text(draw: st.DrawFn) -> bytes:
    """Text that is almost JSON: valid JSON cut short, spliced with bytes, or with a hostile literal."""
    value = draw(json_values)
    text = json.dumps(value).encode()
    how = draw(st.sampled_from(["truncate", "splice", "literal", "duplicate-key", "bom"]))
    if how == "truncate" and text:
        return text[: draw(st.integers(0, len(text) - 1))]
    if how == "splice":
        at = draw(st.integers(0, len(text)))
        return text[:at] + draw(st.binary(min_size=1, max_size=4)) + text[at:]
    if how == "literal":
        return (
            b'{"resourceType": "Observation", "valueInteger": '
            + draw(st.sampled_from(NUMBER_LITERALS)).encode()
            + b"}"
        )
    if how == "duplicate-key":
        return b'{"resourceType": "Patient", "id": "a", "id": "b"}'
    return b"\xef\xbb\xbf" + text


# -- Resources --------------------------------------------------------------------------------------


def resource_template(resource_type: str, patient_ref: str, identifier: str) -> dict[str, Any]:
    """Return a valid-looking resource of ``resource_type`` referencing ``patient_ref``.

    Types without a template get ``{"resourceType": ...}`` plus a subject, which is rarely valid.
    """
    subject = {"reference": patient_ref}
    coding = {"coding": [{"system": LOINC, "code": "29463-7", "display": "Body weight"}]}
    templates: dict[str, dict[str, Any]] = {
        "Patient": {
            "identifier": [{"system": INS, "value": identifier}],
            "name": [{"family": "Martin", "given": ["Léa"]}],
            "gender": "female",
            "birthDate": "1984-03-09",
        },
        "Observation": {
            "status": "final",
            "category": [
                {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                            "code": "vital-signs",
                        }
                    ]
                }
            ],
            "code": coding,
            "subject": subject,
            "effectiveDateTime": "2024-05-01T08:30:00+02:00",
            "valueQuantity": {
                "value": 72.5,
                "unit": "kg",
                "system": "http://unitsofmeasure.org",
                "code": "kg",
            },
        },
        "Condition": {
            "clinicalStatus": {
                "coding": [
                    {"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}
                ]
            },
            "code": {"coding": [{"system": SNOMED, "code": "44054006"}]},
            "subject": subject,
            "onsetDateTime": "2019",
            "recordedDate": "2019-06-01",
        },
        "Encounter": {
            "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "subject": subject,
            "period": {"start": "2024-01-02T09:00:00Z", "end": "2024-01-02T09:30:00Z"},
        },
        "MedicationRequest": {
            "status": "active",
            "intent": "order",
            "medicationCodeableConcept": {
                "coding": [{"system": "http://www.whocc.no/atc", "code": "A10BA02"}]
            },
            "subject": subject,
            "authoredOn": "2024-03-01",
        },
        "AllergyIntolerance": {"patient": subject, "code": {"text": "penicillin"}},
        "Immunization": {
            "status": "completed",
            "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "207"}]},
            "patient": subject,
            "occurrenceDateTime": "2021-05-01",
        },
        "DocumentReference": {
            "status": "current",
            "subject": subject,
            "content": [{"attachment": {"contentType": "text/plain", "data": "Ym9uam91cg=="}}],
        },
        "Practitioner": {
            "identifier": [{"system": RPPS, "value": "10003456789"}],
            "name": [{"family": "Dupont"}],
        },
        "Organization": {"name": "Centre de santé", "active": True},
        "Location": {"name": "Cabinet", "status": "active"},
    }
    body = {"resourceType": resource_type, **templates.get(resource_type, {"subject": subject})}
    return copy.deepcopy(body)


@st.composite
def mutated(draw: st.DrawFn, resource: Mapping[str, Any]) -> dict[str, Any]:
    """Apply zero to three mutations: drop an element, retype one, add an unknown one, or edit deep."""
    out = copy.deepcopy(dict(resource))
    for _ in range(draw(st.integers(0, 3))):
        how = draw(st.sampled_from(["drop", "retype", "add", "deep", "type", "meta"]))
        keys = sorted(out)
        if how == "drop" and keys:
            out.pop(draw(st.sampled_from(keys)))
        elif how == "retype" and keys:
            out[draw(st.sampled_from(keys))] = draw(json_values)
        elif how == "add":
            out[draw(json_keys)] = draw(json_values)
        elif how == "deep":
            _edit_deep(draw, out)
        elif how == "type":
            out["resourceType"] = draw(resource_types | json_scalars)
        else:
            out["meta"] = draw(
                st.sampled_from([{"versionId": "99"}, {"lastUpdated": "yesterday"}, {"security": 1}])
                | json_values
            )
    return out


def _edit_deep(draw: st.DrawFn, node: dict[str, Any]) -> None:
    """Replace one value somewhere inside ``node`` (a leaf or a container)."""
    current: Any = node
    while True:
        if isinstance(current, dict) and current:
            key = draw(st.sampled_from(sorted(current)))
            child = current[key]
            if isinstance(child, dict | list) and child and draw(st.booleans()):
                current = child
                continue
            current[key] = draw(json_values)
            return
        if isinstance(current, list) and current:
            index = draw(st.integers(0, len(current) - 1))
            child = current[index]
            if isinstance(child, dict | list) and child and draw(st.booleans()):
                current = child
                continue
            current[index] = draw(json_values)
            return
        return


# -- World: what exists on the server under test ------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class World:
    """The ids and credentials a fuzzer aims at.

    ``authorizations`` maps a label ("patient-A", "employer", "expired"…) to the value of the
    Authorization header, or None to send none.
    """

    patient_ids: tuple[str, ...]
    resources: tuple[tuple[str, str], ...]
    identifiers: tuple[str, ...]
    authorizations: Mapping[str, str | None] = field(default_factory=dict)


def patient_refs(world: World) -> st.SearchStrategy[str]:
    """References a resource might use for its patient: existing, unknown, urn:uuid, or junk."""
    return (
        st.sampled_from(world.patient_ids).map(lambda pid: f"Patient/{pid}")
        | valid_ids.map(lambda rid: f"Patient/{rid}")
        | st.uuids().map(lambda u: f"urn:uuid:{u}")
        | st.sampled_from(
            ["Patient/", "Observation/1", "#contained", "", "Patient/a_b", "http://x/Patient/1"]
        )
    )


def ids(world: World) -> st.SearchStrategy[str]:
    """Ids to put in URLs: mostly existing ones, also fresh valid ids and hostile strings."""
    existing = [rid for _, rid in world.resources] + list(world.patient_ids)
    return st.sampled_from(existing) | valid_ids | hostile_ids


@st.composite
def resources(draw: st.DrawFn, world: World, resource_type: str | None = None) -> dict[str, Any]:
    """A resource of a valid type (or ``resource_type``), often valid, often mutated."""
    chosen = resource_type or draw(st.sampled_from(VALID_TYPES))
    body = resource_template(chosen, draw(patient_refs(world)), draw(st.sampled_from(world.identifiers)))
    if draw(st.booleans()):
        return body
    return draw(mutated(body))


# -- Bundles ----------------------------------------------------------------------------------------


@st.composite
def bundle_entries(draw: st.DrawFn, world: World, uuids: Sequence[str]) -> Any:
    """One Bundle entry: POST with a urn:uuid fullUrl, PUT, GET, DELETE, or a broken shape."""
    how = draw(st.sampled_from(["POST", "POST", "PUT", "GET", "DELETE", "broken"]))
    rtype = draw(st.sampled_from(VALID_TYPES) | resource_types)
    if how == "POST":
        ref = draw(st.sampled_from(list(uuids)) | patient_refs(world))
        resource = resource_template(rtype, ref, draw(st.sampled_from(world.identifiers)))
        if draw(st.booleans()):
            resource = draw(mutated(resource))
        entry: dict[str, Any] = {"request": {"method": "POST", "url": rtype}, "resource": resource}
        if draw(st.booleans()):
            entry["fullUrl"] = draw(st.sampled_from(list(uuids)))
        if draw(st.integers(0, 4)) == 0:
            entry["request"]["ifNoneExist"] = draw(query_strings(world))
        return entry
    if how == "PUT":
        rid = draw(ids(world))
        resource = draw(resources(world, rtype if rtype in VALID_TYPES else None))
        resource["id"] = draw(st.just(rid) | json_scalars)
        entry = {"request": {"method": "PUT", "url": f"{rtype}/{rid}"}, "resource": resource}
        if draw(st.booleans()):
            entry["request"]["ifMatch"] = draw(if_match_values)
        return entry
    if how == "GET":
        target = draw(st.sampled_from(["read", "search", "vread", "junk"]))
        if target == "read":
            url = f"{rtype}/{draw(ids(world))}"
        elif target == "search":
            url = f"{rtype}?{draw(query_strings(world))}"
        elif target == "vread":
            url = f"{rtype}/{draw(ids(world))}/_history/{draw(version_ids)}"
        else:
            url = draw(printable_ascii)
        return {"request": {"method": "GET", "url": url}}
    if how == "DELETE":
        return {"request": {"method": "DELETE", "url": f"{rtype}/{draw(ids(world))}"}}
    return draw(
        json_values
        | st.fixed_dictionaries({"request": json_values})
        | st.fixed_dictionaries(
            {
                "request": st.fixed_dictionaries({"method": json_scalars, "url": json_scalars}),
                "resource": json_values,
            }
        )
    )


@st.composite
def bundles(draw: st.DrawFn, world: World) -> dict[str, Any]:
    """A Bundle, mostly transaction or batch, whose entries reference each other by urn:uuid."""
    uuids = [f"urn:uuid:{u}" for u in draw(st.lists(st.uuids(), min_size=1, max_size=3))]
    kind = draw(st.sampled_from(["transaction", "batch"]) | json_scalars)
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": kind}
    bundle["entry"] = draw(st.lists(bundle_entries(world, uuids), max_size=5) | json_values)
    return bundle if draw(st.integers(0, 5)) else draw(mutated(bundle))


# -- URLs -------------------------------------------------------------------------------------------

#: Characters that quote() may leave raw, so both encoded and raw forms reach the server.
_SAFE_SETS = ("", "|,:", "$:@!*'()+,;=", "/", "|,:%")


def _encode(draw: st.DrawFn, text: str) -> str:
    return quote(text, safe=draw(st.sampled_from(_SAFE_SETS)))


@st.composite
def paths(draw: st.DrawFn, world: World) -> str:
    """A path under /fhir: the API's own shapes with valid and invalid parts, or random segments."""
    rtype = draw(resource_types)
    rid = draw(ids(world))
    shape = draw(
        st.sampled_from(
            [
                [],
                ["metadata"],
                [rtype],
                [rtype, rid],
                [rtype, rid, "_history"],
                [rtype, rid, "_history", draw(version_ids)],
                [rtype, "_history"],
                [rtype, "_search"],
                ["Patient", rid, "$everything"],
                [rtype, rid, "$everything"],
            ]
        )
        | st.lists(
            st.sampled_from(["_history", "$everything", "_search", "metadata", rtype, rid])
            | st.text(max_size=6),
            max_size=6,
        )
    )
    path = "/fhir" + "".join("/" + _encode(draw, segment) for segment in shape)
    suffix = draw(st.sampled_from(["", "", "", "/", "//", "/."]))
    return path + suffix


#: Search, history and result parameter names, with the names Carnet does not implement.
PARAM_NAMES = (
    "patient",
    "subject",
    "code",
    "category",
    "status",
    "date",
    "identifier",
    "clinical-status",
    "onset-date",
    "_id",
    "_lastUpdated",
    "_count",
    "_offset",
    "_sort",
    "_summary",
    "_total",
    "_format",
    "_pretty",
    "_since",
    "_elements",
    "_include",
    "_revinclude",
    "_has",
    "colour",
)
MODIFIERS = ("", "", "", ":missing", ":exact", ":not", ":text", ":Patient", ":below", ":in", ":")
DATE_PREFIXES = ("", "eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap", "xx")
DATES = (
    "2024",
    "2024-05",
    "2024-05-01",
    "2024-05-01T08:30",
    "2024-05-01T08:30:00Z",
    "2024-05-01T08:30:00.123+02:00",
    "0001-01-01",
    "0001-01-01T00:00:00+01:00",
    "9999",
    "9999-12",
    "9999-12-31",
    "9999-12-31T23:59:59-01:00",
    "2024-13",
    "2024-02-30",
    "2024-05-01T25:00",
    "yesterday",
    "",
)


def param_values(world: World) -> st.SearchStrategy[str]:
    """Values for any parameter: references, dates with prefixes, tokens, numbers, or anything."""
    dates = st.tuples(st.sampled_from(DATE_PREFIXES), st.sampled_from(DATES)).map("".join)
    token = st.sampled_from(
        [f"{LOINC}|29463-7", "29463-7", f"{INS}|", "|final", "final,amended", "a|b|c", ",", "|"]
    )
    numbers = st.sampled_from(
        ["0", "1", "10", "1000", "1001", "-1", "1.5", "²", "١٠", "9" * 5000, "0" * 30 + "7"]
    )
    sorts = st.sampled_from(["_lastUpdated", "-_lastUpdated", "date", "-date", "_id", "code", "-", ","])
    return (
        patient_refs(world)
        | st.sampled_from(world.patient_ids)
        | dates
        | token
        | numbers
        | sorts
        | st.sampled_from(["count", "true", "false", "accurate", "json", "xml", "text/html"])
        | st.text(max_size=12)
    )


@st.composite
def query_strings(draw: st.DrawFn, world: World) -> str:
    """A query string of zero to six parameters, encoded strictly, loosely or not at all."""
    pairs = draw(
        st.lists(
            st.tuples(
                st.tuples(st.sampled_from(PARAM_NAMES) | st.text(max_size=6), st.sampled_from(MODIFIERS)).map(
                    "".join
                ),
                param_values(world),
            ),
            max_size=6,
        )
    )
    parts = []
    for name, value in pairs:
        shape = draw(st.sampled_from(["pair", "pair", "pair", "bare", "empty", "double"]))
        if shape == "bare":
            parts.append(_encode(draw, name))
        elif shape == "empty":
            parts.append(_encode(draw, name) + "=")
        elif shape == "double":
            parts.append(f"{_encode(draw, name)}={_encode(draw, value)}={_encode(draw, value)}")
        else:
            parts.append(f"{_encode(draw, name)}={_encode(draw, value)}")
    return draw(st.sampled_from(["&", "&&", ";"])).join(parts) if parts else ""


# -- Requests ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class FuzzRequest:
    """One HTTP request to send: ``who`` labels the credentials used, for reports."""

    method: str
    url: str
    who: str
    headers: tuple[tuple[str, str], ...]
    content: bytes | None

    def describe(self) -> str:
        """A one-line summary for failure reports (the token itself is left out)."""
        shown = {k: v for k, v in self.headers if k != "Authorization"}
        body = "" if self.content is None else f" body={self.content[:300]!r}"
        return f"{self.method} {self.url[:300]} as {self.who} headers={shown}{body}"


METHODS = ("GET", "GET", "GET", "POST", "POST", "POST", "PUT", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS")
CONTENT_TYPES = (
    "application/fhir+json",
    "application/fhir+json",
    "application/json",
    "application/json+fhir; charset=utf-8",
    "application/x-www-form-urlencoded",
    "text/plain",
    "multipart/form-data; boundary=x",
    "application/fhir+xml",
    "",
)
if_match_values = (
    st.sampled_from(['W/"1"', 'W/"2"', "1", 'W/"99"', "*", "garbage", 'W/""', 'W/"' + "9" * 40 + '"'])
    | printable_ascii
)
PREFER_VALUES = (
    "handling=lenient",
    "handling=strict",
    "return=minimal",
    "return=representation",
    "return=OperationOutcome",
    "handling=lenient, return=minimal",
)


def _as_json(value: Any) -> bytes:
    return json.dumps(value).encode()


def bodies(world: World, resource_type: str | None = None) -> st.SearchStrategy[bytes]:
    """Request bodies: resources (valid or mutated), Bundles, random JSON, near-JSON, bytes, bombs."""
    return (
        resources(world, resource_type).map(_as_json)
        | resources(world, resource_type).map(_as_json)
        | bundles(world).map(_as_json)
        | json_values.map(_as_json)
        | jsonish_text()
        | st.binary(max_size=64)
        | nesting_bombs()
    )


@st.composite
def _headers(draw: st.DrawFn, world: World, *, with_body: bool) -> tuple[str, tuple[tuple[str, str], ...]]:
    who = draw(st.sampled_from(sorted(world.authorizations)))
    out: list[tuple[str, str]] = []
    authorization = world.authorizations[who]
    if authorization is not None:
        out.append(("Authorization", authorization))
    if with_body or draw(st.integers(0, 4)) == 0:
        content_type = draw(st.sampled_from(CONTENT_TYPES))
        if content_type:
            out.append(("Content-Type", content_type))
    if draw(st.integers(0, 3)) == 0:
        out.append(("If-Match", draw(if_match_values)))
    if draw(st.integers(0, 4)) == 0:
        out.append(("If-None-Exist", draw(query_strings(world) | printable_ascii)))
    if draw(st.integers(0, 3)) == 0:
        out.append(("Prefer", draw(st.sampled_from(PREFER_VALUES) | printable_ascii)))
    return who, tuple(out)


@st.composite
def _coherent(draw: st.DrawFn, world: World) -> tuple[str, str, bytes | None]:
    """A request shaped like a real interaction, so the fuzzer gets past routing into the service."""
    rtype = draw(st.sampled_from(VALID_TYPES))
    rid = draw(ids(world))
    interaction = draw(
        st.sampled_from(
            [
                "create",
                "update",
                "search",
                "search-post",
                "read",
                "vread",
                "history",
                "delete",
                "bundle",
                "everything",
            ]
        )
    )
    query = draw(query_strings(world))
    if interaction == "create":
        return "POST", f"/fhir/{rtype}", draw(bodies(world, rtype))
    if interaction == "update":
        resource = draw(resources(world, rtype))
        resource["id"] = rid if draw(st.integers(0, 4)) else draw(json_scalars)
        return "PUT", f"/fhir/{rtype}/{quote(rid, safe='')}", json.dumps(resource).encode()
    if interaction == "search":
        return "GET", f"/fhir/{rtype}?{query}", None
    if interaction == "search-post":
        return "POST", f"/fhir/{rtype}/_search", query.encode()
    if interaction == "read":
        return "GET", f"/fhir/{rtype}/{quote(rid, safe='')}", None
    if interaction == "vread":
        version = quote(draw(version_ids), safe="")
        return "GET", f"/fhir/{rtype}/{quote(rid, safe='')}/_history/{version}", None
    if interaction == "history":
        return "GET", f"/fhir/{rtype}/_history?{query}", None
    if interaction == "delete":
        return "DELETE", f"/fhir/{rtype}/{quote(rid, safe='')}", None
    if interaction == "everything":
        return "GET", f"/fhir/Patient/{quote(rid, safe='')}/$everything?{query}", None
    return "POST", "/fhir", json.dumps(draw(bundles(world))).encode()


@st.composite
def _chaotic(draw: st.DrawFn, world: World) -> tuple[str, str, bytes | None]:
    """Any method on any path under /fhir, with any query and any body."""
    method = draw(st.sampled_from(METHODS))
    url = draw(paths(world))
    query = draw(query_strings(world))
    if query:
        url += "?" + query
    content = draw(st.none() | bodies(world))
    return method, url, content


@st.composite
def api_requests(draw: st.DrawFn, world: World) -> FuzzRequest:
    """A whole request: coherent interactions and chaotic ones, with any credentials and headers."""
    method, url, content = draw(_coherent(world) | _chaotic(world))
    if method in ("GET", "HEAD", "OPTIONS", "DELETE") and draw(st.integers(0, 5)):
        content = None  # mostly no body where none is expected; sometimes one anyway
    who, headers = draw(_headers(world, with_body=content is not None))
    if url.endswith("_search") and content and draw(st.integers(0, 2)):
        headers = tuple((k, v) for k, v in headers if k != "Content-Type")
        headers += (("Content-Type", "application/x-www-form-urlencoded"),)
    return FuzzRequest(method=method, url=url, who=who, headers=headers, content=content)
