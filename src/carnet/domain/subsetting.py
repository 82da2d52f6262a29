"""``_summary`` and ``_elements``: a subset of a resource, tagged ``SUBSETTED`` (FHIR R4 §3.1.1.5.7).

- ``_summary=true``: the top-level elements the specification marks as summary (``isSummary``, read
  from the ``fhir.resources`` R4B models), plus ``id``, ``meta``, ``resourceType``;
- ``_summary=text``: ``text``, ``id``, ``meta`` and the top-level mandatory elements;
- ``_summary=data``: everything but ``text``;
- ``_summary=false``: the whole resource;
- ``_elements=a,b``: those top-level elements (plus ``id``, ``meta``, ``resourceType`` and the
  mandatory ones, as the specification asks).

Nested elements are kept whole (the summary flags of nested data types are not applied). A subset
carries the ``SUBSETTED`` tag in ``meta.tag`` so no client stores it back as the resource.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import cache
from typing import Any

from carnet.domain.errors import InvalidRequest

SUMMARY_MODES = ("true", "text", "data", "false")
SUBSETTED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "SUBSETTED",
    "display": "subsetted",
}
_ALWAYS = frozenset({"resourceType", "id", "meta"})


@cache
def _flags(resource_type: str) -> tuple[frozenset[str], frozenset[str]]:
    """The summary and the mandatory top-level element names of a type (empty when unknown)."""
    from fhir.resources.R4B import get_fhir_model_class

    try:
        model = get_fhir_model_class(resource_type)
    except (KeyError, ValueError, AttributeError):
        return frozenset(), frozenset()
    summary: set[str] = set()
    required: set[str] = set()
    for name, field in model.model_fields.items():
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        alias = field.alias or name
        if extra.get("summary_element_property"):
            summary.add(alias)
        if extra.get("element_required"):
            required.add(alias)
    return frozenset(summary), frozenset(required)


def parse_summary(value: str) -> str:
    """Check a ``_summary`` value of a read (``count`` belongs to searches).

    Raises:
        InvalidRequest: another value.
    """
    if value not in SUMMARY_MODES:
        raise InvalidRequest(
            f"_summary must be true, text, data or false (count on searches), not {value[:30]!r}. "
            "(_summary : true, text, data ou false.)"
        )
    return value


def parse_elements(values: Iterable[str]) -> frozenset[str]:
    """The element names of ``_elements`` values (comma-separated; ``Type.element`` accepted)."""
    names = {item.strip().rpartition(".")[2] for value in values for item in value.split(",")}
    return frozenset(n for n in names if n)


def subset(
    resource: Mapping[str, Any], *, summary: str | None, elements: frozenset[str] | None
) -> dict[str, Any]:
    """Return the part of ``resource`` a ``_summary`` / ``_elements`` asks for (tagged when partial)."""
    if (summary in (None, "false")) and not elements:
        return dict(resource)
    summary_names, required = _flags(str(resource.get("resourceType")))
    if summary == "data":
        keep: set[str] = {k for k in resource if k != "text"}
    elif summary == "text":
        keep = set(_ALWAYS | {"text"} | required)
    elif summary == "true":
        keep = set(_ALWAYS | summary_names)
    else:
        keep = set(resource)
    if elements:
        keep &= _ALWAYS | required | elements
    out = {k: v for k, v in resource.items() if k in keep}
    meta = dict(out.get("meta") or {})
    meta["tag"] = [*(meta.get("tag") or []), SUBSETTED]
    out["meta"] = meta
    return out
