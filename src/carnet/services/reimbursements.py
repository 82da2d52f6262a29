"""The reimbursement timeline: the lines of the CNAM-HR documents a caller may read, newest first.

The lines are read from the stored documents each time, through the caller's own ``Records``:
a document the policy hides from this caller (masked from professionals, invisible to the
patient or to the representatives, a minor's secret) is not found by the search, so none of
its lines can show. Nothing is copied out of the documents into another table, so masking,
unmasking or deleting a document takes effect on the timeline at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from carnet.domain.documents import CLASS_CODE_SYSTEM, attachments, binary_content, decode_base64
from carnet.domain.errors import CarnetError
from carnet.feeds.cnam_hr import LineKind, ReimbursementLine, read_if_cnam_hr
from carnet.feeds.dispensation import DispensedItem, read_if_dispensation
from carnet.services.document_checks import is_dispensation, is_reimbursement_history
from carnet.services.records import Records, SearchResult

__all__ = [
    "Dispensed",
    "Timeline",
    "TimelineLine",
    "pharmacy_dispensations",
    "recent_dispensations",
    "reimbursement_timeline",
]

REIMBURSEMENT_CLASS = "60"
DISPENSATION_CLASS = "43"
MAX_DOCUMENTS = 100


@dataclass(frozen=True, slots=True, kw_only=True)
class TimelineLine:
    """One line of the timeline and the document it was read from."""

    line: ReimbursementLine
    document_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Timeline:
    """The lines of every readable reimbursement history of a record, newest first, without repeats."""

    lines: tuple[TimelineLine, ...]
    documents: int
    """How many reimbursement histories the lines come from."""
    period_start: date | None = None
    period_end: date | None = None
    disclaimer: str | None = None


def reimbursement_timeline(records: Records, patient_id: str) -> Timeline:
    """Read the record's CNAM-HR documents that ``records``' caller may read into one timeline.

    Histories overlap (each covers the 24 months before it): a line found in several is shown
    once, from the newest document. A history that cannot be read (stored before the check
    existed) is skipped.

    Raises:
        AccessDenied, NotFound: the caller may not search this record.
    """
    found = _current_documents(records, patient_id, REIMBURSEMENT_CLASS)
    seen: set[ReimbursementLine] = set()
    lines: list[TimelineLine] = []
    documents = 0
    start: date | None = None
    end: date | None = None
    disclaimer: str | None = None
    for document in found.resources:
        if not is_reimbursement_history(document):
            continue
        for content in _contents(records, document):
            try:
                history = read_if_cnam_hr(content)
            except CarnetError:
                continue
            if history is None:
                continue
            documents += 1
            disclaimer = disclaimer or history.disclaimer
            if history.period_start is not None:
                start = min(start or history.period_start, history.period_start)
            if history.period_end is not None:
                end = max(end or history.period_end, history.period_end)
            for line in history.lines:
                if line not in seen:
                    seen.add(line)
                    lines.append(TimelineLine(line=line, document_id=str(document["id"])))
    lines.sort(key=lambda item: (item.line.start, item.line.kind, item.line.label), reverse=True)
    return Timeline(
        lines=tuple(lines), documents=documents, period_start=start, period_end=end, disclaimer=disclaimer
    )


def pharmacy_dispensations(records: Records, patient_id: str) -> list[DispensedItem]:
    """The medicines of the pharmacies' dispensation documents (class 43) ``records``' caller may read.

    Read from the stored documents at each call, through the caller's access (a masked or
    invisible dispensation shows nothing); a document without the dispense section, or that
    cannot be read (stored before the check existed), gives no line.

    Raises:
        AccessDenied, NotFound: the caller may not search this record.
    """
    found = _current_documents(records, patient_id, DISPENSATION_CLASS)
    items: list[DispensedItem] = []
    for document in found.resources:
        if not is_dispensation(document):
            continue
        for content in _contents(records, document):
            try:
                items.extend(read_if_dispensation(content) or ())
            except CarnetError:
                continue
    return items


def _current_documents(records: Records, patient_id: str, class_code: str) -> SearchResult:
    """The record's current documents of one class the caller may read, newest first (at most 100)."""
    return records.search(
        "DocumentReference",
        [
            ("patient", f"Patient/{patient_id}"),
            ("status", "current"),
            ("category", f"{CLASS_CODE_SYSTEM}|{class_code}"),
            ("_sort", "-date"),
            ("_count", str(MAX_DOCUMENTS)),
        ],
    )


def _contents(records: Records, document: dict[str, Any]) -> list[bytes]:
    """The CDA contents of a document the caller found (inline, or in its Binary)."""
    contents: list[bytes] = []
    for index, attachment in attachments(document):
        if isinstance(attachment.get("data"), str):
            contents.append(decode_base64(attachment["data"], f"content[{index}].attachment.data"))
            continue
        url = attachment.get("url")
        if isinstance(url, str) and url.startswith("Binary/"):
            binary = records.read("Binary", url.removeprefix("Binary/")).resource or {}
            contents.append(binary_content(binary))
    return [content for content in contents if content.lstrip().startswith(b"<")]


RECENT_DAYS = 92
"""How far back from the latest dispensing a medicine counts as recently dispensed (about 3 months)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Dispensed:
    """A medicine dispensed recently: by the pharmacy (MedicationDispense) or as the insurer reimbursed it."""

    label: str
    last: date
    times: int
    """How many dispensations of it fall in the window."""
    performer: str | None = None
    source: str
    """``pharmacy`` (a MedicationDispense of the record) or ``insurer`` (a CNAM-HR line)."""


def recent_dispensations(
    timeline: Timeline,
    dispenses: Iterable[Mapping[str, Any]],
    *,
    pharmacy: Iterable[DispensedItem] = (),
    days: int = RECENT_DAYS,
) -> list[Dispensed]:
    """The medicines dispensed in the ``days`` before the latest dispensing, newest first, one per medicine.

    ``dispenses`` are the record's MedicationDispense resources the viewer may read (completed or
    in progress, dated by ``whenHandedOver``); ``pharmacy`` the items of the pharmacies'
    dispensation documents (:func:`pharmacy_dispensations`); the timeline gives the reimbursed
    ones. The window
    ends at the latest dispensing known rather than today, so that a history that stopped
    (the insurer's last one is months old) still says what the patient was taking then.
    """
    found: list[tuple[str, date, str | None, str]] = []
    for item in timeline.lines:
        line = item.line
        if line.kind is LineKind.MEDICINE:
            found.append((line.label, line.start, line.performer, "insurer"))
    for dispensed in pharmacy:
        found.append((dispensed.label, dispensed.day, dispensed.pharmacy, "pharmacy"))
    for dispense in dispenses:
        label = _medicine_text(dispense.get("medicationCodeableConcept"))
        handed = _day(dispense.get("whenHandedOver"))
        if dispense.get("status") in ("completed", "in-progress") and label and handed is not None:
            found.append((label, handed, _performer(dispense), "pharmacy"))
    if not found:
        return []
    since = max(day for _, day, _, _ in found) - timedelta(days=days)
    grouped: dict[str, Dispensed] = {}
    for label, day, performer, source in sorted(found, key=lambda f: f[1]):
        if day < since:
            continue
        key = label.casefold()
        earlier = grouped.get(key)
        times = 1 if earlier is None else earlier.times + 1
        grouped[key] = Dispensed(label=label, last=day, times=times, performer=performer, source=source)
    return sorted(grouped.values(), key=lambda d: (d.last, d.label), reverse=True)


def _medicine_text(concept: Any) -> str | None:
    if not isinstance(concept, Mapping):
        return None
    if isinstance(concept.get("text"), str) and concept["text"].strip():
        return str(concept["text"]).strip()
    for coding in concept.get("coding") or []:
        if (
            isinstance(coding, Mapping)
            and isinstance(coding.get("display"), str)
            and coding["display"].strip()
        ):
            return str(coding["display"]).strip()
    return None


def _day(value: Any) -> date | None:
    if not isinstance(value, str) or len(value) < 10:
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None


def _performer(dispense: Mapping[str, Any]) -> str | None:
    for performer in dispense.get("performer") or []:
        actor = performer.get("actor") if isinstance(performer, Mapping) else None
        if isinstance(actor, Mapping) and isinstance(actor.get("display"), str):
            return str(actor["display"])
    return None
