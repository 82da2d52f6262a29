"""Code systems and the French codes the generator writes (NOS tables of the ANS, LOINC, HL7).

Document metadata follows the DMP's XDS heritage and names its tables by OID
(``urn:oid:1.2.250.1.213.1.1.4.1`` for the class code); professional and contact roles follow
FR Core and name the ANS tables by their canonical URL. Displays are the French ones of the
tables (TRE_A03, TRE_G15, TRE_R38, TRE_R02, and the CI-SIS value set of LOINC document types).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

JSON = dict[str, Any]

# Identifier systems.
INS_NIR_TEST_SYSTEM = "urn:oid:1.2.250.1.213.1.4.10"
"""The test NIR (INS of a test patient); production uses ``…4.8``."""
INS_NIR_TEST_OID = "1.2.250.1.213.1.4.10"
IDNPS_SYSTEM = "urn:oid:1.2.250.1.71.4.2.1"
"""National identifier of health professionals: ``8`` + RPPS for those in the RPPS."""
IDNPS_OID = "1.2.250.1.71.4.2.1"
RPPS_SYSTEM = "https://rpps.esante.gouv.fr"
IDNST_SYSTEM = "urn:oid:1.2.250.1.71.4.2.2"
"""National identifier of structures: ``1`` + FINESS or ``3`` + SIRET."""
IDNST_OID = "1.2.250.1.71.4.2.2"
URI_SYSTEM = "urn:ietf:rfc:3986"
FR_CORE_IDENTIFIER_TYPE = "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-0203"

# Code systems.
LOINC = "http://loinc.org"
LOINC_OID = "2.16.840.1.113883.6.1"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
ATC = "http://www.whocc.no/atc"
CLASS_CODE_SYSTEM = "urn:oid:1.2.250.1.213.1.1.4.1"
"""TRE_A03-ClasseDocument: the DMP class of a document."""
TYPE_CODE_COMPLEMENT_SYSTEM = "urn:oid:1.2.250.1.213.1.1.4.12"
"""TRE_A05-TypeDocComplementaire: document types that LOINC lacks (``REMB``, ``EXPPAT_2``…)."""
TYPE_CODE_COMPLEMENT_OID = "1.2.250.1.213.1.1.4.12"
FACILITY_TYPE_SYSTEM = "urn:oid:1.2.250.1.71.4.2.4"
"""TRE_R02-SecteurActivite: the kind of place of care (healthcareFacilityTypeCode)."""
FACILITY_TYPE_OID = "1.2.250.1.71.4.2.4"
PRACTICE_SETTING_SYSTEM = "urn:oid:1.2.250.1.213.1.1.4.9"
"""CI-SIS practice settings (practiceSettingCode): ``AMBULATOIRE``, ``ETABLISSEMENT``…"""
PRACTICE_SETTING_OID = "1.2.250.1.213.1.1.4.9"
AUTHOR_SPECIALTY_OID = "1.2.250.1.213.1.1.4.5"
"""CI-SIS author role codes in CDA headers, ``G15_10/SM54``."""
NON_PS_PRODUCER_OID = "1.2.250.1.213.1.1.4.6"
"""TRE_A00-ProducteurDocNonPS: producers that are not professionals (``ALIM_AM``)."""
CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
CONFIDENTIALITY_OID = "2.16.840.1.113883.5.25"
PROFESSION_SYSTEM = "https://mos.esante.gouv.fr/NOS/TRE_G15-ProfessionSante/FHIR/TRE-G15-ProfessionSante"
SPECIALTY_SYSTEM = "https://mos.esante.gouv.fr/NOS/TRE_R38-SpecialiteOrdinale/FHIR/TRE-R38-SpecialiteOrdinale"
ROLE_CLASS_SYSTEM = "https://mos.esante.gouv.fr/NOS/TRE_R260-HL7RoleClass/FHIR/TRE-R260-HL7RoleClass"
ROLE_CODE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CONDITION_VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
ALLERGY_CLINICAL = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
ALLERGY_VERIFICATION = "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification"
ROUTE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-RouteOfAdministration"


def coding(system: str, code: str, display: str | None = None) -> JSON:
    """Return a FHIR Coding."""
    value: JSON = {"system": system, "code": code}
    if display is not None:
        value["display"] = display
    return value


def concept(system: str, code: str, display: str | None = None, text: str | None = None) -> JSON:
    """Return a FHIR CodeableConcept with one coding."""
    value: JSON = {"coding": [coding(system, code, display)]}
    if text is not None:
        value["text"] = text
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class Code:
    """A code with its French display."""

    code: str
    display: str


#: TRE_A03-ClasseDocument, the DMP classes of documents.
DMP_CLASSES: dict[str, str] = {
    "10": "Compte rendu",
    "11": "Synthèse",
    "31": "Imagerie médicale",
    "42": "Prescription",
    "43": "Dispensation",
    "44": "Plan de soins, protocole de soins",
    "45": "Traitement administré",
    "52": "Certificat, déclaration",
    "60": "Données de remboursement",
    "90": "Autres documents déposés par le patient",
    "95": "Document de gestion",
}

#: TRE_G15-ProfessionSante, the professions the generator draws.
PROFESSIONS: dict[str, str] = {
    "10": "Médecin",
    "21": "Pharmacien",
    "40": "Chirurgien-Dentiste",
    "50": "Sage-Femme",
    "60": "Infirmier",
    "70": "Masseur-Kinésithérapeute",
}

#: TRE_R38-SpecialiteOrdinale, the specialties the generator draws (physicians only).
SPECIALTIES: dict[str, str] = {
    "SM03": "Biologie médicale (SM)",
    "SM04": "Cardiologie et Maladies vasculaires (SM)",
    "SM15": "Dermatologie et vénéréologie (SM)",
    "SM18": "Gériatrie (SM)",
    "SM20": "Gynécologie-obstétrique (SM)",
    "SM27": "Médecine interne (SM)",
    "SM32": "Neurologie (SM)",
    "SM40": "Pédiatrie (SM)",
    "SM41": "Pneumologie (SM)",
    "SM42": "Psychiatrie (SM)",
    "SM44": "Radio-diagnostic (SM)",
    "SM54": "Médecine générale (SM)",
    "SM59": "Médecine d'urgence (SM)",
    "SM62": "Endocrinologie, diabétologie, nutrition (SM)",
}

#: TRE_R02-SecteurActivite, the kinds of places of care the generator draws.
FACILITY_TYPES: dict[str, str] = {
    "SA01": "Etablissement public de santé",
    "SA04": "Etablissement privé non PSPH",
    "SA07": "Cabinet individuel",
    "SA08": "Cabinet de groupe",
    "SA24": "Organisme de sécurité sociale",
    "SA25": "Laboratoire de biologie médicale",
    "SA33": "Pharmacie d'officine",
    "SA52": "Maison de santé ou Pôle de santé",
}

#: The CI-SIS practice settings the generator draws.
PRACTICE_SETTINGS: dict[str, str] = {
    "AMBULATOIRE": "Ambulatoire",
    "ETABLISSEMENT": "Etablissement de santé",
}
