"""The patient portal's documents: lists by DMP class, the viewer, upload, masking.

See ``carnet.web.patient`` for the routes of the whole portal.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from fastapi import APIRouter
from markupsafe import Markup
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from carnet.domain.consent import grants_from_consents
from carnet.domain.documents import (
    CLASS_CODE_SYSTEM,
    attachments,
    binary_content,
    document_facts,
    with_masked,
)
from carnet.domain.errors import CarnetError
from carnet.domain.policy import AccessMode, AccessRequest, Action, DocumentFacts, Target, Visibility, decide
from carnet.domain.principal import ActorKind, Principal
from carnet.offload import offload
from carnet.services.masking import set_masked
from carnet.web.cda_render import render_cda
from carnet.web.csrf import checked_form, form_text
from carnet.web.document_classes import CLASSES
from carnet.web.errors import PageError
from carnet.web.headers import file_response
from carnet.web.holder import (
    Holder,
    actor_id,
    consents_of,
    holder_of,
    kind_of,
    page,
    professional,
    read_own,
    search,
    utc_now,
)
from carnet.web.i18n import language_of
from carnet.web.pages import flash, portal
from carnet.web.record_summary import concept_text, document_line

router = APIRouter(prefix="/patient", include_in_schema=False)

UPLOAD_TYPES = {
    "application/pdf": b"%PDF-",
    "image/jpeg": b"\xff\xd8\xff",
    "image/png": b"\x89PNG\r\n\x1a\n",
}
#: Inline in the page (a frame or an image); anything else downloads as a file.
INLINE_TYPES = frozenset({"application/pdf", "image/jpeg", "image/png"})
CDA_TYPES = frozenset({"text/xml", "application/xml", "application/hl7-cda+xml"})
TYPE_CODE_SYSTEM = "urn:oid:1.2.250.1.213.1.1.4.12"


# -- documents --------------------------------------------------------------------------------


def _class_label(code: str | None) -> str:
    return CLASSES.get(code or "", "Other documents")


@router.get("/documents")
def documents(request: Request) -> Response:
    """The documents, grouped by DMP class."""
    holder = holder_of(request)
    wanted = request.query_params.get("class")
    found = [
        document_line(d)
        for d in search(holder, "DocumentReference", ("_sort", "-date"), ("_count", "1000"))
        if d.get("status") == "current"
    ]
    groups: dict[str, list[Any]] = {}
    for line in found:
        code = line.class_code if line.class_code in CLASSES else "other"
        if wanted and code != wanted:
            continue
        groups.setdefault(code, []).append(line)
    ordered = [(code, _class_label(code), groups[code]) for code in [*CLASSES, "other"] if code in groups]
    counts = {code: sum(1 for line in found if (line.class_code or "other") == code) for code in CLASSES}
    return page(
        request,
        "patient/documents.html",
        "documents",
        {"groups": ordered, "classes": CLASSES, "counts": counts, "wanted": wanted, "total": len(found)},
    )


def _attachment(document: Mapping[str, Any], index: int) -> dict[str, Any]:
    for position, attachment in attachments(document):
        if position == index:
            return attachment
    raise PageError(404)


def _media_type(content_type: object) -> str:
    """A ``contentType`` without its parameters, in lower case (``text/xml; charset=…`` → ``text/xml``)."""
    return str(content_type or "").split(";")[0].strip().lower()


def _content(holder: Holder, document: Mapping[str, Any], index: int) -> tuple[bytes, str]:
    """Return the bytes and media type of one attachment of a document the patient may read."""
    attachment = _attachment(document, index)
    content_type = _media_type(attachment.get("contentType") or "application/octet-stream")
    if isinstance(attachment.get("data"), str):
        return base64.b64decode(attachment["data"]), content_type
    url = attachment.get("url")
    if not isinstance(url, str) or not url.startswith("Binary/"):
        raise PageError(404)
    binary = holder.records.read("Binary", url.removeprefix("Binary/")).resource or {}
    return binary_content(binary), _media_type(binary.get("contentType") or content_type)


def first_content(holder: Holder, document: Mapping[str, Any]) -> tuple[bytes, str] | None:
    """The bytes and media type of a document's first attachment, if it has one the holder may read."""
    try:
        return _content(holder, document, 0)
    except (PageError, CarnetError):
        return None


def _embedded_pdf(xml: bytes) -> bytes | None:
    """Return the PDF a CDA level 1 document carries in its ``nonXMLBody``, if any."""
    from carnet.feeds.cda import parse_cda

    try:
        body = parse_cda(xml).body
    except (CarnetError, ValueError):
        return None
    if body is None or "pdf" not in (body.media_type or "").lower():
        return None
    return body.content


def _is_structured(xml: bytes) -> bool:
    return b"structuredBody" in xml[:2_000_000]


@dataclass(frozen=True, slots=True, kw_only=True)
class Viewer:
    """How one attachment is shown: ``frame`` (PDF), ``image``, ``html`` (rendered CDA), ``text``, ``file``."""

    index: int
    kind: str
    content_type: str
    title: str
    src: str
    html: Markup | None = None
    text: str | None = None


def _viewer(
    holder: Holder, document: dict[str, Any], index: int, attachment: Mapping[str, Any], language: str
) -> Viewer:
    """How one attachment is shown: by its media type, and for a CDA by its level."""
    content_type = _media_type(attachment.get("contentType"))
    title = str(attachment.get("title") or document.get("description") or "")
    src = f"/patient/documents/{document['id']}/content/{index}"
    shown = Viewer(index=index, kind="file", content_type=content_type, title=title, src=src)
    if content_type == "application/pdf":
        return replace(shown, kind="frame")
    if content_type in ("image/jpeg", "image/png"):
        return replace(shown, kind="image")
    if content_type == "text/plain":
        raw, _ = _content(holder, document, index)
        return replace(shown, kind="text", text=raw[:200_000].decode("utf-8", errors="replace"))
    if content_type not in CDA_TYPES:
        return shown
    raw, _ = _content(holder, document, index)
    if _is_structured(raw):  # level 3: rendered; shown as a file if it cannot be rendered safely
        try:
            return replace(shown, kind="html", html=render_cda(raw, language))
        except (CarnetError, ValueError):
            return shown
    if _embedded_pdf(raw) is not None:  # level 1: the PDF it carries, in a frame
        return replace(shown, kind="frame", content_type="application/pdf", src=f"{src}?part=pdf")
    return shown


def _viewers(holder: Holder, document: dict[str, Any], language: str) -> list[Viewer]:
    return [
        _viewer(holder, document, index, attachment, language) for index, attachment in attachments(document)
    ]


@dataclass(frozen=True, slots=True, kw_only=True)
class Seer:
    """Someone who may (or may not) see a document, and why (catalog ids)."""

    who: str
    how: str
    allowed: bool


def _who_can_see(
    request: Request, holder: Holder, facts: DocumentFacts, consents: list[dict[str, Any]]
) -> list[Seer]:
    """Decide, with the policy itself, who among the care team and in an emergency may read a document."""
    now = utc_now()
    profile = portal(request).services.records.profile
    grants = grants_from_consents(consents, now)
    target = Target(patient_id=holder.patient_id, resource_type="DocumentReference", document=facts)
    seers: list[Seer] = []

    def allowed(principal: Principal, mode: AccessMode, justification: str | None = None) -> bool:
        request_ = AccessRequest(
            actor=principal, action=Action.READ, target=target, mode=mode, justification=justification
        )
        return decide(request_, grants, profile, now).allowed

    people: dict[str, str] = {}
    for consent in consents:
        kind = kind_of(consent)
        idnps = actor_id(consent)
        if consent.get("status") == "active" and idnps and kind in ("authorisation", "treating-physician"):
            people.setdefault(idnps, kind)
    for idnps, kind in people.items():
        found = professional(request, idnps)
        principal = Principal(
            kind=ActorKind.PROFESSIONAL,
            subject=f"idnps:{idnps}",
            professional_id=idnps,
            profession=found.profession or "10",
            specialty=found.specialty,
        )
        mode = AccessMode.TREATING if kind == "treating-physician" else AccessMode.NORMAL
        how = "Treating physician" if kind == "treating-physician" else "Authorised professional"
        seers.append(Seer(who=found.display, how=how, allowed=allowed(principal, mode)))
    emergency = Principal(
        kind=ActorKind.PROFESSIONAL, subject="any-physician", professional_id="0", profession="10"
    )
    seers.append(
        Seer(
            who="Any physician, in an emergency (break-glass)",
            how="Break-glass",
            allowed=allowed(emergency, AccessMode.BREAK_GLASS, "emergency"),
        )
    )
    samu = Principal(
        kind=ActorKind.PROFESSIONAL, subject="samu", professional_id="0", profession="10", samu_regulator=True
    )
    seers.append(
        Seer(
            who="The SAMU regulating physician (centre 15)",
            how="Regulation",
            allowed=allowed(samu, AccessMode.REGULATION),
        )
    )
    return seers


@router.get("/documents/new")
def upload_form(request: Request) -> Response:
    """The upload form."""
    holder_of(request)
    return page(request, "patient/upload.html", "documents", {"error": None, "title": ""})


@router.get("/documents/{document_id}")
def document(document_id: str, request: Request) -> Response:
    """One document: its content, its facts, its visibility and who can see it."""
    holder = holder_of(request)
    resource = read_own(holder, "DocumentReference", document_id)
    consents = consents_of(holder)
    line = document_line(resource)
    # The page shows the visibility the policy reads, from the same facts.
    facts = document_facts(resource)
    return page(
        request,
        "patient/document.html",
        "documents",
        {
            "doc": line,
            "class_label": _class_label(line.class_code),
            "viewers": _viewers(holder, resource, language_of(request)),
            "masked": Visibility.MASKED_FROM_PROFESSIONALS in facts.visibility,
            "named_masks": [professional(request, idnps) for idnps in sorted(facts.masked_from)],
            "named_masks_allowed": portal(request).settings.policy_profile == "sovereign",
            "seers": _who_can_see(request, holder, facts, consents),
            "facility": concept_text((resource.get("context") or {}).get("facilityType")),
        },
    )


@router.get("/documents/{document_id}/content/{index}")
def content(document_id: str, index: int, request: Request) -> Response:
    """The bytes of one attachment (a PDF inside a CDA level 1 with ``?part=pdf``)."""
    holder = holder_of(request)
    resource = read_own(holder, "DocumentReference", document_id)
    data, content_type = _content(holder, resource, index)
    if request.query_params.get("part") == "pdf":
        pdf = _embedded_pdf(data)
        if pdf is None:
            raise PageError(404)
        data, content_type = pdf, "application/pdf"
    extension = {"application/pdf": "pdf", "image/jpeg": "jpg", "image/png": "png"}.get(
        content_type, "xml" if content_type in CDA_TYPES else "bin"
    )
    return file_response(
        data,
        content_type if content_type in INLINE_TYPES | CDA_TYPES else "application/octet-stream",
        f"document-{document_id[:40]}-{index}.{extension}",
        inline=content_type in INLINE_TYPES and request.query_params.get("download") != "1",
    )


@router.post("/documents/{document_id}/visibility")
async def visibility(document_id: str, request: Request) -> Response:
    """Mask a document from professionals, or show it to them again."""
    form = await checked_form(request)
    holder = holder_of(request)
    masked = form_text(form, "masked") == "1"
    service = portal(request).services.records
    await offload(set_masked, service, holder.principal, document_id, masked=masked)
    flash(
        request,
        "The document is now hidden from professionals."
        if masked
        else "Professionals may see the document again.",
    )
    return RedirectResponse(f"/patient/documents/{document_id}", status_code=303)


@router.post("/documents/{document_id}/masked-from")
async def masked_from(document_id: str, request: Request) -> Response:
    """Mask a document from one named professional, or lift that mask (``sovereign`` profile)."""
    form = await checked_form(request)
    holder = holder_of(request)
    if portal(request).settings.policy_profile != "sovereign":
        raise PageError(403)
    idnps = form_text(form, "idnps", 20)
    add = form_text(form, "action") != "remove"
    if not idnps.isdigit():
        raise PageError(400, "Give the professional's national identifier (digits).")

    service = portal(request).services.records
    await offload(set_masked, service, holder.principal, document_id, masked=add, professional_id=idnps)
    flash(request, "The document's visibility was changed.")
    return RedirectResponse(f"/patient/documents/{document_id}", status_code=303)


def patient_document(holder: Holder, title: str, content_type: str, data: bytes) -> dict[str, Any]:
    """A document of the patient (class 90 « document du patient »), its content inline, to publish."""
    stamp = utc_now().isoformat(timespec="seconds").replace("+00:00", "Z")
    return {
        "resourceType": "DocumentReference",
        "masterIdentifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{uuid.uuid4()}"},
        "status": "current",
        "type": {
            "coding": [
                {"system": TYPE_CODE_SYSTEM, "code": "EXPPAT_2", "display": "Autre document du patient"}
            ]
        },
        "category": [
            {"coding": [{"system": CLASS_CODE_SYSTEM, "code": "90", "display": "Document du patient"}]}
        ],
        "subject": {"reference": f"Patient/{holder.patient_id}"},
        "date": stamp,
        "author": [
            {
                "reference": f"Patient/{holder.patient_id}",
                **({"display": holder.principal.display} if holder.principal.display else {}),
            }
        ],
        "description": title,
        "content": [
            {
                "attachment": {
                    "contentType": content_type,
                    "data": base64.b64encode(data).decode("ascii"),
                    "title": title,
                    "creation": stamp,
                }
            }
        ],
    }


def upload_type(data: bytes) -> str | None:
    """The media type of an upload the portal accepts (PDF, JPEG, PNG, by their first bytes), else None."""
    return next((t for t, magic in UPLOAD_TYPES.items() if data.startswith(magic)), None)


@router.post("/documents")
async def upload(request: Request) -> Response:
    """Store a document the patient uploads (PDF, JPEG or PNG), class 90 « document du patient »."""
    limit = portal(request).settings.max_body_bytes
    form = await checked_form(request, max_size=limit)
    holder = holder_of(request)
    title = form_text(form, "title", 200)
    upload_file = form.get("file")

    def problem(message: str) -> Response:
        return page(
            request, "patient/upload.html", "documents", {"error": message, "title": title}, status=422
        )

    data = await upload_file.read(limit + 1) if isinstance(upload_file, UploadFile) else b""
    await form.close()
    if not title:
        return problem("Give the document a title.")
    if not isinstance(upload_file, UploadFile):
        return problem("Choose a file to upload.")
    if len(data) > limit:
        raise PageError(413)  # the 413 page, like a body over the limit (carnet.web.body_limit)
    content_type = upload_type(data)
    if not data or content_type is None:
        return problem("Only PDF, JPEG and PNG files can be uploaded.")
    masked = form_text(form, "masked") == "1"
    document_ = patient_document(holder, title, content_type, data)
    document_ = with_masked(document_, masked=masked)
    result = await offload(holder.records.publish, document_)
    flash(request, "Your document was added to your record.")
    return RedirectResponse(f"/patient/documents/{result.stored.resource_id}", status_code=303)
