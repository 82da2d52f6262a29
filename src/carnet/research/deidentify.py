"""Turn one patient's resources into what a study may receive: pseudonymised, shifted, stripped.

What leaves, for each resource of a type the study asked for:

- ids and references become the study's pseudonyms (``Type/<HMAC>``); a reference to anything
  else than a resource of the record (a professional, an organisation, a URL) is removed;
- every date, dateTime and instant moves by the patient's shift (same shift for the whole
  record, so intervals hold), keeping its precision;
- identifiers, names, telecoms, addresses, photos, narrative and every free text (``text``,
  ``note``, ``comment``, ``description``, ``valueString``…), extensions, ``meta``, the people
  who wrote or performed something and attachments' data, URLs and titles are removed;
- ``Binary`` (document bodies) never leaves; a ``DocumentReference`` keeps only its coded
  metadata;
- a code of the resource's concept held by fewer than k patients of the export (a rare code)
  leaves as a coarser level (:mod:`carnet.research.codes`: ICD-10 category, ATC level), without
  its display; one that cannot be generalised far enough is removed, and the resource with it
  when its concept has no other coding;
- the Patient keeps only its pseudonym and the generalised quasi-identifiers
  (:mod:`carnet.research.kanon`): age band, sex, area.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from carnet.research.kanon import QuasiIdentifiers
from carnet.research.pseudonyms import pseudonym

QI_EXTENSION = "https://carnet.health/fhir/StructureDefinition/research-quasi-identifiers"
"""The extension of an exported Patient carrying its generalised quasi-identifiers."""

#: Keys removed wherever they appear: identity, free text, people, provenance.
_REMOVED = frozenset(
    {
        "identifier",
        "name",
        "telecom",
        "address",
        "photo",
        "contact",
        "communication",
        "generalPractitioner",
        "managingOrganization",
        "link",
        "text",
        "note",
        "comment",
        "description",
        "valueString",
        "valueMarkdown",
        "valueAttachment",
        "valueReference",
        "patientInstruction",
        "extension",
        "modifierExtension",
        "meta",
        "implicitRules",
        "contained",
        "performer",
        "author",
        "authenticator",
        "custodian",
        "recorder",
        "asserter",
        "requester",
        "practitioner",
        "provider",
        "insurer",
        "payee",
        "enterer",
        "facility",
        "location",
        "serviceProvider",
        "participant",
        "attester",
        "masterIdentifier",
        "relatesTo",
        "securityLabel",
        "data",
        "url",
        "title",
        "hash",
    }
)
#: Types that never leave: document bodies and what names or describes people.
NEVER = frozenset({"Binary", "RelatedPerson", "Consent", "Practitioner", "PractitionerRole", "Organization"})
_DATE = re.compile(r"^(\d{4})(-(\d{2})(-(\d{2})(T[0-9:.]+(Z|[+-]\d{2}:\d{2})?)?)?)?$")
_REFERENCE = re.compile(r"^([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})$")


def shift_date(value: str, days: int) -> str | None:
    """Move a FHIR date, dateTime or instant by ``days``, keeping its precision (None if not one).

    A year or a year-month moves with its first day and is written back at its own precision.
    """
    if len(value) < 4 or not value[0].isdigit():
        return None  # most strings (codes, units, references) are not dates: skip the pattern
    match = _DATE.match(value)
    if match is None:
        return None
    year, month, day, rest = match.group(1), match.group(3), match.group(5), match.group(6)
    try:
        if rest is not None:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
            moved = (moment + timedelta(days=days)).isoformat()
            return moved.replace("+00:00", "Z") if value.endswith("Z") else moved
        first = date(int(year), int(month or 1), int(day or 1)) + timedelta(days=days)
    except (ValueError, OverflowError):
        return None
    if day is not None:
        return first.isoformat()
    return f"{first.year:04d}-{first.month:02d}" if month is not None else f"{first.year:04d}"


def tokens(resource: Mapping[str, Any]) -> Iterator[str]:
    """Yield every coding of a resource as a FHIR token ``system|code``."""
    stack: list[Any] = [resource]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            system, code = item.get("system"), item.get("code")
            if isinstance(system, str) and isinstance(code, str):
                yield f"{system}|{code}"
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def clinical_tokens(resource: Mapping[str, Any]) -> set[str]:
    """The codings that describe a resource's content (its ``code``, ``vaccineCode``, ``medication…``)."""
    found: set[str] = set()
    for key in ("code", "vaccineCode", "medicationCodeableConcept", "type", "category"):
        value = resource.get(key)
        if value is not None:
            found.update(tokens({"v": value}))
    return found


#: The elements naming what a resource is about (its concept), whose rare codes are generalised.
CONCEPTS = ("code", "vaccineCode", "medicationCodeableConcept", "type")


def _codings(value: Any) -> Iterator[str]:
    """The codings of one concept element (a CodeableConcept or a list of them), as ``system|code``."""
    for concept in value if isinstance(value, list) else (value,):
        codings = concept.get("coding") if isinstance(concept, dict) else None
        for coding in codings if isinstance(codings, list) else ():
            if isinstance(coding, dict):
                system, code = coding.get("system"), coding.get("code")
                if isinstance(system, str) and isinstance(code, str):
                    yield f"{system}|{code}"


def concept_tokens(resource: Mapping[str, Any]) -> set[str]:
    """The codings of a resource's concept (:data:`CONCEPTS`), as ``system|code``."""
    return {token for key in CONCEPTS if key in resource for token in _codings(resource[key])}


@dataclass(frozen=True, slots=True, kw_only=True)
class Deidentifier:
    """De-identifies the resources of one patient for one study (see the module docstring)."""

    study_key: bytes
    shift_days: int
    #: What each rare code becomes (``system|code``): its generalisation, or None (removed).
    codes: Mapping[str, str | None] = field(default_factory=dict)
    #: The references already pseudonymised for this record (the same few recur in every resource).
    _seen: dict[str, str | None] = field(default_factory=dict)

    def reference(self, value: str) -> str | None:
        """Return a reference to a resource of the record under its pseudonym (None for anything else)."""
        if value in self._seen:
            return self._seen[value]
        match = _REFERENCE.match(value)
        moved = None
        if match is not None and match.group(1) not in NEVER:
            moved = f"{match.group(1)}/{pseudonym(self.study_key, value)}"
        if len(self._seen) < 4096:
            self._seen[value] = moved
        return moved

    def resource(self, resource: Mapping[str, Any]) -> dict[str, Any] | None:
        """Return what the study receives of one resource (not a Patient), or None if nothing.

        A rare code (held by fewer than k patients of the export) leaves generalised, or its
        coding is removed; a resource whose concept has no coding left is left out.
        """
        resource_type = str(resource.get("resourceType"))
        if resource_type in NEVER or resource_type == "Patient":
            return None
        if self.codes:
            for key in CONCEPTS:
                found = set(_codings(resource[key])) if key in resource else set()
                if found and all(t in self.codes and self.codes[t] is None for t in found):
                    return None
        out = self._clean(resource)
        if not isinstance(out, dict):
            return None
        out["resourceType"] = resource_type
        out["id"] = pseudonym(self.study_key, f"{resource_type}/{resource.get('id')}")
        return out

    def patient(self, patient_id: str, qi: QuasiIdentifiers) -> dict[str, Any]:
        """Return the exported Patient: its pseudonym and generalised quasi-identifiers only."""
        extension = [{"url": "ageBand", "valueString": qi.age}, {"url": "area", "valueString": qi.area}]
        out: dict[str, Any] = {
            "resourceType": "Patient",
            "id": pseudonym(self.study_key, f"Patient/{patient_id}"),
            "extension": [{"url": QI_EXTENSION, "extension": extension}],
        }
        if qi.sex != "*":
            out["gender"] = qi.sex
        return out

    def _clean(self, value: Any) -> Any:
        if isinstance(value, dict):
            out: dict[str, Any] = {}
            for key, item in value.items():
                if key in _REMOVED or key == "id":
                    continue
                if key == "reference" and isinstance(item, str):
                    moved = self.reference(item)
                    if moved is None:
                        return None  # a Reference that no longer points anywhere is dropped whole
                    out[key] = moved
                    continue
                if key == "display" and "reference" in value:
                    continue  # a reference's display names a person or a place
                if key == "code" and self.codes and isinstance(item, str) and "system" in value:
                    token = f"{value['system']}|{item}"
                    if token in self.codes:
                        coarser = self.codes[token]
                        if coarser is None:
                            return None  # a rare code that cannot be generalised: its coding goes
                        out[key] = coarser.rpartition("|")[2]
                        out.pop("display", None)
                        continue
                if (
                    key == "display"
                    and self.codes
                    and f"{value.get('system')}|{value.get('code')}" in self.codes
                ):
                    continue  # a generalised code's display named the finer one
                if type(item) is str:  # most leaves: no call, only dates move
                    moved = shift_date(item, self.shift_days) if item[:1].isdigit() else None
                    out[key] = item if moved is None else moved
                    continue
                cleaned = self._clean(item)
                if cleaned is not None:
                    out[key] = cleaned
            return out or None
        if isinstance(value, list):
            items = [c for c in (self._clean(item) for item in value) if c is not None]
            return items or None
        if isinstance(value, str):
            moved = shift_date(value, self.shift_days)
            return moved if moved is not None else value
        return value


def wanted(
    resource: Mapping[str, Any],
    *,
    types: Iterable[str],
    codes: frozenset[str],
) -> bool:
    """Tell whether a resource is of a type the study asked for and carries one of its codes (if any)."""
    if str(resource.get("resourceType")) not in set(types):
        return False
    return resource.get("resourceType") == "Patient" or not codes or bool(clinical_tokens(resource) & codes)
