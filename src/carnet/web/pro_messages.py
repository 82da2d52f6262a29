"""The professional portal's secure messaging with patients (``carnet.services.messages``).

``GET /pro/messages`` is the inbox: the records whose patient wrote to the signed-in
professional, unread ones first with their count (``carnet.services.message_inbox``).
``GET /pro/patients/{id}/messages`` shows the messages of the record between the professional and
the patient, newest first, and marks the patient's messages read; ``POST`` writes to the patient
(the patient is notified), with a file if wanted. A file a message carries opens at
``…/messages/{message}/attachment`` and is filed into the record as a document by ``POST
…/messages/{message}/file`` (class and type chosen by the professional). The professional reads
and writes through their own access to the record, in the mode that lets them in: the policy
decides (break-glass only reads), the journal records it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from fastapi import APIRouter
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from carnet.domain.errors import AccessDenied, CarnetError, Gone, InvalidRequest, NotFound
from carnet.domain.principal import Principal
from carnet.offload import offload
from carnet.services.messages import (
    IDNPS_SYSTEM,
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
from carnet.web.holder import utc_now
from carnet.web.message_inbox import message_inbox, notice_store
from carnet.web.pages import portal
from carnet.web.patient_messages import Message, attachment_download, read_message
from carnet.web.pro import Access, access_to, pro_page
from carnet.web.pro_submission import CLASSES, ID, TYPES, Upload, pdf_document
from carnet.web.session import current_principal

router = APIRouter(prefix="/pro", include_in_schema=False)


def _signed_in_professional(request: Request) -> Principal:
    principal = current_principal(request)
    if principal is None or not principal.professional_id:
        raise PageError(403, "This page is for health professionals.")
    return principal


def _between(access: Access) -> list[Message]:
    """The record's messages this professional wrote or received, newest first."""
    me = access.principal.professional_id
    found = access.records.search(
        "Communication", [("patient", f"Patient/{access.patient_id}"), ("_count", "1000")]
    ).resources
    documents = access.records.search(
        "DocumentReference", [("patient", f"Patient/{access.patient_id}"), ("_count", "1000")]
    ).resources
    filed = filed_documents(documents)
    mine = []
    for resource in found:
        parties = [resource.get("sender"), *(resource.get("recipient") or [])]
        if any(
            isinstance(p, dict)
            and (p.get("identifier") or {}).get("system") == IDNPS_SYSTEM
            and (p.get("identifier") or {}).get("value") == me
            for p in parties
        ):
            mine.append(read_message(resource, access.patient_id, filed))
    return sorted(mine, key=lambda m: (m.sent, m.id), reverse=True)


def _conversation(request: Request, access: Access) -> list[Message]:
    messages = _between(access)
    message_inbox(request).mark_read(notice_store(request), access.principal, access.patient_id)
    return messages


async def _page(
    request: Request, access: Access, *, error: str | None = None, text: str = "", status: int = 200
) -> Response:
    try:
        messages = await offload(_conversation, request, access)
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
            "done": request.query_params.get("done", ""),
        },
        status=status,
    )


@router.get("/messages")
async def inbox(request: Request) -> Response:
    """My inbox: the patients who wrote to me, unread first, each with how many are unread."""
    principal = _signed_in_professional(request)
    threads = await offload(message_inbox(request).inbox, notice_store(request), principal)
    return pro_page(
        request,
        "pro/inbox.html",
        {"threads": threads, "unread": sum(t.unread for t in threads)},
    )


@router.get("/patients/{patient_id}/messages")
async def messages(patient_id: str, request: Request) -> Response:
    """The messages between me and the patient, and the form to write one."""
    return await _page(request, await access_to(request, patient_id))


async def _attachment(form: Any) -> Attachment | None:
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        return None
    data = await upload.read(MAX_ATTACHMENT + 1)
    if not data:
        return None
    content_type = attachment_type(data)
    if content_type is None:
        raise InvalidRequest("Only PDF, JPEG and PNG files can be sent.")
    if len(data) > MAX_ATTACHMENT:
        raise InvalidRequest("A file sent with a message is at most 4 MB.")
    title = form_text(form, "title", 200) or (upload.filename or "")[:200] or "Document"
    return Attachment(content_type=content_type, data=data, title=title)


@router.post("/patients/{patient_id}/messages")
async def write(patient_id: str, request: Request) -> Response:
    """Write to the patient (the patient is notified), with a file if wanted."""
    form = await checked_form(request, max_size=portal(request).settings.max_body_bytes)
    access = await access_to(request, patient_id)
    text = form_text(form, "text", MAX_MESSAGE + 1)
    me = access.principal
    try:
        attachment = await _attachment(form)
        await form.close()
        await offload(
            send_message,
            portal(request).services.records,
            me,
            patient_id,
            sender=Party(idnps=me.professional_id, display=me.display),
            recipient=Party(patient_id=patient_id),
            text=text,
            now=utc_now(),
            attachment=attachment,
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


@router.get("/patients/{patient_id}/messages/{message_id}/attachment")
async def attachment(patient_id: str, message_id: str, request: Request) -> Response:
    """The file a message carries (PDF and images inline, with ``default-src 'none'``)."""
    access = await access_to(request, patient_id)
    if not ID.fullmatch(message_id):
        raise PageError(404)
    try:
        found = await offload(carried_attachment, access.records, access.patient_id, message_id)
    except (NotFound, AccessDenied, Gone):
        raise PageError(404) from None
    return attachment_download(found, message_id)


def _document(
    principal: Principal, patient_id: str, class_code: str, type_code: str, now: datetime
) -> Callable[[Attachment], dict[str, Any]]:
    """How a professional's filing builds the document: their authorship, class and type."""

    def build(carried: Attachment) -> dict[str, Any]:
        upload = Upload(
            content=carried.data,
            is_pdf=carried.content_type == "application/pdf",
            title=carried.title,
            class_code=class_code,
            type_code=type_code,
            day=now.date(),
            flags=[],
            replaces=None,
        )
        document = pdf_document(principal, patient_id, upload, now)
        document["content"][0]["attachment"]["contentType"] = carried.content_type
        return document

    return build


@router.post("/patients/{patient_id}/messages/{message_id}/file")
async def file(patient_id: str, message_id: str, request: Request) -> Response:
    """File the file a message carries into the record, as a document of the class and type chosen."""
    form = await checked_form(request)
    access = await access_to(request, patient_id)
    class_code, type_code = form_text(form, "class", 4), form_text(form, "type", 10)
    if not ID.fullmatch(message_id):
        raise PageError(404)
    if class_code not in {c for c, _, _ in CLASSES} or type_code not in {t for t, _, _ in TYPES}:
        return await _page(
            request, access, error="Choose the class and the type of the document.", status=422
        )
    build = _document(access.principal, patient_id, class_code, type_code, utc_now())
    try:
        document_id = await offload(
            file_attachment,
            portal(request).services.records,
            access.principal,
            patient_id,
            message_id,
            build,
            mode=access.mode,
        )
    except (NotFound, Gone):
        raise PageError(404) from None
    except AccessDenied:
        return await _page(
            request, access, error="Your access to this record does not let you add a document.", status=403
        )
    except InvalidRequest as problem:
        return await _page(request, access, error=problem.message, status=422)
    return RedirectResponse(f"/pro/patients/{patient_id}/documents/{document_id}", status_code=303)
