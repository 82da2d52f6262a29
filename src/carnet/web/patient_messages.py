"""The patient portal's secure messaging with the care team (``carnet.services.messages``).

``GET /patient/messages`` lists the record's messages (``Communication``), newest first, each
with who wrote to whom and the document it filed; ``POST /patient/messages`` writes to one
professional of the care team (authorised or treating physician), optionally with a PDF, JPEG
or PNG that is filed into the record as the patient's own document. Everything goes through
the holder's ``Records``: sealed, decided by the policy, journaled.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from carnet.domain.consent import ConsentKind
from carnet.domain.errors import CarnetError, InvalidRequest
from carnet.offload import offload
from carnet.services.messages import MAX_MESSAGE, Party, send_message
from carnet.web.csrf import checked_form, form_text
from carnet.web.holder import (
    Holder,
    Professional,
    actor_id,
    consents_of,
    holder_of,
    kind_of,
    page,
    professional,
    search,
    utc_now,
)
from carnet.web.pages import flash, portal
from carnet.web.patient_documents import patient_document, upload_type

router = APIRouter(prefix="/patient", include_in_schema=False)

_TEAM_KINDS = {str(ConsentKind.AUTHORISATION), str(ConsentKind.TREATING_PHYSICIAN)}


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """One message as a conversation shows it."""

    id: str
    sent: str
    sender: str
    recipient: str
    mine: bool
    text: str
    document_id: str | None
    document_title: str


def _party(reference: Any, patient_id: str) -> tuple[str, bool]:
    """The name of a message's party, and whether it is the record's holder."""
    if not isinstance(reference, Mapping):
        return "—", False
    if reference.get("reference") == f"Patient/{patient_id}":
        return "", True
    identifier = reference.get("identifier") or {}
    return str(reference.get("display") or identifier.get("value") or "—"), False


def read_message(resource: Mapping[str, Any], patient_id: str) -> Message:
    """Read one Communication of the record into a :class:`Message`."""
    sender, mine = _party(resource.get("sender"), patient_id)
    recipient, _ = _party(next(iter(resource.get("recipient") or []), None), patient_id)
    text = next(
        (
            str(p["contentString"])
            for p in resource.get("payload") or []
            if isinstance(p, Mapping) and "contentString" in p
        ),
        "",
    )
    attached = next(
        (
            p["contentReference"]
            for p in resource.get("payload") or []
            if isinstance(p, Mapping) and isinstance(p.get("contentReference"), Mapping)
        ),
        None,
    )
    reference = str((attached or {}).get("reference") or "")
    return Message(
        id=str(resource.get("id") or ""),
        sent=str(resource.get("sent") or ""),
        sender=sender,
        recipient=recipient,
        mine=mine,
        text=text,
        document_id=reference.removeprefix("DocumentReference/")
        if reference.startswith("DocumentReference/")
        else None,
        document_title=str((attached or {}).get("display") or ""),
    )


def care_team(request: Request, holder: Holder) -> list[Professional]:
    """The professionals the holder may write to: those authorised, and the treating physicians."""
    team: dict[str, Professional] = {}
    for consent in consents_of(holder):
        idnps = actor_id(consent)
        if consent.get("status") == "active" and kind_of(consent) in _TEAM_KINDS and idnps:
            team.setdefault(idnps, professional(request, idnps))
    return sorted(team.values(), key=lambda p: p.display)


def _messages(holder: Holder) -> list[Message]:
    found = [read_message(r, holder.patient_id) for r in search(holder, "Communication", ("_count", "1000"))]
    return sorted(found, key=lambda m: (m.sent, m.id), reverse=True)


def _page(
    request: Request, holder: Holder, *, error: str | None = None, text: str = "", status: int = 200
) -> Response:
    return page(
        request,
        "patient/messages.html",
        "messages",
        {
            "messages": _messages(holder),
            "team": care_team(request, holder),
            "error": error,
            "text": text,
            "max_message": MAX_MESSAGE,
        },
        status=status,
    )


@router.get("/messages")
def messages(request: Request) -> Response:
    """My messages with my care team, newest first, and the form to write one."""
    return _page(request, holder_of(request))


@router.post("/messages")
async def write(request: Request) -> Response:
    """Send a message to a professional of my care team, optionally filing a document."""
    limit = portal(request).settings.max_body_bytes
    form = await checked_form(request, max_size=limit)
    holder = holder_of(request)
    text = form_text(form, "text", MAX_MESSAGE + 1)
    to = form_text(form, "to", 20)
    upload = form.get("file")
    data = await upload.read(limit + 1) if isinstance(upload, UploadFile) else b""
    await form.close()
    team = {p.idnps: p for p in await offload(care_team, request, holder)}
    if to not in team:
        return await offload(
            _page, request, holder, error="Choose whom the message is for.", text=text, status=422
        )
    document = None
    if data:
        content_type = upload_type(data)
        if content_type is None or len(data) > limit:
            return await offload(
                _page,
                request,
                holder,
                error="Only PDF, JPEG and PNG files can be uploaded.",
                text=text,
                status=422,
            )
        name = upload.filename if isinstance(upload, UploadFile) and upload.filename else ""
        title = form_text(form, "title", 200) or name[:200] or "Document"
        document = patient_document(holder, title, content_type, data)
    recipient = team[to]
    try:
        await offload(
            send_message,
            portal(request).services.records,
            holder.principal,
            holder.patient_id,
            sender=Party(patient_id=holder.patient_id, display=holder.principal.display),
            recipient=Party(idnps=recipient.idnps, display=recipient.display),
            text=text,
            now=utc_now(),
            document=document,
        )
    except InvalidRequest as problem:
        return await offload(_page, request, holder, error=problem.message, text=text, status=422)
    except CarnetError:
        return await offload(
            _page,
            request,
            holder,
            error="The message could not be sent. Try again later.",
            text=text,
            status=503,
        )
    flash(request, "Your message was sent.")
    return RedirectResponse("/patient/messages", status_code=303)
