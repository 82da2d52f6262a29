"""Who is asking: the principal a request is made for, built from a verified token."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class ActorKind(StrEnum):
    """The kinds of actor Carnet knows (DESIGN §1)."""

    PATIENT = "patient"
    REPRESENTATIVE = "representative"
    PROFESSIONAL = "professional"
    FEED = "feed"
    ADMIN = "admin"
    DPO = "dpo"
    RESEARCHER = "researcher"
    # Kinds that never get in, whatever the patient says (CSP L1111-18).
    EMPLOYER = "employer"
    COMPLEMENTARY_INSURER = "complementary_insurer"
    BANK = "bank"
    CONTRACT_ASSESSOR = "contract_assessor"


FORBIDDEN_KINDS = frozenset(
    {ActorKind.EMPLOYER, ActorKind.COMPLEMENTARY_INSURER, ActorKind.BANK, ActorKind.CONTRACT_ASSESSOR}
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Identifier:
    """A FHIR identifier reduced to its system and value (e.g. an INS)."""

    system: str
    value: str

    def token(self) -> str:
        """Render as a FHIR token search value ``system|value``."""
        return f"{self.system}|{self.value}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Principal:
    """The authenticated actor; ``patient_id`` is the record a patient holds, once known."""

    kind: ActorKind
    subject: str
    patient_id: str | None = None
    identifier: Identifier | None = None
    profession: str | None = None
    specialty: str | None = None
    display: str | None = None
