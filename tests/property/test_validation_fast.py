"""The quick validation check against the R4B models it is derived from.

``validation_fast.accepts`` may only say *yes* where the models accept: it is compared with them
on the Synthea and HL7 examples, then on thousands of mutations of those (an element removed,
set to null, to an empty list or object, to a value of the wrong type or shape, an unknown or
second choice element added, a list unwrapped or a value wrapped in one). ``validate`` must give
the models' verdict in every case, and the quick check must carry the corpus (else it saves nothing).
"""

from __future__ import annotations

import copy
from decimal import Decimal
from functools import cache
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from carnet.domain import fhirjson
from carnet.domain.errors import InvalidResource
from carnet.domain.resources import SUPPORTED_TYPES
from carnet.domain.validation import _model, _without_large_data, validate
from carnet.domain.validation_fast import accepts
from records import hl7_examples, spread, synthea_bundles


def _models_accept(resource: dict[str, Any]) -> bool:
    light, _ = _without_large_data(resource)
    try:
        _model(resource["resourceType"]).model_validate(light)
    except (ValidationError, ValueError, TypeError, KeyError):
        return False
    return True


@cache
def _synthea() -> tuple[dict[str, Any], ...]:
    found: list[dict[str, Any]] = []
    for path in spread(synthea_bundles(), 6):
        found += [e["resource"] for e in fhirjson.loads(path.read_bytes())["entry"]]
    return tuple(found)


@cache
def _corpus() -> tuple[dict[str, Any], ...]:
    examples = (fhirjson.loads(path.read_bytes()) for path in hl7_examples())
    return _synthea() + tuple(r for r in examples if r.get("resourceType") in SUPPORTED_TYPES)


@pytest.mark.external
def test_the_quick_check_carries_the_corpus_and_accepts_only_what_the_models_accept() -> None:
    corpus = _corpus()
    accepted = [r for r in corpus if accepts(r)]
    for resource in accepted:
        assert _models_accept(resource), resource.get("resourceType")
    # Every Synthea resource takes the quick path; most HL7 examples too (some carry
    # primitive extensions or Element-typed data, which the models judge).
    assert all(accepts(r) for r in _synthea())
    assert len(accepted) >= 0.9 * len(corpus)


_VALUES: list[Any] = [
    None,
    "",
    " ",
    "a b",
    "x\ty",
    "not a date",
    "2020-13-45",
    "2024-02-30T10:00:00Z",
    "12:61:00",
    "urn:oid:1.2.x",
    "ünïcödé",
    0,
    -1,
    2**40,
    1.5,
    Decimal("1.50"),
    Decimal("1E+2"),
    True,
    "true",
    [],
    {},
    [None],
    [{}],
    ["a"],
    [1],
    {"x": 1},
    {"value": 1},
    {"reference": "Patient/1"},
    {"coding": [{"system": "http://loinc.org", "code": "1-8"}]},
    {"resourceType": "Patient"},
    {"resourceType": "Nope", "id": "x"},
    {"extension": [{"url": "http://x"}]},
]
_NAMES = [
    "valueString",
    "valueBoolean",
    "valueQuantity",
    "effectiveDateTime",
    "effectivePeriod",
    "onsetDateTime",
    "onsetAge",
    "status",
    "_status",
    "code",
    "subject",
    "system",
    "display",
    "reference",
    "coding",
    "text",
    "id",
    "resourceType",
    "resource_type",
    "fhir_comments",
    "extension",
    "contained",
    "class",
    "class_fhir",
    "unknownElement",
]


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            out += _paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            out += _paths(item, (*path, index))
    return out


def _at(value: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        value = value[step]
    return value


@st.composite
def mutated(draw: st.DrawFn) -> dict[str, Any]:
    resource = copy.deepcopy(draw(st.sampled_from(_corpus())))
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(resource) if p and p != ("resourceType",)]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent, last = _at(resource, path[:-1]), path[-1]
        operation = draw(st.sampled_from(["delete", "replace", "add", "wrap", "unwrap"]))
        if operation == "delete":
            del parent[last]
        elif operation == "replace":
            parent[last] = copy.deepcopy(draw(st.sampled_from(_VALUES)))
        elif operation == "add" and isinstance(parent, dict):
            parent[draw(st.sampled_from(_NAMES))] = copy.deepcopy(draw(st.sampled_from(_VALUES)))
        elif operation == "wrap":
            parent[last] = [parent[last]]
        elif operation == "unwrap" and isinstance(parent[last], list) and parent[last]:
            parent[last] = parent[last][0]
    return resource


def test_a_contained_resource_of_an_unknown_type_is_refused_not_an_error() -> None:
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
        "contained": [{"resourceType": "", "id": "a"}],
    }
    assert not accepts(observation)
    with pytest.raises(InvalidResource):
        validate(observation)


@pytest.mark.external
@settings(max_examples=1_500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_on_mutations_the_quick_check_never_accepts_what_the_models_refuse(resource: dict[str, Any]) -> None:
    models = _models_accept(resource)
    if accepts(resource):
        assert models, resource
    try:
        validate(resource)
        verdict = True
    except InvalidResource:
        verdict = False
    assert verdict == models
