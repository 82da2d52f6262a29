"""Synthetic patients: identity traits, INS, address, and the people around them.

Sex and age follow the French population pyramid (INSEE estimates at 1 January 2024, in
thousands, by five-year band); the INS is a test NIR built from the patient's own traits (sex,
year and month of birth, birthplace), so it reads like a real one and is unique in a population.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, timedelta

from carnet.synthetic.communes import (
    COUNTRIES,
    Address,
    address_element,
    make_address,
    make_phone,
    pick_commune,
)
from carnet.synthetic.identifiers import new_uuid, urn_uuid
from carnet.synthetic.names import Sex, pick_family, pick_given, pick_given_names
from carnet.synthetic.nir import make_nir
from carnet.synthetic.professionals import Professional
from carnet.synthetic.terminology import (
    FR_CORE_IDENTIFIER_TYPE,
    INS_NIR_TEST_SYSTEM,
    JSON,
    ROLE_CLASS_SYSTEM,
    ROLE_CODE_SYSTEM,
    Code,
    coding,
    concept,
)
from carnet.synthetic.timestamps import add_years, draw_day

#: (first age of the band, men, women) in thousands, France, 1 January 2024 (rounded).
_PYRAMID: tuple[tuple[int, int, int], ...] = (
    (0, 1760, 1680),
    (5, 1930, 1845),
    (10, 2140, 2040),
    (15, 2150, 2050),
    (20, 2020, 1960),
    (25, 1860, 1890),
    (30, 1960, 2040),
    (35, 2070, 2170),
    (40, 2040, 2110),
    (45, 2100, 2150),
    (50, 2200, 2270),
    (55, 2170, 2280),
    (60, 2000, 2160),
    (65, 1850, 2070),
    (70, 1720, 2000),
    (75, 1200, 1480),
    (80, 780, 1080),
    (85, 470, 800),
    (90, 190, 420),
    (95, 40, 125),
    (100, 4, 25),
)
_BANDS: tuple[tuple[int, Sex], ...] = tuple(
    (start, sex) for start, _, _ in _PYRAMID for sex in ("male", "female")
)
_BAND_WEIGHTS: tuple[int, ...] = tuple(count for _, men, women in _PYRAMID for count in (men, women))

_BORN_ABROAD_SHARE = 0.07
_CORSICA_SPLIT_YEAR = 1976

TRUSTED_PERSON = Code(code="NOK", display="personne de confiance")
LEGAL_GUARDIAN = Code(code="GUARD", display="Responsable légal")

_RELATIONSHIPS: dict[str, str] = {
    "SPS": "Conjoint",
    "DAU": "Fille",
    "SON": "Fils",
    "SIS": "Sœur",
    "BRO": "Frère",
    "MTH": "Mère",
    "FTH": "Père",
    "FRND": "Ami(e)",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Relative:
    """A person close to the patient: trusted person (personne de confiance) or legal guardian."""

    uuid: str
    role: Code
    """``NOK`` for the trusted person, ``GUARD`` for a minor's legal representative."""
    relationship: Code
    """The family tie, an HL7 v3 RoleCode: ``SPS``, ``DAU``, ``MTH``…"""
    sex: Sex
    given: str
    family: str
    phone: str
    address: Address

    @property
    def url(self) -> str:
        """Return the ``urn:uuid:`` of the RelatedPerson entry."""
        return urn_uuid(self.uuid)


@dataclass(frozen=True, slots=True, kw_only=True)
class Person:
    """The identity of a synthetic patient (the INS traits and the rest)."""

    uuid: str
    sex: Sex
    birth_date: date
    given_names: tuple[str, ...]
    family: str
    """The birth name, a strict INS trait."""
    usual_family: str | None
    """The name used day to day when it differs (often a spouse's name)."""
    nir: str
    birthplace: str
    """INSEE code of the birth commune, or ``99`` + country code for a birth abroad."""
    birthplace_name: str
    address: Address
    phone: str
    relative: Relative | None

    @property
    def given(self) -> str:
        """Return the first given name."""
        return self.given_names[0]

    @property
    def url(self) -> str:
        """Return the ``urn:uuid:`` of the Patient entry."""
        return urn_uuid(self.uuid)

    @property
    def display_name(self) -> str:
        """Return the name as printed in a report: ``Marie DUPONT``, with the usual name if any."""
        usual = f" ({self.usual_family.upper()})" if self.usual_family else ""
        return f"{self.given} {self.family.upper()}{usual}"


def draw_person(rng: random.Random, as_of: date, taken_nirs: set[str]) -> Person:
    """Draw a patient whose NIR is not in ``taken_nirs``, and add it there."""
    start, sex = rng.choices(_BANDS, weights=_BAND_WEIGHTS)[0]
    age = start + rng.randint(0, 4)
    # Born after the same day ``age + 1`` years ago and on or before the same day ``age`` years ago.
    birth_date = draw_day(rng, add_years(as_of, -(age + 1)) + timedelta(days=1), add_years(as_of, -age))
    given_names = pick_given_names(rng, sex, birth_date.year)
    family = pick_family(rng)
    usual_family = None
    if sex == "female" and age >= 25 and rng.random() < 0.45:
        usual_family = pick_family(rng)
        if usual_family == family:
            usual_family = None
    home = pick_commune(rng)
    if age >= 1 and rng.random() < _BORN_ABROAD_SHARE:
        country_code, birthplace_name = rng.choice(COUNTRIES)
        birthplace = "99" + country_code
    else:
        commune = home if rng.random() < 0.5 else pick_commune(rng)
        birthplace, birthplace_name = commune.insee, commune.name
        if birthplace[:2] in ("2A", "2B") and birth_date.year < _CORSICA_SPLIT_YEAR:
            birthplace = "20" + birthplace[2:]
    nir = _unique_nir(rng, sex, birth_date, birthplace, taken_nirs)
    address = make_address(rng, home)
    person_uuid = new_uuid(rng)
    return Person(
        uuid=person_uuid,
        sex=sex,
        birth_date=birth_date,
        given_names=given_names,
        family=family,
        usual_family=usual_family,
        nir=nir,
        birthplace=birthplace,
        birthplace_name=birthplace_name,
        address=address,
        phone=make_phone(rng, mobile=True),
        relative=_draw_relative(rng, sex, birth_date, as_of, family, usual_family, address),
    )


def _unique_nir(rng: random.Random, sex: Sex, birth_date: date, place: str, taken: set[str]) -> str:
    order = rng.randint(1, 999)
    sex_digit = 1 if sex == "male" else 2
    for _ in range(999):
        nir = make_nir(
            sex_digit=sex_digit, year=birth_date.year, month=birth_date.month, place=place, order=order
        )
        if nir not in taken:
            taken.add(nir)
            return nir
        order = order % 999 + 1
    raise ValueError(f"Every NIR order number is taken for birthplace {place}; generate fewer patients.")


def _draw_relative(
    rng: random.Random,
    sex: Sex,
    birth_date: date,
    as_of: date,
    family: str,
    usual_family: str | None,
    address: Address,
) -> Relative | None:
    age = as_of.year - birth_date.year
    if age < 18:
        relationship = rng.choices(("MTH", "FTH"), weights=(70, 30))[0]
        role = LEGAL_GUARDIAN
    else:
        if rng.random() > (0.3 if age < 40 else 0.5 if age < 65 else 0.8):
            return None
        role = TRUSTED_PERSON
        if age >= 60:
            relationship = rng.choices(("SPS", "DAU", "SON", "FRND"), weights=(50, 22, 18, 10))[0]
        else:
            relationship = rng.choices(
                ("SPS", "SIS", "BRO", "MTH", "FTH", "FRND"), weights=(55, 8, 7, 12, 8, 10)
            )[0]
    relative_sex: Sex
    if relationship in ("MTH", "DAU", "SIS"):
        relative_sex = "female"
    elif relationship in ("FTH", "SON", "BRO"):
        relative_sex = "male"
    elif relationship == "SPS":
        opposite: Sex = "female" if sex == "male" else "male"
        relative_sex = opposite if rng.random() < 0.93 else sex
    else:
        relative_sex = rng.choice(("male", "female"))
    if relationship == "FRND":
        relative_family = pick_family(rng)
    elif relationship == "SPS":
        relative_family = usual_family or family
    else:
        relative_family = family
    birth_year = birth_date.year + {"MTH": -30, "FTH": -32, "DAU": 30, "SON": 30}.get(relationship, 0)
    shares_home = relationship in ("SPS", "MTH", "FTH") and rng.random() < 0.85
    return Relative(
        uuid=new_uuid(rng),
        role=role,
        relationship=Code(code=relationship, display=_RELATIONSHIPS[relationship]),
        sex=relative_sex,
        given=pick_given(rng, relative_sex, birth_year),
        family=relative_family,
        phone=make_phone(rng, mobile=True),
        address=address if shares_home else make_address(rng),
    )


def patient_resource(person: Person, general_practitioner: Professional) -> JSON:
    """Return the FHIR ``Patient``: INS (test NIR), names, traits, address, treating physician."""
    names: list[JSON] = [{"use": "official", "family": person.family, "given": list(person.given_names)}]
    if person.usual_family:
        names.append({"use": "usual", "family": person.usual_family, "given": [person.given]})
    if person.birthplace.startswith("99"):
        birthplace: JSON = {"country": person.birthplace_name}
    else:
        birthplace = {
            "extension": [
                {
                    "url": "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-address-insee-code",
                    "valueCoding": coding(
                        "https://mos.esante.gouv.fr/NOS/TRE_R13-CommuneOM/FHIR/TRE-R13-CommuneOM",
                        person.birthplace,
                    ),
                }
            ],
            "city": person.birthplace_name,
            "country": "FR",
        }
    return {
        "resourceType": "Patient",
        "extension": [
            {"url": "http://hl7.org/fhir/StructureDefinition/patient-birthPlace", "valueAddress": birthplace},
            {
                "url": "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-identity-reliability",
                "extension": [
                    {
                        "url": "identityStatus",
                        "valueCoding": coding(
                            "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-0445",
                            "VALI",
                            "Identité validée",
                        ),
                    }
                ],
            },
        ],
        "identifier": [
            {
                "use": "official",
                "type": concept(FR_CORE_IDENTIFIER_TYPE, "INS-NIR-TEST"),
                "system": INS_NIR_TEST_SYSTEM,
                "value": person.nir,
            }
        ],
        "active": True,
        "name": names,
        "telecom": [{"system": "phone", "value": person.phone, "use": "mobile"}],
        "gender": person.sex,
        "birthDate": person.birth_date.isoformat(),
        "address": [address_element(person.address, use="home")],
        "communication": [
            {"language": concept("urn:ietf:bcp:47", "fr-FR", "Français (France)"), "preferred": True}
        ],
        "generalPractitioner": [
            {"reference": general_practitioner.practitioner_url, "display": general_practitioner.display_name}
        ],
    }


def related_person_resource(person: Person, relative: Relative) -> JSON:
    """Return the FHIR ``RelatedPerson``: trusted person (``NOK``) or legal guardian (``GUARD``)."""
    return {
        "resourceType": "RelatedPerson",
        "active": True,
        "patient": {"reference": person.url},
        "relationship": [
            concept(ROLE_CLASS_SYSTEM, relative.role.code, relative.role.display),
            concept(ROLE_CODE_SYSTEM, relative.relationship.code, relative.relationship.display),
        ],
        "name": [{"use": "official", "family": relative.family, "given": [relative.given]}],
        "telecom": [{"system": "phone", "value": relative.phone, "use": "mobile"}],
        "gender": relative.sex,
        "address": [address_element(relative.address, use="home")],
    }
