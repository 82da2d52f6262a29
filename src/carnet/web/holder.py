"""What every page of the patient portal starts from: the signed-in holder and small helpers.

:func:`holder_of` returns the signed-in patient and their ``Records`` (the same service as the
FHIR API, for this principal); it raises ``Unauthenticated`` (→ ``/login``) for anybody else.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import Response

from carnet.domain.access import AccessMode
from carnet.domain.consent import IDNPS_SYSTEM, KIND_SYSTEM
from carnet.domain.errors import CarnetError, NotFound, Unauthenticated
from carnet.domain.principal import ActorKind, Principal
from carnet.services.records import Records
from carnet.services.representations import is_person_key, record_key
from carnet.web.identities import DIRECTORY_READER, idnps_of, practitioner_display
from carnet.web.pages import portal, render
from carnet.web.session import current_principal

T = TypeVar("T")


# -- who is asking ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Holder:
    """The signed-in patient and their record access."""

    principal: Principal
    patient_id: str
    records: Records


#: The session key of the record a legal representative acts on now (``carnet.web.representation``).
ACTING_FOR = "acting_for"
#: The session key of the name of the record acted on (shown in the banner of every page).
ACTING_FOR_NAME = "acting_for_name"


def holder_of(request: Request) -> Holder:
    """Return the signed-in patient, or the record a legal representative acts on now.

    A representative (représentant légal) acts on one of the records in ``represents`` at a time,
    chosen at ``/patient/switch`` (the first, by id, until they choose); a patient who also
    represents others acts on their own record until they switch. Acting for another record is
    the ``representative`` access mode: the policy decides what they see there (``INVISIBLE_REPRESENTANTS_LEGAUX`` and a minor's secret documents stay hidden).

    The records represented are checked against the registry on every page
    (:func:`represented_now`), and the policy is asked with that narrowed identity.

    Raises:
        Unauthenticated: nobody signed in, or not a patient with a record nor a representative (→ sign-in).
    """
    principal = current_principal(request)
    if principal is not None and principal.represents:
        principal = replace(principal, represents=represented_now(request, principal))
    if principal is not None and principal.kind is ActorKind.REPRESENTATIVE:
        if not principal.represents:
            raise Unauthenticated("You no longer represent anybody here: sign in again.")
        chosen = request.session.get(ACTING_FOR)
        if chosen is not None and chosen not in principal.represents:
            request.session.pop(ACTING_FOR, None)
            request.session.pop(ACTING_FOR_NAME, None)
        patient_id = chosen if chosen in principal.represents else sorted(principal.represents)[0]
        return Holder(
            principal=principal,
            patient_id=patient_id,
            records=portal(request).services.records.records(principal, mode=AccessMode.REPRESENTATIVE),
        )
    if principal is None or principal.kind is not ActorKind.PATIENT or not principal.patient_id:
        raise Unauthenticated("Sign in as a patient.")
    chosen = request.session.get(ACTING_FOR)
    if chosen is not None and chosen not in principal.represents:
        # No longer theirs to act for (the link ended): back to their own record, banner too.
        request.session.pop(ACTING_FOR, None)
        request.session.pop(ACTING_FOR_NAME, None)
    if chosen in principal.represents and chosen != principal.patient_id:
        # A patient who also represents others, acting for one of them now (as their representative).
        return Holder(
            principal=principal,
            patient_id=chosen,
            records=portal(request).services.records.records(principal, mode=AccessMode.REPRESENTATIVE),
        )
    return Holder(
        principal=principal,
        patient_id=principal.patient_id,
        records=portal(request).services.records.records(principal),
    )


def registry_keys(principal: Principal) -> list[str]:
    """The keys the representatives' registry knows a signed-in person by: their account, own record."""
    keys = [principal.subject] if is_person_key(principal.subject) else []
    if principal.kind is ActorKind.PATIENT and principal.patient_id:
        keys.append(record_key(principal.patient_id))
    return keys


def represented_now(request: Request, principal: Principal) -> frozenset[str]:
    """The records a person represents now: those of their sign-in still in the registry.

    A link the desk ended stops at the next page, not at the next sign-in. Development
    identities (the demo page's representatives, ``carnet token``) are not in the registry and
    keep what they carry.
    """
    keys = registry_keys(principal)
    if not keys:
        return principal.represents
    return principal.represents & frozenset(portal(request).services.representations.represented_by(keys))


def read_own(holder: Holder, resource_type: str, resource_id: str) -> dict[str, Any]:
    """Read a resource of the record shown (a representative may read others they represent, not here).

    Raises:
        NotFound: unknown, not visible, or of another record than the one the page is about.
    """
    resource = holder.records.read(resource_type, resource_id).resource or {}
    if (resource.get("subject") or {}).get("reference") != f"Patient/{holder.patient_id}":
        raise NotFound(f"{resource_type}/{resource_id} is not known.")
    return resource


def utc_now() -> datetime:
    return datetime.now(UTC)


def page(
    request: Request, template: str, section: str, context: Mapping[str, Any], status: int = 200
) -> Response:
    return render(request, template, {"section": section, **context}, status=status)


def search(holder: Holder, resource_type: str, *params: tuple[str, str]) -> list[dict[str, Any]]:
    query = [("patient", f"Patient/{holder.patient_id}"), *params]
    return holder.records.search(resource_type, query).resources


def patient_resource(holder: Holder) -> dict[str, Any]:
    return holder.records.read("Patient", holder.patient_id).resource or {}


def consents_of(holder: Holder) -> list[dict[str, Any]]:
    return search(holder, "Consent", ("_count", "1000"))


def kind_of(consent: Mapping[str, Any]) -> str | None:
    for category in consent.get("category") or []:
        for coding in (category or {}).get("coding") or []:
            if isinstance(coding, dict) and coding.get("system") == KIND_SYSTEM:
                return str(coding.get("code"))
    return None


def actor_id(consent: Mapping[str, Any]) -> str | None:
    for actor in (consent.get("provision") or {}).get("actor") or []:
        identifier = ((actor or {}).get("reference") or {}).get("identifier") or {}
        if identifier.get("system") == IDNPS_SYSTEM and identifier.get("value"):
            return str(identifier["value"])
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class Professional:
    """A professional as the portal names them."""

    idnps: str
    display: str
    profession: str | None = None
    specialty: str | None = None


def professional(request: Request, idnps: str) -> Professional:
    """Look a professional up in the directory by idNat_PS (a bare id when unknown)."""
    state = portal(request)
    service = state.services.records
    for candidate in state.demo.professionals():
        if candidate.idnps == idnps:
            return Professional(
                idnps=idnps,
                display=candidate.display,
                profession=candidate.profession,
                specialty=candidate.specialty,
            )
    try:
        found = service.records(DIRECTORY_READER).search(
            "Practitioner", [("identifier", f"{IDNPS_SYSTEM}|{idnps}")]
        )
    except CarnetError:
        found = None
    for practitioner in found.resources if found else []:
        if idnps_of(practitioner) == idnps:
            profession = next(
                (
                    str(c.get("code"))
                    for q in practitioner.get("qualification") or []
                    for c in ((q or {}).get("code") or {}).get("coding") or []
                    if c.get("code")
                ),
                None,
            )
            return Professional(
                idnps=idnps, display=practitioner_display(practitioner), profession=profession
            )
    return Professional(idnps=idnps, display=idnps)
