"""The professional portal (``/pro/…``): find a patient by INS, open the record, share documents.

Every read and write goes through the same ``Records`` service as the FHIR API, for the signed-in
professional, in the access mode of that record (rule 1 of DESIGN §3):

- ``normal`` — the patient authorised the professional (or the professional declared, in the
  patient's presence, the patient's consent: ``professional-declares-consent``);
- ``treating`` — the professional is one of the patient's treating physicians;
- ``break_glass`` — an emergency access with a justification, kept in the session
  (``carnet.web.session``); a banner stays on every page of the portal while it lasts.

The mode of a record is found once per session (the first of ``normal``, ``treating`` that the
policy allows) and kept in the session key ``pro_modes`` (``{patient_id: mode}``); it is looked up
again when the policy no longer allows it (an authorisation withdrawn, say).

Finding a record: ``Patient?identifier=`` by INS, through the policy, in each mode. When none of
the professional's modes finds it, the portal asks whether a record exists for that INS (the
DMP's "test d'existence", which any professional may make) so as to offer the two ways in:
declaring the patient's consent, or breaking the glass. Nothing of the record is read then.

==================================================  ===========================================
``GET  /pro/``                                      find a patient by INS
``GET  /pro/search?ins=``                           open the record, or offer the ways in
``POST /pro/access/consent``                        declare the patient's consent (authorisation
                                                    or treating physician)
``POST /pro/access/break-glass``                    break the glass (justification required; in
                                                    ``sovereign``, a confirming professional too)
``GET  /pro/patients/{pid}``                        the record's summary (measures chart in SVG)
``GET  /pro/patients/{pid}/summary.pdf``            the printable summary
``GET  /pro/patients/{pid}/documents``              the documents the policy shows, by class
``GET  /pro/patients/{pid}/documents/{id}``         the document viewer (CDA rendered, PDF framed)
``GET  /pro/patients/{pid}/documents/{id}/content`` the document's bytes (PDF inline, else a file)
``GET|POST /pro/patients/{pid}/documents/new``      submit a document (PDF or CDA) with metadata;
                                                    ``?replaces=<id>`` replaces one of one's own
``POST /pro/patients/{pid}/documents/{id}/archive`` archive, ``…/unarchive``, ``…/delete``
``POST /pro/patients/{pid}/treating``               become treating physician (patient agrees)
``POST /pro/patients/{pid}/end-emergency``          end the break-glass access
==================================================  ===========================================
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from carnet.domain.consent import ConsentKind
from carnet.domain.documents import binary_content
from carnet.domain.errors import (
    AccessDenied,
    CarnetError,
    Gone,
    InvalidRequest,
    InvalidResource,
    NotFound,
    PayloadTooLarge,
    Unauthenticated,
)
from carnet.domain.policy import NO_RECORD, AccessMode
from carnet.domain.principal import ActorKind, Identifier, Principal
from carnet.feeds.cda import parse_cda
from carnet.offload import offload
from carnet.services.access_check import check_access
from carnet.services.choices import record_choice
from carnet.services.records import Records
from carnet.services.reimbursements import (
    pharmacy_dispensations,
    recent_dispensations,
    reimbursement_timeline,
)
from carnet.web.cda_render import EmbeddedBody, render_cda
from carnet.web.csrf import checked_form, form_text
from carnet.web.errors import PageError
from carnet.web.headers import file_response
from carnet.web.i18n import language_of
from carnet.web.measure_chart import measure_chart
from carnet.web.message_inbox import unread_messages
from carnet.web.pages import portal, render
from carnet.web.pro_confirmation import confirmer_of
from carnet.web.pro_submission import CLASSES, ID, TYPES, FormProblem, publish, read_upload
from carnet.web.record_summary import (
    CLASS_SYSTEM,
    INS_SYSTEMS,
    DocumentLine,
    RecordSummary,
    document_line,
    summarise,
)
from carnet.web.session import BreakGlass, break_glass, current_principal, end_break_glass, start_break_glass
from carnet.web.summary_pdf import summary_pdf
from carnet.web.units import number

router = APIRouter(prefix="/pro", include_in_schema=False)

T = TypeVar("T")

MODES_KEY = "pro_modes"
MAX_JUSTIFICATION = 500
#: A professional's national identifier (idNat_PS: ``8`` + RPPS, or ``0`` + ADELI, …).
#: An INS (NIR or NIA): 15 characters, digits with 2A/2B for Corsica; spaces are allowed in input.
_INS = re.compile(r"[0-9][0-9AB][0-9]{13}")


# Sessions, principals, modes ------------------------------------------------------------------


def _professional(request: Request) -> Principal:
    """Return the signed-in professional.

    Raises:
        Unauthenticated: nobody is signed in (the portal sends them to ``/login``).
        PageError: someone who is not a professional is signed in.
    """
    principal = current_principal(request)
    if principal is None:
        raise Unauthenticated("Sign in first.")
    if principal.kind is not ActorKind.PROFESSIONAL or not principal.professional_id:
        raise PageError(403, "This page is for health professionals.")
    return principal


def _language(request: Request) -> str:
    return language_of(request)


def _remembered(request: Request) -> dict[str, str]:
    raw = request.session.get(MODES_KEY)
    return {str(k): str(v) for k, v in raw.items()} if isinstance(raw, dict) else {}


def _remember(request: Request, patient_id: str, mode: AccessMode | None) -> None:
    modes = _remembered(request)
    if mode is None:
        modes.pop(patient_id, None)
    else:
        modes[patient_id] = mode.value
    # A professional rarely has more than a few records open; keep the cookie small.
    request.session[MODES_KEY] = dict(list(modes.items())[-20:])


def _records(
    request: Request, principal: Principal, mode: AccessMode, emergency: BreakGlass | None
) -> Records:
    service = portal(request).services.records
    if mode is AccessMode.BREAK_GLASS and emergency is not None:
        return service.records(
            principal,
            mode=mode,
            justification=emergency.justification,
            confirmed_by=emergency.confirmed_by,
        )
    return service.records(principal, mode=mode)


def _can_read(records: Records, patient_id: str) -> bool:
    try:
        records.read("Patient", patient_id)
    except (NotFound, AccessDenied, Gone):
        return False
    return True


@dataclass(frozen=True, slots=True, kw_only=True)
class Access:
    """The signed-in professional's way into one record."""

    principal: Principal
    patient_id: str
    mode: AccessMode
    records: Records
    emergency: BreakGlass | None


async def _access(request: Request, patient_id: str) -> Access:
    """Return the professional's access to a record, in the mode that lets them in.

    Raises:
        PageError: 404 when no mode lets them in (the same page as an unknown record).
    """
    principal = _professional(request)
    if not ID.fullmatch(patient_id):
        raise PageError(404)
    emergency = break_glass(request, patient_id)
    if emergency is not None:
        records = _records(request, principal, AccessMode.BREAK_GLASS, emergency)
        return Access(
            principal=principal,
            patient_id=patient_id,
            mode=AccessMode.BREAK_GLASS,
            records=records,
            emergency=emergency,
        )
    remembered = _remembered(request).get(patient_id)
    candidates = [AccessMode.NORMAL, AccessMode.TREATING]
    if remembered in (AccessMode.NORMAL.value, AccessMode.TREATING.value):
        first = AccessMode(remembered)
        candidates.remove(first)
        candidates.insert(0, first)
    for index, mode in enumerate(candidates):
        records = _records(request, principal, mode, None)
        # The remembered mode is trusted until a read fails; only then are the others tried.
        if index == 0 and remembered == mode.value:
            return Access(
                principal=principal, patient_id=patient_id, mode=mode, records=records, emergency=None
            )
        if await offload(_can_read, records, patient_id):
            _remember(request, patient_id, mode)
            return Access(
                principal=principal, patient_id=patient_id, mode=mode, records=records, emergency=None
            )
    _remember(request, patient_id, None)
    raise PageError(404)


async def access_to(request: Request, patient_id: str) -> Access:
    """The signed-in professional's access to a record, for the portal's other pages (``_access``)."""
    return await _access(request, patient_id)


async def _guarded(request: Request, access: Access, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a records call; on a refusal the remembered mode is forgotten, to be found again next time."""
    try:
        return await offload(fn, *args, **kwargs)
    except (NotFound, AccessDenied):
        if access.mode is not AccessMode.BREAK_GLASS:
            _remember(request, access.patient_id, None)
        raise


def _emergencies(request: Request) -> list[tuple[str, BreakGlass]]:
    raw = request.session.get("break_glass")
    if not isinstance(raw, dict):
        return []
    found = [(str(pid), break_glass(request, str(pid))) for pid in raw]
    return [(pid, state) for pid, state in found if state is not None]


def _confirmation_needed(request: Request) -> bool:
    """Whether the policy profile asks a second professional to confirm each break-glass access."""
    return portal(request).services.records.profile.break_glass_needs_confirmation


def _page(
    request: Request, template: str, context: Mapping[str, Any] | None = None, *, status: int = 200
) -> Response:
    """Render a page of the portal with what every professional page shows (the banners)."""
    values: dict[str, Any] = {
        "emergencies": _emergencies(request),
        "classes": [(code, fr if _language(request) == "fr" else en) for code, fr, en in CLASSES],
        "types": [(code, fr if _language(request) == "fr" else en) for code, fr, en in TYPES],
        "confirmation_needed": _confirmation_needed(request),
    }
    values.update(context or {})
    return render(request, template, values, status=status)


def pro_page(request: Request, template: str, context: Mapping[str, Any], *, status: int = 200) -> Response:
    """Render a page of the professional portal with its banners, for the portal's other pages."""
    return _page(request, template, context, status=status)


def _normal_ins(raw: str) -> str | None:
    compact = "".join(raw.split()).upper()
    return compact if _INS.fullmatch(compact) else None


def _identifier_query(ins: str) -> str:
    return ",".join(f"{system}|{ins}" for system in INS_SYSTEMS)


def _existing_record(request: Request, ins: str) -> str | None:
    """The DMP's existence test: the record id of an INS, without reading anything of it."""
    service = portal(request).services.records
    for system in INS_SYSTEMS:
        holder = service.resolve(
            Principal(
                kind=ActorKind.PATIENT,
                subject=f"pro-lookup:{ins}",
                identifier=Identifier(system=system, value=ins),
            )
        )
        if holder.patient_id is not None:
            return holder.patient_id
    return None


# Finding a patient ----------------------------------------------------------------------------


@router.get("/")
async def home(request: Request) -> Response:
    """Show the search by INS."""
    unread = await offload(unread_messages, request, _professional(request))
    return _page(request, "pro/home.html", {"ins": "", "error": None, "unread": unread})


@router.get("/search")
async def search(request: Request, ins: str = "") -> Response:
    """Open the record of an INS if the professional has access, else offer the ways in."""
    principal = _professional(request)
    normal = _normal_ins(ins)
    if normal is None:
        return _page(
            request,
            "pro/home.html",
            {
                "ins": ins[:40],
                "error": "An INS has 15 characters (13 digits and a 2-digit key). Check it and try again.",
            },
            status=422,
        )
    query = [("identifier", _identifier_query(normal))]
    for pid, state in _emergencies(request):
        records = _records(request, principal, AccessMode.BREAK_GLASS, state)
        found = await offload(records.search, "Patient", query)
        if any(r.get("id") == pid for r in found.resources):
            return RedirectResponse(f"/pro/patients/{pid}", status_code=303)
    for mode in (AccessMode.NORMAL, AccessMode.TREATING):
        records = _records(request, principal, mode, None)
        found = await offload(records.search, "Patient", query)
        if found.resources:
            patient_id = str(found.resources[0]["id"])
            _remember(request, patient_id, mode)
            return RedirectResponse(f"/pro/patients/{patient_id}", status_code=303)
    exists = await offload(_existing_record, request, normal)
    refused = (
        await offload(check_access, portal(request).services.records, principal, exists) if exists else None
    )
    if exists is None or (refused is not None and NO_RECORD in refused.reasons):
        return _page(
            request,
            "pro/home.html",
            {
                "ins": normal,
                "error": "No record has this INS. Check the INS, or ask the patient whether they have a record.",
            },
            status=404,
        )
    return _ways_in(request, normal, refused.reasons if refused is not None else ())


def _ways_in(request: Request, ins: str, reasons: Sequence[str], **context: Any) -> Response:
    """The ways into a record (consent, break-glass), or why there is none: blocked, or closed."""
    state = next((r for r in ("blocked", "record-closed") if r in reasons), "")
    return _page(
        request,
        "pro/access.html",
        {"ins": ins, "error": None, "state": state, **context},
        status=403 if state else 200,
    )


@router.post("/access/consent")
async def declare_consent(request: Request) -> Response:
    """Record that the patient, present, agrees to this professional's access (or as treating physician)."""
    form = await checked_form(request)
    principal = _professional(request)
    ins = _normal_ins(form_text(form, "ins", 200))
    kind = (
        ConsentKind.TREATING_PHYSICIAN
        if form_text(form, "kind") == "treating-physician"
        else ConsentKind.AUTHORISATION
    )
    patient_id = await offload(_existing_record, request, ins) if ins else None
    if ins is None or patient_id is None:
        raise PageError(404)
    if form_text(form, "agreed") != "yes":
        return _page(
            request,
            "pro/access.html",
            {
                "ins": ins,
                "error": "Tick the box confirming that the patient agrees, then try again.",
            },
            status=422,
        )
    service = portal(request).services.records
    try:
        await offload(record_choice, service, principal, patient_id, kind, principal.professional_id or "")
    except AccessDenied as denied:
        refused = await offload(check_access, service, principal, patient_id)
        if {"blocked", "record-closed"} & set(refused.reasons):
            return _ways_in(request, ins, refused.reasons)
        raise PageError(
            403, "Your access to this record cannot be recorded. The patient may have refused it."
        ) from denied
    _remember(
        request,
        patient_id,
        AccessMode.TREATING if kind is ConsentKind.TREATING_PHYSICIAN else AccessMode.NORMAL,
    )
    return RedirectResponse(f"/pro/patients/{patient_id}?done=consent", status_code=303)


@router.post("/access/break-glass")
async def start_emergency(request: Request) -> Response:
    """Break the glass: an emergency read of the record, with a mandatory justification."""
    form = await checked_form(request)
    principal = _professional(request)
    ins = _normal_ins(form_text(form, "ins", 200))
    patient_id = await offload(_existing_record, request, ins) if ins else None
    if ins is None or patient_id is None:
        raise PageError(404)
    justification = form_text(form, "justification", MAX_JUSTIFICATION)
    # The second professional's own signed confirmation (carnet.web.pro_confirmation), never a typed name.
    confirmed_by = confirmer_of(request, form, principal)
    context = {"ins": ins, "justification": justification}
    if len(justification) < 10:
        return _page(
            request,
            "pro/access.html",
            {
                **context,
                "error": "Write why this is an emergency (at least 10 characters): the patient will read it.",
            },
            status=422,
        )
    if _confirmation_needed(request) and confirmed_by is None:
        return _page(
            request,
            "pro/access.html",
            {
                **context,
                "error": "Here a second professional must confirm each emergency access: paste the confirmation your colleague obtained, signed in as themself, on the page Confirm a colleague's emergency access.",
            },
            status=422,
        )
    now = datetime.now(UTC)
    service = portal(request).services.records
    records = service.records(
        principal, mode=AccessMode.BREAK_GLASS, justification=justification, confirmed_by=confirmed_by
    )
    if not await offload(_can_read, records, patient_id):
        return _page(
            request,
            "pro/access.html",
            {
                **context,
                "error": "Emergency access to this record is not possible: the patient has refused it, or your access is blocked.",
            },
            status=403,
        )
    start_break_glass(request, patient_id, justification, now=now, confirmed_by=confirmed_by)
    return RedirectResponse(f"/pro/patients/{patient_id}", status_code=303)


@router.post("/patients/{patient_id}/end-emergency")
async def end_emergency(patient_id: str, request: Request) -> Response:
    """End the break-glass access to a record."""
    await checked_form(request)
    _professional(request)
    end_break_glass(request, patient_id)
    _remember(request, patient_id, None)
    return RedirectResponse("/pro/", status_code=303)


# The record -----------------------------------------------------------------------------------


def _resources(access: Access) -> list[dict[str, Any]]:
    return [s.resource for s in access.records.everything(access.patient_id) if s.resource is not None]


def _number(value: float, language: str) -> str:
    return number(value, language)


def _shown_class(line: DocumentLine, language: str) -> str:
    for code, fr, en in CLASSES:
        if code == line.class_code:
            return fr if language == "fr" else en
    return line.class_label or line.type


def _common(request: Request, access: Access, summary: RecordSummary | None) -> dict[str, Any]:
    return {
        "patient_id": access.patient_id,
        "identity": summary.identity if summary else None,
        "mode": access.mode.value,
        "emergency": access.emergency,
        "me": access.principal.professional_id,
        "done": request.query_params.get("done", "")[:30],
    }


@router.get("/patients/{patient_id}")
async def record(patient_id: str, request: Request) -> Response:
    """Show the record's summary: allergies, treatments, vaccinations, last documents, measures."""
    access = await _access(request, patient_id)
    resources = await _guarded(request, access, _resources, access)
    summary = summarise(resources)
    timeline = await _guarded(request, access, reimbursement_timeline, access.records, patient_id)
    pharmacy = await _guarded(request, access, pharmacy_dispensations, access.records, patient_id)
    dispenses = [r for r in resources if r.get("resourceType") == "MedicationDispense"]
    language = _language(request)
    # Charts for the measures with the longest series; every latest value is in the table too.
    charted = sorted((m for m in summary.measures if len(m.series) >= 2), key=lambda m: -len(m.series))[:4]
    charts = [(m, measure_chart(m, language)) for m in charted]
    values = [(m, _number(m.latest, language)) for m in summary.measures[:12]]
    return _page(
        request,
        "pro/record.html",
        {
            **_common(request, access, summary),
            "summary": summary,
            "documents": [(d, _shown_class(d, language)) for d in summary.documents[:5]],
            "charts": charts,
            "measures": values,
            "dispensed": recent_dispensations(timeline, dispenses, pharmacy=pharmacy),
        },
    )


@router.get("/patients/{patient_id}/summary.pdf")
async def record_pdf(patient_id: str, request: Request) -> Response:
    """Download the record's printable summary (PDF)."""
    access = await _access(request, patient_id)
    resources = await _guarded(request, access, _resources, access)
    pdf = await offload(summary_pdf, resources, _language(request))
    return file_response(pdf, "application/pdf", "synthese-dossier.pdf")


@router.get("/patients/{patient_id}/documents")
async def documents(patient_id: str, request: Request, category: str = "", archived: str = "") -> Response:
    """List the record's documents the policy shows this professional, newest first."""
    access = await _access(request, patient_id)
    language = _language(request)
    params = [
        ("patient", f"Patient/{patient_id}"),
        ("status", "current"),
        ("_sort", "-date"),
        ("_count", "500"),
    ]
    if category in {code for code, _, _ in CLASSES}:
        params.append(("category", f"{CLASS_SYSTEM}|{category}"))
    found = await _guarded(request, access, access.records.search, "DocumentReference", params)
    lines = [document_line(r) for r in found.resources]
    if archived != "yes":
        lines = [line for line in lines if not line.archived]
    patient = await _guarded(request, access, access.records.read, "Patient", patient_id)
    summary = summarise([patient.resource] if patient.resource else [])
    return _page(
        request,
        "pro/documents.html",
        {
            **_common(request, access, summary),
            "lines": [(line, _shown_class(line, language)) for line in lines],
            "category": category,
            "archived": archived == "yes",
        },
    )


# Declared before the viewer's route, so that "new" is never taken for a document id.
@router.get("/patients/{patient_id}/documents/new")
async def upload_form(patient_id: str, request: Request, replaces: str = "") -> Response:
    """Show the submission form (with ``?replaces=<id>`` to replace one's own document)."""
    access = await _access(request, patient_id)
    if access.mode is AccessMode.BREAK_GLASS:
        raise PageError(403, "An emergency access only reads the record.")
    patient = await _guarded(request, access, access.records.read, "Patient", patient_id)
    summary = summarise([patient.resource] if patient.resource else [])
    return _page(
        request,
        "pro/upload.html",
        {
            **_common(request, access, summary),
            "replaces": replaces if ID.fullmatch(replaces or "-") and replaces else "",
            "error": None,
            "today": datetime.now(UTC).date().isoformat(),
            "values": {},
        },
    )


def _document_and_content(
    access: Access, document_id: str
) -> tuple[dict[str, Any], DocumentLine, bytes | None]:
    stored = access.records.read("DocumentReference", document_id)
    document = stored.resource or {}
    if document.get("subject", {}).get("reference") != f"Patient/{access.patient_id}":
        raise NotFound("DocumentReference is not known.")
    line = document_line(document)
    content = None
    if line.binary is not None:
        binary = access.records.read("Binary", line.binary).resource or {}
        content = binary_content(binary)
    return document, line, content


@router.get("/patients/{patient_id}/documents/{document_id}")
async def document_view(patient_id: str, document_id: str, request: Request) -> Response:
    """Show one document: its metadata and its content (a CDA rendered safely, a PDF in a frame)."""
    access = await _access(request, patient_id)
    if not ID.fullmatch(document_id):
        raise PageError(404)
    try:
        document, line, content = await _guarded(request, access, _document_and_content, access, document_id)
    except (NotFound, AccessDenied, Gone):
        raise PageError(404) from None
    language = _language(request)
    rendered = None
    embedded = False
    problem = None
    kind = (line.content_type or "").lower()
    if content is not None and ("xml" in kind or content.lstrip().startswith(b"<")):
        try:
            rendered = await offload(render_cda, content, language)
        except CarnetError:
            problem = "This document cannot be shown safely here; download it to read it."
        embedded = isinstance(rendered, EmbeddedBody)
    patient = await _guarded(request, access, access.records.read, "Patient", patient_id)
    summary = summarise([patient.resource] if patient.resource else [])
    return _page(
        request,
        "pro/document.html",
        {
            **_common(request, access, summary),
            "line": line,
            "class_label": _shown_class(line, language),
            "rendered": rendered,
            "embedded": embedded,
            "is_pdf": kind == "application/pdf",
            "is_text": kind.startswith("text/plain"),
            "text": content.decode("utf-8", "replace")
            if content is not None and kind.startswith("text/plain")
            else "",
            "problem": problem,
            "mine": access.principal.professional_id in line.author_ids,
            "can_write": access.mode is not AccessMode.BREAK_GLASS,
            "superseded": document.get("status") != "current",
        },
    )


@router.get("/patients/{patient_id}/documents/{document_id}/content")
async def document_content(patient_id: str, document_id: str, request: Request, part: str = "") -> Response:
    """Return a document's bytes: a PDF (or a CDA's embedded PDF) inline, anything else as a download."""
    access = await _access(request, patient_id)
    if not ID.fullmatch(document_id):
        raise PageError(404)
    try:
        _, line, content = await _guarded(request, access, _document_and_content, access, document_id)
    except (NotFound, AccessDenied, Gone):
        raise PageError(404) from None
    if content is None:
        raise PageError(404)
    media_type = (line.content_type or "application/octet-stream").lower()
    if part == "embedded":
        try:
            cda = await offload(parse_cda, content)
        except CarnetError:
            raise PageError(404) from None
        if cda.body is None or cda.body.content is None:
            raise PageError(404)
        content, media_type = cda.body.content, (cda.body.media_type or "application/octet-stream").lower()
    inline = media_type == "application/pdf"
    extension = {"application/pdf": "pdf", "text/xml": "xml", "application/xml": "xml", "text/plain": "txt"}
    return file_response(
        content,
        media_type if inline else "application/octet-stream",
        f"document.{extension.get(media_type, 'bin')}",
        inline=inline,
    )


# Submitting, replacing, archiving, deleting ---------------------------------------------------


@router.post("/patients/{patient_id}/documents/new")
async def upload_submit(patient_id: str, request: Request) -> Response:
    """Submit a document (PDF with its metadata, or a CDA whose header gives them)."""
    limit = portal(request).settings.max_body_bytes
    form = await checked_form(request, max_size=limit)
    access = await _access(request, patient_id)
    if access.mode is AccessMode.BREAK_GLASS:
        raise PageError(403, "An emergency access only reads the record.")
    error: str | None = None
    try:
        try:
            upload = await read_upload(form, limit=limit)
        finally:
            await form.close()  # the uploaded file's temporary file
        document_id = await offload(publish, access.records, access.principal, patient_id, upload)
    except FormProblem as problem:
        error = problem.message
    except PayloadTooLarge:
        raise PageError(413) from None  # the 413 page, like a body over the limit (carnet.web.body_limit)
    except (InvalidResource, InvalidRequest):
        error = "The file could not be used: it is not a valid PDF or CDA R2 document, or its details are incomplete."
    except (AccessDenied, NotFound):
        error = (
            "You may not submit this document to this record (a document you replace must be one of yours)."
        )
    if error is not None:
        patient = await offload(access.records.read, "Patient", patient_id)
        summary = summarise([patient.resource] if patient.resource else [])
        return _page(
            request,
            "pro/upload.html",
            {
                **_common(request, access, summary),
                "replaces": form_text(form, "replaces", 64),
                "error": error,
                "today": datetime.now(UTC).date().isoformat(),
                "values": {k: form_text(form, k, 200) for k in ("title", "class_code", "type_code", "date")},
            },
            status=422,
        )
    return RedirectResponse(
        f"/pro/patients/{patient_id}/documents/{document_id}?done=submitted", status_code=303
    )


async def _change(request: Request, patient_id: str, document_id: str, action: str) -> Response:
    await checked_form(request)
    access = await _access(request, patient_id)
    if not ID.fullmatch(document_id):
        raise PageError(404)
    if access.mode is AccessMode.BREAK_GLASS:
        raise PageError(403, "An emergency access only reads the record.")
    try:
        if action == "delete":
            await _guarded(request, access, access.records.delete, "DocumentReference", document_id)
        else:
            await _guarded(request, access, access.records.archive, document_id, archived=action == "archive")
    except AccessDenied:
        raise PageError(403, "Only the author of a document (or the patient) may change it.") from None
    except NotFound:
        raise PageError(404) from None
    target = f"/pro/patients/{patient_id}/documents?done={action}d"
    if action == "archive":
        target = f"/pro/patients/{patient_id}/documents?done=archived"
    return RedirectResponse(target, status_code=303)


@router.post("/patients/{patient_id}/documents/{document_id}/archive")
async def archive(patient_id: str, document_id: str, request: Request) -> Response:
    """Archive one of one's own documents."""
    return await _change(request, patient_id, document_id, "archive")


@router.post("/patients/{patient_id}/documents/{document_id}/unarchive")
async def unarchive(patient_id: str, document_id: str, request: Request) -> Response:
    """Take one of one's own documents out of the archive."""
    return await _change(request, patient_id, document_id, "unarchive")


@router.post("/patients/{patient_id}/documents/{document_id}/delete")
async def delete(patient_id: str, document_id: str, request: Request) -> Response:
    """Delete one of one's own documents (logically: its history stays)."""
    return await _change(request, patient_id, document_id, "delete")


@router.post("/patients/{patient_id}/treating")
async def become_treating(patient_id: str, request: Request) -> Response:
    """Declare, with the patient's agreement, that one becomes their treating physician."""
    form = await checked_form(request)
    access = await _access(request, patient_id)
    if access.mode is not AccessMode.NORMAL:
        raise PageError(403, "Only a professional the patient authorised can declare this.")
    if form_text(form, "agreed") != "yes":
        return RedirectResponse(f"/pro/patients/{patient_id}?done=not-agreed", status_code=303)
    service = portal(request).services.records
    doctor = access.principal.professional_id or ""
    try:
        await offload(
            record_choice, service, access.principal, patient_id, ConsentKind.TREATING_PHYSICIAN, doctor
        )
    except AccessDenied:
        raise PageError(
            403, "Your access to this record cannot be recorded. The patient may have refused it."
        ) from None
    _remember(request, patient_id, AccessMode.TREATING)
    return RedirectResponse(f"/pro/patients/{patient_id}?done=treating", status_code=303)
