"""The professional portal's secure messaging with a patient (``carnet.services.messages``).

``GET /pro/patients/{id}/messages`` shows the messages of the record between the signed-in
professional and the patient, newest first; ``POST`` writes to the patient (the patient is
notified). The professional reads and writes through their own access to the record, in the
mode that lets them in: the policy decides (break-glass only reads), the journal records it.
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from carnet.domain.errors import AccessDenied, CarnetError, InvalidRequest, NotFound
from carnet.offload import offload
from carnet.services.messages import IDNPS_SYSTEM, MAX_MESSAGE, Party, send_message
from carnet.web.csrf import checked_form, form_text
from carnet.web.errors import PageError
from carnet.web.holder import utc_now
from carnet.web.pages import portal
from carnet.web.patient_messages import Message, read_message
from carnet.web.pro import Access, access_to, pro_page

router = APIRouter(prefix="/pro", include_in_schema=False)


def _between(access: Access) -> list[Message]:
    """The record's messages this professional wrote or received, newest first."""
    me = access.principal.professional_id
    found = access.records.search(
        "Communication", [("patient", f"Patient/{access.patient_id}"), ("_count", "1000")]
    ).resources
    mine = []
    for resource in found:
        parties = [resource.get("sender"), *(resource.get("recipient") or [])]
        if any(
            isinstance(p, dict)
            and (p.get("identifier") or {}).get("system") == IDNPS_SYSTEM
            and (p.get("identifier") or {}).get("value") == me
            for p in parties
        ):
            mine.append(read_message(resource, access.patient_id))
    return sorted(mine, key=lambda m: (m.sent, m.id), reverse=True)


async def _page(
    request: Request, access: Access, *, error: str | None = None, text: str = "", status: int = 200
) -> Response:
    try:
        messages = await offload(_between, access)
    except (NotFound, AccessDenied):
        raise PageError(404) from None
    return pro_page(
        request,
        "pro/messages.html",
        {
            "patient_id": access.patient_id,
            "mode": access.mode.value,
            "messages": messages,
            "error": error,
            "text": text,
            "max_message": MAX_MESSAGE,
        },
        status=status,
    )


@router.get("/patients/{patient_id}/messages")
async def messages(patient_id: str, request: Request) -> Response:
    """The messages between me and the patient, and the form to write one."""
    return await _page(request, await access_to(request, patient_id))


@router.post("/patients/{patient_id}/messages")
async def write(patient_id: str, request: Request) -> Response:
    """Write to the patient (the patient is notified)."""
    form = await checked_form(request)
    access = await access_to(request, patient_id)
    text = form_text(form, "text", MAX_MESSAGE + 1)
    me = access.principal
    try:
        await offload(
            send_message,
            portal(request).services.records,
            me,
            patient_id,
            sender=Party(idnps=me.professional_id, display=me.display),
            recipient=Party(patient_id=patient_id),
            text=text,
            now=utc_now(),
            mode=access.mode,
        )
    except InvalidRequest as problem:
        return await _page(request, access, error=problem.message, text=text, status=422)
    except AccessDenied:
        return await _page(
            request,
            access,
            error="Your access to this record does not let you write to the patient.",
            text=text,
            status=403,
        )
    except CarnetError:
        return await _page(
            request, access, error="The message could not be sent. Try again later.", text=text, status=503
        )
    return RedirectResponse(f"/pro/patients/{patient_id}/messages?done=sent", status_code=303)
