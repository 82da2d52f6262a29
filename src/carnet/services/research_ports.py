"""What the research services keep, and the store interface that keeps it (``store/research.py``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from carnet.research.study import Study


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredStudy:
    """A registered study and when it was registered (its key is the record key ``_study-<id>``)."""

    study: Study
    created_at: datetime


class ExportStatus(StrEnum):
    """Where a bulk export stands (FHIR Bulk Data: in progress, complete, error, cancelled)."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True, kw_only=True)
class ExportJob:
    """One bulk export: what was asked (``request``), how far it went, what came out (``summary``)."""

    export_id: str
    study_id: str | None
    owner: str
    status: ExportStatus
    request: dict[str, Any]
    progress: str
    requested_at: datetime
    summary: dict[str, Any] | None = None
    error: str | None = None
    finished_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ExportPart:
    """One sealed part of an export's output: NDJSON lines of one resource type."""

    export_id: str
    part: int
    resource_type: str
    lines: int
    sealed: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class LedgerRow:
    """One answered aggregate question of a study: who asked what, when, for how much ε."""

    study_id: str
    seq: int
    asked_at: datetime
    asked_by: str
    question: str
    epsilon: float


class ResearchSession(Protocol):
    """The research tables of one store transaction."""

    def add_study(self, stored: StoredStudy) -> None:
        """Register a study; raise ``Conflict`` if the id is taken."""
        ...

    def study(self, study_id: str) -> StoredStudy | None:
        """Return a registered study."""
        ...

    def studies(self) -> list[StoredStudy]:
        """Return every registered study, by id."""
        ...

    def update_study(self, study: Study) -> None:
        """Store a study's new status and approver."""
        ...

    def add_export(self, job: ExportJob) -> None:
        """Record a new export."""
        ...

    def export(self, export_id: str) -> ExportJob | None:
        """Return an export."""
        ...

    def update_export(
        self,
        export_id: str,
        *,
        status: ExportStatus | None = None,
        progress: str | None = None,
        summary: dict[str, Any] | None = None,
        error: str | None = None,
        finished_at: datetime | None = None,
    ) -> bool:
        """Change an export that is not cancelled; tell whether it changed."""
        ...

    def add_part(self, part: ExportPart) -> None:
        """Store one sealed part of an export's output."""
        ...

    def part_index(self, export_id: str) -> list[tuple[int, str, int]]:
        """Return ``(part, resource type, lines)`` of each part of an export, by part."""
        ...

    def part(self, export_id: str, part: int) -> ExportPart | None:
        """Return one sealed part."""
        ...

    def delete_parts(self, export_id: str) -> None:
        """Delete an export's output."""
        ...

    def ledger(self, study_id: str) -> list[LedgerRow]:
        """Return a study's ledger, oldest first."""
        ...

    def add_ledger(self, row: LedgerRow) -> None:
        """Append to a study's ledger; raise ``Conflict`` if ``seq`` is taken (a concurrent question)."""
        ...
