"""The patient portal's secure messaging with the care team (``carnet.services.messages``).

``GET /patient/messages`` lists the record's messages (``Communication``), newest first, each
with who wrote to whom and the file it carries; ``POST /patient/messages`` writes to one
professional of the care team (authorised or treating physician), optionally with a PDF, JPEG
or PNG the message carries (sealed in it), and notifies the professional (their inbox, and an
e-mail saying only that a message waits). ``…/messages/{id}/attachment`` opens a message's file;
``POST …/messages/{id}/file`` files it into the record as the patient's own document (class 90).
Everything goes through the holder's ``Records``: sealed, decided by the policy, journaled.
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
from carnet.domain.errors import AccessDenied, CarnetError, Gone, InvalidRequest, NotFound
from carnet.offload import offload
from carnet.services.messages import (
    MAX_ATTACHMENT,
    MAX_MESSAGE,
    Attachment,
    Party,
    attachment_type,
    carried_attachment,
    file_attachment,
    filed_documents,
    send_message,
)
from carnet.web.csrf import checked_form, form_text
from carnet.web.errors import PageError
from carnet.web.headers import file_response
from carnet.web.holder import (
    Holder,
    Professional,
    actor_id,
    consents_of,
    holder_of,
    kind_of,
    page,
    patient_resource,
    professional,
    search,
    utc_now,
)
from carnet.web.message_inbox import directory_email
from carnet.web.pages import flash, portal
from carnet.web.patient_documents import patient_document
from carnet.web.pro_submission import ID
from carnet.web.record_summary import human_name

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
    #: The file the message carries: its title and media type ("" when none).
    attachment_title: str = ""
    attachment_type: str = ""


def _party(reference: Any, patient_id: str) -> tuple[str, bool]:
    """The name of a message's party, and whether it is the record's holder."""
    if not isinstance(reference, Mapping):
        return "—", False
    if reference.get("reference") == f"Patient/{patient_id}":
        return "", True
    identifier = reference.get("identifier") or {}
    return str(reference.get("display") or identifier.get("value") or "—"), False


def read_message(
    resource: Mapping[str, Any], patient_id: str, filed: Mapping[str, str] | None = None
) -> Message:
    """Read one Communication of the record into a :class:`Message`.

    ``filed`` maps a message id to the document its file was filed as (``filed_documents``).
    """
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
    carried = next(
        (
            p["contentAttachment"]
            for p in resource.get("payload") or []
            if isinstance(p, Mapping) and isinstance(p.get("contentAttachment"), Mapping)
        ),
        None,
    )
    message_id = str(resource.get("id") or "")
    if not reference and filed and message_id in filed:
        reference = f"DocumentReference/{filed[message_id]}"
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
        document_title=str((attached or {}).get("display") or (carried or {}).get("title") or ""),
        attachment_title=str((carried or {}).get("title") or ""),
        attachment_type=str((carried or {}).get("contentType") or ""),
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
    filed = filed_documents(search(holder, "DocumentReference", ("_count", "1000")))
    found = [
        read_message(r, holder.patient_id, filed) for r in search(holder, "Communication", ("_count", "1000"))
    ]
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
    """Send a message to a professional of my care team, optionally with a file."""
    limit = portal(request).settings.max_body_bytes
    form = await checked_form(request, max_size=limit)
    holder = holder_of(request)
    text = form_text(form, "text", MAX_MESSAGE + 1)
    to = form_text(form, "to", 20)
    upload = form.get("file")
    data = await upload.read(MAX_ATTACHMENT + 1) if isinstance(upload, UploadFile) else b""
    await form.close()
    team = {p.idnps: p for p in await offload(care_team, request, holder)}
    if to not in team:
        return await offload(
            _page, request, holder, error="Choose whom the message is for.", text=text, status=422
        )
    attachment = None
    if data:
        content_type = attachment_type(data)
        if content_type is None:
            return await offload(
                _page,
                request,
                holder,
                error="Only PDF, JPEG and PNG files can be sent.",
                text=text,
                status=422,
            )
        name = upload.filename if isinstance(upload, UploadFile) and upload.filename else ""
        title = form_text(form, "title", 200) or name[:200] or "Document"
        attachment = Attachment(content_type=content_type, data=data, title=title)
    recipient = team[to]
    try:
        email = await offload(directory_email, request, recipient.idnps)
        writer = holder.principal.display or await offload(_record_name, holder)
        await offload(
            send_message,
            portal(request).services.records,
            holder.principal,
            holder.patient_id,
            sender=Party(patient_id=holder.patient_id, display=writer or None),
            recipient=Party(idnps=recipient.idnps, display=recipient.display, email=email),
            text=text,
            now=utc_now(),
            attachment=attachment,
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


def _record_name(holder: Holder) -> str:
    return human_name(patient_resource(holder).get("name"))


def attachment_download(found: Attachment, message_id: str) -> Response:
    """The response carrying a message's file (both portals): inline, named after the message."""
    extension = {"application/pdf": "pdf", "image/jpeg": "jpg", "image/png": "png"}[found.content_type]
    return file_response(
        found.data, found.content_type, f"message-{message_id[:40]}.{extension}", inline=True
    )


@router.get("/messages/{message_id}/attachment")
def attachment(message_id: str, request: Request) -> Response:
    """The file a message carries (PDF and images inline, with ``default-src 'none'``)."""
    holder = holder_of(request)
    if not ID.fullmatch(message_id):
        raise PageError(404)
    try:
        found = carried_attachment(holder.records, holder.patient_id, message_id)
    except (NotFound, AccessDenied, Gone):
        raise PageError(404) from None
    return attachment_download(found, message_id)


@router.post("/messages/{message_id}/file")
async def file(message_id: str, request: Request) -> Response:
    """File the file a message carries into my documents (class 90, « document du patient »)."""
    await checked_form(request)
    holder = holder_of(request)
    if not ID.fullmatch(message_id):
        raise PageError(404)

    def build(carried: Attachment) -> dict[str, Any]:
        return patient_document(holder, carried.title or "Document", carried.content_type, carried.data)

    try:
        document_id = await offload(
            file_attachment,
            portal(request).services.records,
            holder.principal,
            holder.patient_id,
            message_id,
            build,
        )
    except (NotFound, Gone, AccessDenied):
        raise PageError(404) from None
    flash(request, "The file was added to your documents.")
    return RedirectResponse(f"/patient/documents/{document_id}", status_code=303)
