"""The quick parse of UTF-8 bodies against the full one: same value, or the same refusal.

``fhirjson.loads`` takes a quick path for bytes (the parser in C, the checks counted after it)
and the full path (a Python call per object, a walk of every value) for text or whenever the
quick one is not sure. Given the same JSON as bytes and as text, both must give the same
parsed value or raise the same error with the same message, on generated JSON with the
hazards the checks are for: repeated keys (also behind escaped quotes), control characters
and surrogates as escapes, long numbers and exponents, deep nesting, bodies over the limits.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from carnet.domain import fhirjson
from carnet.domain.errors import CarnetError

LIMITS = fhirjson.Limits(max_depth=3, max_elements=60, max_resource_elements=25, max_bundle_entries=3)

_KEYS = st.sampled_from(["a", "b", 'c"', 'd":', "resourceType", "entry", "resource", "\u00e9", "x\\"])
_STRINGS = st.sampled_from(
    ["", "x", 'q":', "Bundle", "caf\u00e9", "\x01", "\ud800", "tab\there", "\\", '\\"', "\u2028"]
)
_NUMBERS = st.sampled_from(
    ["0", "-1", "1.50", "1e5", "1E-400", "9" * 40, "1." + "0" * 40, "123456789012345678901"]
)


def _text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


@st.composite
def documents(draw: st.DrawFn, depth: int = 0) -> str:
    """JSON text, possibly with a repeated key, escapes, raw numbers."""
    kind = draw(st.integers(0, 5 if depth < 4 else 2))
    if kind == 0:
        return _text(draw(_STRINGS)) if draw(st.booleans()) else json.dumps(draw(_STRINGS))
    if kind == 1:
        return draw(_NUMBERS)
    if kind == 2:
        return draw(st.sampled_from(["true", "null", "false"]))
    if kind == 3:
        items = draw(st.lists(documents(depth + 1), max_size=4))
        return "[" + ",".join(items) + "]"
    keys = draw(st.lists(_KEYS, max_size=4))
    if keys and draw(st.integers(0, 4)) == 0:
        keys.append(keys[0])  # a repeated key
    members = [
        f"{_text(k)}{draw(st.sampled_from([':', ' : ', chr(10) + ':']))}{draw(documents(depth + 1))}"
        for k in keys
    ]
    if kind == 5:
        members.append(
            f'"resourceType":"Bundle","entry":[{",".join(draw(st.lists(documents(depth + 1), max_size=5)))}]'
        )
    return "{" + ",".join(members) + "}"


def _outcome(data: bytes | str) -> tuple[str, Any]:
    try:
        return "ok", fhirjson.loads(data, LIMITS)
    except CarnetError as error:
        return type(error).__name__, str(error)


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents())
def test_the_quick_parse_gives_what_the_full_parse_gives(text: str) -> None:
    try:
        raw = text.encode("utf-8")
    except UnicodeEncodeError:
        return  # a raw lone surrogate is not UTF-8: bytes never hold one
    assert _outcome(raw) == _outcome(text)


@pytest.mark.external
def test_a_synthea_bundle_takes_the_quick_path_and_parses_the_same() -> None:
    from records import synthea_bundles

    paths = synthea_bundles()
    assert paths, "the Synthea corpus holds no bundle"
    raw = max(paths[:10], key=lambda p: p.stat().st_size).read_bytes()
    quick = fhirjson._loads_quickly(raw.decode(), fhirjson.DEFAULT_LIMITS)
    assert quick is not None
    assert fhirjson.loads(raw) == fhirjson.loads(raw.decode()) == quick[0]
