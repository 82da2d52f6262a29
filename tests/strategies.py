"""Hypothesis strategies shared by the property tests.

Sections, each usable on its own:

* **Vocabulary** — resource types, FHIR ids, version ids: valid, invalid and hostile values.
* **JSON** — arbitrary JSON values, JSON-ish text, raw bytes, nesting bombs.
* **Resources** — FHIR-looking resources of several types, and mutations that break them.
* **World** — what exists on the server under test (ids, identifiers, credentials).
* **Bundles** — transaction and batch Bundles with ``urn:uuid`` references and broken entries.
* **URLs** — paths under ``/fhir`` and query strings, percent-encoded or raw.
* **Requests** — whole HTTP requests for the API fuzzer (:func:`api_requests`).
* **Policy** — plain-valued access requests (:func:`policy_cases`) for the policy engine and its
  reference model (``tests/reference_policy.py``), restrictions of them, and their translation.

Strategies that aim at existing data take a :class:`World` and are built once per world
(``functools.cache``): building a strategy costs more than drawing from it. Inside composites,
fixed choices use :func:`pick` for the same reason.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any, TypeVar
from urllib.parse import quote

from hypothesis import strategies as st

INS = "urn:oid:1.2.250.1.213.1.4.10"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
RPPS = "urn:oid:1.2.250.1.71.4.2.1"

T = TypeVar("T")


def pick(draw: st.DrawFn, options: Sequence[T]) -> T:
    """Draw one of ``options``, like ``sampled_from`` but without building a strategy per draw."""
    return options[draw(st.integers(0, len(options) - 1))]


def one_in(draw: st.DrawFn, n: int) -> bool:
    """Draw True about once in ``n`` draws (and False for Hypothesis's simplest, all-zero choice)."""
    return draw(st.integers(0, n - 1)) == n - 1


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
    "Binary",
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
VERSION_IDS = ("abc", "1.5", "-1", "²", "١", "0001", "9" * 30, "9" * 5000, "2147483648", "")

valid_ids = st.text(alphabet=_ID_CHARS, min_size=1, max_size=64)
hostile_ids = st.sampled_from(HOSTILE_IDS) | st.text(max_size=70)
resource_types = (
    st.sampled_from(VALID_TYPES) | st.sampled_from(INVALID_TYPES) | st.text(min_size=1, max_size=12)
)
version_ids = st.integers(0, 5).map(str) | st.sampled_from(VERSION_IDS) | st.text(max_size=8)
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
    | st.sampled_from(("", "Patient/", "urn:uuid:", "2024-02-30", "1e999", "\u0000", "\ud7ff"))
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
    depth = pick(draw, (50, 99, 100, 101, 150, 300, 999, 1000, 5000, 20_000))
    opener, closer = pick(draw, ((b"[", b"]"), (b'{"a":', b"}"), (b'{"extension":[', b"]}")))
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
    "1E+400",
    "-1e400",
    "1e-400",
    "1." + "1" * 40,
    "9" * 100_000,
    "2147483648",
)


_RAW = "\x00raw:"
_RAW_MARKERS = re.compile(r'"\\u0000raw:([^"]*)"')


def raw(literal: str) -> str:
    """Mark ``literal`` to be written into the JSON bare by :func:`to_json` (NaN, 1e999999, 5,000 digits…)."""
    return _RAW + literal


def to_json(value: Any) -> bytes:
    """Serialise ``value`` as JSON, writing :func:`raw` markers as bare literals."""
    return _RAW_MARKERS.sub(lambda match: match.group(1), json.dumps(value)).encode()


def nested_extension(depth: int) -> dict[str, Any]:
    """An extension nested ``depth`` levels deep: valid FHIR, deeper than any validator recurses."""
    extension: dict[str, Any] = {"url": "http://example.org/x", "valueString": "leaf"}
    for _ in range(depth):
        extension = {"url": "http://example.org/x", "extension": [extension]}
    return extension


#: Values that a valid resource can carry to the edges of the parser, validator and serialiser.
hostile_values = (
    st.sampled_from(NUMBER_LITERALS).map(raw)
    | st.integers(min_value=2**63, max_value=2**90)
    | st.integers(min_value=-(2**90), max_value=-(2**63) - 1)
    | st.sampled_from((40, 49, 50, 51, 99, 160)).map(lambda depth: [nested_extension(depth)])
    | st.sampled_from(("9999-12-31", "0001-01-01T00:00:00+01:00", "2024-02-30", "\ud800", "\x00", "x" * 5000))
    | st.sampled_from(("a\x00b", "bell\x07", "\x1b[31m", "a\udfffb", "\ud83d", "tab\tcr\rlf\n", "\x7f\x85"))
    | st.sampled_from(("text/😀", "text/é", "text/plain\r\nX-Injected: 1", "a b", "/"))
)


@st.composite
def jsonish_text(draw: st.DrawFn) -> bytes:
    """Text that is almost JSON: valid JSON cut short, spliced with bytes, or with a hostile literal."""
    text = json.dumps(draw(json_values)).encode()
    how = pick(draw, ("truncate", "splice", "literal", "duplicate-key", "bom"))
    if how == "truncate" and text:
        return text[: draw(st.integers(0, len(text) - 1))]
    if how == "splice":
        at = draw(st.integers(0, len(text)))
        return text[:at] + draw(st.binary(min_size=1, max_size=4)) + text[at:]
    if how == "literal":
        literal = pick(draw, NUMBER_LITERALS).encode()
        return b'{"resourceType": "Observation", "valueInteger": ' + literal + b"}"
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
        "Binary": {"contentType": "text/plain", "data": "Ym9uam91cg==", "securityContext": subject},
    }
    body = {"resourceType": resource_type, **templates.get(resource_type, {"subject": subject})}
    return copy.deepcopy(body)


_resource_types_or_scalars = resource_types | json_scalars
_metas = st.sampled_from(("99", "yesterday", 1)).map(lambda v: {"versionId": v}) | json_values


def mutate(draw: st.DrawFn, resource: Mapping[str, Any]) -> dict[str, Any]:
    """Return a copy of ``resource`` with zero to three mutations drawn: drop an element, retype one,
    add an unknown one, change the type or meta, edit deep inside, or plant a hostile value."""
    out = copy.deepcopy(dict(resource))
    for _ in range(draw(st.integers(0, 3))):
        how = pick(draw, ("drop", "retype", "add", "deep", "type", "meta", "hostile", "hostile"))
        keys = sorted(out)
        if how == "drop" and keys:
            out.pop(pick(draw, keys))
        elif how == "retype" and keys:
            out[pick(draw, keys)] = draw(json_values)
        elif how == "add":
            out[draw(json_keys)] = draw(json_values)
        elif how == "deep":
            _edit_deep(draw, out, json_values)
        elif how == "hostile":
            _plant(draw, out, hostile_values)
        elif how == "type":
            out["resourceType"] = draw(_resource_types_or_scalars)
        else:
            out["meta"] = draw(_metas)
    return out


@st.composite
def mutated(draw: st.DrawFn, resource: Mapping[str, Any]) -> dict[str, Any]:
    """``resource`` with zero to three mutations (see :func:`mutate`)."""
    return mutate(draw, resource)


def _leaves(node: Any) -> list[tuple[Any, Any]]:
    """Every ``(container, key or index)`` holding a scalar inside ``node``."""
    found: list[tuple[Any, Any]] = []
    slots = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for slot, child in slots:
        found.extend(_leaves(child) if isinstance(child, dict | list) else [(node, slot)])
    return found


def _plant(draw: st.DrawFn, node: dict[str, Any], values: st.SearchStrategy[Any]) -> None:
    """Replace one scalar of ``node``, chosen evenly among all of them, with one of ``values``."""
    leaves = _leaves(node)
    if leaves:
        container, slot = pick(draw, leaves)
        container[slot] = draw(values)


def _edit_deep(draw: st.DrawFn, node: dict[str, Any], values: st.SearchStrategy[Any]) -> None:
    """Replace one value somewhere inside ``node`` (a leaf or a whole container) with one of ``values``."""
    current: Any = node
    while isinstance(current, dict | list) and current:
        slot: Any = (
            pick(draw, sorted(current)) if isinstance(current, dict) else pick(draw, range(len(current)))
        )
        child = current[slot]
        if isinstance(child, dict | list) and child and draw(st.booleans()):
            current = child
            continue
        current[slot] = draw(values)
        return


# -- World ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class World:
    """The ids and credentials a fuzzer aims at (hashable, so strategies are built once per world).

    ``authorizations`` pairs a label ("patient-A", "employer", "expired"…) with the value of the
    Authorization header, or None to send none. The first pair is the *primary* credential, the
    holder of ``patient_ids[0]``: strategies favour it, and that record, so that a good share of
    requests get past authentication and policy into the store.
    """

    patient_ids: tuple[str, ...]
    resources: tuple[tuple[str, str], ...]
    identifiers: tuple[str, ...]
    authorizations: tuple[tuple[str, str | None], ...]
    created: Created = field(default_factory=lambda: Created(), compare=False)


class Created:
    """The ``(type, id)`` of resources created while fuzzing, so later requests aim at them too.

    The fuzzer adds to it as the server answers; strategies read it when they draw. Compared and
    hashed by identity, so a :class:`World` holding one stays hashable.
    """

    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []

    def add(self, resource_type: str, resource_id: str) -> None:
        """Remember one created resource."""
        self.items.append((resource_type, resource_id))

    def recent(self, count: int = 16) -> Sequence[tuple[str, str]]:
        """The last ``count`` created, where the fuzzer's latest edge cases are."""
        return self.items[-count:]


#: A path segment standing for "a resource created this run": strategies cannot look at what was
#: created (Hypothesis requires that what is drawn never depends on outside state), so they draw
#: ``/@created/<n>`` and the sender resolves it with :func:`resolve_created`.
CREATED = "@created"
_CREATED_PATH = re.compile(rf"/{CREATED}/(\d+)")


def resolve_created(url: str, world: World) -> str:
    """Replace ``/@created/<n>`` in ``url`` with the type and id of a recently created resource."""
    pool = world.created.recent() or world.resources
    return _CREATED_PATH.sub(lambda match: "/{}/{}".format(*pool[int(match.group(1)) % len(pool)]), url)


_other_refs = (
    valid_ids.map(lambda rid: f"Patient/{rid}")
    | st.uuids().map(lambda u: f"urn:uuid:{u}")
    | st.sampled_from(("Patient/", "Observation/1", "#contained", "", "Patient/a_b", "http://x/Patient/1"))
)


@st.composite
def _patient_refs(draw: st.DrawFn, world: World) -> str:
    how = draw(st.integers(0, 9))
    if how < 5:  # the primary record: writes there can succeed, so the fuzz reaches the store
        return f"Patient/{world.patient_ids[0]}"
    if how < 7:
        return f"Patient/{pick(draw, world.patient_ids)}"
    return draw(_other_refs)


@cache
def patient_refs(world: World) -> st.SearchStrategy[str]:
    """References to a patient: half to the primary record, some to others, the rest unknown or junk."""
    return _patient_refs(world)


@cache
def ids(world: World) -> st.SearchStrategy[str]:
    """Ids to put in URLs: mostly existing ones, also fresh valid ids and hostile strings."""
    existing = tuple(rid for _, rid in world.resources) + world.patient_ids
    return st.sampled_from(existing) | valid_ids | hostile_ids


@st.composite
def _resource_bodies(draw: st.DrawFn, world: World, resource_type: str | None) -> dict[str, Any]:
    chosen = resource_type or pick(draw, VALID_TYPES)
    body = resource_template(chosen, draw(patient_refs(world)), pick(draw, world.identifiers))
    return mutate(draw, body) if draw(st.booleans()) else body


@cache
def resources(world: World, resource_type: str | None = None) -> st.SearchStrategy[dict[str, Any]]:
    """A resource of a valid type (or of ``resource_type``): half valid, half mutated."""
    return _resource_bodies(world, resource_type)


# -- Bundles ----------------------------------------------------------------------------------------

_entry_types = st.sampled_from(VALID_TYPES) | resource_types
_broken_entries = (
    json_values
    | st.fixed_dictionaries({"request": json_values})
    | st.fixed_dictionaries(
        {
            "request": st.fixed_dictionaries({"method": json_scalars, "url": json_scalars}),
            "resource": json_values,
        }
    )
)


def _bundle_entry(draw: st.DrawFn, world: World, uuids: Sequence[str]) -> Any:
    how = pick(draw, ("POST", "POST", "PUT", "GET", "DELETE", "broken"))
    rtype = draw(_entry_types)
    if how == "POST":
        ref = pick(draw, uuids) if draw(st.booleans()) else draw(patient_refs(world))
        resource = resource_template(rtype, ref, pick(draw, world.identifiers))
        entry: dict[str, Any] = {
            "request": {"method": "POST", "url": rtype},
            "resource": mutate(draw, resource) if draw(st.booleans()) else resource,
        }
        if draw(st.booleans()):
            entry["fullUrl"] = pick(draw, uuids)
        if one_in(draw, 5):
            entry["request"]["ifNoneExist"] = draw(query_strings(world))
        return entry
    if how == "PUT":
        rid = draw(ids(world))
        resource = draw(resources(world, rtype if rtype in VALID_TYPES else None))
        resource["id"] = draw(json_scalars) if draw(st.booleans()) else rid
        entry = {"request": {"method": "PUT", "url": f"{rtype}/{rid}"}, "resource": resource}
        if draw(st.booleans()):
            entry["request"]["ifMatch"] = draw(if_match_values)
        return entry
    if how == "GET":
        target = pick(draw, ("read", "search", "vread", "junk"))
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
    return draw(_broken_entries)


@st.composite
def _bundles(draw: st.DrawFn, world: World) -> dict[str, Any]:
    uuids = [f"urn:uuid:{u}" for u in draw(st.lists(st.uuids(), min_size=1, max_size=3))]
    kind = draw(json_scalars) if one_in(draw, 4) else pick(draw, ("transaction", "batch"))
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": kind}
    if one_in(draw, 8):
        bundle["entry"] = draw(json_values)
    else:
        count = draw(st.integers(0, 5))
        bundle["entry"] = [_bundle_entry(draw, world, uuids) for _ in range(count)]
    return mutate(draw, bundle) if one_in(draw, 6) else bundle


@cache
def bundles(world: World) -> st.SearchStrategy[dict[str, Any]]:
    """A Bundle, mostly transaction or batch, whose entries reference each other by urn:uuid."""
    return _bundles(world)


# -- URLs -------------------------------------------------------------------------------------------

#: Characters quote() may leave raw, so both encoded and raw forms reach the server.
_SAFE_SETS = ("", "|,:", "$:@!*'()+,;=", "/", "|,:%")


def _encode(draw: st.DrawFn, text: str) -> str:
    return quote(text, safe=pick(draw, _SAFE_SETS))


_segments = st.sampled_from(("_history", "$everything", "_search", "metadata")) | st.text(
    min_size=1, max_size=6
)


@st.composite
def _paths(draw: st.DrawFn, world: World) -> str:
    rtype = draw(resource_types)
    rid = draw(ids(world))
    shapes: tuple[list[str], ...] = (  # the first is what Hypothesis draws most: a real shape
        [rtype, rid],
        [],
        ["metadata"],
        [rtype],
        [rtype, rid, "_history"],
        [rtype, rid, "_history", draw(version_ids)],
        [rtype, "_history"],
        [rtype, "_search"],
        ["Patient", rid, "$everything"],
        [rtype, rid, "$everything"],
    )
    if one_in(draw, 5):
        shape = [
            pick(draw, (rtype, rid)) if draw(st.booleans()) else draw(_segments)
            for _ in range(draw(st.integers(0, 6)))
        ]
    else:
        shape = pick(draw, shapes)
    path = "/fhir" + "".join("/" + _encode(draw, segment) for segment in shape)
    return path + (pick(draw, ("/", "//", "/.")) if one_in(draw, 8) else "")


@cache
def paths(world: World) -> st.SearchStrategy[str]:
    """A path under /fhir: the API's own shapes with valid and invalid parts, or random segments."""
    return _paths(world)


#: Search, history and result parameter names, with names Carnet does not implement.
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
TOKENS = (f"{LOINC}|29463-7", "29463-7", f"{INS}|", "|final", "final,amended", "a|b|c", ",", "|")
NUMBERS = ("0", "1", "10", "1000", "1001", "-1", "1.5", "²", "١٠", "9" * 5000, "0" * 30 + "7")
SORTS = ("_lastUpdated", "-_lastUpdated", "date", "-date", "_id", "code", "-", ",")
WORDS = ("count", "true", "false", "accurate", "json", "xml", "text/html")


#: The kind of value each parameter takes, so most values are of the right kind (and reach parsing).
_VALUE_KINDS = {
    "patient": "reference",
    "subject": "reference",
    "date": "date",
    "onset-date": "date",
    "_lastUpdated": "date",
    "_since": "date",
    "_count": "number",
    "_offset": "number",
    "_id": "id",
    "_sort": "sort",
    "_summary": "word",
    "_total": "word",
    "_format": "word",
    "code": "token",
    "category": "token",
    "status": "token",
    "identifier": "token",
    "clinical-status": "token",
}
_KINDS = ("reference", "id", "date", "token", "number", "sort", "word", "text")


def _param_value(draw: st.DrawFn, world: World, name: str) -> str:
    fitting = _VALUE_KINDS.get(name.partition(":")[0])
    how = pick(draw, _KINDS) if fitting is None or one_in(draw, 4) else fitting
    if how == "reference":
        return draw(patient_refs(world))
    if how == "id":
        return pick(draw, world.patient_ids)
    if how == "date":
        return pick(draw, DATE_PREFIXES) + pick(draw, DATES)
    if how == "text":
        return draw(st.text(max_size=12))
    return pick(draw, {"token": TOKENS, "number": NUMBERS, "sort": SORTS, "word": WORDS}[how])


_param_names = st.sampled_from(PARAM_NAMES) | st.text(max_size=6)


@st.composite
def _query_strings(draw: st.DrawFn, world: World) -> str:
    parts = []
    for _ in range(draw(st.integers(0, 6))):
        name = draw(_param_names) + pick(draw, MODIFIERS)
        value = _param_value(draw, world, name)
        shape = pick(draw, ("pair", "pair", "pair", "bare", "empty", "double"))
        if shape == "bare":
            parts.append(_encode(draw, name))
        elif shape == "empty":
            parts.append(_encode(draw, name) + "=")
        elif shape == "double":
            parts.append(f"{_encode(draw, name)}={_encode(draw, value)}={_encode(draw, value)}")
        else:
            parts.append(f"{_encode(draw, name)}={_encode(draw, value)}")
    return pick(draw, ("&", "&&", ";")).join(parts)


@cache
def query_strings(world: World) -> st.SearchStrategy[str]:
    """A query string of zero to six parameters, encoded strictly, loosely or not at all."""
    return _query_strings(world)


# -- Requests ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class FuzzRequest:
    """One HTTP request to send; ``who`` labels the credentials used, for reports."""

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
IF_MATCH = ('W/"1"', 'W/"2"', "1", 'W/"99"', "*", "garbage", 'W/""', 'W/"' + "9" * 40 + '"')
PREFER = (
    "handling=lenient",
    "handling=strict",
    "return=minimal",
    "return=representation",
    "return=OperationOutcome",
    "handling=lenient, return=minimal",
)
if_match_values = st.sampled_from(IF_MATCH) | printable_ascii
_prefer_values = st.sampled_from(PREFER) | printable_ascii


CDA_MEDIA_TYPES = ("application/xml", "text/xml", "application/hl7-cda+xml")
_CDA = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<ClinicalDocument xmlns="urn:hl7-org:v3"><id root="1.2.250.1.999" extension="{doc}"/>'
    '<code code="11488-4" codeSystem="2.16.840.1.113883.6.1"/><title>{title}</title>'
    '<effectiveTime value="{when}"/><confidentialityCode code="N"/>'
    '<recordTarget><patientRole><id root="1.2.250.1.213.1.4.10" extension="{ins}"/></patientRole></recordTarget>'
    "</ClinicalDocument>"
)


@st.composite
def _cda_documents(draw: st.DrawFn, world: World) -> bytes:
    text = st.text(max_size=12).map(
        lambda t: t.replace("&", "&amp;").replace("<", "&lt;").replace('"', "&quot;")
    )
    document = _CDA.format(
        doc=draw(text),
        title=draw(text),
        when=pick(draw, ("20240501", "2024", "99999999", "", "yesterday")),
        ins=pick(draw, world.identifiers) if draw(st.booleans()) else draw(text),
    ).encode()
    how = draw(st.integers(0, 5))
    if how == 1:  # cut short
        return document[: draw(st.integers(0, len(document)))]
    if how == 2:  # a few bytes spliced in
        at = draw(st.integers(0, len(document)))
        return document[:at] + draw(st.binary(min_size=1, max_size=4)) + document[at:]
    if how == 3:
        return draw(st.binary(max_size=64))
    return document


@cache
def cda_documents(world: World) -> st.SearchStrategy[bytes]:
    """CDA R2 documents naming a record's INS (or not), whole, cut short, spliced, or plain bytes."""
    return _cda_documents(world)


_junk_bodies = json_values.map(to_json) | jsonish_text() | st.binary(max_size=64) | nesting_bombs()


@st.composite
def _bodies(draw: st.DrawFn, world: World, resource_type: str | None) -> bytes:
    how = draw(st.integers(0, 9))
    if how < 5:
        return to_json(draw(resources(world, resource_type)))
    if how == 5:
        return to_json(draw(bundles(world)))
    return draw(_junk_bodies)


@cache
def bodies(world: World, resource_type: str | None = None) -> st.SearchStrategy[bytes]:
    """Request bodies: half resources (valid or mutated), some Bundles, the rest junk of every kind."""
    return _bodies(world, resource_type)


@st.composite
def _headers(
    draw: st.DrawFn, world: World, with_body: bool, coherent: bool
) -> tuple[str, tuple[tuple[str, str], ...]]:
    # Coherent requests mostly carry the primary credential, so they get past authentication.
    primary = draw(st.integers(0, 3)) < (3 if coherent else 1)
    who, authorization = world.authorizations[0] if primary else pick(draw, world.authorizations)
    out: list[tuple[str, str]] = []
    if authorization is not None:
        out.append(("Authorization", authorization))
    if with_body or one_in(draw, 5):
        content_type = CONTENT_TYPES[0] if draw(st.booleans()) else pick(draw, CONTENT_TYPES)
        if content_type:
            out.append(("Content-Type", content_type))
    if one_in(draw, 4):
        out.append(("If-Match", draw(if_match_values)))
    if one_in(draw, 5):
        out.append(
            ("If-None-Exist", draw(query_strings(world)) if draw(st.booleans()) else draw(printable_ascii))
        )
    if one_in(draw, 4):
        out.append(("Prefer", draw(_prefer_values)))
    return who, tuple(out)


#: FHIR interactions, writes weighted up: they reach validation, sealing and indexing.
INTERACTIONS = (
    "create",
    "create",
    "create-edge",
    "create-edge",
    "update",
    "update",
    "search",
    "search",
    "search-post",
    "read",
    "vread",
    "history",
    "delete",
    "bundle",
    "bundle",
    "everything",
    "from-cda",
)


@st.composite
def _coherent(draw: st.DrawFn, world: World) -> tuple[str, str, bytes | None]:
    """A request shaped like a real interaction, so the fuzzer gets past routing into the service."""
    target = draw(st.integers(0, 3))
    if target == 0:  # one created this run: resolved when sent (see resolve_created)
        path = f"/fhir/{CREATED}/{draw(st.integers(0, 15))}"
        suffix = pick(draw, ("", "/_history", "/_history/"))
        if suffix == "/_history/":
            suffix += quote(draw(version_ids), safe="")
        method = "DELETE" if suffix == "" and one_in(draw, 4) else "GET"
        return method, path + suffix, None
    if target == 1:
        rtype, rid = pick(draw, VALID_TYPES), quote(draw(ids(world)), safe="")
    else:  # one the world was seeded with, at its own type
        rtype, rid = pick(draw, world.resources)
    interaction = pick(draw, INTERACTIONS)
    if interaction == "create":
        return "POST", f"/fhir/{rtype}", draw(bodies(world, rtype))
    if interaction == "create-edge":  # valid, in the primary record, but for one hostile value
        rtype = "Observation" if draw(st.booleans()) else rtype  # its numbers, dates and codes
        body = resource_template(rtype, f"Patient/{world.patient_ids[0]}", world.identifiers[0])
        _plant(draw, body, hostile_values)
        return "POST", f"/fhir/{rtype}", to_json(body)
    if interaction == "update":
        resource = draw(resources(world, rtype))
        resource["id"] = draw(ids(world)) if one_in(draw, 5) else rid
        return "PUT", f"/fhir/{rtype}/{rid}", to_json(resource)
    if interaction == "search":
        within = "" if one_in(draw, 3) else f"patient={pick(draw, world.patient_ids)}&"
        return "GET", f"/fhir/{rtype}?{within}{draw(query_strings(world))}", None
    if interaction == "search-post":
        return "POST", f"/fhir/{rtype}/_search", draw(query_strings(world)).encode()
    if interaction == "read":
        return "GET", f"/fhir/{rtype}/{rid}", None
    if interaction == "vread":
        return "GET", f"/fhir/{rtype}/{rid}/_history/{quote(draw(version_ids), safe='')}", None
    if interaction == "history":
        return "GET", f"/fhir/{rtype}/_history?{draw(query_strings(world))}", None
    if interaction == "delete":
        return "DELETE", f"/fhir/{rtype}/{rid}", None
    if interaction == "everything":
        return "GET", f"/fhir/Patient/{rid}/$everything?{draw(query_strings(world))}", None
    if interaction == "from-cda":
        return "POST", "/fhir/DocumentReference/$from-cda", draw(cda_documents(world))
    return "POST", "/fhir", to_json(draw(bundles(world)))


@st.composite
def _chaotic(draw: st.DrawFn, world: World) -> tuple[str, str, bytes | None]:
    """Any method on any path under /fhir, with any query and any body."""
    url = draw(paths(world))
    query = draw(query_strings(world))
    content = draw(bodies(world)) if draw(st.booleans()) else None
    return pick(draw, METHODS), url + ("?" + query if query else ""), content


@st.composite
def _api_requests(draw: st.DrawFn, world: World) -> FuzzRequest:
    coherent = not one_in(draw, 3)
    method, url, content = draw(_coherent(world)) if coherent else draw(_chaotic(world))
    if method in ("GET", "HEAD", "OPTIONS", "DELETE") and not one_in(draw, 6):
        content = None  # mostly no body where none is expected; sometimes one anyway
    who, headers = draw(_headers(world, content is not None, coherent))
    # Mostly the media type each body-taking operation expects, so the body itself gets parsed.
    expected = {"_search": "application/x-www-form-urlencoded", "$from-cda": pick(draw, CDA_MEDIA_TYPES)}
    for ending, media_type in expected.items():
        if url.endswith(ending) and content and not one_in(draw, 3):
            headers = (*[(k, v) for k, v in headers if k != "Content-Type"], ("Content-Type", media_type))
    return FuzzRequest(method=method, url=url, who=who, headers=headers, content=content)


@cache
def api_requests(world: World) -> st.SearchStrategy[FuzzRequest]:
    """A whole request: coherent interactions and chaotic ones, with any credentials and headers."""
    return _api_requests(world)


# == Policy ========================================================================================
# Cases for the access policy (tests/property/test_policy_*.py). A case is made of plain values:
# the reference model (tests/reference_policy.py) reads it as it is, and :func:`engine_inputs`
# translates it for ``carnet.domain.policy.decide``. Small pools of ids make authorisations,
# blocks, authors, masks and represented patients collide often. This section imports what it
# needs itself, so that it stays self-contained (and could move to its own module as it is).

import dataclasses  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402
from importlib import resources as _resources  # noqa: E402

from carnet.domain.grants import AppGrant  # noqa: E402
from carnet.domain.policy import (  # noqa: E402
    PROFILES,
    AccessMode,
    AccessRequest,
    Action,
    Authorisation,
    AuthorisationStatus,
    DocumentFacts,
    Grants,
    Profile,
    Target,
    Visibility,
)
from carnet.domain.principal import ActorKind, Principal  # noqa: E402
from reference_policy import Actor, Case, Choices, Document, Tables  # noqa: E402

POLICY_NOW = datetime(2026, 11, 28, 12, tzinfo=UTC)
"""The instant a case's hour 0 stands for."""
PROFESSIONAL_IDS = ("810001", "810002", "810003")
PATIENT_IDS = ("pat-1", "pat-2")
FEED_IDS = ("feed-cnam", "feed-lab")
POLICY_CLASS_CODES = ("10", "11", "31", "42", "43", "44", "45", "52", "60", "90", "95")
POLICY_PROFESSIONS = ("10", "21", "40", "50", "60", "70", "80", "99", None)
POLICY_SPECIALTIES = (None, "SM54", "SM26")
POLICY_KINDS = tuple(str(kind) for kind in ActorKind)
POLICY_MODES = tuple(str(mode) for mode in AccessMode)
POLICY_ACTIONS = tuple(str(action) for action in Action)
POLICY_TYPES = (
    "DocumentReference",
    "Binary",
    "Observation",
    "Patient",
    "MedicationDispense",
    "ExplanationOfBenefit",
    "Consent",
)
VISIBILITIES = tuple(str(label) for label in Visibility)
#: Apps a patient may have connected (SMART on FHIR), and the scopes tokens and grants are drawn from:
#: v2 letters, a v1 word, ``*``, categories by code and by system|code, a context scope and another context.
APP_IDS = ("tensio", "glyco")
APP_SCOPES = (
    "patient/Observation.rs",
    "patient/Observation.cs",
    "patient/Observation.cruds",
    "patient/*.rs",
    "patient/*.read",
    "patient/*.write",
    "patient/DocumentReference.r",
    "patient/Binary.rs",
    "patient/Consent.cruds",
    "patient/Patient.r",
    "patient/Observation.rs?category=vital-signs",
    "patient/Observation.cu?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory",
    "user/Observation.rs",
    "launch/patient",
)
#: The categories of the one resource a request touches (None: a request about a type).
APP_CATEGORIES = (
    None,
    frozenset(),
    frozenset({"vital-signs", "http://terminology.hl7.org/CodeSystem/observation-category|vital-signs"}),
    frozenset({"laboratory", "http://terminology.hl7.org/CodeSystem/observation-category|laboratory"}),
)
#: Authorisation ends, in hours from now (None: no end).
UNTILS = (None, -24, -1, 0, 1, 24)
#: The modes an actor of each kind usually asks in (others are drawn now and then).
USUAL_MODES = {
    "patient": ("normal", "patient", "representative"),
    "representative": ("normal", "representative"),
    "professional": ("normal", "treating", "break_glass", "regulation"),
    "feed": ("normal", "feed"),
    "researcher": ("research",),
    "admin": ("admin", "normal"),
    "dpo": ("admin", "normal"),
}


class Dice:
    """Choices read from one drawn integer, each taking its share of it.

    A case needs a hundred small choices; drawing each from Hypothesis costs a millisecond or
    so, drawing three big integers and reading the choices from them costs almost nothing.
    Hypothesis still shrinks: smaller integers read as earlier options (0 reads as all first).
    """

    def __init__(self, value: int) -> None:
        self.value = value

    def pick(self, options: Sequence[T]) -> T:
        """Take one of ``options``."""
        self.value, index = divmod(self.value, len(options))
        return options[index]

    def one_in(self, n: int) -> bool:
        """Take True about once in ``n``."""
        return self.pick(range(n)) == 0

    def subset(self, pool: Sequence[T], n: int = 2) -> frozenset[T]:
        """Take each member of ``pool`` about once in ``n``."""
        return frozenset(item for item in pool if self.one_in(n))


_DICE_BITS = 192
_CASE_BITS = 3 * _DICE_BITS
_SEEDS = st.integers(0, 2**_DICE_BITS - 1)


def _actor(dice: Dice, kinds: Sequence[str]) -> Actor:
    weighted = [k for k in kinds for _ in range(4 if k in ("professional", "patient") else 1)]
    return Actor(
        kind=dice.pick(weighted),
        patient_id=dice.pick((*PATIENT_IDS, None)),
        professional_id=dice.pick((*PROFESSIONAL_IDS, *PROFESSIONAL_IDS, None)),
        profession=dice.pick(POLICY_PROFESSIONS),
        specialty=dice.pick(POLICY_SPECIALTIES),
        samu_regulator=dice.one_in(3),
        occupational_physician=dice.one_in(5),
        represents=dice.subset(PATIENT_IDS),
        feed_id=dice.pick((*FEED_IDS, None)),
        feed_categories=dice.subset(POLICY_CLASS_CODES),
        app_id=dice.pick((*APP_IDS, None, None, None, None, None, None)),
        app_scopes=dice.subset(APP_SCOPES, 3),
    )


def _choices(dice: Dice) -> Choices:
    feed_names = (*FEED_IDS, "10", "42", "43", "60")
    authorised = dice.subset(PROFESSIONAL_IDS)
    return Choices(
        authorisations={
            who: (dice.pick(("valid", "valid", "expired")), dice.pick(UNTILS)) for who in authorised
        },
        blocked=dice.subset(PROFESSIONAL_IDS, 4),
        treating=dice.subset(PROFESSIONAL_IDS),
        opposes_break_glass=dice.one_in(3),
        opposes_regulation=dice.one_in(3),
        refused_feeds=dice.subset(feed_names, 5),
        accepted_feeds=dice.subset(feed_names, 3),
        occupational_consent=dice.subset(PROFESSIONAL_IDS),
        apps={app: (dice.subset(APP_SCOPES, 3), dice.pick(UNTILS)) for app in dice.subset(APP_IDS, 2)},
    )


def _document(dice: Dice) -> Document:
    return Document(
        class_code=dice.pick((*POLICY_CLASS_CODES, None)),
        visibility=dice.subset(VISIBILITIES, 3),
        author_ids=dice.subset(PROFESSIONAL_IDS, 3),
        minor_secret=dice.one_in(4),
        masked_from=dice.subset(PROFESSIONAL_IDS, 5),
    )


def _case(seed: int, kinds: Sequence[str]) -> Case:
    """Read one case from a seed of :data:`_CASE_BITS` bits (actor, choices, request: a third each)."""
    who, choices, what = (Dice((seed >> (i * _DICE_BITS)) % 2**_DICE_BITS) for i in range(3))
    actor = _actor(who, kinds)
    modes = USUAL_MODES.get(actor.kind, POLICY_MODES)
    mode = what.pick(POLICY_MODES) if what.one_in(6) else what.pick(modes)
    in_directory = what.one_in(12)
    patient_id = None if in_directory or what.one_in(12) else what.pick(PATIENT_IDS)
    action, resource_type = what.pick(POLICY_ACTIONS), what.pick(POLICY_TYPES)
    opening = what.one_in(10)  # someone creating a Patient with their own identifier, outside any record
    if opening:
        patient_id, action, resource_type = patient_id if what.one_in(3) else None, "create", "Patient"
    drawn_choices = _choices(choices)
    if actor.app_id is not None and not in_directory and not opening and not what.one_in(3):
        # An app mostly asks about its own patient's record, which mostly granted it something.
        patient_id = actor.patient_id or what.pick(PATIENT_IDS)
        if "patient" in kinds and not what.one_in(4):
            actor = dataclasses.replace(actor, kind="patient", patient_id=patient_id)
            mode = what.pick(USUAL_MODES["patient"])
        grant = (what.subset(APP_SCOPES, 2), what.pick(UNTILS))
        drawn_choices = dataclasses.replace(drawn_choices, apps={**drawn_choices.apps, actor.app_id: grant})
    return Case(
        profile=what.pick(("fr-dmp", "sovereign")),
        actor=actor,
        action=action,
        mode=mode,
        patient_id=patient_id,
        resource_type=resource_type,
        choices=drawn_choices,
        in_directory=in_directory,
        opens_own_record=opening or what.one_in(6),
        record_open=not what.one_in(6),
        document=None if what.one_in(4) else _document(what),
        justification=what.pick((None, "", "  ", "arrêt cardiaque", "détresse respiratoire")),
        confirmed_by=what.pick((None, "", *PROFESSIONAL_IDS)),
        now=0,
        all_records=patient_id is None and not in_directory and what.one_in(2),
        categories=what.pick(APP_CATEGORIES),
    )


def policy_cases(kinds: Sequence[str] = POLICY_KINDS) -> st.SearchStrategy[Case]:
    """One request: an actor, usually in a mode of its kind, on a record, usually about a document."""
    return st.integers(0, 2**_CASE_BITS - 1).map(lambda seed: _case(seed, kinds))


def policy_case_batches(size: int, kinds: Sequence[str] = POLICY_KINDS) -> st.SearchStrategy[list[Case]]:
    """``size`` requests from one draw: many cases per example, as a Hypothesis example costs a millisecond."""
    seeds = st.integers(0, 2 ** (size * _CASE_BITS) - 1)
    return seeds.map(lambda seed: [_case(seed >> (i * _CASE_BITS), kinds) for i in range(size)])


@st.composite
def policy_restrictions(draw: st.DrawFn, case: Case) -> Case:
    """The same case after the patient restricted access once more (block, oppose, mask, refuse…)."""
    dice = Dice(draw(_SEEDS))
    choices, document = case.choices, case.document or Document()
    who = dice.pick(PROFESSIONAL_IDS)
    authorisations = dict(choices.authorisations)
    restriction = dice.pick(RESTRICTIONS)
    if restriction == "block":
        return _choose(case, blocked=choices.blocked | {who})
    if restriction == "oppose-break-glass":
        return _choose(case, opposes_break_glass=True)
    if restriction == "oppose-regulation":
        return _choose(case, opposes_regulation=True)
    if restriction == "refuse-feed":
        return _choose(
            case, refused_feeds=choices.refused_feeds | {dice.pick((*FEED_IDS, *POLICY_CLASS_CODES))}
        )
    if restriction == "withdraw-feed-acceptance":
        return _choose(
            case, accepted_feeds=choices.accepted_feeds - {dice.pick((*FEED_IDS, *POLICY_CLASS_CODES))}
        )
    if restriction == "withdraw-authorisation":
        authorisations.pop(who, None)
        return _choose(case, authorisations=authorisations)
    if restriction == "expire-authorisation":
        if who in authorisations:
            authorisations[who] = ("expired", authorisations[who][1])
        return _choose(case, authorisations=authorisations)
    if restriction == "withdraw-treating":
        return _choose(case, treating=choices.treating - {who})
    if restriction == "withdraw-occupational-consent":
        return _choose(case, occupational_consent=choices.occupational_consent - {who})
    if restriction == "label":
        return _label(case, document, visibility=document.visibility | {dice.pick(VISIBILITIES)})
    if restriction == "minor-secret":
        return _label(case, document, minor_secret=True)
    if restriction == "mask-by-name":
        return _label(case, document, masked_from=document.masked_from | {who})
    app = dice.pick(APP_IDS)
    apps = dict(choices.apps)
    if restriction == "revoke-app":
        apps.pop(app, None)
        return _choose(case, apps=apps)
    if restriction == "narrow-app-grant":
        if app in apps:
            scopes, until = apps[app]
            apps[app] = (scopes - {dice.pick(APP_SCOPES)}, until)
        return _choose(case, apps=apps)
    if restriction == "end-app-grant":
        if app in apps:
            apps[app] = (apps[app][0], -1)
        return _choose(case, apps=apps)
    return _replace(case, record_open=False)


#: The ways a patient restricts access (or a record closes), for "a restriction never widens".
RESTRICTIONS = (
    "block",
    "oppose-break-glass",
    "oppose-regulation",
    "refuse-feed",
    "withdraw-feed-acceptance",
    "withdraw-authorisation",
    "expire-authorisation",
    "withdraw-treating",
    "withdraw-occupational-consent",
    "label",
    "minor-secret",
    "mask-by-name",
    "revoke-app",
    "narrow-app-grant",
    "end-app-grant",
    "close-record",
)


def _replace(case: Case, **changes: Any) -> Case:
    return dataclasses.replace(case, **changes)


def _choose(case: Case, **changes: Any) -> Case:
    return _replace(case, choices=dataclasses.replace(case.choices, **changes))


def _label(case: Case, document: Document, **changes: Any) -> Case:
    return _replace(case, document=dataclasses.replace(document, **changes))


def policy_tables() -> Tables:
    """The matrix shipped in the package, read straight from its JSON (not through the engine)."""
    data = json.loads(_resources.files("carnet.domain").joinpath("matrix.json").read_text("utf-8"))
    return Tables(
        rows={key: frozenset(row["classes"]) for key, row in data["rows"].items()},
        resource_classes=dict(data["resource_classes"]),
        document_types=frozenset(data["document_types"]),
    )


def _at(hours: int | None) -> datetime | None:
    return None if hours is None else POLICY_NOW + timedelta(hours=hours)


# The translation memoises its parts: exhaustive tests build hundreds of thousands of cases from
# a few actors, documents and choices, and building frozen dataclasses is what costs.


@cache
def _principal(actor: Actor) -> Principal:
    return Principal(
        kind=ActorKind(actor.kind),
        subject=f"{actor.kind}:test",
        patient_id=actor.patient_id,
        professional_id=actor.professional_id,
        profession=actor.profession,
        specialty=actor.specialty,
        samu_regulator=actor.samu_regulator,
        occupational_physician=actor.occupational_physician,
        represents=actor.represents,
        feed_id=actor.feed_id,
        feed_categories=actor.feed_categories,
        app_id=actor.app_id,
        app_scopes=actor.app_scopes,
    )


@cache
def _target(
    patient_id: str | None,
    resource_type: str,
    in_directory: bool,
    opens_own_record: bool,
    record_open: bool,
    document: Document | None,
    all_records: bool = False,
    categories: frozenset[str] | None = None,
) -> Target:
    facts = None
    if document is not None:
        facts = DocumentFacts(
            class_code=document.class_code,
            visibility=frozenset(Visibility(v) for v in document.visibility),
            author_ids=document.author_ids,
            minor_secret=document.minor_secret,
            masked_from=document.masked_from,
        )
    return Target(
        patient_id=patient_id,
        resource_type=resource_type,
        in_directory=in_directory,
        opens_own_record=opens_own_record,
        record_open=record_open,
        document=facts,
        all_records=all_records,
        categories=categories,
    )


@cache
def _grants(choices: tuple[Any, ...]) -> Grants:
    authorisations, blocked, treating, break_glass, regulation, refused, accepted, occupational, apps = (
        choices
    )
    return Grants(
        authorisations={
            who: Authorisation(status=AuthorisationStatus(status), until=_at(until))
            for who, (status, until) in authorisations
        },
        blocked=blocked,
        treating=treating,
        opposes_break_glass=break_glass,
        opposes_regulation=regulation,
        refused_feeds=refused,
        accepted_feeds=accepted,
        occupational_consent=occupational,
        apps={app: AppGrant(scopes=scopes, until=_at(until)) for app, (scopes, until) in apps},
    )


def engine_inputs(case: Case) -> tuple[AccessRequest, Grants, Profile, datetime]:
    """Translate a plain case into the arguments of ``carnet.domain.policy.decide``."""
    choices = case.choices
    target = _target(
        case.patient_id,
        case.resource_type,
        case.in_directory,
        case.opens_own_record,
        case.record_open,
        case.document,
        case.all_records,
        case.categories,
    )
    request = AccessRequest(
        actor=_principal(case.actor),
        action=Action(case.action),
        target=target,
        mode=AccessMode(case.mode),
        justification=case.justification,
        confirmed_by=case.confirmed_by,
    )
    grants = _grants(
        (
            tuple(sorted(choices.authorisations.items())),
            choices.blocked,
            choices.treating,
            choices.opposes_break_glass,
            choices.opposes_regulation,
            choices.refused_feeds,
            choices.accepted_feeds,
            choices.occupational_consent,
            tuple(sorted(choices.apps.items())),
        )
    )
    return request, grants, PROFILES[case.profile], POLICY_NOW + timedelta(hours=case.now)
