"""Who is asking: the principal a request is made for, built from a verified token."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from carnet.domain.errors import Unauthenticated


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
    """The authenticated actor; ``patient_id`` is the record a patient holds, once known.

    Professionals carry their national identifier (``professional_id``: the idNat_PS, ``8`` +
    RPPS or ``0`` + ADELI), their profession (TRE_G15: ``10`` médecin, ``21`` pharmacien, ``40``
    chirurgien-dentiste, ``50`` sage-femme, ``60`` infirmier, ``70`` masseur-kinésithérapeute…)
    and specialty (TRE_R38, e.g. ``SM54`` médecine générale); ``samu_regulator`` marks a SAMU
    centre-15 regulating physician (médecin régulateur) and ``occupational_physician`` a médecin
    du travail. A legal representative (représentant légal) acts for the patients in
    ``represents``. A feed (a system that writes) is ``feed_id``, registered for the DMP classCodes
    in ``feed_categories``. A professional signed in through OpenID Connect acts for one
    ``structure`` (its identifier and name, chosen at sign-in when they have several).
    in ``feed_categories``. An app the patient connected (SMART on FHIR) acts for the patient of
    ``patient_id`` as ``app_id`` (its client id), within ``app_scopes`` (the scopes of its token);
    its access is the patient's own, narrowed by the patient's grant and those scopes. A research
    pipeline (a SMART backend service registered for one study) is a researcher with ``study_id``:
    it exports for that study only, and only the types its token's ``system/`` ``app_scopes`` read.
    """

    kind: ActorKind
    subject: str
    patient_id: str | None = None
    identifier: Identifier | None = None
    profession: str | None = None
    specialty: str | None = None
    display: str | None = None
    professional_id: str | None = None
    samu_regulator: bool = False
    occupational_physician: bool = False
    represents: frozenset[str] = frozenset()
    feed_id: str | None = None
    feed_categories: frozenset[str] = frozenset()
    #: The structure (lieu d'exercice) a professional signed in for, and its name.
    structure: str | None = None
    structure_name: str | None = None
    app_id: str | None = None
    app_scopes: frozenset[str] = frozenset()
    study_id: str | None = None


def principal_from_claims(claims: Mapping[str, Any]) -> Principal:
    """Build a principal from verified claims.

    Raises:
        Unauthenticated: claims missing or of the wrong shape.
    """
    try:
        kind = ActorKind(str(claims.get("kind")))
    except ValueError:
        raise Unauthenticated("The token's 'kind' claim is not an actor kind Carnet knows.") from None
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise Unauthenticated("The token has no subject.")
    identifier = None
    raw = claims.get("identifier")
    if isinstance(raw, str) and "|" in raw:
        system, _, value = raw.partition("|")
        identifier = Identifier(system=system, value=value)
    patient = claims.get("patient")

    def text(name: str) -> str | None:
        value = claims.get(name)
        return value if isinstance(value, str) else None

    def texts(name: str) -> frozenset[str]:
        value = claims.get(name)
        return frozenset(v for v in value if isinstance(v, str)) if isinstance(value, list) else frozenset()

    return Principal(
        kind=kind,
        subject=subject,
        patient_id=patient if isinstance(patient, str) and patient else None,
        identifier=identifier,
        profession=text("profession"),
        specialty=text("specialty"),
        display=text("name"),
        professional_id=text("idnps"),
        samu_regulator=claims.get("samu") is True,
        occupational_physician=claims.get("occupational") is True,
        represents=texts("represents"),
        feed_id=text("feed"),
        feed_categories=texts("feed_categories"),
        structure=text("structure"),
        structure_name=text("structure_name"),
    )
