"""The professional portal's view of a patient's reimbursement timeline.

``/pro/patients/<id>/reimbursements`` shows the lines of the CNAM-HR histories this
professional may read, in the mode that let them in (consent, treating physician, break-glass):
a history masked from professionals shows no line to those it is masked from.
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from carnet.domain.errors import AccessDenied, NotFound
from carnet.feeds.cnam_hr import LineKind
from carnet.offload import offload
from carnet.services.reimbursements import reimbursement_timeline
from carnet.web.errors import PageError
from carnet.web.patient_reimbursements import KIND_LABELS, shown_lines
from carnet.web.pro import access_to, pro_page

router = APIRouter(prefix="/pro", include_in_schema=False)


@router.get("/patients/{patient_id}/reimbursements")
async def reimbursements(patient_id: str, request: Request, kind: str = "") -> Response:
    """The patient's reimbursement timeline, as far as the policy lets this professional read it."""
    access = await access_to(request, patient_id)
    try:
        timeline = await offload(reimbursement_timeline, access.records, access.patient_id)
    except (NotFound, AccessDenied):
        raise PageError(404) from None
    return pro_page(
        request,
        "pro/reimbursements.html",
        {
            "patient_id": access.patient_id,
            "mode": access.mode.value,
            "timeline": timeline,
            "lines": shown_lines(timeline, kind),
            "kind": kind if kind in {str(k) for k in LineKind} else "",
            "kinds": KIND_LABELS,
            "base": f"/pro/patients/{access.patient_id}/reimbursements",
        },
    )
