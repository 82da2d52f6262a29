"""The SQL side of research: the study registry, exports and their sealed parts, the budget ledger."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from carnet.domain.errors import Conflict
from carnet.research.study import Study, StudyStatus, parse_study, study_json
from carnet.services.research_ports import (
    ExportJob,
    ExportPart,
    ExportStatus,
    LedgerRow,
    StoredStudy,
)
from carnet.store.connected import Connected, utc
from carnet.store.tables import export_parts, exports, research_ledger, research_studies


def _study(row: Any) -> StoredStudy:
    study = parse_study(json.loads(row.registration), study_id=row.study_id, registered_by=row.registered_by)
    return StoredStudy(
        study=replace(study, status=StudyStatus(row.status), approved_by=row.approved_by),
        created_at=utc(row.created_at),
    )


def _job(row: Any) -> ExportJob:
    return ExportJob(
        export_id=row.export_id,
        study_id=row.study_id,
        owner=row.owner,
        status=ExportStatus(row.status),
        request=json.loads(row.request),
        progress=row.progress,
        summary=json.loads(row.summary) if row.summary else None,
        error=row.error,
        requested_at=utc(row.requested_at),
        finished_at=utc(row.finished_at) if row.finished_at else None,
    )


class ResearchSessionMixin(Connected):
    """Research tables; mixed into :class:`carnet.store.repository.SQLStoreSession`."""

    def add_study(self, stored: StoredStudy) -> None:
        """Register a study.

        Raises:
            Conflict: a study with this id is already registered.
        """
        study = stored.study
        if self.study(study.study_id) is not None:
            raise Conflict(f"A study {study.study_id!r} is already registered; choose another id.")
        self._c.execute(
            insert(research_studies).values(
                study_id=study.study_id,
                status=study.status.value,
                registration=json.dumps(study_json(study), sort_keys=True),
                registered_by=study.registered_by,
                approved_by=study.approved_by,
                created_at=stored.created_at,
            )
        )

    def study(self, study_id: str) -> StoredStudy | None:
        """Return a registered study."""
        row = self._c.execute(select(research_studies).where(research_studies.c.study_id == study_id)).first()
        return _study(row) if row is not None else None

    def studies(self) -> list[StoredStudy]:
        """Return every registered study, by id."""
        rows = self._c.execute(select(research_studies).order_by(research_studies.c.study_id)).all()
        return [_study(row) for row in rows]

    def update_study(self, study: Study) -> None:
        """Store a study's new status and approver."""
        self._c.execute(
            update(research_studies)
            .where(research_studies.c.study_id == study.study_id)
            .values(status=study.status.value, approved_by=study.approved_by)
        )

    def add_export(self, job: ExportJob) -> None:
        """Record a new export."""
        self._c.execute(
            insert(exports).values(
                export_id=job.export_id,
                study_id=job.study_id,
                owner=job.owner,
                status=job.status.value,
                request=json.dumps(job.request, sort_keys=True),
                progress=job.progress,
                summary=None,
                error=None,
                requested_at=job.requested_at,
                finished_at=None,
            )
        )

    def export(self, export_id: str) -> ExportJob | None:
        """Return an export."""
        row = self._c.execute(select(exports).where(exports.c.export_id == export_id)).first()
        return _job(row) if row is not None else None

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
        values: dict[str, object] = {}
        if status is not None:
            values["status"] = status.value
        if progress is not None:
            values["progress"] = progress[:200]
        if summary is not None:
            values["summary"] = json.dumps(summary, sort_keys=True)
        if error is not None:
            values["error"] = error
        if finished_at is not None:
            values["finished_at"] = finished_at
        changed = self._c.execute(
            update(exports)
            .where(exports.c.export_id == export_id, exports.c.status != ExportStatus.CANCELLED.value)
            .values(**values)
        )
        return bool(changed.rowcount)

    def add_part(self, part: ExportPart) -> None:
        """Store one sealed part of an export's output."""
        self._c.execute(
            insert(export_parts).values(
                export_id=part.export_id,
                part=part.part,
                resource_type=part.resource_type,
                lines=part.lines,
                sealed=part.sealed,
            )
        )

    def part_index(self, export_id: str) -> list[tuple[int, str, int]]:
        """Return ``(part, resource type, lines)`` of each part of an export, by part."""
        rows = self._c.execute(
            select(export_parts.c.part, export_parts.c.resource_type, export_parts.c.lines)
            .where(export_parts.c.export_id == export_id)
            .order_by(export_parts.c.part)
        ).all()
        return [(int(r[0]), str(r[1]), int(r[2])) for r in rows]

    def part(self, export_id: str, part: int) -> ExportPart | None:
        """Return one sealed part."""
        row = self._c.execute(
            select(export_parts).where(export_parts.c.export_id == export_id, export_parts.c.part == part)
        ).first()
        if row is None:
            return None
        return ExportPart(
            export_id=row.export_id,
            part=row.part,
            resource_type=row.resource_type,
            lines=row.lines,
            sealed=row.sealed,
        )

    def delete_parts(self, export_id: str) -> None:
        """Delete an export's output."""
        self._c.execute(delete(export_parts).where(export_parts.c.export_id == export_id))

    def ledger(self, study_id: str) -> list[LedgerRow]:
        """Return a study's ledger, oldest first."""
        rows = self._c.execute(
            select(research_ledger)
            .where(research_ledger.c.study_id == study_id)
            .order_by(research_ledger.c.seq)
        ).all()
        return [
            LedgerRow(
                study_id=r.study_id,
                seq=r.seq,
                asked_at=utc(r.asked_at),
                asked_by=r.asked_by,
                question=r.question,
                epsilon=float(r.epsilon),
            )
            for r in rows
        ]

    def add_ledger(self, row: LedgerRow) -> None:
        """Append to a study's ledger.

        Raises:
            Conflict: ``seq`` is taken (another question was answered at the same moment; retry).
        """
        try:
            with self._c.begin_nested():
                self._c.execute(
                    insert(research_ledger).values(
                        study_id=row.study_id,
                        seq=row.seq,
                        asked_at=row.asked_at,
                        asked_by=row.asked_by,
                        question=row.question,
                        epsilon=row.epsilon,
                    )
                )
        except IntegrityError:
            raise Conflict("Another question of this study was answered at the same moment; retry.") from None
