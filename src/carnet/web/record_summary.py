"""Read a patient's record (FHIR R4 resources) into the summary a person reads first.

The portals' record view and the printable PDF show the same thing: identity, allergies,
current treatments, conditions, vaccinations, recent measures (with their series, for a chart),
documents, advance directives and the people to call (trusted person, legal representative,
emergency contacts). This module only reads JSON values the record service already filtered for
the caller: what the policy hid is simply not there.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from carnet.web.units import unit_text

JSON = Mapping[str, Any]

INS_SYSTEMS = (
    "urn:oid:1.2.250.1.213.1.4.8",
    "urn:oid:1.2.250.1.213.1.4.9",
    "urn:oid:1.2.250.1.213.1.4.10",
    "urn:oid:1.2.250.1.213.1.4.11",
)
CLASS_SYSTEM = "urn:oid:1.2.250.1.213.1.1.4.1"
VISIBILITY_SYSTEM = "urn:oid:1.2.250.1.213.1.1.4.13"
FLAG_SYSTEM = "https://carnet.health/fhir/CodeSystem/document-flag"
#: LOINC types of advance-directive documents (directives anticipées).
ADVANCE_DIRECTIVE_TYPES = frozenset({"42348-3", "75320-2", "64298-3"})
_CURRENT_TREATMENT = frozenset({"active", "intended", "on-hold"})
_CURRENT_CONDITION = frozenset({"active", "recurrence", "relapse"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Identity:
    """Who the record is about."""

    name: str
    birth_date: str | None = None
    gender: str | None = None
    ins: str | None = None
    address: str | None = None
    phone: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Line:
    """One line of a summary list: what, details, and when (ISO date text, sortable)."""

    label: str
    detail: str = ""
    when: str = ""
    #: An allergy of high criticality (FHIR ``criticality`` = ``high``): a reaction may be life-threatening.
    high_risk: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Point:
    """One measure of a series; ``id`` is the Observation's (several points may share one)."""

    when: datetime
    value: float
    id: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Measure:
    """The latest value of one kind of measure, with its whole series (oldest first)."""

    code: str
    label: str
    unit: str
    latest: float
    when: str
    series: tuple[Point, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class DocumentLine:
    """One document as listed (the DMP's DocumentEntry metadata)."""

    id: str
    title: str
    type: str
    class_code: str | None
    class_label: str
    date: str
    author: str
    author_ids: tuple[str, ...]
    status: str
    visibility: tuple[str, ...]
    archived: bool
    binary: str | None
    content_type: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordSummary:
    """Everything the first screen (or the printed page) of a record shows."""

    identity: Identity | None = None
    allergies: list[Line] = field(default_factory=list)
    treatments: list[Line] = field(default_factory=list)
    conditions: list[Line] = field(default_factory=list)
    history: list[Line] = field(default_factory=list)
    vaccinations: list[Line] = field(default_factory=list)
    measures: list[Measure] = field(default_factory=list)
    documents: list[DocumentLine] = field(default_factory=list)
    directives: list[Line] = field(default_factory=list)
    contacts: list[Line] = field(default_factory=list)


def concept_text(concept: Any) -> str:
    """The human text of a CodeableConcept: its ``text``, else a coding's display, else a code."""
    if not isinstance(concept, Mapping):
        return ""
    if isinstance(concept.get("text"), str) and concept["text"].strip():
        return str(concept["text"]).strip()
    codings = [c for c in concept.get("coding") or [] if isinstance(c, Mapping)]
    for coding in codings:
        if isinstance(coding.get("display"), str) and coding["display"].strip():
            return str(coding["display"]).strip()
    for coding in codings:
        if isinstance(coding.get("code"), str):
            return str(coding["code"])
    return ""


def _code(concept: Any, system: str | None = None) -> str | None:
    if not isinstance(concept, Mapping):
        return None
    for coding in concept.get("coding") or []:
        if isinstance(coding, Mapping) and (system is None or coding.get("system") == system):
            code = coding.get("code")
            if isinstance(code, str):
                return code
    return None


def human_name(names: Any) -> str:
    """The display form of a FHIR HumanName list (the official name first)."""
    if not isinstance(names, list) or not names:
        return ""
    ordered = sorted(
        (n for n in names if isinstance(n, Mapping)), key=lambda n: n.get("use") not in ("official", "usual")
    )
    for name in ordered:
        if isinstance(name.get("text"), str) and name["text"].strip():
            return str(name["text"]).strip()
        given = " ".join(g for g in name.get("given") or [] if isinstance(g, str))
        family = name.get("family") if isinstance(name.get("family"), str) else ""
        text = f"{given} {family}".strip()
        if text:
            return text
    return ""


def _date_of(resource: JSON, *fields: str) -> str:
    for name in fields:
        value = resource.get(name)
        if isinstance(value, str):
            return value
        if isinstance(value, Mapping):
            start = value.get("start") or value.get("end")
            if isinstance(start, str):
                return start
    return ""


def parse_moment(text: str) -> datetime | None:
    """Read a FHIR date, dateTime or instant as an aware datetime (UTC when no offset)."""
    if not text:
        return None
    try:
        if len(text) == 4:
            moment = datetime(int(text), 1, 1)
        elif len(text) == 7:
            moment = datetime(int(text[:4]), int(text[5:7]), 1)
        else:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _by_type(resources: Iterable[JSON]) -> dict[str, list[JSON]]:
    out: dict[str, list[JSON]] = {}
    for resource in resources:
        kind = resource.get("resourceType")
        if isinstance(kind, str):
            out.setdefault(kind, []).append(resource)
    return out


def _identity(patient: JSON) -> Identity:
    ins = next(
        (
            str(i.get("value"))
            for system in INS_SYSTEMS
            for i in patient.get("identifier") or []
            if isinstance(i, Mapping) and i.get("system") == system and i.get("value")
        ),
        None,
    )
    address = next(
        (str(a["text"]) for a in patient.get("address") or [] if isinstance(a, Mapping) and a.get("text")),
        None,
    )
    phone = _phone(patient) or None
    return Identity(
        name=human_name(patient.get("name")) or "—",
        birth_date=patient.get("birthDate") if isinstance(patient.get("birthDate"), str) else None,
        gender=patient.get("gender") if isinstance(patient.get("gender"), str) else None,
        ins=ins,
        address=address,
        phone=phone,
    )


def _phone(resource: JSON) -> str:
    return next(
        (
            str(t["value"])
            for t in resource.get("telecom") or []
            if isinstance(t, Mapping) and t.get("system") == "phone" and t.get("value")
        ),
        "",
    )


def _newest_first(lines: list[Line]) -> list[Line]:
    return sorted(lines, key=lambda line: line.when, reverse=True)


def document_line(document: JSON) -> DocumentLine:
    """Read one DocumentReference into the line a document list shows."""
    attachment: Mapping[str, Any] = {}
    for content in document.get("content") or []:
        if isinstance(content, Mapping) and isinstance(content.get("attachment"), Mapping):
            attachment = content["attachment"]
            break
    category = next((c for c in document.get("category") or [] if isinstance(c, Mapping)), {})
    url = attachment.get("url")
    author_ids = tuple(
        str(a["identifier"]["value"])
        for a in document.get("author") or []
        if isinstance(a, Mapping)
        and isinstance(a.get("identifier"), Mapping)
        and isinstance(a["identifier"].get("value"), str)
    )
    authors = ", ".join(
        str(a.get("display"))
        for a in document.get("author") or []
        if isinstance(a, Mapping) and a.get("display")
    )
    labels = tuple(
        str(c.get("code"))
        for label in document.get("securityLabel") or []
        if isinstance(label, Mapping)
        for c in label.get("coding") or []
        if isinstance(c, Mapping) and c.get("system") == VISIBILITY_SYSTEM and c.get("code")
    )
    tags = (document.get("meta") or {}).get("tag") or []
    archived = any(
        isinstance(t, Mapping) and t.get("system") == FLAG_SYSTEM and t.get("code") == "archived"
        for t in tags
    )
    return DocumentLine(
        id=str(document.get("id") or ""),
        title=str(
            attachment.get("title")
            or document.get("description")
            or concept_text(document.get("type"))
            or "—"
        ),
        type=concept_text(document.get("type")),
        class_code=_code(category, CLASS_SYSTEM),
        class_label=concept_text(category),
        date=_date_of(document, "date") or str(attachment.get("creation") or ""),
        author=authors,
        author_ids=author_ids,
        status=str(document.get("status") or ""),
        visibility=labels,
        archived=archived,
        binary=url.removeprefix("Binary/") if isinstance(url, str) and url.startswith("Binary/") else None,
        content_type=attachment.get("contentType")
        if isinstance(attachment.get("contentType"), str)
        else None,
    )


def _is_number(value: Any) -> bool:
    # Stored JSON is read back with exact decimals (carnet.domain.fhirjson): Decimal, not float.
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def _quantities(observation: JSON) -> Iterable[tuple[str, str, Mapping[str, Any]]]:
    """Each (code, label, quantity) an Observation carries: its value, then its components'."""
    code = _code(observation.get("code")) or concept_text(observation.get("code"))
    label = concept_text(observation.get("code")) or code
    quantity = observation.get("valueQuantity")
    if isinstance(quantity, Mapping) and _is_number(quantity.get("value")):
        yield code, label, quantity
    for component in observation.get("component") or []:
        if not isinstance(component, Mapping):
            continue
        part = component.get("valueQuantity")
        if isinstance(part, Mapping) and _is_number(part.get("value")):
            part_code = _code(component.get("code")) or concept_text(component.get("code"))
            part_label = concept_text(component.get("code")) or part_code
            yield f"{code}/{part_code}", f"{label} — {part_label}" if label else part_label, part


def _measures(observations: Sequence[JSON]) -> list[Measure]:
    series: dict[str, list[tuple[datetime, float, str, str, str, str]]] = {}
    for observation in observations:
        if observation.get("status") in ("entered-in-error", "cancelled"):
            continue
        when_text = _date_of(observation, "effectiveDateTime", "effectivePeriod", "issued")
        moment = parse_moment(when_text)
        if moment is None:
            continue
        for code, label, quantity in _quantities(observation):
            unit = unit_text(str(quantity.get("unit") or quantity.get("code") or ""))
            series.setdefault(code, []).append(
                (moment, float(quantity["value"]), when_text, label, unit, str(observation.get("id") or ""))
            )
    out: list[Measure] = []
    for code, points in series.items():
        points.sort(key=lambda p: p[0])
        last = points[-1]
        out.append(
            Measure(
                code=code,
                label=last[3],
                unit=last[4],
                latest=last[1],
                when=last[2],
                series=tuple(Point(when=p[0], value=p[1], id=p[5]) for p in points),
            )
        )
    out.sort(key=lambda m: (m.when, -len(m.series)), reverse=True)
    return out


def summarise(resources: Iterable[JSON]) -> RecordSummary:
    """Build the summary of one record from its resources (as the caller may see them)."""
    kinds = _by_type(resources)
    patient = next(iter(kinds.get("Patient", [])), None)
    allergies = [
        Line(
            label=concept_text(a.get("code")) or "—",
            detail=", ".join(
                t
                for t in (
                    concept_text(m)
                    for r in a.get("reaction") or []
                    if isinstance(r, Mapping)
                    for m in r.get("manifestation") or []
                )
                if t
            ),
            when=_date_of(a, "recordedDate", "onsetDateTime"),
            high_risk=a.get("criticality") == "high",
        )
        for a in kinds.get("AllergyIntolerance", [])
        if _code(a.get("clinicalStatus")) in (None, "active")
    ]
    treatments = [
        Line(
            label=concept_text(m.get("medicationCodeableConcept"))
            or str((m.get("medicationReference") or {}).get("display") or "—"),
            detail="; ".join(
                str(d["text"]) for d in m.get("dosage") or [] if isinstance(d, Mapping) and d.get("text")
            ),
            when=_date_of(m, "effectivePeriod", "effectiveDateTime", "dateAsserted"),
        )
        for m in kinds.get("MedicationStatement", [])
        if m.get("status") in _CURRENT_TREATMENT
    ]
    conditions: list[Line] = []
    history: list[Line] = []
    for condition in kinds.get("Condition", []):
        line = Line(
            label=concept_text(condition.get("code")) or "—",
            when=_date_of(condition, "onsetDateTime", "onsetPeriod", "recordedDate"),
        )
        status = _code(condition.get("clinicalStatus"))
        (conditions if status in _CURRENT_CONDITION or status is None else history).append(line)
    vaccinations = [
        Line(
            label=concept_text(i.get("vaccineCode")) or "—",
            detail="; ".join(
                str(n["text"]) for n in i.get("note") or [] if isinstance(n, Mapping) and n.get("text")
            ),
            when=_date_of(i, "occurrenceDateTime", "recorded"),
        )
        for i in kinds.get("Immunization", [])
        if i.get("status") != "entered-in-error"
    ]
    current = [d for d in kinds.get("DocumentReference", []) if d.get("status") == "current"]
    documents = [document_line(d) for d in current]
    directives = [
        Line(label=concept_text((c.get("category") or [{}])[0]) or "—", when=_date_of(c, "dateTime"))
        for c in kinds.get("Consent", [])
        if c.get("status") == "active" and _code(c.get("scope")) == "adr"
    ]
    directives.extend(
        Line(label=line.title, detail=line.author, when=line.date)
        for raw, line in zip(current, documents, strict=True)
        if _code(raw.get("type")) in ADVANCE_DIRECTIVE_TYPES
    )
    documents.sort(key=lambda d: d.date, reverse=True)
    contacts = [
        Line(
            label=human_name(r.get("name")) or "—",
            detail=" — ".join(
                part
                for part in (
                    ", ".join(concept_text(rel) for rel in r.get("relationship") or [] if concept_text(rel)),
                    _phone(r),
                )
                if part
            ),
        )
        for r in kinds.get("RelatedPerson", [])
        if r.get("active", True)
    ]
    return RecordSummary(
        identity=_identity(patient) if patient is not None else None,
        allergies=_newest_first(allergies),
        treatments=_newest_first(treatments),
        conditions=_newest_first(conditions),
        history=_newest_first(history),
        vaccinations=_newest_first(vaccinations),
        measures=_measures(kinds.get("Observation", [])),
        documents=documents,
        directives=directives,
        contacts=contacts,
    )
