"""The FHIR R4 resources of a medical profile: allergies, problems, treatments, vaccines, measures.

Codes: CIM-10 for problems, ATC for medicines and vaccines, SNOMED CT for allergens and
reactions, LOINC for measures (29463-7 weight, 8302-2 height, the 85354-9 blood-pressure panel of
8480-6 and 8462-4, 15074-8 glycaemia, 4548-4 HbA1c) with UCUM units, and the FHIR categories
``vital-signs`` and ``laboratory``. Every resource refers to the patient and to the professional
who recorded, prescribed, gave or measured it.
"""

from __future__ import annotations

from datetime import timedelta

from carnet.synthetic.patient import Person
from carnet.synthetic.professionals import Professional
from carnet.synthetic.profile import (
    LAB_TESTS,
    Allergy,
    Diagnosis,
    LabResult,
    MedicalProfile,
    Treatment,
    Vaccination,
    Visit,
)
from carnet.synthetic.terminology import (
    ALLERGY_CLINICAL,
    ALLERGY_VERIFICATION,
    ATC,
    CONDITION_CATEGORY,
    CONDITION_CLINICAL,
    CONDITION_VERIFICATION,
    ICD10,
    JSON,
    LOINC,
    OBSERVATION_CATEGORY,
    ROUTE_SYSTEM,
    SNOMED,
    UCUM,
    concept,
)
from carnet.synthetic.timestamps import fhir_instant


def profile_resources(person: Person, profile: MedicalProfile) -> list[tuple[str, JSON]]:
    """Return the profile's resources as (uuid, resource) pairs, in the order a summary lists them."""
    patient = {"reference": person.url}
    resources: list[tuple[str, JSON]] = []
    for allergy in profile.allergies:
        resources.append((allergy.uuid, _allergy(patient, allergy)))
    for diagnosis in profile.diagnoses:
        resources.append((diagnosis.uuid, _condition(patient, diagnosis)))
    for treatment in profile.treatments:
        resources.append((treatment.uuid, _medication_statement(patient, treatment)))
    for vaccination in profile.vaccinations:
        resources.append((vaccination.uuid, _immunization(patient, vaccination)))
    for visit in profile.visits:
        resources.extend(_vital_signs(patient, visit))
    for result in profile.labs:
        resources.append((result.uuid, _lab_observation(patient, result)))
    return resources


def _practitioner(professional: Professional) -> JSON:
    return {"reference": professional.practitioner_url, "display": professional.display_name}


def _allergy(patient: JSON, allergy: Allergy) -> JSON:
    code, display = allergy.reaction
    return {
        "resourceType": "AllergyIntolerance",
        "clinicalStatus": concept(ALLERGY_CLINICAL, "active", "Active"),
        "verificationStatus": concept(ALLERGY_VERIFICATION, "confirmed", "Confirmed"),
        "type": "allergy"
        if allergy.allergen.category != "medication" or allergy.is_severe
        else "intolerance",
        "category": [allergy.allergen.category],
        "criticality": "high" if allergy.is_severe else "low",
        "code": concept(SNOMED, allergy.allergen.snomed, text=allergy.allergen.display),
        "patient": patient,
        "recordedDate": allergy.recorded.isoformat(),
        "recorder": _practitioner(allergy.recorder),
        "reaction": [
            {
                "manifestation": [concept(SNOMED, code, text=display)],
                "severity": "severe" if allergy.is_severe else "mild",
            }
        ],
    }


def _condition(patient: JSON, diagnosis: Diagnosis) -> JSON:
    category = "encounter-diagnosis" if diagnosis.encounter_diagnosis else "problem-list-item"
    category_display = "Encounter Diagnosis" if diagnosis.encounter_diagnosis else "Problem List Item"
    status = ("resolved", "Resolved") if diagnosis.abated else ("active", "Active")
    condition: JSON = {
        "resourceType": "Condition",
        "clinicalStatus": concept(CONDITION_CLINICAL, *status),
        "verificationStatus": concept(CONDITION_VERIFICATION, "confirmed", "Confirmed"),
        "category": [concept(CONDITION_CATEGORY, category, category_display)],
        "code": concept(ICD10, diagnosis.icd10, diagnosis.display, text=diagnosis.display),
        "subject": patient,
        "onsetDateTime": diagnosis.onset.isoformat(),
        "recordedDate": diagnosis.onset.isoformat(),
        "recorder": _practitioner(diagnosis.recorder),
    }
    if diagnosis.abated is not None:
        condition["abatementDateTime"] = diagnosis.abated.isoformat()
    return condition


def _medication_statement(patient: JSON, treatment: Treatment) -> JSON:
    period: JSON = {"start": treatment.start.isoformat()}
    if treatment.end is not None:
        period["end"] = treatment.end.isoformat()
    statement: JSON = {
        "resourceType": "MedicationStatement",
        "status": "active" if treatment.is_active else "completed",
        "medicationCodeableConcept": concept(ATC, treatment.drug.atc, text=treatment.drug.label),
        "subject": patient,
        "effectivePeriod": period,
        "dateAsserted": treatment.start.isoformat(),
        "informationSource": _practitioner(treatment.prescriber),
        "dosage": [{"text": treatment.drug.dosage}],
    }
    if treatment.reason is not None:
        statement["reasonReference"] = [
            {"reference": treatment.reason.url, "display": treatment.reason.display}
        ]
    return statement


def _immunization(patient: JSON, vaccination: Vaccination) -> JSON:
    dose = vaccination.dose
    route_display = "Swallow, oral" if dose.route == "PO" else "Injection, intramuscular"
    return {
        "resourceType": "Immunization",
        "status": "completed",
        "vaccineCode": concept(ATC, dose.atc, text=dose.product),
        "patient": patient,
        "occurrenceDateTime": vaccination.day.isoformat(),
        "recorded": vaccination.day.isoformat(),
        "primarySource": True,
        "lotNumber": vaccination.lot,
        "route": concept(ROUTE_SYSTEM, dose.route, route_display),
        "performer": [{"actor": _practitioner(vaccination.performer)}],
        "note": [{"text": dose.diseases}],
        "protocolApplied": [{"series": "Calendrier des vaccinations", "doseNumberPositiveInt": dose.number}],
    }


def _vital_signs(patient: JSON, visit: Visit) -> list[tuple[str, JSON]]:
    common: JSON = {
        "status": "final",
        "category": [concept(OBSERVATION_CATEGORY, "vital-signs", "Vital Signs")],
        "subject": patient,
        "effectiveDateTime": fhir_instant(visit.moment),
        "performer": [_practitioner(visit.professional)],
    }
    resources = [
        (
            visit.weight_uuid,
            {
                "resourceType": "Observation",
                **common,
                "code": concept(LOINC, "29463-7", "Body weight", text="Poids"),
                "valueQuantity": _quantity(visit.weight_kg, "kg"),
            },
        )
    ]
    if visit.height_cm is not None:
        resources.append(
            (
                visit.height_uuid,
                {
                    "resourceType": "Observation",
                    **common,
                    "code": concept(LOINC, "8302-2", "Body height", text="Taille"),
                    "valueQuantity": _quantity(visit.height_cm, "cm"),
                },
            )
        )
    if visit.blood_pressure is not None:
        systolic, diastolic = visit.blood_pressure
        resources.append(
            (
                visit.pressure_uuid,
                {
                    "resourceType": "Observation",
                    **common,
                    "code": concept(
                        LOINC,
                        "85354-9",
                        "Blood pressure panel with all children optional",
                        text="Pression artérielle",
                    ),
                    "component": [
                        {
                            "code": concept(
                                LOINC, "8480-6", "Systolic blood pressure", text="Pression systolique"
                            ),
                            "valueQuantity": _quantity(systolic, "mm[Hg]"),
                        },
                        {
                            "code": concept(
                                LOINC, "8462-4", "Diastolic blood pressure", text="Pression diastolique"
                            ),
                            "valueQuantity": _quantity(diastolic, "mm[Hg]"),
                        },
                    ],
                },
            )
        )
    return resources


def _lab_observation(patient: JSON, result: LabResult) -> JSON:
    display, text, unit, low, high = LAB_TESTS[result.loinc]
    interpretation = "H" if result.value > high else "L" if result.value < low else "N"
    interpretation_display = {"H": "High", "L": "Low", "N": "Normal"}[interpretation]
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [concept(OBSERVATION_CATEGORY, "laboratory", "Laboratory")],
        "code": concept(LOINC, result.loinc, display, text=text),
        "subject": patient,
        "effectiveDateTime": fhir_instant(result.moment),
        "issued": fhir_instant(result.moment + timedelta(hours=6)),
        "performer": [_practitioner(result.biologist)],
        "valueQuantity": _quantity(result.value, unit),
        "interpretation": [
            concept(
                "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
                interpretation,
                interpretation_display,
            )
        ],
        "referenceRange": [{"low": _quantity(low, unit), "high": _quantity(high, unit)}],
    }


def _quantity(value: float, unit: str) -> JSON:
    return {"value": value, "unit": unit, "system": UCUM, "code": unit}
