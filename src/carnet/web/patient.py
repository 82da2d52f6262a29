"""The patient portal (``/patient/…``): my record, my documents, my choices, who saw what.

Every read and write goes through the ``Records`` service of the FHIR API, for the signed-in
patient (``services.records.records(principal)``): the policy decides each call, exactly as
for ``/fhir``. The patient's choices are the Consents of ``docs/policy.md`` and masking is the
document's ``securityLabel`` (``MASQUE_PS``) or ``masked-from`` extension (``sovereign``);
nothing else stores a choice. Recording or withdrawing a choice, the oppositions, closing and
reopening are the use cases of ``carnet.services.choices`` and ``carnet.services.record_status``
(one transaction, one journal entry each): the same functions as the FHIR operations.

===============================================  ==============================================
``GET  /patient/``                               home: latest documents, changes since last visit
``GET  /patient/documents``                      documents by DMP class (``?class=`` filters)
``GET  /patient/documents/new``                  upload form; ``POST /patient/documents`` stores
``GET  /patient/documents/{id}``                 viewer, visibility, who can see it
``GET  /patient/documents/{id}/content/{n}``     the n-th attachment's bytes (``?part=pdf``: the
                                                 PDF inside a CDA level 1; ``?download=1``)
``POST /patient/documents/{id}/visibility``      mask / unmask from professionals
``POST /patient/documents/{id}/masked-from``     mask from / unmask for one professional
                                                 (``sovereign`` profile)
``GET  /patient/profile``                        the medical profile, with a chart per measure
``POST /patient/profile``                        add an entry (``kind``: see ``profile_entries``)
``GET  /patient/profile/{type}/{id}/edit``       an entry's edit form; ``POST`` saves the change
                                                 (``If-Match`` the version the form showed)
``POST /patient/profile/{type}/{id}/delete``     remove an entry
``GET  /patient/care-team``                      authorised, blocked, treating physicians
``POST /patient/care-team``                      add one; ``POST /patient/care-team/{id}/revoke``
``GET  /patient/choices``                        oppositions and notification preferences
``POST /patient/choices/oppositions``            oppose / accept break-glass and regulation
``POST /patient/choices/notifications``          notification preferences
``GET  /patient/access``                         who accessed my record (the journal)
``GET  /patient/access/{event}/verify``          an entry's inclusion proof, checked
``GET  /patient/export``                         export page; ``/patient/export/record.json``
                                                 (FHIR Bundle), ``/patient/export/summary.pdf``
``GET  /patient/close``                          consequences of closing; ``POST`` closes
===============================================  ==============================================

The documents' routes are in ``carnet.web.patient_documents``, the medical profile's in
``carnet.web.patient_profile``, the access history's in ``carnet.web.patient_journal``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from carnet.domain import fhirjson
from carnet.domain.consent import ConsentKind
from carnet.domain.errors import CarnetError, InvalidRequest
from carnet.domain.resources import is_closed
from carnet.offload import offload
from carnet.services.choices import Oppositions, end_of_day, record_choice, set_oppositions, withdraw_choice
from carnet.services.notifications import Preferences
from carnet.services.record_status import close_record, reopen_record
from carnet.web.csrf import checked_form, form_text
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
from carnet.web.i18n import language_of
from carnet.web.pages import flash, portal
from carnet.web.patient_journal import recent_visits
from carnet.web.patient_notifications import unread_count
from carnet.web.record_summary import document_line, human_name
from carnet.web.session import logout
from carnet.web.summary_pdf import summary_pdf

router = APIRouter(prefix="/patient", include_in_schema=False)

CARE_TEAM_KINDS = (ConsentKind.AUTHORISATION, ConsentKind.TREATING_PHYSICIAN, ConsentKind.BLOCK)


# -- home -------------------------------------------------------------------------------------


@router.get("/")
def home(request: Request) -> Response:
    """The home page: the latest documents and what changed since the last visit."""
    holder = holder_of(request)
    patient = patient_resource(holder)
    latest = [
        document_line(d)
        for d in search(
            holder, "DocumentReference", ("status", "current"), ("_sort", "-date"), ("_count", "5")
        )
    ]
    previous = request.session.get("previous_visit")
    since = previous if isinstance(previous, str) else (utc_now() - timedelta(days=30)).isoformat()
    since_param = since.replace("+00:00", "Z")
    changed_documents = [
        document_line(d)
        for d in search(holder, "DocumentReference", ("_lastUpdated", f"gt{since_param}"), ("_sort", "-date"))
        if d.get("status") == "current"
    ]
    visits, journal_available = recent_visits(request, holder, since_param)
    return page(
        request,
        "patient/home.html",
        "home",
        {
            "name": human_name(patient.get("name")) or holder.principal.display or "",
            "latest": latest,
            "first_visit": not isinstance(previous, str),
            "since": since,
            "changed_documents": changed_documents,
            "visits": visits,
            "unread": unread_count(request, holder),
            "journal_available": journal_available,
            "closed": is_closed(patient),
        },
    )


# -- care team and choices ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Choice:
    """One active Carnet choice naming a professional."""

    id: str
    kind: str
    professional: Professional
    until: str


@router.get("/care-team")
def care_team(request: Request) -> Response:
    """My care team: authorised professionals, treating physicians, blocked professionals."""
    holder = holder_of(request)
    choices: dict[str, list[Choice]] = {str(kind): [] for kind in CARE_TEAM_KINDS}
    for consent in consents_of(holder):
        kind = kind_of(consent)
        idnps = actor_id(consent)
        if consent.get("status") != "active" or kind not in choices or idnps is None:
            continue
        until = str(((consent.get("provision") or {}).get("period") or {}).get("end") or "")
        choices[kind].append(
            Choice(
                id=str(consent.get("id")), kind=kind, professional=professional(request, idnps), until=until
            )
        )
    directory = portal(request).demo.professionals()
    # The directory is searched by name, RPPS, city or specialty rather than scrolled.
    wanted = request.query_params.get("q", "").strip()[:80]
    if wanted:
        directory = [p for p in directory if p.matches(wanted)]
    return page(
        request,
        "patient/care_team.html",
        "care-team",
        {
            "choices": choices,
            "directory": directory,
            "wanted": wanted,
            "error": request.session.pop("care_error", None),
        },
    )


@router.post("/care-team")
async def add_to_care_team(request: Request) -> Response:
    """Authorise, name as treating physician, or block a professional."""
    form = await checked_form(request)
    holder = holder_of(request)
    kind_text = form_text(form, "kind", 40)
    idnps = form_text(form, "idnps", 20) or form_text(form, "practitioner", 20)
    until_text = form_text(form, "until", 20)
    try:
        kind = ConsentKind(kind_text)
        if kind not in CARE_TEAM_KINDS:
            raise ValueError(kind_text)
    except ValueError:
        request.session["care_error"] = "Choose what to do."
        return RedirectResponse("/patient/care-team", status_code=303)
    if not idnps.isdigit():
        request.session["care_error"] = "Give the professional's national identifier (digits)."
        return RedirectResponse("/patient/care-team", status_code=303)
    until = None
    if until_text and kind is ConsentKind.AUTHORISATION:
        try:
            until = end_of_day(date.fromisoformat(until_text))
        except ValueError:
            request.session["care_error"] = "Give dates as YYYY-MM-DD."
            return RedirectResponse("/patient/care-team", status_code=303)
    service = portal(request).services.records
    await offload(record_choice, service, holder.principal, holder.patient_id, kind, idnps, until=until)
    flash(request, "Your care team was updated.")
    return RedirectResponse("/patient/care-team", status_code=303)


@router.post("/care-team/{consent_id}/revoke")
async def revoke(consent_id: str, request: Request) -> Response:
    """Withdraw an authorisation, a treating physician or a block (the Consent becomes inactive)."""
    await checked_form(request)
    holder = holder_of(request)
    await offload(withdraw_choice, portal(request).services.records, holder.principal, consent_id)
    flash(request, "Your care team was updated.")
    return RedirectResponse("/patient/care-team", status_code=303)


@router.get("/choices")
def choices(request: Request) -> Response:
    """My choices: oppositions to emergency and SAMU access, notification preferences."""
    holder = holder_of(request)
    active = {kind_of(c) for c in consents_of(holder) if c.get("status") == "active"}
    services = portal(request).services
    try:
        preferences = services.records.notifier.preferences_for(
            services.store, holder.principal, holder.patient_id
        )
    except CarnetError:  # an erased record, say: the page says the preferences are unavailable
        preferences = None
    return page(
        request,
        "patient/choices.html",
        "choices",
        {
            "opposes_break_glass": str(ConsentKind.OPPOSITION_BREAK_GLASS) in active,
            "opposes_regulation": str(ConsentKind.OPPOSITION_REGULATION) in active,
            "preferences": preferences,
            "error": request.session.pop("choices_error", None),
        },
    )


@router.post("/choices/oppositions")
async def oppositions(request: Request) -> Response:
    """Oppose (or stop opposing) break-glass access and SAMU regulation access."""
    form = await checked_form(request)
    holder = holder_of(request)
    wanted = Oppositions(
        break_glass=form_text(form, "break_glass") == "1", regulation=form_text(form, "regulation") == "1"
    )
    service = portal(request).services.records
    await offload(set_oppositions, service, holder.principal, holder.patient_id, wanted)
    flash(request, "Your choices were saved.")
    return RedirectResponse("/patient/choices", status_code=303)


@router.post("/choices/notifications")
async def notifications(request: Request) -> Response:
    """Save the notification preferences (break-glass and regulation always notify)."""
    form = await checked_form(request)
    holder = holder_of(request)
    try:
        preferences = Preferences(
            new_document=form_text(form, "new_document") == "1",
            new_professional=form_text(form, "new_professional") == "1",
            masked_access=form_text(form, "masked_access") == "1",
            language=form_text(form, "language", 5) or "fr",
            email=form_text(form, "email", 254) or None,
        )
    except InvalidRequest:
        request.session["choices_error"] = "The e-mail address is not valid."
        return RedirectResponse("/patient/choices", status_code=303)
    services = portal(request).services
    await offload(
        services.records.notifier.choose, services.store, holder.principal, holder.patient_id, preferences
    )
    flash(request, "Your choices were saved.")
    return RedirectResponse("/patient/choices", status_code=303)


# -- export and closing -------------------------------------------------------------------------


@router.get("/export")
def export(request: Request) -> Response:
    """The export page."""
    holder_of(request)
    return page(request, "patient/export.html", "export", {})


def _everything(holder: Holder) -> list[dict[str, Any]]:
    return [r for r in (s.resource for s in holder.records.everything(holder.patient_id)) if r is not None]


@router.get("/export/record.json")
def export_bundle(request: Request) -> Response:
    """Download the whole record as a FHIR R4 Bundle (type ``collection``)."""
    holder = holder_of(request)
    base = portal(request).settings.base_url
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "timestamp": utc_now().isoformat(timespec="seconds").replace("+00:00", "Z"),
        "entry": [
            {"fullUrl": f"{base}/{r['resourceType']}/{r.get('id')}", "resource": r}
            for r in _everything(holder)
        ],
    }
    return file_response(fhirjson.dumps(bundle), "application/fhir+json", "carnet-record.json")


@router.get("/export/summary.pdf")
def export_pdf(request: Request) -> Response:
    """Download a printable PDF summary of the record."""
    holder = holder_of(request)
    pdf = summary_pdf(_everything(holder), language_of(request))
    return file_response(pdf, "application/pdf", "carnet-summary.pdf")


@router.get("/close")
def close_page(request: Request) -> Response:
    """What closing the record means, before confirming."""
    holder = holder_of(request)
    return page(
        request,
        "patient/close.html",
        "close",
        {"closed": is_closed(patient_resource(holder)), "error": None},
    )


@router.post("/close")
async def close(request: Request) -> Response:
    """Close the record: the Patient is marked inactive with the record status ``closed``."""
    form = await checked_form(request)
    holder = holder_of(request)
    if form_text(form, "confirm") != "1":
        return page(
            request,
            "patient/close.html",
            "close",
            {"closed": False, "error": "Tick the box to confirm that you understand the consequences."},
            status=422,
        )
    await offload(close_record, portal(request).services.records, holder.principal, holder.patient_id)
    await offload(logout, request)
    flash(request, "Your record is closed.")
    return RedirectResponse("/login", status_code=303)


@router.post("/reopen")
async def reopen(request: Request) -> Response:
    """Reopen a closed record: the record status extension goes, the Patient is active again."""
    await checked_form(request)
    holder = holder_of(request)
    await offload(reopen_record, portal(request).services.records, holder.principal, holder.patient_id)
    flash(request, "Your record is open again.")
    return RedirectResponse("/patient/", status_code=303)
