"""Patients signing in through an OpenID provider: their account linked to their record, once.

The first time a patient signs in with a provider, Carnet does not know which record is theirs.
The **identity-verification step** (docs/portals.md): they type their INS; the record carrying
that INS is opened as theirs only if the provider's identity traits match the record's own —
family name, first given name, birth date and sex, compared without case or accents (the traits
the INS itself is issued for). Then the link is written into the record as an identifier of the
Patient resource::

    system  urn:carnet:oidc-subject
    value   SHA-256(issuer NUL sub), hex  (the provider's subject never appears in clear)

so every later sign-in finds the record through the identity index, like an INS. The link is an
update of the Patient resource by the patient: versioned, and journaled in the record as one
``$link-identity`` call — a refused attempt too, with its failure, never as a plain read. A wrong
INS and mismatching traits give the same refusal, so nobody learns whether an INS has a record.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from carnet.domain.errors import AccessDenied, CarnetError
from carnet.domain.principal import ActorKind, Identifier, Principal
from carnet.services.records import RecordService

SUBJECT_SYSTEM = "urn:carnet:oidc-subject"
#: The journal's name of a link attempt (accepted or refused), in the record it names.
LINK_ACTION = "$link-identity"
MISMATCH = (
    "The INS and the identity your provider gave do not match a record; check the INS on your Carte Vitale."
)


def subject_identifier(issuer: str, subject: str) -> Identifier:
    """The record identifier standing for one provider account."""
    digest = hashlib.sha256(f"{issuer}\0{subject}".encode()).hexdigest()
    return Identifier(system=SUBJECT_SYSTEM, value=digest)


def _fold(text: Any) -> str:
    """Compare names as the INS does: no accents, no case, no hyphens or extra spaces."""
    raw = unicodedata.normalize("NFKD", str(text or "")).encode("ascii", "ignore").decode()
    return " ".join(raw.replace("-", " ").replace("'", " ").upper().split())


@dataclass(frozen=True, slots=True, kw_only=True)
class Traits:
    """The identity traits a provider gives (OpenID standard claims)."""

    family_name: str
    given_name: str
    birthdate: str
    gender: str

    @classmethod
    def of(cls, claims: Mapping[str, Any]) -> Traits:
        """Read ``family_name``, ``given_name``, ``birthdate``, ``gender`` (FranceConnect's pivot identity)."""
        return cls(
            family_name=_fold(claims.get("family_name")),
            given_name=_fold(str(claims.get("given_name") or "").split(" ")[0]),
            birthdate=str(claims.get("birthdate") or ""),
            gender=str(claims.get("gender") or "").lower(),
        )

    def matches(self, patient: Mapping[str, Any]) -> bool:
        """Whether a FHIR Patient has these traits (any of its names)."""
        if not (self.family_name and self.given_name and self.birthdate and self.gender):
            return False
        if (
            patient.get("birthDate") != self.birthdate
            or str(patient.get("gender") or "").lower() != self.gender
        ):
            return False
        for name in patient.get("name") or []:
            given = [_fold(g) for g in name.get("given") or []]
            if _fold(name.get("family")) == self.family_name and given and given[0] == self.given_name:
                return True
        return False


class IdentityLinks:
    """Find and create the link between a provider account and a record (one use case each)."""

    def __init__(self, records: RecordService) -> None:
        self._records = records

    def record_of(self, account: Identifier) -> str | None:
        """The record linked to a provider account, if any."""
        principal = Principal(kind=ActorKind.PATIENT, subject=f"oidc:{account.value}", identifier=account)
        return self._records.resolve(principal).patient_id

    def link(self, account: Identifier, traits: Traits, ins: Identifier) -> str:
        """Link the account to the record carrying ``ins`` if the traits match; return the record id.

        Raises:
            AccessDenied: no such record, or its traits differ (one message for both).
        """
        patient_id = self._records.record_with(ins.system, ins.value)
        if patient_id is None:
            raise AccessDenied(MISMATCH, reasons=["!identity-not-verified"])
        holder = Principal(kind=ActorKind.PATIENT, subject=f"oidc:{account.value}", patient_id=patient_id)
        # One call of its own kind: the record's journal says "a sign-in account was linked" (or
        # refused), never "the patient read their profile" when the traits did not match.
        with self._records.call(holder, LINK_ACTION, "Patient", write=True) as call:
            try:
                patient = dict(call.reads.read("Patient", patient_id).resource or {})
            except CarnetError:
                raise AccessDenied(MISMATCH, reasons=["!identity-not-verified"]) from None
            if not traits.matches(patient):
                raise AccessDenied(MISMATCH, reasons=["!identity-not-verified"])
            identifiers = [i for i in patient.get("identifier") or [] if i.get("system") != SUBJECT_SYSTEM]
            patient["identifier"] = [*identifiers, {"system": account.system, "value": account.value}]
            call.writes.update("Patient", patient_id, patient)
        return patient_id
