"""A pool of health professionals and the places they work, as FHIR resources.

One pool serves a whole population: the same physician is the treating physician of many
patients and signs documents in many records. Each professional has an RPPS number (``10`` + 8
digits + a Luhn key), appears as a ``Practitioner`` identified by ``8`` + RPPS under
``urn:oid:1.2.250.1.71.4.2.1`` (and by the bare RPPS under ``https://rpps.esante.gouv.fr``, as
FR Core does), and as a ``PractitionerRole`` carrying the profession (TRE_G15) and the specialty
(TRE_R38) at an ``Organization``.

A professional's resources keep the same UUIDs in every bundle, and their entries are conditional
creates on their identifier, so loading many patients' bundles into one server creates each
professional once.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum

from carnet.synthetic.communes import Address, address_element, make_address, make_phone, pick_commune
from carnet.synthetic.identifiers import new_finess, new_rpps, new_siret, new_uuid, urn_uuid
from carnet.synthetic.names import Sex, pick_family, pick_given
from carnet.synthetic.terminology import (
    FACILITY_TYPE_SYSTEM,
    FACILITY_TYPES,
    FR_CORE_IDENTIFIER_TYPE,
    IDNPS_SYSTEM,
    IDNST_SYSTEM,
    JSON,
    PROFESSION_SYSTEM,
    PROFESSIONS,
    RPPS_SYSTEM,
    SPECIALTIES,
    SPECIALTY_SYSTEM,
    URI_SYSTEM,
    concept,
)


class Discipline(StrEnum):
    """What a professional does, which decides profession, specialty and workplace."""

    GENERAL_PRACTICE = "general_practice"
    PAEDIATRICS = "paediatrics"
    CARDIOLOGY = "cardiology"
    ENDOCRINOLOGY = "endocrinology"
    PNEUMOLOGY = "pneumology"
    PSYCHIATRY = "psychiatry"
    DERMATOLOGY = "dermatology"
    NEUROLOGY = "neurology"
    GYNAECOLOGY = "gynaecology"
    INTERNAL_MEDICINE = "internal_medicine"
    GERIATRICS = "geriatrics"
    EMERGENCY = "emergency"
    BIOLOGY = "biology"
    RADIOLOGY = "radiology"
    PHARMACY = "pharmacy"
    NURSING = "nursing"
    MIDWIFERY = "midwifery"
    DENTISTRY = "dentistry"
    PHYSIOTHERAPY = "physiotherapy"


@dataclass(frozen=True, slots=True)
class _Profile:
    profession: str
    specialty: str | None
    female_share: float
    hospital_share: float
    service: str | None
    weight: float


# Workforce shares are rough orders of magnitude from the DREES demography of professions.
_PROFILES: dict[Discipline, _Profile] = {
    Discipline.GENERAL_PRACTICE: _Profile("10", "SM54", 0.52, 0.0, None, 30),
    Discipline.PAEDIATRICS: _Profile("10", "SM40", 0.72, 0.4, "Service de pédiatrie", 3),
    Discipline.CARDIOLOGY: _Profile("10", "SM04", 0.3, 0.5, "Service de cardiologie", 3),
    Discipline.ENDOCRINOLOGY: _Profile("10", "SM62", 0.6, 0.5, "Service d'endocrinologie-diabétologie", 1),
    Discipline.PNEUMOLOGY: _Profile("10", "SM41", 0.45, 0.5, "Service de pneumologie", 1),
    Discipline.PSYCHIATRY: _Profile("10", "SM42", 0.5, 0.5, "Service de psychiatrie adulte", 2),
    Discipline.DERMATOLOGY: _Profile("10", "SM15", 0.65, 0.2, "Service de dermatologie", 1.5),
    Discipline.NEUROLOGY: _Profile("10", "SM32", 0.45, 0.6, "Service de neurologie", 1),
    Discipline.GYNAECOLOGY: _Profile("10", "SM20", 0.6, 0.5, "Service de gynécologie-obstétrique", 2),
    Discipline.INTERNAL_MEDICINE: _Profile("10", "SM27", 0.5, 1.0, "Service de médecine interne", 2),
    Discipline.GERIATRICS: _Profile("10", "SM18", 0.6, 1.0, "Service de gériatrie", 1),
    Discipline.EMERGENCY: _Profile("10", "SM59", 0.45, 1.0, "Service des urgences", 2),
    Discipline.BIOLOGY: _Profile("10", "SM03", 0.55, 0.0, None, 2),
    Discipline.RADIOLOGY: _Profile("10", "SM44", 0.35, 0.3, "Service d'imagerie médicale", 2),
    Discipline.PHARMACY: _Profile("21", None, 0.68, 0.0, None, 10),
    Discipline.NURSING: _Profile("60", None, 0.86, 0.0, None, 14),
    Discipline.MIDWIFERY: _Profile("50", None, 0.97, 0.3, "Maternité", 2),
    Discipline.DENTISTRY: _Profile("40", None, 0.48, 0.0, None, 4),
    Discipline.PHYSIOTHERAPY: _Profile("70", None, 0.5, 0.0, None, 5),
}

#: Every pool holds at least these, so that every kind of document has a possible author.
_REQUIRED: tuple[Discipline, ...] = (
    *(Discipline.GENERAL_PRACTICE,) * 4,
    *(Discipline.PHARMACY,) * 3,
    *(Discipline.NURSING,) * 2,
    *(Discipline.BIOLOGY,) * 2,
    *(Discipline.RADIOLOGY,) * 2,
    *(Discipline.EMERGENCY,) * 2,
    Discipline.PAEDIATRICS,
    Discipline.CARDIOLOGY,
    Discipline.ENDOCRINOLOGY,
    Discipline.PNEUMOLOGY,
    Discipline.PSYCHIATRY,
    Discipline.DERMATOLOGY,
    Discipline.NEUROLOGY,
    Discipline.GYNAECOLOGY,
    Discipline.INTERNAL_MEDICINE,
    Discipline.GERIATRICS,
    Discipline.MIDWIFERY,
    Discipline.DENTISTRY,
    Discipline.PHYSIOTHERAPY,
)
MINIMUM_PROFESSIONALS = len(_REQUIRED)


@dataclass(frozen=True, slots=True, kw_only=True)
class Organization:
    """A place of care: practice, pharmacy, laboratory, hospital, or the health insurer."""

    uuid: str
    name: str
    identifier: tuple[str, str]
    """(system, value): ``1`` + FINESS or ``3`` + SIRET under the IDNST OID."""
    facility_type: str
    """TRE_R02 code, ``SA07`` for a single practice."""
    practice_setting: str
    """``AMBULATOIRE`` or ``ETABLISSEMENT``."""
    address: Address
    phone: str

    @property
    def url(self) -> str:
        """Return the ``urn:uuid:`` of the organization's entry."""
        return urn_uuid(self.uuid)


@dataclass(frozen=True, slots=True, kw_only=True)
class Professional:
    """A health professional of the pool, with their workplace."""

    index: int
    discipline: Discipline
    practitioner_uuid: str
    role_uuid: str
    rpps: str
    sex: Sex
    given: str
    family: str
    organization: Organization
    service: str | None
    """The hospital ward, for those who work in one."""
    phone: str

    @property
    def idnps(self) -> str:
        """Return the national professional identifier: ``8`` + RPPS."""
        return "8" + self.rpps

    @property
    def profession(self) -> str:
        """Return the TRE_G15 profession code: ``10`` physician, ``21`` pharmacist…"""
        return _PROFILES[self.discipline].profession

    @property
    def specialty(self) -> str | None:
        """Return the TRE_R38 specialty code of a physician (``SM54``), else ``None``."""
        return _PROFILES[self.discipline].specialty

    @property
    def is_doctor(self) -> bool:
        """Tell whether the professional bears the title of doctor (physician, dentist, pharmacist)."""
        return self.profession in ("10", "21", "40")

    @property
    def display_name(self) -> str:
        """Return the name as printed on a letterhead: ``Dr Marie DUPONT``."""
        title = "Dr" if self.is_doctor else ("Mme" if self.sex == "female" else "M.")
        return f"{title} {self.given} {self.family.upper()}"

    @property
    def role_label(self) -> str:
        """Return the profession and specialty in words: ``Médecin - Médecine générale (SM)``."""
        label = PROFESSIONS[self.profession]
        return f"{label} - {SPECIALTIES[self.specialty]}" if self.specialty else label

    @property
    def author_code(self) -> str:
        """Return the CI-SIS author role code of CDA headers: ``G15_10/SM54`` or ``G15_21``."""
        code = f"G15_{self.profession}"
        return f"{code}/{self.specialty}" if self.specialty else code

    @property
    def practitioner_url(self) -> str:
        """Return the ``urn:uuid:`` of the Practitioner entry."""
        return urn_uuid(self.practitioner_uuid)

    @property
    def role_url(self) -> str:
        """Return the ``urn:uuid:`` of the PractitionerRole entry."""
        return urn_uuid(self.role_uuid)


@dataclass(frozen=True, slots=True, kw_only=True)
class Pool:
    """The professionals of a population, and the health insurer that feeds reimbursements."""

    professionals: tuple[Professional, ...]
    insurer: Organization

    def of(self, *disciplines: Discipline) -> tuple[Professional, ...]:
        """Return the professionals of any of ``disciplines``."""
        return tuple(p for p in self.professionals if p.discipline in disciplines)


def generate_professionals(seed: int, count: int = 120) -> Pool:
    """Draw the pool of ``count`` professionals that a population of ``seed`` refers to.

    The pool depends only on ``seed`` and ``count``, so a demo can list the professionals of
    the population it loaded.

    Raises:
        ValueError: ``count`` is below the minimum that gives every kind of document an author.
    """
    if count < MINIMUM_PROFESSIONALS:
        raise ValueError(f"A pool needs at least {MINIMUM_PROFESSIONALS} professionals, got {count}.")
    rng = random.Random(f"carnet.synthetic/{seed}/professionals/{count}")  # noqa: S311 - reproducible, not secret
    hospitals = tuple(_make_hospital(rng) for _ in range(max(2, count // 30)))
    disciplines = list(_REQUIRED)
    weights = [profile.weight for profile in _PROFILES.values()]
    disciplines += rng.choices(list(_PROFILES), weights=weights, k=count - len(_REQUIRED))
    rng.shuffle(disciplines)
    rpps_seen: set[str] = set()
    professionals = []
    for index, discipline in enumerate(disciplines):
        rpps = new_rpps(rng)
        while rpps in rpps_seen:
            rpps = new_rpps(rng)
        rpps_seen.add(rpps)
        professionals.append(_make_professional(rng, index, discipline, rpps, hospitals))
    # The insurer has no identifier of ours to carry; its entry's UUID stands in for one.
    insurer_uuid = new_uuid(rng)
    insurer = Organization(
        uuid=insurer_uuid,
        name="Assurance Maladie",
        identifier=(URI_SYSTEM, urn_uuid(insurer_uuid)),
        facility_type="SA24",
        practice_setting="AMBULATOIRE",
        address=make_address(rng),
        phone=make_phone(rng, mobile=False),
    )
    return Pool(professionals=tuple(professionals), insurer=insurer)


def _make_hospital(rng: random.Random) -> Organization:
    commune = pick_commune(rng)
    public = rng.random() < 0.7
    if public:
        kind = "CHU" if commune.weight >= 140 else "Centre hospitalier"
        name = f"{kind} de {commune.name}"
    else:
        name = f"Clinique {rng.choice(('Saint-', 'Sainte-'))}{pick_given(rng, 'female', 1930)}"
    return Organization(
        uuid=new_uuid(rng),
        name=name,
        identifier=(IDNST_SYSTEM, "1" + new_finess(rng, commune.department)),
        facility_type="SA01" if public else "SA04",
        practice_setting="ETABLISSEMENT",
        address=make_address(rng, commune),
        phone=make_phone(rng, mobile=False),
    )


def _make_professional(
    rng: random.Random, index: int, discipline: Discipline, rpps: str, hospitals: tuple[Organization, ...]
) -> Professional:
    profile = _PROFILES[discipline]
    sex: Sex = "female" if rng.random() < profile.female_share else "male"
    given = pick_given(rng, sex, rng.randint(1960, 1996))
    family = pick_family(rng)
    practitioner_uuid, role_uuid = new_uuid(rng), new_uuid(rng)
    in_hospital = rng.random() < profile.hospital_share
    organization = rng.choice(hospitals) if in_hospital else _make_practice(rng, discipline, family)
    return Professional(
        index=index,
        discipline=discipline,
        practitioner_uuid=practitioner_uuid,
        role_uuid=role_uuid,
        rpps=rpps,
        sex=sex,
        given=given,
        family=family,
        organization=organization,
        service=profile.service if in_hospital else None,
        phone=organization.phone,
    )


def _make_practice(rng: random.Random, discipline: Discipline, family: str) -> Organization:
    commune = pick_commune(rng)
    establishment = False
    if discipline is Discipline.PHARMACY:
        name = "Pharmacie " + rng.choice(("du Centre", "de la Gare", "des Halles", "du Marché", family))
        facility_type, establishment = "SA33", True
    elif discipline is Discipline.BIOLOGY:
        name = f"Laboratoire de biologie médicale {rng.choice(('Bio', 'Cerba', 'Labo'))}{commune.name[:4]}"
        facility_type, establishment = "SA25", True
    elif discipline is Discipline.RADIOLOGY:
        name = f"Centre d'imagerie médicale de {commune.name}"
        facility_type = "SA08"
    elif discipline is Discipline.GENERAL_PRACTICE and rng.random() < 0.35:
        name = f"Maison de santé pluriprofessionnelle de {commune.name}"
        facility_type = "SA52"
    else:
        group = rng.random() < 0.4
        name = f"Cabinet {'de groupe ' if group else ''}{family}"
        facility_type = "SA08" if group else "SA07"
    identifier = "1" + new_finess(rng, commune.department) if establishment else "3" + new_siret(rng)
    return Organization(
        uuid=new_uuid(rng),
        name=name,
        identifier=(IDNST_SYSTEM, identifier),
        facility_type=facility_type,
        practice_setting="AMBULATOIRE",
        address=make_address(rng, commune),
        phone=make_phone(rng, mobile=False),
    )


def organization_resource(organization: Organization) -> JSON:
    """Return the FHIR ``Organization`` of a place of care."""
    system, value = organization.identifier
    address = organization.address
    return {
        "resourceType": "Organization",
        "identifier": [{"use": "official", "system": system, "value": value}],
        "active": True,
        "type": [
            concept(
                FACILITY_TYPE_SYSTEM,
                organization.facility_type,
                FACILITY_TYPES[organization.facility_type],
            )
        ],
        "name": organization.name,
        "telecom": [{"system": "phone", "value": organization.phone, "use": "work"}],
        "address": [address_element(address, use="work")],
    }


def practitioner_resource(professional: Professional) -> JSON:
    """Return the FHIR ``Practitioner`` of a professional."""
    name: JSON = {
        "use": "official",
        "family": professional.family,
        "given": [professional.given],
        "prefix": ["MME" if professional.sex == "female" else "M"],
    }
    if professional.is_doctor:
        name["suffix"] = ["DR"]
    return {
        "resourceType": "Practitioner",
        "identifier": [
            {
                "use": "official",
                "type": concept(FR_CORE_IDENTIFIER_TYPE, "IDNPS"),
                "system": IDNPS_SYSTEM,
                "value": professional.idnps,
            },
            {
                "use": "official",
                "type": concept(FR_CORE_IDENTIFIER_TYPE, "RPPS"),
                "system": RPPS_SYSTEM,
                "value": professional.rpps,
            },
        ],
        "active": True,
        "name": [name],
        "telecom": [
            {"system": "phone", "value": professional.phone, "use": "work"},
            # A made-up secure-messaging address (MSSanté-like, on a reserved domain).
            {"system": "email", "value": f"{professional.rpps}@mssante.example", "use": "work"},
        ],
        "gender": professional.sex,
        "qualification": [
            {
                "code": concept(
                    PROFESSION_SYSTEM, professional.profession, PROFESSIONS[professional.profession]
                )
            }
        ],
    }


def practitioner_role_resource(professional: Professional) -> JSON:
    """Return the FHIR ``PractitionerRole``: profession (TRE_G15) and specialty (TRE_R38) at a place."""
    role: JSON = {
        "resourceType": "PractitionerRole",
        "identifier": [{"system": URI_SYSTEM, "value": professional.role_url}],
        "active": True,
        "practitioner": {"reference": professional.practitioner_url, "display": professional.display_name},
        "organization": {
            "reference": professional.organization.url,
            "display": professional.organization.name,
        },
        "code": [concept(PROFESSION_SYSTEM, professional.profession, PROFESSIONS[professional.profession])],
    }
    if professional.specialty is not None:
        role["specialty"] = [
            concept(SPECIALTY_SYSTEM, professional.specialty, SPECIALTIES[professional.specialty])
        ]
    return role
