"""Use cases: close a record, reopen it (« fermer / réactiver le DMP »).

Closing marks the Patient inactive with the record status ``closed``
(``carnet.domain.resources.with_record_status``): professionals and feeds lose their access,
the holder keeps reading and may reopen it. Each use case is one call of the record access
(:meth:`RecordService.call`): the Patient is read and its new version written in one
transaction, decided by the policy like any update, and journaled once (``$close``,
``$reopen``). The FHIR API (``POST Patient/{id}/$close``, ``$reopen``) and the patient portal
(``POST /patient/close``, ``/patient/reopen``) call these functions, and nothing else.
"""

from __future__ import annotations

from carnet.domain.policy import AccessMode
from carnet.domain.principal import Principal
from carnet.domain.resources import is_closed, with_record_status
from carnet.services.record_types import Stored
from carnet.services.records import RecordService

__all__ = ["close_record", "reopen_record"]


def close_record(
    service: RecordService, principal: Principal, patient_id: str, *, mode: AccessMode = AccessMode.NORMAL
) -> Stored:
    """Close a record; return its Patient (unchanged when it was closed already).

    Raises:
        NotFound: no such record, or the principal may not know it.
        AccessDenied: the principal may read the record but not change it.
    """
    return _set_closed(service, principal, patient_id, closed=True, mode=mode)


def reopen_record(
    service: RecordService, principal: Principal, patient_id: str, *, mode: AccessMode = AccessMode.NORMAL
) -> Stored:
    """Reopen a closed record; return its Patient (unchanged when it was open).

    Raises:
        NotFound: no such record, or the principal may not know it.
        AccessDenied: the principal may read the record but not change it.
    """
    return _set_closed(service, principal, patient_id, closed=False, mode=mode)


def _set_closed(
    service: RecordService, principal: Principal, patient_id: str, *, closed: bool, mode: AccessMode
) -> Stored:
    operation = "$close" if closed else "$reopen"
    with service.call(principal, operation, "Patient", write=True, mode=mode) as call:
        current = call.reads.read("Patient", patient_id)
        patient = current.resource or {}
        if is_closed(patient) == closed and patient.get("active", True) is (not closed):
            return current
        updated = with_record_status(patient, closed=closed)
        return call.writes.update("Patient", patient_id, updated, if_match=current.etag).stored
