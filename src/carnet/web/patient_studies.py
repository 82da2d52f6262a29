"""The patient portal's research page: every study that could use or used the record, one-click choices.

==========================================  ====================================================
``GET  /patient/studies``                    each study: purpose, sponsor, legal basis, approval
                                             reference, period; whether the record is in it
                                             today; each export that used it (when, what left)
``POST /patient/studies/{id}/opt-out``       leave the study (every later export honours it)
``POST /patient/studies/{id}/opt-in``        join it (consent-based studies need it)
==========================================  ====================================================
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from carnet.domain.errors import CarnetError, NotFound
from carnet.domain.resources import is_valid_id
from carnet.offload import offload
from carnet.services.research_choices import choose_research, studies_of
from carnet.web.csrf import checked_form
from carnet.web.holder import consents_of, holder_of, page
from carnet.web.pages import flash, portal

router = APIRouter(prefix="/patient", include_in_schema=False)


@router.get("/studies")
def studies(request: Request) -> Response:
    """Research studies and my record: who may use it, who used it, and my choice."""
    holder = holder_of(request)
    services = portal(request).services
    try:
        events = holder.records.search(
            "AuditEvent",
            [("patient", f"Patient/{holder.patient_id}"), ("_sort", "-date"), ("_count", "1000")],
        ).resources
    except CarnetError:
        events = []
    rows = studies_of(
        services.studies.list(),
        consents_of(holder),
        events,
        services.records.profile,
        services.records.clock(),
    )
    return page(request, "patient/studies.html", "studies", {"rows": rows})


async def _choose(request: Request, study_id: str, *, include: bool) -> Response:
    await checked_form(request)
    if not is_valid_id(study_id):
        raise NotFound("This study is not known.")
    holder = holder_of(request)
    services = portal(request).services
    await offload(services.studies.get, study_id)
    await offload(
        choose_research, services.records, holder.principal, holder.patient_id, study_id, include=include
    )
    flash(
        request,
        "Your choice was saved." if include else "You left this study: later exports leave your record out.",
    )
    return RedirectResponse("/patient/studies", status_code=303)


@router.post("/studies/{study_id}/opt-out")
async def opt_out(study_id: str, request: Request) -> Response:
    """Leave a study: one click, honoured by every later export."""
    return await _choose(request, study_id, include=False)


@router.post("/studies/{study_id}/opt-in")
async def opt_in(study_id: str, request: Request) -> Response:
    """Join a study (a consent-based study uses the record only after this)."""
    return await _choose(request, study_id, include=True)
