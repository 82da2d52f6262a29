"""Use cases: the patient's choices about professionals and emergency access (Consent resources).

« Autoriser / bloquer un professionnel, déclarer un médecin traitant, s'opposer au bris de
glace ou à l'accès du centre 15 »: each choice is a Consent (``carnet.domain.consent``) that the
policy reads as a grant. A choice is recorded by creating its Consent and withdrawn by making it
``inactive``; nothing else stores a choice.

============================  ======================================================  ============
use case                      who                                                     journaled as
============================  ======================================================  ============
:func:`record_choice`         the holder (authorise, block, name a treating           ``$authorise``,
                              physician); a professional declaring, in the patient's  ``$block``,
                              presence, the patient's consent to their own access     ``$declare-treating-physician``
                              (``professional-declares-consent``)
:func:`withdraw_choice`       the holder                                              ``$withdraw``
:func:`set_oppositions`       the holder                                              ``$set-oppositions``
============================  ======================================================  ============

Each is one call of the record access (:meth:`RecordService.call`): the current choices are
read and the new Consents written in one transaction, decided by the policy, journaled once.
The FHIR operations of ``docs/api.md`` and both portals call these functions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time

from carnet.domain.consent import ConsentKind, consent_for, consent_kind, consent_professional
from carnet.domain.errors import InvalidRequest, NotFound
from carnet.domain.policy import AccessMode
from carnet.domain.principal import Principal
from carnet.services.record_types import Stored
from carnet.services.records import RecordCall, RecordService

__all__ = [
    "CHOICE_OPERATIONS",
    "Oppositions",
    "end_of_day",
    "record_choice",
    "set_oppositions",
    "withdraw_choice",
]

#: The choices naming a professional, and the operation name each is journaled under.
CHOICE_OPERATIONS: dict[ConsentKind, str] = {
    ConsentKind.AUTHORISATION: "$authorise",
    ConsentKind.BLOCK: "$block",
    ConsentKind.TREATING_PHYSICIAN: "$declare-treating-physician",
}
#: An idNat_PS: ``8`` + RPPS, ``0`` + ADELI…: letters and digits.
_IDNAT = re.compile(r"[0-9A-Za-z]{6,20}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Oppositions:
    """The patient's oppositions: to break-glass access, to SAMU regulation access (None: unchanged)."""

    break_glass: bool | None = None
    regulation: bool | None = None


def end_of_day(day: date) -> datetime:
    """Return the last second of ``day`` in UTC: an authorisation "until" a date includes that day."""
    return datetime.combine(day, time(23, 59, 59), tzinfo=UTC)


def _active_choices(call: RecordCall, patient_id: str) -> list[Stored]:
    found = call.search.search("Consent", [("patient", f"Patient/{patient_id}"), ("_count", "1000")])
    return [s for s in found.entries if (s.resource or {}).get("status") == "active"]


def record_choice(
    service: RecordService,
    principal: Principal,
    patient_id: str,
    kind: ConsentKind,
    professional_id: str,
    *,
    until: datetime | None = None,
    mode: AccessMode = AccessMode.NORMAL,
) -> Stored:
    """Authorise, block or name as treating physician one professional; return the Consent.

    ``until`` ends an authorisation (inclusive). The same active choice about the same
    professional is not recorded twice: the existing Consent is returned. A professional
    records, in ``normal`` mode, the consent the patient gives to their own access.

    Raises:
        InvalidRequest: not a choice naming a professional, a malformed idNat_PS, or ``until``
            given for another kind than an authorisation.
        NotFound, AccessDenied: the policy refuses the write (a blocked professional, say).
    """
    operation = CHOICE_OPERATIONS.get(kind)
    if operation is None:
        raise InvalidRequest("The choice must be an authorisation, a block or a treating physician.")
    if not _IDNAT.fullmatch(professional_id):
        raise InvalidRequest("The professional is named by their idNat_PS: 6 to 20 letters or digits.")
    if until is not None and kind is not ConsentKind.AUTHORISATION:
        raise InvalidRequest("Only an authorisation has an end date.")
    with service.call(principal, operation, "Consent", write=True, mode=mode) as call:
        if principal.patient_id == patient_id:
            # The holder sees their choices; a professional may not read them and records blind.
            for existing in _active_choices(call, patient_id):
                resource = existing.resource or {}
                open_ended = ((resource.get("provision") or {}).get("period") or {}).get("end") is None
                if (
                    consent_kind(resource) is kind
                    and consent_professional(resource) == professional_id
                    and until is None
                    and open_ended
                ):
                    return existing
        consent = consent_for(kind, patient_id, professional_id, until, now=service.clock())
        return call.writes.create(consent).stored


def withdraw_choice(
    service: RecordService, principal: Principal, consent_id: str, *, mode: AccessMode = AccessMode.NORMAL
) -> Stored:
    """Withdraw a choice: its Consent becomes ``inactive``; return it (unchanged if it already was).

    Raises:
        NotFound: no such Consent, one the principal may not know, or one that records no choice.
        AccessDenied: the principal may read the Consent but not change it.
    """
    with service.call(principal, "$withdraw", "Consent", write=True, mode=mode) as call:
        current = call.reads.read("Consent", consent_id)
        return _withdraw(call, current)


def _withdraw(call: RecordCall, current: Stored) -> Stored:
    resource = current.resource or {}
    if consent_kind(resource) is None:
        raise NotFound(f"Consent/{current.resource_id} is not a choice of the patient.")
    if resource.get("status") == "inactive":
        return current
    updated = {**resource, "status": "inactive"}
    return call.writes.update("Consent", current.resource_id, updated, if_match=current.etag).stored


def set_oppositions(
    service: RecordService,
    principal: Principal,
    patient_id: str,
    wanted: Oppositions,
    *,
    mode: AccessMode = AccessMode.NORMAL,
) -> list[Stored]:
    """Oppose (or stop opposing) break-glass and SAMU regulation access; return the Consents changed.

    An opposition is an active Consent of its kind; stopping it withdraws every active one.

    Raises:
        NotFound, AccessDenied: the principal may not change this record's choices.
    """
    kinds = {
        ConsentKind.OPPOSITION_BREAK_GLASS: wanted.break_glass,
        ConsentKind.OPPOSITION_REGULATION: wanted.regulation,
    }
    changed: list[Stored] = []
    with service.call(principal, "$set-oppositions", "Consent", write=True, mode=mode) as call:
        active = _active_choices(call, patient_id)
        for kind, opposed in kinds.items():
            if opposed is None:
                continue
            current = [s for s in active if consent_kind(s.resource or {}) is kind]
            if opposed and not current:
                changed.append(call.writes.create(consent_for(kind, patient_id, now=service.clock())).stored)
            if not opposed:
                changed += [_withdraw(call, s) for s in current]
    return changed
