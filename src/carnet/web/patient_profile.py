"""The patient portal's medical profile: see, add, change and remove the patient's entries.

The entries are the record's own resources (``carnet.web.profile_entries`` builds new ones,
``carnet.web.profile_edit`` edits them in place), read and written through the patient's
``Records``: the policy decides each call. See ``carnet.web.patient`` for the portal's routes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from carnet.domain.consent import grants_from_consents
from carnet.domain.errors import AccessDenied, Conflict, InvalidRequest, InvalidResource
from carnet.domain.policy import AccessRequest, Action, Target, decide
from carnet.offload import offload
from carnet.services import entry_edits
from carnet.services.reimbursements import (
    Dispensed,
    pharmacy_dispensations,
    recent_dispensations,
    reimbursement_timeline,
)
from carnet.web.csrf import checked_form, form_text
from carnet.web.errors import PageError
from carnet.web.holder import Holder, consents_of, holder_of, kind_of, page, search, utc_now
from carnet.web.i18n import language_of, translate
from carnet.web.measure_chart import SHOWN, measure_chart
from carnet.web.pages import flash, portal
from carnet.web.profile_edit import EditField, apply_edit, edit_fields, options_for
from carnet.web.profile_entries import MEASURES, RESOURCE_TYPES, build_entry, contact_role, directive_text
from carnet.web.record_summary import concept_text, human_name, summarise
from carnet.web.units import number

router = APIRouter(prefix="/patient", include_in_schema=False)

#: The blood-pressure panel and its two components (LOINC).
BLOOD_PRESSURE, SYSTOLIC, DIASTOLIC = "85354-9", "85354-9/8480-6", "85354-9/8462-4"
#: A treatment's FHIR status in words (an active one needs none).
TREATMENT_STATUSES = {
    "completed": "finished",
    "stopped": "stopped",
    "on-hold": "paused",
    "intended": "planned",
    "not-taken": "not taken",
    "entered-in-error": "entered in error",
    "unknown": "status unknown",
}
#: A condition's FHIR clinical status in words.
CONDITION_STATUSES = {
    "active": "Active",
    "recurrence": "Recurrence",
    "relapse": "Relapse",
    "inactive": "Inactive",
    "remission": "In remission",
    "resolved": "Resolved",
}


# -- the medical profile ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Entry:
    """One line of the profile, with what identifies it to change or remove it."""

    resource_type: str
    id: str
    label: str
    detail: str
    when: str
    by_me: bool


def _entries(
    holder: Holder, resource_type: str, read: Callable[[dict[str, Any]], tuple[str, str, str]]
) -> list[Entry]:
    me = f"Patient/{holder.patient_id}"
    out = []
    for resource in search(holder, resource_type, ("_count", "1000")):
        label, detail, when = read(resource)
        authors = {
            str((resource.get(field) or {}).get("reference"))
            for field in ("recorder", "informationSource", "asserter")
            if isinstance(resource.get(field), dict)
        }
        authors |= {
            str((p or {}).get("reference")) for p in resource.get("performer") or [] if isinstance(p, dict)
        }
        out.append(
            Entry(
                resource_type=resource_type,
                id=str(resource.get("id")),
                label=label or "—",
                detail=detail,
                when=when,
                by_me=me in authors
                or resource_type in ("RelatedPerson", "Consent")
                or resource.get("primarySource") is False,
            )
        )
    out.sort(key=lambda e: e.when, reverse=True)
    return out


def _condition_status(condition: Mapping[str, Any], language: str) -> str:
    """A condition's clinical status in the reader's words ("Guérie", not "Resolved")."""
    status = condition.get("clinicalStatus")
    codes = [
        str(c.get("code"))
        for c in (status.get("coding") or [] if isinstance(status, Mapping) else [])
        if isinstance(c, Mapping) and c.get("code")
    ]
    known = next((CONDITION_STATUSES[c] for c in codes if c in CONDITION_STATUSES), None)
    return translate(language, known) if known else concept_text(status)


def _first(resource: Mapping[str, Any], *fields: str) -> str:
    for name in fields:
        value = resource.get(name)
        if isinstance(value, str):
            return value
        if isinstance(value, dict) and isinstance(value.get("start"), str):
            return str(value["start"])
    return ""


def _dispensed(holder: Holder) -> list[Dispensed]:
    """The medicines dispensed recently: MedicationDispenses, pharmacies' dispensations, the insurer's lines."""
    timeline = reimbursement_timeline(holder.records, holder.patient_id)
    return recent_dispensations(
        timeline,
        search(holder, "MedicationDispense", ("_count", "1000")),
        pharmacy=pharmacy_dispensations(holder.records, holder.patient_id),
    )


def _is_directive(consent: Mapping[str, Any]) -> bool:
    """Whether a Consent holds advance directives (scope ``adr``), not a Carnet choice."""
    scope = (consent.get("scope") or {}).get("coding") or []
    return kind_of(consent) is None and any(isinstance(x, dict) and x.get("code") == "adr" for x in scope)


def _may_update(request: Request, holder: Holder, consents: list[dict[str, Any]], resource_type: str) -> bool:
    """Ask the policy whether the patient may change entries of ``resource_type`` (to offer the form).

    The record service asks it again, with the stored entry's facts, when the change is saved.
    """
    now = utc_now()
    question = AccessRequest(
        actor=holder.principal,
        action=Action.UPDATE,
        target=Target(patient_id=holder.patient_id, resource_type=resource_type),
    )
    profile = portal(request).services.records.profile
    return decide(question, grants_from_consents(consents, now), profile, now).allowed


@router.get("/profile")
def profile(request: Request) -> Response:
    """The medical profile: allergies, treatments, vaccinations, conditions, measures, directives, contacts."""
    holder = holder_of(request)
    language = language_of(request)
    allergies = _entries(
        holder,
        "AllergyIntolerance",
        lambda r: (
            concept_text(r.get("code")),
            ", ".join(
                concept_text(m) for x in r.get("reaction") or [] for m in (x or {}).get("manifestation") or []
            ),
            _first(r, "recordedDate", "onsetDateTime"),
        ),
    )
    treatments = _entries(
        holder,
        "MedicationStatement",
        lambda r: (
            concept_text(r.get("medicationCodeableConcept")),
            " — ".join(
                part
                for part in (
                    "; ".join(str((d or {}).get("text", "")) for d in r.get("dosage") or []),
                    translate(language, TREATMENT_STATUSES.get(str(r.get("status")), "")),
                )
                if part
            ),
            _first(r, "effectivePeriod", "effectiveDateTime", "dateAsserted"),
        ),
    )
    vaccinations = _entries(
        holder,
        "Immunization",
        lambda r: (
            concept_text(r.get("vaccineCode")),
            "; ".join(str((n or {}).get("text", "")) for n in r.get("note") or []),
            _first(r, "occurrenceDateTime", "recorded"),
        ),
    )
    conditions = _entries(
        holder,
        "Condition",
        lambda r: (
            concept_text(r.get("code")),
            _condition_status(r, language),
            _first(r, "onsetDateTime", "recordedDate"),
        ),
    )
    observations = search(holder, "Observation", ("_count", "1000"), ("_sort", "-date"))
    summary = summarise(observations)
    # Blood pressure is one panel (85354-9) with two components: shown once, as a pair.
    systolic = next((m for m in summary.measures if m.code == SYSTOLIC), None)
    diastolic = next((m for m in summary.measures if m.code == DIASTOLIC), None)
    measures = [
        (m, measure_chart(m, language) if len(m.series) >= 2 else None)
        for m in summary.measures
        if not m.code.startswith(BLOOD_PRESSURE + "/")
    ]
    pressure_chart = (
        measure_chart(systolic, language, also=diastolic, title=translate(language, "Blood pressure"))
        if systolic is not None and len(systolic.series) >= 2
        else None
    )
    pressures = [
        (
            _first(o, "effectiveDateTime"),
            " / ".join(
                number(((c or {}).get("valueQuantity") or {}).get("value"), language)
                for c in o.get("component") or []
            ),
            str(o.get("id")),
        )
        for o in observations
        if any(
            c.get("code") == BLOOD_PRESSURE
            for c in (o.get("code") or {}).get("coding") or []
            if isinstance(c, dict)
        )
    ]
    consents = consents_of(holder)
    directives = [
        Entry(
            resource_type="Consent",
            id=str(c.get("id")),
            label=directive_text(c) or "—",
            detail="",
            when=_first(c, "dateTime"),
            by_me=True,
        )
        for c in consents
        if c.get("status") == "active" and _is_directive(c)
    ]
    contacts = []
    for person in search(holder, "RelatedPerson", ("_count", "100")):
        contacts.append(
            (
                contact_role(person),
                Entry(
                    resource_type="RelatedPerson",
                    id=str(person.get("id")),
                    label=human_name(person.get("name")) or "—",
                    detail=", ".join(
                        str(t.get("value"))
                        for t in person.get("telecom") or []
                        if isinstance(t, dict) and t.get("value")
                    ),
                    when="",
                    by_me=True,
                ),
            )
        )
    return page(
        request,
        "patient/profile.html",
        "profile",
        {
            "allergies": allergies,
            "treatments": treatments,
            "dispensed": _dispensed(holder),
            "vaccinations": vaccinations,
            "conditions": conditions,
            "measures": measures,
            "pressures": pressures[:SHOWN],
            "pressure_chart": pressure_chart,
            "shown": SHOWN,
            "measure_kinds": MEASURES,
            "directives": directives,
            "contacts": contacts,
            "editable": {t: _may_update(request, holder, consents, t) for t in RESOURCE_TYPES.values()},
            "error": request.session.pop("profile_error", None),
        },
    )


@router.post("/profile")
async def add_entry(request: Request) -> Response:
    """Add an entry to the medical profile."""
    form = await checked_form(request)
    holder = holder_of(request)
    kind = form_text(form, "kind", 20)
    fields = {
        name: form_text(form, name)
        for name in (
            "text",
            "detail",
            "date",
            "criticality",
            "measure",
            "value",
            "value2",
            "role",
            "family",
            "given",
            "phone",
        )
    }
    try:
        resource = build_entry(kind, fields, patient_id=holder.patient_id, now=utc_now())
    except ValueError as error:
        request.session["profile_error"] = str(error)
        return RedirectResponse(f"/patient/profile#add-{kind or 'entry'}", status_code=303)
    await offload(holder.records.create, resource)
    flash(request, "Your medical profile was updated.")
    return RedirectResponse(f"/patient/profile#section-{kind}", status_code=303)


@router.post("/profile/{resource_type}/{resource_id}/delete")
async def delete_entry(resource_type: str, resource_id: str, request: Request) -> Response:
    """Remove an entry of the medical profile (a logical deletion: the history keeps it)."""
    await checked_form(request)
    holder = holder_of(request)
    if resource_type not in RESOURCE_TYPES.values():
        raise PageError(404)
    if resource_type == "Consent":
        consent = (await offload(holder.records.read, "Consent", resource_id)).resource or {}
        if kind_of(consent) is not None:  # a Carnet choice is withdrawn on the choices pages, not here
            raise PageError(404)
    await offload(holder.records.delete, resource_type, resource_id)
    flash(request, "The entry was removed from your medical profile.")
    return RedirectResponse("/patient/profile", status_code=303)


# -- editing an entry in place ------------------------------------------------------------------

#: The profile section of each resource type (the kinds of ``profile_entries``).
SECTIONS = {resource_type: kind for kind, resource_type in RESOURCE_TYPES.items()}
SECTION_TITLES = {
    "allergy": "Allergies and intolerances",
    "treatment": "Treatments",
    "vaccination": "Vaccinations",
    "condition": "Conditions",
    "measure": "Measures",
    "directive": "Advance directives",
    "contact": "Trusted person and emergency contacts",
}
CONFLICT = "This entry was changed meanwhile, perhaps in another window, so your change was not saved."
REFUSED = "You may not change this entry. Nothing was changed."
UNUSABLE = "The entry could not be saved as written. Check the values and try again."


@dataclass(frozen=True, slots=True, kw_only=True)
class Editable:
    """A profile entry as its edit form needs it: the stored resource, its version and fields."""

    resource_type: str
    id: str
    resource: dict[str, Any]
    version: int
    fields: tuple[EditField, ...]


def _editable(request: Request, holder: Holder, resource_type: str, resource_id: str) -> Editable:
    """Read one entry of the profile that has an edit form.

    Raises:
        PageError: 404 for a type or an entry the profile does not edit (a Carnet choice, a
            measure without a value), 403 when the policy refuses the patient any change.
        NotFound, Gone, AccessDenied: from the record service.
    """
    if resource_type not in SECTIONS:
        raise PageError(404)
    stored = holder.records.read(resource_type, resource_id)
    resource = stored.resource or {}
    if resource_type == "Consent" and not _is_directive(resource):
        raise PageError(404)  # a Carnet choice is withdrawn on the choices pages, not here
    fields = edit_fields(resource)
    if not fields:
        raise PageError(404)
    if not _may_update(request, holder, consents_of(holder), resource_type):
        raise PageError(403, REFUSED)
    return Editable(
        resource_type=resource_type,
        id=resource_id,
        resource=resource,
        version=stored.version_id,
        fields=fields,
    )


def _label(entry: Editable) -> str:
    if entry.resource_type == "Observation":
        return concept_text(entry.resource.get("code"))
    if entry.resource_type == "RelatedPerson":
        return human_name(entry.resource.get("name")) or ""
    if entry.resource_type == "Consent":
        return ""
    return entry.fields[0].read(entry.resource)


def _edit_page(
    request: Request,
    entry: Editable,
    values: Mapping[str, str],
    *,
    error: str | None = None,
    conflict: bool = False,
    status: int = 200,
) -> Response:
    kind = SECTIONS[entry.resource_type]
    return page(
        request,
        "patient/profile_edit.html",
        "profile",
        {
            "kind": kind,
            "section_title": SECTION_TITLES[kind],
            "label": _label(entry),
            "version": entry.version,
            "fields": [
                (f, values.get(f.name, ""), options_for(f, f.read(entry.resource))) for f in entry.fields
            ],
            "error": error,
            "conflict": conflict,
        },
        status=status,
    )


@router.get("/profile/{resource_type}/{resource_id}/edit")
def edit_form(resource_type: str, resource_id: str, request: Request) -> Response:
    """The edit form of one profile entry, showing its stored values."""
    holder = holder_of(request)
    entry = _editable(request, holder, resource_type, resource_id)
    return _edit_page(request, entry, {f.name: f.read(entry.resource) for f in entry.fields})


@router.post("/profile/{resource_type}/{resource_id}/edit")
async def edit_entry(resource_type: str, resource_id: str, request: Request) -> Response:
    """Save the change of one profile entry, if it is still at the version the form showed.

    A stale version (the entry changed since the form was shown) changes nothing and asks the
    patient to reload; so does a conflict the record service finds (``If-Match``).
    """
    form = await checked_form(request)
    holder = holder_of(request)
    version = form_text(form, "version", 12)
    if not version.isdigit():
        raise PageError(400)
    entry = await offload(_editable, request, holder, resource_type, resource_id)
    values = {f.name: form_text(form, f.name, f.maxlength) for f in entry.fields}
    if int(version) != entry.version:
        return _edit_page(request, entry, values, conflict=True, status=409)
    now = utc_now()
    try:
        updated = apply_edit(entry.resource, values, now=now)
    except ValueError as error:
        return _edit_page(request, entry, values, error=str(error), status=422)
    anchor = f"/patient/profile#section-{SECTIONS[resource_type]}"
    if updated == entry.resource:
        flash(request, "Nothing was changed.")
        return RedirectResponse(anchor, status_code=303)
    service = portal(request).services.records

    def change(current: Mapping[str, Any]) -> dict[str, Any]:
        return apply_edit(dict(current), values, now=now)

    try:
        await offload(
            entry_edits.edit_entry,
            service,
            holder.principal,
            resource_type,
            resource_id,
            version=int(version),
            change=change,
        )
    except Conflict:
        return _edit_page(request, entry, values, conflict=True, status=409)
    except AccessDenied:
        raise PageError(403, REFUSED) from None
    except (InvalidResource, InvalidRequest):
        return _edit_page(request, entry, values, error=UNUSABLE, status=422)
    flash(request, "Your medical profile was updated.")
    return RedirectResponse(anchor, status_code=303)
