"""Editing an entry of the medical profile in place, whoever wrote it.

:func:`edit_fields` gives the fields of an entry's edit form; :func:`apply_edit` writes the
submitted values back. The form shows each field as the profile page does, and a field whose
submitted text reads the same as the stored one is left exactly as stored (codings, extensions
and all); only a changed field is rewritten from the patient's words. So an untouched coding
written by a professional is never lost, and a changed name replaces a code that would now
contradict it. A changed entry loses its generated narrative (``text``), which would too.

Raises ``ValueError`` (with a catalog message id) when a field is missing or malformed.
"""

from __future__ import annotations

import base64
import copy
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from carnet.web.profile_entries import (
    CONDITION_CLINICAL,
    CONTACT_ROLE_SYSTEM,
    ROLE_CLASS_SYSTEM,
    contact_role,
    directive_text,
    parse_day,
    parse_number,
)
from carnet.web.record_summary import concept_text

JSON = dict[str, Any]
Reader = Callable[[JSON], str]
Writer = Callable[[JSON, str, datetime], None]

TREATMENT_STATUSES = (("active", "Ongoing"), ("completed", "Finished"), ("stopped", "Stopped"))
CONDITION_STATUSES = (("active", "Active"), ("inactive", "Inactive"), ("resolved", "Resolved"))
CRITICALITIES = (("", "Not stated"), ("low", "Low"), ("high", "High"), ("unable-to-assess", "Unknown"))
ROLES = (("trusted", "Trusted person"), ("emergency", "Emergency contact"))
#: How a stored value the form does not offer is shown (else its code).
OTHER_CHOICES = {"": "Not stated", "guardian": "Legal representative"}
BLOOD_PRESSURE = "85354-9"
SYSTOLIC, DIASTOLIC = "8480-6", "8462-4"


@dataclass(frozen=True, slots=True, kw_only=True)
class EditField:
    """One field of an entry's edit form and how it reads from and writes to the resource.

    ``label`` is a catalog id; ``input`` is ``text``, ``textarea``, ``date``, ``number`` or
    ``select`` (with ``options``: value and catalog id); ``required`` is the catalog message shown
    when the field is left empty; ``unit`` is shown after a number's label.
    """

    name: str
    label: str
    input: str
    read: Reader
    write: Writer
    required: str | None = None
    options: tuple[tuple[str, str], ...] = ()
    unit: str = ""
    maxlength: int = 500


def _concept(key: str) -> tuple[Reader, Writer]:
    def read(resource: JSON) -> str:
        return concept_text(resource.get(key))

    def write(resource: JSON, value: str, now: datetime) -> None:
        resource[key] = {"text": value}

    return read, write


def _texts(key: str) -> tuple[Reader, Writer]:
    """A list of ``{"text": …}``-like items (dosage, note) shown joined by ``; ``."""

    def read(resource: JSON) -> str:
        return "; ".join(
            str(item.get("text"))
            for item in resource.get(key) or []
            if isinstance(item, dict) and item.get("text")
        )

    def write(resource: JSON, value: str, now: datetime) -> None:
        if value:
            resource[key] = [{"text": value}]
        else:
            resource.pop(key, None)

    return read, write


def _day_of(value: Any) -> str:
    return value[:10] if isinstance(value, str) else ""


def _date(key: str) -> tuple[Reader, Writer]:
    def read(resource: JSON) -> str:
        return _day_of(resource.get(key))

    def write(resource: JSON, value: str, now: datetime) -> None:
        if value:
            resource[key] = value
        else:
            resource.pop(key, None)

    return read, write


def _code(key: str, system: str | None = None) -> tuple[Reader, Writer]:
    """A coded status: a plain code (``status``) or a CodeableConcept of ``system``."""

    def read(resource: JSON) -> str:
        value = resource.get(key)
        if system is None:
            return value if isinstance(value, str) else ""
        codings = value.get("coding") if isinstance(value, dict) else None
        for coding in codings if isinstance(codings, list) else []:
            if isinstance(coding, dict) and isinstance(coding.get("code"), str):
                return str(coding["code"])
        return ""

    def write(resource: JSON, value: str, now: datetime) -> None:
        if not value:
            resource.pop(key, None)
        elif system is None:
            resource[key] = value
        else:
            resource[key] = {"coding": [{"system": system, "code": value}]}

    return read, write


def _digits(value: Any) -> str:
    """A stored FHIR decimal as its digits (``Decimal`` from the lossless parse, or a number)."""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return ""
    return format(Decimal(str(value)), "f")


def _is_component(part: Any, code: str) -> bool:
    """Whether an Observation ``component`` is coded ``code`` (a LOINC code)."""
    codings = ((part or {}).get("code") or {}).get("coding") or []
    return any(isinstance(c, dict) and c.get("code") == code for c in codings)


def _quantity_value(component: str | None) -> tuple[Reader, Writer]:
    """The value of an Observation's ``valueQuantity``, or of one component's (blood pressure)."""

    def holder(resource: JSON) -> JSON | None:
        if component is None:
            return resource
        return next((dict(p) for p in resource.get("component") or [] if _is_component(p, component)), None)

    def read(resource: JSON) -> str:
        found = holder(resource)
        quantity = (found or {}).get("valueQuantity")
        value = quantity.get("value") if isinstance(quantity, dict) else None
        return _digits(value)

    def write(resource: JSON, value: str, now: datetime) -> None:
        number = Decimal(value)
        if component is None:
            resource["valueQuantity"] = {**(resource.get("valueQuantity") or {}), "value": number}
            return
        resource["component"] = [
            {**part, "valueQuantity": {**(part.get("valueQuantity") or {}), "value": number}}
            if _is_component(part, component)
            else part
            for part in resource.get("component") or []
        ]

    return read, write


def _reactions() -> tuple[Reader, Writer]:
    def read(resource: JSON) -> str:
        return ", ".join(
            concept_text(m)
            for reaction in resource.get("reaction") or []
            if isinstance(reaction, dict)
            for m in reaction.get("manifestation") or []
        )

    def write(resource: JSON, value: str, now: datetime) -> None:
        if value:
            resource["reaction"] = [{"manifestation": [{"text": value}]}]
        else:
            resource.pop("reaction", None)

    return read, write


def _treatment_start() -> tuple[Reader, Writer]:
    def read(resource: JSON) -> str:
        period = resource.get("effectivePeriod")
        if isinstance(period, dict):
            return _day_of(period.get("start"))
        return _day_of(resource.get("effectiveDateTime"))

    def write(resource: JSON, value: str, now: datetime) -> None:
        period = dict(resource.get("effectivePeriod") or {})
        resource.pop("effectiveDateTime", None)
        if value:
            period["start"] = value
        else:
            period.pop("start", None)
        if period:
            resource["effectivePeriod"] = period
        else:
            resource.pop("effectivePeriod", None)

    return read, write


def _directive() -> tuple[Reader, Writer]:
    def write(resource: JSON, value: str, now: datetime) -> None:
        attachment = dict(resource.get("sourceAttachment") or {})
        attachment.pop("hash", None)
        attachment.pop("size", None)
        attachment["contentType"] = "text/plain; charset=utf-8"
        attachment["data"] = base64.b64encode(value.encode()).decode("ascii")
        resource["sourceAttachment"] = attachment
        resource["dateTime"] = now.isoformat().replace("+00:00", "Z")

    return directive_text, write


def _first_name(resource: JSON) -> JSON:
    names = [n for n in resource.get("name") or [] if isinstance(n, dict)]
    return names[0] if names else {}


def _with_name(resource: JSON, change: Callable[[JSON], None]) -> None:
    names = [dict(n) for n in resource.get("name") or [] if isinstance(n, dict)] or [{}]
    change(names[0])
    resource["name"] = names


def _person_names() -> tuple[tuple[Reader, Writer], tuple[Reader, Writer]]:
    def read_given(resource: JSON) -> str:
        return " ".join(str(g) for g in _first_name(resource).get("given") or [])

    def write_given(resource: JSON, value: str, now: datetime) -> None:
        def change(name: JSON) -> None:
            if value:
                name["given"] = [value]
            else:
                name.pop("given", None)
            name.pop("text", None)

        _with_name(resource, change)

    def read_family(resource: JSON) -> str:
        family = _first_name(resource).get("family")
        return family if isinstance(family, str) else ""

    def write_family(resource: JSON, value: str, now: datetime) -> None:
        def change(name: JSON) -> None:
            name["family"] = value
            name.pop("text", None)

        _with_name(resource, change)

    return (read_given, write_given), (read_family, write_family)


def _phone() -> tuple[Reader, Writer]:
    def read(resource: JSON) -> str:
        for telecom in resource.get("telecom") or []:
            if isinstance(telecom, dict) and telecom.get("system") == "phone" and telecom.get("value"):
                return str(telecom["value"])
        return ""

    def write(resource: JSON, value: str, now: datetime) -> None:
        others = [
            t
            for t in resource.get("telecom") or []
            if not (isinstance(t, dict) and t.get("system") == "phone")
        ]
        telecom = [{"system": "phone", "value": value}, *others] if value else others
        if telecom:
            resource["telecom"] = telecom
        else:
            resource.pop("telecom", None)

    return read, write


def _is_role(relationship: Any) -> bool:
    return isinstance(relationship, dict) and bool(relationship.get("coding"))


def _role() -> tuple[Reader, Writer]:
    def read(resource: JSON) -> str:
        return contact_role(resource) or ""

    def write(resource: JSON, value: str, now: datetime) -> None:
        if value == "trusted":
            coding = {"system": ROLE_CLASS_SYSTEM, "code": "NOK", "display": "personne de confiance"}
        else:
            coding = {"system": CONTACT_ROLE_SYSTEM, "code": "C", "display": "Emergency Contact"}
        kept = [r for r in resource.get("relationship") or [] if not _is_role(r)]
        resource["relationship"] = [{"coding": [coding]}, *kept]

    return read, write


def _relationship_text() -> tuple[Reader, Writer]:
    def read(resource: JSON) -> str:
        return "; ".join(
            str(r["text"])
            for r in resource.get("relationship") or []
            if not _is_role(r) and isinstance(r, dict) and r.get("text")
        )

    def write(resource: JSON, value: str, now: datetime) -> None:
        kept = [r for r in resource.get("relationship") or [] if _is_role(r)]
        relationship = [*kept, {"text": value}] if value else kept
        if relationship:
            resource["relationship"] = relationship
        else:
            resource.pop("relationship", None)

    return read, write


def _field(name: str, label: str, input: str, access: tuple[Reader, Writer], **more: Any) -> EditField:
    read, write = access
    return EditField(name=name, label=label, input=input, read=read, write=write, **more)


def _measure_unit(resource: JSON) -> str:
    quantity = resource.get("valueQuantity")
    if not isinstance(quantity, dict):
        for part in resource.get("component") or []:
            quantity = (part or {}).get("valueQuantity")
            if isinstance(quantity, dict):
                break
    if not isinstance(quantity, dict):
        return ""
    return str(quantity.get("unit") or quantity.get("code") or "")


def _codes(resource: JSON) -> set[str]:
    return {
        str(c.get("code"))
        for c in (resource.get("code") or {}).get("coding") or []
        if isinstance(c, dict) and c.get("code")
    }


def edit_fields(resource: JSON) -> tuple[EditField, ...]:
    """Return the fields of the edit form of one profile entry (none: it is not edited here)."""
    kind = resource.get("resourceType")
    given, family = _person_names()
    if kind == "AllergyIntolerance":
        return (
            _field(
                "text",
                "Allergy or intolerance",
                "text",
                _concept("code"),
                required="Name the allergy or intolerance.",
            ),
            _field("detail", "Reaction", "text", _reactions()),
            _field("criticality", "Severity", "select", _code("criticality"), options=CRITICALITIES),
        )
    if kind == "MedicationStatement":
        return (
            _field(
                "text",
                "Medicine",
                "text",
                _concept("medicationCodeableConcept"),
                required="Name the treatment.",
            ),
            _field("detail", "Dosage", "text", _texts("dosage")),
            _field("date", "Since", "date", _treatment_start()),
            _field(
                "status",
                "Status",
                "select",
                _code("status"),
                options=TREATMENT_STATUSES,
                required="Choose the status.",
            ),
        )
    if kind == "Immunization":
        return (
            _field("text", "Vaccine", "text", _concept("vaccineCode"), required="Name the vaccine."),
            _field("detail", "Note", "text", _texts("note")),
            _field("date", "Date", "date", _date("occurrenceDateTime"), required="Give dates as YYYY-MM-DD."),
        )
    if kind == "Condition":
        return (
            _field("text", "Condition", "text", _concept("code"), required="Name the condition."),
            _field("date", "Since", "date", _date("onsetDateTime")),
            _field(
                "status",
                "Status",
                "select",
                _code("clinicalStatus", CONDITION_CLINICAL),
                options=CONDITION_STATUSES,
            ),
        )
    if kind == "Observation":
        unit = _measure_unit(resource)
        when = _field(
            "date", "Date", "date", _date("effectiveDateTime"), required="Give dates as YYYY-MM-DD."
        )
        if BLOOD_PRESSURE in _codes(resource):
            return (
                _field(
                    "value",
                    "Systolic",
                    "number",
                    _quantity_value(SYSTOLIC),
                    required="Give the value as a number.",
                    unit=unit,
                ),
                _field(
                    "value2",
                    "Diastolic",
                    "number",
                    _quantity_value(DIASTOLIC),
                    required="Give the value as a number.",
                    unit=unit,
                ),
                when,
            )
        if isinstance(resource.get("valueQuantity"), dict):
            return (
                _field(
                    "value",
                    "Value",
                    "number",
                    _quantity_value(None),
                    required="Give the value as a number.",
                    unit=unit,
                ),
                when,
            )
        return ()
    if kind == "Consent":
        return (
            _field(
                "text",
                "My wishes about the end of my life, should I be unable to express them",
                "textarea",
                _directive(),
                required="Write your advance directives.",
                maxlength=2000,
            ),
        )
    if kind == "RelatedPerson":
        return (
            _field(
                "role",
                "Role",
                "select",
                _role(),
                options=ROLES,
                required="Choose trusted person or emergency contact.",
            ),
            _field("given", "First name", "text", given, maxlength=100),
            _field("family", "Last name", "text", family, required="Give the person's name.", maxlength=100),
            _field("phone", "Phone", "text", _phone(), maxlength=40),
            _field(
                "detail", "Relationship (e.g. daughter, friend)", "text", _relationship_text(), maxlength=100
            ),
        )
    return ()


def _normal(field: EditField, value: str) -> str:
    """Check one submitted value and return it as the field's reader would show it.

    Raises:
        ValueError: empty but required, or malformed (the message is a catalog id).
    """
    if not value:
        if field.required:
            raise ValueError(field.required)
        return ""
    if field.input == "date":
        return parse_day(value) or ""
    if field.input == "number":
        parse_number(value)  # the bounds and the message
        # FHIR decimals are significant: keep the digits typed (with a point, no exponent).
        return format(Decimal(value.replace(",", ".")), "f")
    return value


def apply_edit(resource: JSON, form: dict[str, str], *, now: datetime) -> JSON:
    """Return a copy of ``resource`` with the changed fields of its edit form written in.

    A field whose submitted value reads the same as the stored one is left as stored; a select
    keeps a stored value it does not offer unless another is chosen.

    Raises:
        ValueError: a missing or malformed field, or a choice not offered (a catalog id).
    """
    updated: JSON = copy.deepcopy(resource)
    changed = False
    for field in edit_fields(resource):
        shown = field.read(resource)
        value = _normal(field, form.get(field.name, "")[: field.maxlength])
        if field.input == "select" and value != shown and value not in {v for v, _ in field.options}:
            raise ValueError(field.required or "Choose one of the values offered.")
        if value != shown:
            field.write(updated, value, now)
            changed = True
    if changed:
        # A narrative generated from the old values would now contradict the entry.
        updated.pop("text", None)
    return updated


def options_for(field: EditField, shown: str) -> tuple[tuple[str, str], ...]:
    """Return a select's options, with the stored value first when the form does not offer it."""
    if field.input != "select" or shown in {value for value, _ in field.options}:
        return field.options
    return ((shown, OTHER_CHOICES.get(shown, shown)), *field.options)
