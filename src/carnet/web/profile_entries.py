"""The patient's own entries, built from the portal's forms as FHIR R4 resources.

Each builder takes already-stripped form text and returns one resource of the patient's record,
marked as reported by the patient (the recorder, source or author is ``Patient/<id>``):

===========================  ==================================================================
kind (form ``kind``)         resource
===========================  ==================================================================
``allergy``                  ``AllergyIntolerance`` (unconfirmed; ``criticality``)
``treatment``                ``MedicationStatement`` (active; dosage text; start date)
``vaccination``              ``Immunization`` (completed; not a primary source)
``condition``                ``Condition`` (active; onset date)
``measure``                  ``Observation`` (vital-signs; LOINC code and UCUM unit of
                             :data:`MEASURES`; blood pressure as the 85354-9 panel)
``directive``                ``Consent`` of scope ``adr`` (directives anticipées), the text as an
                             attachment; not a Carnet choice (no ``consent-kind`` category)
``contact``                  ``RelatedPerson``: trusted person (``NOK``, personne de confiance)
                             or emergency contact (v2-0131 ``C``)
===========================  ==================================================================

Raises ``ValueError`` (with a catalog message id) when a required field is missing or malformed.

Editing an entry in place is :mod:`carnet.web.profile_edit`.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
ALLERGY_CLINICAL = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
ALLERGY_VERIFICATION = "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification"
CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CONDITION_VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
ROLE_CLASS_SYSTEM = "https://mos.esante.gouv.fr/NOS/TRE_R260-HL7RoleClass/FHIR/TRE-R260-HL7RoleClass"
CONTACT_ROLE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v2-0131"
CONSENT_SCOPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/consentscope"
CONSENT_CATEGORY_SYSTEM = "http://terminology.hl7.org/CodeSystem/consentcategorycodes"
#: The law on advance directives (CSP L1111-11), the policy an ``adr`` Consent refers to.
DIRECTIVES_POLICY = "https://www.legifrance.gouv.fr/codes/article_lc/LEGIARTI000031972290"

KINDS = ("allergy", "treatment", "vaccination", "condition", "measure", "directive", "contact")
#: The resource type each kind is stored as.
RESOURCE_TYPES = {
    "allergy": "AllergyIntolerance",
    "treatment": "MedicationStatement",
    "vaccination": "Immunization",
    "condition": "Condition",
    "measure": "Observation",
    "directive": "Consent",
    "contact": "RelatedPerson",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class MeasureKind:
    """A measure the patient may enter: LOINC code, English label (a catalog id) and UCUM unit."""

    code: str
    label: str
    unit: str


MEASURES = {
    "weight": MeasureKind(code="29463-7", label="Weight", unit="kg"),
    "height": MeasureKind(code="8302-2", label="Height", unit="cm"),
    "heart-rate": MeasureKind(code="8867-4", label="Heart rate", unit="/min"),
    "temperature": MeasureKind(code="8310-5", label="Body temperature", unit="Cel"),
    "glucose": MeasureKind(code="15074-8", label="Blood glucose", unit="mmol/L"),
    "blood-pressure": MeasureKind(code="85354-9", label="Blood pressure", unit="mm[Hg]"),
}


def _required(value: str, message: str) -> str:
    if not value:
        raise ValueError(message)
    return value


def parse_day(value: str) -> str | None:
    """Return a form's ``YYYY-MM-DD`` date as such, or None when empty.

    Raises:
        ValueError: not a date (the message is a catalog id).
    """
    if not value:
        return None
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError:
        raise ValueError("Give dates as YYYY-MM-DD.") from None


def parse_number(value: str) -> float:
    """Return a form's measure value (a decimal comma is accepted), between 0 and 100,000.

    Raises:
        ValueError: not such a number (the message is a catalog id).
    """
    try:
        number = float(value.replace(",", "."))
    except ValueError:
        raise ValueError("Give the value as a number.") from None
    if not 0 <= number < 100_000:
        raise ValueError("Give the value as a number.")
    return number


def _quantity(value: float, unit: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": UCUM, "code": unit}


def build_entry(kind: str, form: dict[str, str], *, patient_id: str, now: datetime) -> dict[str, Any]:
    """Return the resource for one profile entry of ``kind`` from form fields.

    Raises:
        ValueError: an unknown kind, or a missing or malformed field (the message is a catalog id).
    """
    patient = {"reference": f"Patient/{patient_id}"}
    today = now.date().isoformat()
    text = form.get("text", "")
    if kind == "allergy":
        resource: dict[str, Any] = {
            "resourceType": "AllergyIntolerance",
            "clinicalStatus": {"coding": [{"system": ALLERGY_CLINICAL, "code": "active"}]},
            "verificationStatus": {"coding": [{"system": ALLERGY_VERIFICATION, "code": "unconfirmed"}]},
            "code": {"text": _required(text, "Name the allergy or intolerance.")},
            "patient": patient,
            "recordedDate": today,
            "recorder": patient,
        }
        if form.get("criticality") in ("low", "high", "unable-to-assess"):
            resource["criticality"] = form["criticality"]
        if form.get("detail"):
            resource["reaction"] = [{"manifestation": [{"text": form["detail"]}]}]
        return resource
    if kind == "treatment":
        resource = {
            "resourceType": "MedicationStatement",
            "status": "active",
            "medicationCodeableConcept": {"text": _required(text, "Name the treatment.")},
            "subject": patient,
            "dateAsserted": today,
            "informationSource": patient,
        }
        start = parse_day(form.get("date", ""))
        if start:
            resource["effectivePeriod"] = {"start": start}
        if form.get("detail"):
            resource["dosage"] = [{"text": form["detail"]}]
        return resource
    if kind == "vaccination":
        return {
            "resourceType": "Immunization",
            "status": "completed",
            "vaccineCode": {"text": _required(text, "Name the vaccine.")},
            "patient": patient,
            "occurrenceDateTime": parse_day(form.get("date", "")) or today,
            "recorded": today,
            "primarySource": False,
            **({"note": [{"text": form["detail"]}]} if form.get("detail") else {}),
        }
    if kind == "condition":
        resource = {
            "resourceType": "Condition",
            "clinicalStatus": {"coding": [{"system": CONDITION_CLINICAL, "code": "active"}]},
            "verificationStatus": {"coding": [{"system": CONDITION_VERIFICATION, "code": "unconfirmed"}]},
            "code": {"text": _required(text, "Name the condition.")},
            "subject": patient,
            "recordedDate": today,
            "recorder": patient,
        }
        onset = parse_day(form.get("date", ""))
        if onset:
            resource["onsetDateTime"] = onset
        return resource
    if kind == "measure":
        measure = MEASURES.get(form.get("measure", ""))
        if measure is None:
            raise ValueError("Choose the kind of measure.")
        resource = {
            "resourceType": "Observation",
            "status": "final",
            "category": [{"coding": [{"system": OBSERVATION_CATEGORY, "code": "vital-signs"}]}],
            "code": {"coding": [{"system": LOINC, "code": measure.code}], "text": measure.label},
            "subject": patient,
            "effectiveDateTime": parse_day(form.get("date", "")) or today,
            "performer": [patient],
        }
        if measure.code == "85354-9":
            resource["component"] = [
                {
                    "code": {"coding": [{"system": LOINC, "code": "8480-6"}], "text": "Systolic"},
                    "valueQuantity": _quantity(
                        parse_number(_required(form.get("value", ""), "Give the value as a number.")),
                        measure.unit,
                    ),
                },
                {
                    "code": {"coding": [{"system": LOINC, "code": "8462-4"}], "text": "Diastolic"},
                    "valueQuantity": _quantity(
                        parse_number(_required(form.get("value2", ""), "Give the value as a number.")),
                        measure.unit,
                    ),
                },
            ]
        else:
            value = parse_number(_required(form.get("value", ""), "Give the value as a number."))
            resource["valueQuantity"] = _quantity(value, measure.unit)
        return resource
    if kind == "directive":
        body = _required(text, "Write your advance directives.")
        return {
            "resourceType": "Consent",
            "status": "active",
            "scope": {"coding": [{"system": CONSENT_SCOPE_SYSTEM, "code": "adr"}]},
            "category": [{"coding": [{"system": CONSENT_CATEGORY_SYSTEM, "code": "acd"}]}],
            "patient": patient,
            "dateTime": now.isoformat().replace("+00:00", "Z"),
            "policy": [{"uri": DIRECTIVES_POLICY}],
            "sourceAttachment": {
                "contentType": "text/plain; charset=utf-8",
                "data": base64.b64encode(body.encode()).decode("ascii"),
                "title": "Directives anticipées",
                "creation": today,
            },
        }
    if kind == "contact":
        role = form.get("role", "")
        if role == "trusted":
            coding = {"system": ROLE_CLASS_SYSTEM, "code": "NOK", "display": "personne de confiance"}
        elif role == "emergency":
            coding = {"system": CONTACT_ROLE_SYSTEM, "code": "C", "display": "Emergency Contact"}
        else:
            raise ValueError("Choose trusted person or emergency contact.")
        family = _required(form.get("family", ""), "Give the person's name.")
        resource = {
            "resourceType": "RelatedPerson",
            "active": True,
            "patient": patient,
            "relationship": [{"coding": [coding]}],
            "name": [{"family": family, **({"given": [form["given"]]} if form.get("given") else {})}],
        }
        if form.get("detail"):
            resource["relationship"].append({"text": form["detail"]})
        if form.get("phone"):
            resource["telecom"] = [{"system": "phone", "value": form["phone"]}]
        return resource
    raise ValueError("This kind of entry is not offered.")


def directive_text(consent: dict[str, Any]) -> str:
    """Return the text of an advance-directive Consent (its plain-text attachment), or ``""``."""
    attachment = consent.get("sourceAttachment")
    if not isinstance(attachment, dict) or not isinstance(attachment.get("data"), str):
        return ""
    try:
        return base64.b64decode(attachment["data"]).decode("utf-8", errors="replace")
    except ValueError:
        return ""


def contact_role(person: dict[str, Any]) -> str | None:
    """Return ``trusted``, ``emergency`` or ``guardian`` for a RelatedPerson, or None."""
    for relationship in person.get("relationship") or []:
        for coding in (relationship or {}).get("coding") or []:
            code = coding.get("code") if isinstance(coding, dict) else None
            if code == "NOK":
                return "trusted"
            if code in ("C", "ECON"):
                return "emergency"
            if code == "GUARD":
                return "guardian"
    return None
