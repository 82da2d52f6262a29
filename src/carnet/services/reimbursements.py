"""The reimbursement timeline: the lines of the CNAM-HR documents a caller may read, newest first.

The lines are read from the stored documents each time, through the caller's own ``Records``:
a document the policy hides from this caller (masked from professionals, invisible to the
patient or to the representatives, a minor's secret) is not found by the search, so none of
its lines can show. Nothing is copied out of the documents into another table, so masking,
unmasking or deleting a document takes effect on the timeline at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from carnet.domain.documents import CLASS_CODE_SYSTEM, attachments, binary_content, decode_base64
from carnet.domain.errors import CarnetError
from carnet.feeds.cda import parse_cda
from carnet.feeds.cnam_hr import ReimbursementLine, is_cnam_hr, read_reimbursements
from carnet.services.document_checks import is_reimbursement_history
from carnet.services.records import Records

__all__ = ["Timeline", "TimelineLine", "reimbursement_timeline"]

REIMBURSEMENT_CLASS = "60"
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
    found = records.search(
        "DocumentReference",
        [
            ("patient", f"Patient/{patient_id}"),
            ("status", "current"),
            ("category", f"{CLASS_CODE_SYSTEM}|{REIMBURSEMENT_CLASS}"),
            ("_sort", "-date"),
            ("_count", str(MAX_DOCUMENTS)),
        ],
    )
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
                if not is_cnam_hr(parse_cda(content)):
                    continue
                history = read_reimbursements(content)
            except CarnetError:
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
