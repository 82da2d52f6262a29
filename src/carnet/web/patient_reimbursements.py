"""The patient portal's reimbursement timeline (``/patient/reimbursements``).

The lines of the insurer's reimbursement histories (CNAM-HR, class 60) the patient may see,
newest first, read by :func:`carnet.services.reimbursements.reimbursement_timeline` through the
patient's own access: a history labelled invisible to the patient shows no line.
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from carnet.feeds.cnam_hr import LineKind
from carnet.offload import offload
from carnet.services.reimbursements import Timeline, TimelineLine, reimbursement_timeline
from carnet.web.holder import holder_of, page

router = APIRouter(prefix="/patient", include_in_schema=False)

#: Each kind of line in words (translated in the templates).
KIND_LABELS = {
    LineKind.MEDICINE: "Medicine",
    LineKind.VACCINATION: "Vaccination",
    LineKind.DEVICE: "Medical device",
    LineKind.STAY: "Hospital stay",
    LineKind.CARE: "Care",
    LineKind.RADIOLOGY: "Radiology",
    LineKind.BIOLOGY: "Biology",
}


def shown_lines(timeline: Timeline, kind: str) -> list[TimelineLine]:
    """The lines of one kind (all when ``kind`` is not one), as the page's filter asks."""
    if kind not in {str(k) for k in LineKind}:
        return list(timeline.lines)
    return [item for item in timeline.lines if item.line.kind == kind]


@router.get("/reimbursements")
async def reimbursements(request: Request, kind: str = "") -> Response:
    """My reimbursements: the dated lines of my health insurance's reimbursement history."""
    holder = holder_of(request)
    timeline = await offload(reimbursement_timeline, holder.records, holder.patient_id)
    return page(
        request,
        "patient/reimbursements.html",
        "reimbursements",
        {
            "timeline": timeline,
            "lines": shown_lines(timeline, kind),
            "kind": kind if kind in {str(k) for k in LineKind} else "",
            "kinds": KIND_LABELS,
            "base": "/patient/reimbursements",
        },
    )
