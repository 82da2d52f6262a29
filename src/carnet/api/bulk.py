"""FHIR Bulk Data export (``$export``): kick-off, status, output files, cancellation.

=================================================  ==============================================
``GET [base]/$export?study=ID``                     a study's export (a researcher, mode research)
``GET [base]/Group/{study}/$export``                the same: the group is the study's cohort
``GET [base]/Patient/$export``                      a patient: their own record (portability); a
                                                    researcher with ``study=``: the study's export
``GET [base]/$export-status/{id}``                  202 + ``X-Progress`` while running, 200 + the
                                                    manifest when done
``DELETE [base]/$export-status/{id}``               cancel (or delete): output and key destroyed
``GET [base]/$export-file/{id}/{part}``             one NDJSON file of the output (bearer token)
=================================================  ==============================================

Kick-off parameters: ``_type``, ``_since``, ``_typeFilter`` (``Type?code=system|code``, may be
repeated), ``_outputFormat`` (``application/fhir+ndjson``). The kick-off needs
``Prefer: respond-async`` and answers 202 with ``Content-Location``; the export runs in a
thread of the server, in batches of records (one transaction and journal entries each).
A study's export is pseudonymised and k-anonymous (docs/research.md); a patient's own export is
the record as stored. Only the caller who kicked an export off sees its status and files.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request, Response

from carnet.api.fhir import fhir_response, principal_of
from carnet.domain.errors import CarnetError, Conflict, InvalidRequest
from carnet.domain.principal import Principal
from carnet.offload import offload
from carnet.services.export_jobs import NDJSON
from carnet.services.research_ports import ExportJob, ExportStatus

router = APIRouter()
log = logging.getLogger("carnet.bulk")

_PARAMETERS = frozenset({"_type", "_since", "_typeFilter", "_outputFormat", "study"})


def _params(request: Request) -> dict[str, Any]:
    """Read the kick-off's parameters; refuse unknown ones and a kick-off that is not asynchronous.

    Raises:
        InvalidRequest: no ``Prefer: respond-async``, an unknown or repeated parameter.
    """
    if "respond-async" not in request.headers.get("prefer", ""):
        raise InvalidRequest("A bulk export runs asynchronously: send the header 'Prefer: respond-async'.")
    names = [name for name, _ in request.query_params.multi_items()]
    unknown = sorted(set(names) - _PARAMETERS)
    if unknown:
        raise InvalidRequest(f"$export does not take {', '.join(unknown)[:200]}.")
    repeated = sorted({n for n in names if names.count(n) > 1 and n != "_typeFilter"})
    if repeated:
        raise InvalidRequest(f"Give {', '.join(repeated)} once.")
    query = request.query_params
    filters = [f for raw in query.getlist("_typeFilter") for f in raw.split(",") if f]
    return {
        "types": query.get("_type"),
        "since": query.get("_since"),
        "type_filters": filters,
        "output_format": query.get("_outputFormat"),
        "study": query.get("study"),
    }


def _run_in_background(name: str, run: Callable[[], object]) -> None:
    def target() -> None:
        try:
            run()
        except CarnetError as error:  # the job records its failure; this is only the log
            log.warning("export %s ended with %s", name, type(error).__name__)

    threading.Thread(target=target, name=f"export-{name}", daemon=True).start()


def _accepted(request: Request, job: ExportJob) -> Response:
    location = str(request.base_url).rstrip("/") + f"/fhir/$export-status/{job.export_id}"
    return Response(status_code=202, headers={"Content-Location": location})


async def _kick_off(request: Request, study_id: str | None) -> Response:
    params = _params(request)
    study = study_id or params.pop("study")
    params.pop("study", None)  # a Group's id names the study
    principal = await principal_of(request)
    services = request.app.state.services
    if study is None:
        job: ExportJob = await offload(
            services.exports.start_own,
            principal,
            types=params["types"],
            since=params["since"],
            type_filters=params["type_filters"],
        )
        _run_in_background(job.export_id, lambda: services.exports.run_own(principal, job.export_id))
        return _accepted(request, job)
    job = await offload(services.research.start, principal, study, **params)
    _run_in_background(job.export_id, lambda: services.research.run(principal, job.export_id))
    return _accepted(request, job)


@router.get("/$export")
async def system_export(request: Request) -> Response:
    """Kick off a study's export (``study=``), or a patient's own."""
    return await _kick_off(request, None)


@router.get("/Patient/$export")
async def patient_export(request: Request) -> Response:
    """Kick off a patient's export of their own record, or (``study=``) a study's export."""
    return await _kick_off(request, None)


@router.get("/Group/{group_id}/$export")
async def group_export(group_id: str, request: Request) -> Response:
    """Kick off the export of a study's cohort (the group is the study)."""
    return await _kick_off(request, group_id)


def _manifest(request: Request, job: ExportJob, index: list[tuple[int, str, int]]) -> dict[str, Any]:
    base = str(request.base_url).rstrip("/")
    return {
        "transactionTime": job.requested_at.isoformat().replace("+00:00", "Z"),
        "request": str(request.url),
        "requiresAccessToken": True,
        "output": [
            {"type": rtype, "url": f"{base}/fhir/$export-file/{job.export_id}/{part}", "count": lines}
            for part, rtype, lines in index
        ],
        "error": [],
        "extension": {"summary": job.summary or {}},
    }


@router.get("/$export-status/{export_id}")
async def export_status(export_id: str, request: Request) -> Response:
    """Answer 202 with the progress while the export runs, 200 with the manifest once done.

    Raises:
        Conflict: the export failed (its message says why) or was cancelled.
    """
    principal: Principal = await principal_of(request)
    services = request.app.state.services
    job: ExportJob = await offload(services.exports.status, principal, export_id)
    if job.status in (ExportStatus.QUEUED, ExportStatus.RUNNING):
        return Response(status_code=202, headers={"X-Progress": job.progress[:100], "Retry-After": "2"})
    if job.status is ExportStatus.FAILED:
        raise Conflict(f"The export failed: {job.error or 'see the server log'}")
    if job.status is ExportStatus.CANCELLED:
        raise Conflict("The export was cancelled.")
    index = await offload(services.exports.index, principal, export_id)
    return fhir_response(_manifest(request, job, index))


@router.delete("/$export-status/{export_id}")
async def export_cancel(export_id: str, request: Request) -> Response:
    """Cancel an export (or delete a finished one): its output and its key are destroyed."""
    principal = await principal_of(request)
    await offload(request.app.state.services.exports.cancel, principal, export_id)
    return Response(status_code=202)


@router.get("/$export-file/{export_id}/{part}")
async def export_file(export_id: str, part: str, request: Request) -> Response:
    """Return one NDJSON file of a finished export (only to the caller who kicked it off)."""
    if not part.isdigit() or len(part) > 9:
        raise InvalidRequest("A file of an export is named by its number.")
    principal = await principal_of(request)
    data: bytes = await offload(request.app.state.services.exports.part, principal, export_id, int(part))
    return Response(content=data, media_type=NDJSON)
