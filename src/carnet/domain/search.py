"""Search within a patient's record: parameter definitions, query parsing, matching.

Token parameters (``code``, ``category``, ``status``…) are answered from blind indexes:
each coding is indexed as ``(system, code)``, ``code`` alone and ``system`` alone, hashed
with the patient's index key. Date parameters and ``_lastUpdated`` are checked on the opened
resource, so no date is ever stored in clear. Definitions follow the FHIR R4 search
parameters of the same names.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any

from carnet.domain.errors import InvalidRequest, UnsupportedSearch
from carnet.domain.resources import is_valid_id, values_at
from carnet.domain.subsetting import parse_elements


class ParamKind(StrEnum):
    """The FHIR search parameter types Carnet implements."""

    TOKEN = "token"  # noqa: S105 - a FHIR search parameter type, not a secret
    DATE = "date"
    REFERENCE = "reference"


_STATUS = ("status", ParamKind.TOKEN, ("status",))
_IDENT = ("identifier", ParamKind.TOKEN, ("identifier",))

#: Per resource type: parameter name → (kind, element paths). Types not listed have
#: ``identifier`` (when the element exists) and the common parameters only.
PARAMETERS: Mapping[str, Mapping[str, tuple[ParamKind, tuple[str, ...]]]] = {
    "AllergyIntolerance": {
        "category": (ParamKind.TOKEN, ("category",)),
        "code": (ParamKind.TOKEN, ("code", "reaction.substance")),
        "date": (ParamKind.DATE, ("recordedDate",)),
        "clinical-status": (ParamKind.TOKEN, ("clinicalStatus",)),
    },
    "Appointment": {"date": (ParamKind.DATE, ("start",)), "status": (ParamKind.TOKEN, ("status",))},
    "CarePlan": {
        "category": (ParamKind.TOKEN, ("category",)),
        "date": (ParamKind.DATE, ("period",)),
        "status": (ParamKind.TOKEN, ("status",)),
    },
    "CareTeam": {
        "category": (ParamKind.TOKEN, ("category",)),
        "date": (ParamKind.DATE, ("period",)),
        "status": (ParamKind.TOKEN, ("status",)),
    },
    "Claim": {"status": (ParamKind.TOKEN, ("status",)), "created": (ParamKind.DATE, ("created",))},
    "ClinicalImpression": {"date": (ParamKind.DATE, ("date",)), "status": (ParamKind.TOKEN, ("status",))},
    "Communication": {"category": (ParamKind.TOKEN, ("category",)), "status": (ParamKind.TOKEN, ("status",))},
    "Composition": {
        "category": (ParamKind.TOKEN, ("category",)),
        "type": (ParamKind.TOKEN, ("type",)),
        "date": (ParamKind.DATE, ("date",)),
        "status": (ParamKind.TOKEN, ("status",)),
    },
    "Condition": {
        "category": (ParamKind.TOKEN, ("category",)),
        "code": (ParamKind.TOKEN, ("code",)),
        "clinical-status": (ParamKind.TOKEN, ("clinicalStatus",)),
        "onset-date": (ParamKind.DATE, ("onset[x]",)),
        "recorded-date": (ParamKind.DATE, ("recordedDate",)),
    },
    "Consent": {
        "category": (ParamKind.TOKEN, ("category",)),
        "date": (ParamKind.DATE, ("dateTime",)),
        "status": (ParamKind.TOKEN, ("status",)),
    },
    "Coverage": {"type": (ParamKind.TOKEN, ("type",)), "status": (ParamKind.TOKEN, ("status",))},
    "DeviceRequest": {"code": (ParamKind.TOKEN, ("code[x]",)), "status": (ParamKind.TOKEN, ("status",))},
    "DiagnosticReport": {
        "category": (ParamKind.TOKEN, ("category",)),
        "code": (ParamKind.TOKEN, ("code",)),
        "date": (ParamKind.DATE, ("effective[x]",)),
        "status": (ParamKind.TOKEN, ("status",)),
    },
    "DocumentManifest": {"type": (ParamKind.TOKEN, ("type",)), "status": (ParamKind.TOKEN, ("status",))},
    "DocumentReference": {
        "category": (ParamKind.TOKEN, ("category",)),
        "type": (ParamKind.TOKEN, ("type",)),
        "date": (ParamKind.DATE, ("date",)),
        "period": (ParamKind.DATE, ("context.period",)),
        "status": (ParamKind.TOKEN, ("status",)),
        "security-label": (ParamKind.TOKEN, ("securityLabel",)),
        "identifier": (ParamKind.TOKEN, ("masterIdentifier", "identifier")),
        "author": (ParamKind.REFERENCE, ("author",)),
        "facility": (ParamKind.TOKEN, ("context.facilityType",)),
        "setting": (ParamKind.TOKEN, ("context.practiceSetting",)),
        "relatesto": (ParamKind.REFERENCE, ("relatesTo.target",)),
        "binary": (ParamKind.REFERENCE, ("content.attachment.url",)),
    },
    "Encounter": {
        "type": (ParamKind.TOKEN, ("type",)),
        "class": (ParamKind.TOKEN, ("class",)),
        "date": (ParamKind.DATE, ("period",)),
        "status": (ParamKind.TOKEN, ("status",)),
    },
    "EpisodeOfCare": {
        "type": (ParamKind.TOKEN, ("type",)),
        "date": (ParamKind.DATE, ("period",)),
        "status": (ParamKind.TOKEN, ("status",)),
    },
    "ExplanationOfBenefit": {
        "status": (ParamKind.TOKEN, ("status",)),
        "created": (ParamKind.DATE, ("created",)),
    },
    "FamilyMemberHistory": {
        "code": (ParamKind.TOKEN, ("condition.code",)),
        "date": (ParamKind.DATE, ("date",)),
        "status": (ParamKind.TOKEN, ("status",)),
    },
    "Flag": {"date": (ParamKind.DATE, ("period",))},
    "Goal": {
        "category": (ParamKind.TOKEN, ("category",)),
        "lifecycle-status": (ParamKind.TOKEN, ("lifecycleStatus",)),
    },
    "ImagingStudy": {"status": (ParamKind.TOKEN, ("status",)), "started": (ParamKind.DATE, ("started",))},
    "Immunization": {
        "date": (ParamKind.DATE, ("occurrence[x]",)),
        "status": (ParamKind.TOKEN, ("status",)),
        "vaccine-code": (ParamKind.TOKEN, ("vaccineCode",)),
    },
    "List": {
        "code": (ParamKind.TOKEN, ("code",)),
        "date": (ParamKind.DATE, ("date",)),
        "status": (ParamKind.TOKEN, ("status",)),
    },
    "MedicationAdministration": {
        "code": (ParamKind.TOKEN, ("medicationCodeableConcept",)),
        "effective-time": (ParamKind.DATE, ("effective[x]",)),
        "status": (ParamKind.TOKEN, ("status",)),
    },
    "MedicationDispense": {
        "code": (ParamKind.TOKEN, ("medicationCodeableConcept",)),
        "type": (ParamKind.TOKEN, ("type",)),
        "status": (ParamKind.TOKEN, ("status",)),
        "whenhandedover": (ParamKind.DATE, ("whenHandedOver",)),
    },
    "MedicationRequest": {
        "category": (ParamKind.TOKEN, ("category",)),
        "code": (ParamKind.TOKEN, ("medicationCodeableConcept",)),
        "authoredon": (ParamKind.DATE, ("authoredOn",)),
        "status": (ParamKind.TOKEN, ("status",)),
    },
    "MedicationStatement": {
        "category": (ParamKind.TOKEN, ("category",)),
        "code": (ParamKind.TOKEN, ("medicationCodeableConcept",)),
        "effective": (ParamKind.DATE, ("effective[x]",)),
        "status": (ParamKind.TOKEN, ("status",)),
    },
    "AuditEvent": {"date": (ParamKind.DATE, ("recorded",))},
    "Observation": {
        "category": (ParamKind.TOKEN, ("category",)),
        "code": (ParamKind.TOKEN, ("code",)),
        "date": (ParamKind.DATE, ("effective[x]",)),
        "status": (ParamKind.TOKEN, ("status",)),
    },
    "Procedure": {
        "category": (ParamKind.TOKEN, ("category",)),
        "code": (ParamKind.TOKEN, ("code",)),
        "date": (ParamKind.DATE, ("performed[x]",)),
        "status": (ParamKind.TOKEN, ("status",)),
    },
    "RiskAssessment": {"date": (ParamKind.DATE, ("occurrence[x]",))},
    "ServiceRequest": {
        "category": (ParamKind.TOKEN, ("category",)),
        "code": (ParamKind.TOKEN, ("code",)),
        "status": (ParamKind.TOKEN, ("status",)),
        "authored": (ParamKind.DATE, ("authoredOn",)),
    },
    "Specimen": {"type": (ParamKind.TOKEN, ("type",)), "status": (ParamKind.TOKEN, ("status",))},
    "Task": {"code": (ParamKind.TOKEN, ("code",)), "status": (ParamKind.TOKEN, ("status",))},
}

#: Parameters that place the search in a patient's record.
PATIENT_PARAMS = frozenset({"patient", "subject"})
#: Result parameters Carnet implements.
RESULT_PARAMS = frozenset(
    {
        "_count",
        "_sort",
        "_offset",
        "_summary",
        "_elements",
        "_total",
        "_totalMethod",
        "_format",
        "_pretty",
        "_include",
        "_revinclude",
    }
)
SORTABLE = frozenset({"_lastUpdated", "_id", "date"})
MAX_COUNT = 1000
DEFAULT_COUNT = 50


def parameters_for(resource_type: str) -> Mapping[str, tuple[ParamKind, tuple[str, ...]]]:
    """Return the searchable parameters of a type (the common ones included)."""
    params: dict[str, tuple[ParamKind, tuple[str, ...]]] = {
        "identifier": (ParamKind.TOKEN, ("identifier",)),
        "_tag": (ParamKind.TOKEN, ("meta.tag",)),
    }
    params.update(PARAMETERS.get(resource_type, {}))
    return params


class Prefix(StrEnum):
    """Date comparison prefixes."""

    EQ = "eq"
    NE = "ne"
    GT = "gt"
    LT = "lt"
    GE = "ge"
    LE = "le"
    SA = "sa"
    EB = "eb"
    AP = "ap"


@dataclass(frozen=True, slots=True, kw_only=True)
class DateRange:
    """A half-open instant range ``[low, high)`` implied by a FHIR date's precision."""

    low: datetime
    high: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenValue:
    """A token search value; ``system`` None means any system, "" means no system."""

    system: str | None
    code: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenClause:
    """``param=a,b``: matches when any value matches."""

    param: str
    values: tuple[TokenValue, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class DateClause:
    """``param=ge2020``: one comparison on a date parameter (``_lastUpdated`` included)."""

    param: str
    prefix: Prefix
    value: DateRange


@dataclass(frozen=True, slots=True, kw_only=True)
class SortKey:
    """One ``_sort`` key."""

    param: str
    descending: bool


@dataclass(frozen=True, slots=True)
class Include:
    """An ``_include`` or ``_revinclude``: ``Source:param[:Target]``; ``iterate`` (``:iterate``)
    applies it to what the includes brought in too, up to :data:`ITERATE_ROUNDS` times."""

    source: str
    param: str
    target: str | None
    iterate: bool = False


#: How many times ``_include:iterate`` / ``_revinclude:iterate`` follow references past the matches.
ITERATE_ROUNDS = 3


def reference_paths(resource_type: str, param: str) -> tuple[str, ...] | None:
    """The element paths of a reference parameter of a type (``subject``/``patient`` included)."""
    if param in PATIENT_PARAMS:
        return ("subject", "patient")
    kind_paths = parameters_for(resource_type).get(param)
    if kind_paths is None or kind_paths[0] is not ParamKind.REFERENCE:
        return None
    return kind_paths[1]


def parse_include(name: str, value: str, resource_type: str, *, iterate: bool = False) -> Include:
    """Parse an ``_include`` (of the searched type, or any with ``iterate``) or ``_revinclude`` value.

    Raises:
        InvalidRequest: not ``Source:param[:Target]`` with a reference parameter of Source.
    """
    parts = value.split(":")
    if len(parts) not in (2, 3) or not all(parts) or "*" in value:
        raise InvalidRequest(f"{name} takes Type:parameter[:TargetType] ({name}={value[:60]!r}).")
    target = parts[2] if len(parts) == 3 else None
    include = Include(source=parts[0], param=parts[1], target=target, iterate=iterate)
    if name == "_include" and include.source != resource_type and not iterate:
        raise InvalidRequest(f"_include on a {resource_type} search names {resource_type}:<parameter>.")
    if reference_paths(include.source, include.param) is None:
        raise InvalidRequest(f"{include.param!r} is not a reference parameter of {include.source[:40]}.")
    return include


@dataclass(frozen=True, slots=True, kw_only=True)
class SearchQuery:
    """A parsed search within one patient's record."""

    resource_type: str
    patient_id: str | None
    ids: tuple[str, ...] = ()
    tokens: tuple[TokenClause, ...] = ()
    dates: tuple[DateClause, ...] = ()
    sort: tuple[SortKey, ...] = ()
    count: int = DEFAULT_COUNT
    offset: int = 0
    summary_count: bool = False
    #: ``_summary=true|text|data`` (``domain.subsetting``); None for the whole resources.
    summary: str | None = None
    #: ``_elements``: the top-level elements asked for; None for all.
    elements: frozenset[str] | None = None
    #: ``_include`` / ``_revinclude``: ``(source type, reference parameter, target type or None)``.
    includes: tuple[Include, ...] = ()
    revincludes: tuple[Include, ...] = ()
    ignored: tuple[str, ...] = ()


_DATE = re.compile(
    r"^(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})"
    r"(?:T(?P<H>\d{2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?P<f>\.\d+)?)?(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?$"
)


@functools.lru_cache(maxsize=4096)
def parse_date(text: str) -> DateRange:
    """Turn a FHIR date/dateTime/instant into the range its precision covers (UTC if no zone).

    Raises:
        InvalidRequest: the text is not a FHIR date.
    """
    match = _DATE.match(text.strip())
    if not match:
        raise InvalidRequest(
            f"{text[:40]!r} is not a FHIR date; use YYYY, YYYY-MM, YYYY-MM-DD or a dateTime."
        )
    parts = match.groupdict()
    try:
        year = int(parts["y"])
        if parts["m"] is None:
            low = datetime(year, 1, 1, tzinfo=UTC)
            return DateRange(low=low, high=datetime(year + 1, 1, 1, tzinfo=UTC))
        month = int(parts["m"])
        if parts["d"] is None:
            low = datetime(year, month, 1, tzinfo=UTC)
            high = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
            return DateRange(low=low, high=high)
        day = date(year, month, int(parts["d"]))
        if parts["H"] is None:
            low = datetime(day.year, day.month, day.day, tzinfo=UTC)
            return DateRange(low=low, high=low + timedelta(days=1))
        stamp = f"{parts['y']}-{parts['m']}-{parts['d']}T{parts['H']}:{parts['M']}:{parts['S'] or '00'}"
        stamp += parts["f"] or ""
        zone = parts["tz"] or "+00:00"
        low = datetime.fromisoformat(stamp + ("+00:00" if zone == "Z" else zone)).astimezone(UTC)
        if parts["f"]:
            step = timedelta(microseconds=max(1, 10 ** (6 - min(6, len(parts["f"]) - 1))))
        elif parts["S"]:
            step = timedelta(seconds=1)
        else:
            step = timedelta(minutes=1)
        return DateRange(low=low, high=low + step)
    except (ValueError, OverflowError):  # OverflowError: a range running past year 9999 or before 1.
        raise InvalidRequest(f"{text[:40]!r} is not a valid calendar date.") from None


def element_ranges(value: Any) -> Iterator[DateRange]:
    """Yield the date ranges of a date-like element (date, dateTime, instant, Period)."""
    if isinstance(value, str):
        try:
            yield parse_date(value)
        except InvalidRequest:
            return
    elif isinstance(value, dict) and ("start" in value or "end" in value):
        try:
            low = (
                parse_date(value["start"]).low
                if isinstance(value.get("start"), str)
                else datetime.min.replace(tzinfo=UTC)
            )
            high = (
                parse_date(value["end"]).high
                if isinstance(value.get("end"), str)
                else datetime.max.replace(tzinfo=UTC)
            )
        except InvalidRequest:
            # A stored bound this parser cannot place (e.g. 9999-12-31) never matches, like a bad string.
            return
        yield DateRange(low=low, high=high)


def _compare(prefix: Prefix, target: DateRange, search: DateRange) -> bool:
    contains = search.low <= target.low and target.high <= search.high
    if prefix is Prefix.EQ:
        return contains
    if prefix is Prefix.NE:
        return not contains
    if prefix is Prefix.GT:
        return target.high > search.high
    if prefix is Prefix.LT:
        return target.low < search.low
    if prefix is Prefix.GE:
        return target.high > search.high or contains
    if prefix is Prefix.LE:
        return target.low < search.low or contains
    if prefix is Prefix.SA:
        return target.low >= search.high
    if prefix is Prefix.EB:
        return target.high <= search.low
    # ap: the ranges overlap once widened by 10% of the distance to now, at least a day.
    widen = timedelta(days=1)
    return target.low < _shift(search.high, widen) and _shift(search.low, -widen) < target.high


def _shift(moment: datetime, delta: timedelta) -> datetime:
    """Add ``delta``, stopping at the first or last representable instant instead of overflowing."""
    try:
        return moment + delta
    except OverflowError:
        return (datetime.max if delta > timedelta(0) else datetime.min).replace(tzinfo=UTC)


def token_keys(value: Any) -> Iterator[tuple[str, ...]]:
    """Yield the index keys of a token element (code, Coding, CodeableConcept, Identifier)."""
    if isinstance(value, str):
        yield ("c", value)
    elif isinstance(value, bool):
        yield ("c", "true" if value else "false")
    elif isinstance(value, dict):
        if isinstance(value.get("reference"), str):
            yield ("c", value["reference"])
            return
        if "coding" in value and isinstance(value["coding"], list):
            for coding in value["coding"]:
                yield from token_keys(coding)
            return
        code = value.get("code", value.get("value"))
        system = value.get("system", "")
        if isinstance(code, str) and isinstance(system, str):
            yield ("c", code)
            yield ("sc", system, code)
            if system:
                yield ("s", system)


def clause_keys(value: TokenValue) -> tuple[str, ...]:
    """Return the index key a token search value looks up."""
    if value.system is None:
        return ("c", value.code or "")
    if value.code is None:
        return ("s", value.system)
    return ("sc", value.system, value.code)


def index_tokens(resource: Mapping[str, Any]) -> set[tuple[str, tuple[str, ...]]]:
    """Return every ``(param, key)`` a resource is indexed under."""
    out: set[tuple[str, tuple[str, ...]]] = set()
    for param, (kind, paths) in parameters_for(str(resource.get("resourceType"))).items():
        if kind is ParamKind.DATE:
            continue
        for path in paths:
            for value in values_at(resource, path):
                for key in token_keys(value):
                    out.add((param, key))
    return out


def _last_updated(resource: Mapping[str, Any]) -> list[DateRange]:
    meta = resource.get("meta")
    stamp = meta.get("lastUpdated") if isinstance(meta, dict) else None
    return list(element_ranges(stamp)) if isinstance(stamp, str) else []


def date_ranges(resource: Mapping[str, Any], param: str) -> list[DateRange]:
    """Return the date ranges of ``param`` on a resource."""
    if param == "_lastUpdated":
        return _last_updated(resource)
    kind_paths = parameters_for(str(resource.get("resourceType"))).get(param)
    if kind_paths is None:
        return []
    ranges: list[DateRange] = []
    for path in kind_paths[1]:
        for value in values_at(resource, path):
            ranges.extend(element_ranges(value))
    return ranges


def matches_dates(resource: Mapping[str, Any], clauses: Iterable[DateClause]) -> bool:
    """Tell whether a resource satisfies every date clause."""
    for clause in clauses:
        ranges = date_ranges(resource, clause.param)
        if not any(_compare(clause.prefix, r, clause.value) for r in ranges):
            return False
    return True


def sort_value(resource: Mapping[str, Any], param: str) -> tuple[int, str]:
    """Return a sortable key for ``param`` (resources missing the value sort last)."""
    if param == "_id":
        return (0, str(resource.get("id", "")))
    ranges = date_ranges(resource, param)
    if not ranges:
        return (1, "")
    return (0, min(r.low for r in ranges).isoformat())


def _parse_token(text: str) -> TokenValue:
    if "|" not in text:
        return TokenValue(system=None, code=text)
    system, _, code = text.partition("|")
    return TokenValue(system=system, code=code or None)


def _parse_int(name: str, text: str, *, low: int, high: int) -> int:
    # isdigit() alone admits "²" and other digits int() refuses; 10**12 already exceeds every limit.
    if not (text.isascii() and text.isdigit()):
        raise InvalidRequest(
            f"{name}={text[:20]!r} is not a whole number; give a number from {low} to {high}."
        )
    digits = text.lstrip("0") or "0"
    return min(max(int(digits) if len(digits) <= 12 else high, low), high)


def parse_search(
    resource_type: str, params: Sequence[tuple[str, str]], *, lenient: bool = False
) -> SearchQuery:
    """Parse query parameters into a :class:`SearchQuery`.

    Raises:
        UnsupportedSearch: an unknown parameter or modifier (unless ``lenient``, which lists it
            in ``ignored`` so the caller can warn).
        InvalidRequest: a malformed value.
    """
    known = parameters_for(resource_type)
    patient_id: str | None = None
    ids: list[str] = []
    tokens: list[TokenClause] = []
    dates: list[DateClause] = []
    sort: list[SortKey] = []
    count = DEFAULT_COUNT
    offset = 0
    summary_count = False
    summary: str | None = None
    elements: list[str] = []
    includes: list[Include] = []
    revincludes: list[Include] = []
    ignored: list[str] = []

    def unsupported(name: str, why: str) -> None:
        if not lenient:
            raise UnsupportedSearch(f"Search parameter {name!r} is not supported on {resource_type}: {why}.")
        ignored.append(name)

    for raw_name, value in params:
        name, _, modifier = raw_name.partition(":")
        if name in PATIENT_PARAMS and resource_type != "Patient":
            if modifier and modifier != "Patient":
                unsupported(raw_name, "only Patient references are searchable")
                continue
            ref = value.removeprefix("Patient/")
            if "/" in ref or not is_valid_id(ref):
                raise InvalidRequest(
                    f"{raw_name}={value[:70]!r} is not a Patient reference; give Patient/<id>."
                )
            if patient_id is not None and patient_id != ref:
                raise InvalidRequest("A search covers one patient's record; give a single patient.")
            patient_id = ref
        elif modifier and name not in RESULT_PARAMS:
            unsupported(raw_name, f"the modifier :{modifier} is not implemented")
        elif name == "_id":
            for item in value.split(","):
                if not is_valid_id(item):
                    raise InvalidRequest(f"_id={item[:70]!r} is not a valid FHIR id.")
                ids.append(item)
        elif name == "_lastUpdated" or (name in known and known[name][0] is ParamKind.DATE):
            dates.append(_parse_date_clause(name, value))
        elif name in known and known[name][0] is ParamKind.REFERENCE:
            tokens.append(
                TokenClause(
                    param=name, values=tuple(TokenValue(system=None, code=v) for v in value.split(",") if v)
                )
            )
        elif name in known:
            tokens.append(
                TokenClause(param=name, values=tuple(_parse_token(v) for v in value.split(",") if v))
            )
        elif name == "_count":
            count = _parse_int("_count", value, low=0, high=MAX_COUNT)
        elif name == "_offset":
            offset = _parse_int("_offset", value, low=0, high=10**9)
        elif name == "_sort":
            for item in value.split(","):
                descending = item.startswith("-")
                key = item.removeprefix("-")
                if key not in SORTABLE or (key == "date" and "date" not in known):
                    unsupported(f"_sort={item}", "sort by _lastUpdated, _id or date")
                    continue
                sort.append(SortKey(param=key, descending=descending))
        elif name == "_summary":
            if value == "count":
                summary_count = True
            elif value in ("true", "text", "data"):
                summary = value
            elif value != "false":
                raise InvalidRequest("_summary must be true, text, data, count or false.")
        elif name == "_elements":
            elements.append(value)
        elif name in ("_include", "_revinclude"):
            if modifier and modifier != "iterate":
                unsupported(raw_name, "of the modifiers only :iterate is implemented")
                continue
            (includes if name == "_include" else revincludes).append(
                parse_include(name, value, resource_type, iterate=modifier == "iterate")
            )
        elif name == "_total":
            if value not in ("none", "estimate", "accurate"):
                raise InvalidRequest("_total must be none, estimate or accurate.")
        elif name == "_totalMethod":
            # What fhirpy's count() sends (Aidbox's name for _total): the total is always exact here.
            if value not in ("count", "estimate", "none"):
                raise InvalidRequest("_totalMethod must be count, estimate or none.")
        elif name == "_format":
            if value not in ("json", "application/json", "application/fhir+json"):
                unsupported(f"_format={value}", "Carnet speaks JSON only")
        elif name == "_pretty":
            continue
        else:
            unsupported(raw_name, "see the CapabilityStatement for the parameters of this type")
    return SearchQuery(
        resource_type=resource_type,
        patient_id=patient_id,
        ids=tuple(ids),
        tokens=tuple(tokens),
        dates=tuple(dates),
        sort=tuple(sort),
        count=count,
        offset=offset,
        summary_count=summary_count,
        summary=summary,
        elements=parse_elements(elements) if elements else None,
        includes=tuple(includes),
        revincludes=tuple(revincludes),
        ignored=tuple(ignored),
    )


def _parse_date_clause(name: str, value: str) -> DateClause:
    prefix = Prefix.EQ
    if len(value) > 2 and value[:2] in Prefix.__members__.values() and not value[:2].isdigit():
        prefix = Prefix(value[:2])
        value = value[2:]
    return DateClause(param=name, prefix=prefix, value=parse_date(value))
