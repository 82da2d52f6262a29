"""What Carnet knows of FHIR R4 resource types: which exist, which belong to a patient's record.

Every stored resource lives in one compartment: a patient's record, or the shared
**directory** (practitioners, organisations, locations, medications… — reference data that
is not about one patient). Both are sealed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

#: The 145 resource types of FHIR R4 (4.0.1).
R4_TYPES = frozenset(
    [
        "Account",
        "ActivityDefinition",
        "AdverseEvent",
        "AllergyIntolerance",
        "Appointment",
        "AppointmentResponse",
        "AuditEvent",
        "Basic",
        "Binary",
        "BiologicallyDerivedProduct",
        "BodyStructure",
        "Bundle",
        "CapabilityStatement",
        "CarePlan",
        "CareTeam",
        "CatalogEntry",
        "ChargeItem",
        "ChargeItemDefinition",
        "Claim",
        "ClaimResponse",
        "ClinicalImpression",
        "CodeSystem",
        "Communication",
        "CommunicationRequest",
        "CompartmentDefinition",
        "Composition",
        "ConceptMap",
        "Condition",
        "Consent",
        "Contract",
        "Coverage",
        "CoverageEligibilityRequest",
        "CoverageEligibilityResponse",
        "DetectedIssue",
        "Device",
        "DeviceDefinition",
        "DeviceMetric",
        "DeviceRequest",
        "DeviceUseStatement",
        "DiagnosticReport",
        "DocumentManifest",
        "DocumentReference",
        "EffectEvidenceSynthesis",
        "Encounter",
        "Endpoint",
        "EnrollmentRequest",
        "EnrollmentResponse",
        "EpisodeOfCare",
        "EventDefinition",
        "Evidence",
        "EvidenceVariable",
        "ExampleScenario",
        "ExplanationOfBenefit",
        "FamilyMemberHistory",
        "Flag",
        "Goal",
        "GraphDefinition",
        "Group",
        "GuidanceResponse",
        "HealthcareService",
        "ImagingStudy",
        "Immunization",
        "ImmunizationEvaluation",
        "ImmunizationRecommendation",
        "ImplementationGuide",
        "InsurancePlan",
        "Invoice",
        "Library",
        "Linkage",
        "List",
        "Location",
        "Measure",
        "MeasureReport",
        "Media",
        "Medication",
        "MedicationAdministration",
        "MedicationDispense",
        "MedicationKnowledge",
        "MedicationRequest",
        "MedicationStatement",
        "MedicinalProduct",
        "MedicinalProductAuthorization",
        "MedicinalProductContraindication",
        "MedicinalProductIndication",
        "MedicinalProductIngredient",
        "MedicinalProductInteraction",
        "MedicinalProductManufactured",
        "MedicinalProductPackaged",
        "MedicinalProductPharmaceutical",
        "MedicinalProductUndesirableEffect",
        "MessageDefinition",
        "MessageHeader",
        "MolecularSequence",
        "NamingSystem",
        "NutritionOrder",
        "Observation",
        "ObservationDefinition",
        "OperationDefinition",
        "OperationOutcome",
        "Organization",
        "OrganizationAffiliation",
        "Parameters",
        "Patient",
        "PaymentNotice",
        "PaymentReconciliation",
        "Person",
        "PlanDefinition",
        "Practitioner",
        "PractitionerRole",
        "Procedure",
        "Provenance",
        "Questionnaire",
        "QuestionnaireResponse",
        "RelatedPerson",
        "RequestGroup",
        "ResearchDefinition",
        "ResearchElementDefinition",
        "ResearchStudy",
        "ResearchSubject",
        "RiskAssessment",
        "RiskEvidenceSynthesis",
        "Schedule",
        "SearchParameter",
        "ServiceRequest",
        "Slot",
        "Specimen",
        "SpecimenDefinition",
        "StructureDefinition",
        "StructureMap",
        "Subscription",
        "Substance",
        "SubstanceNucleicAcid",
        "SubstancePolymer",
        "SubstanceProtein",
        "SubstanceReferenceInformation",
        "SubstanceSourceMaterial",
        "SubstanceSpecification",
        "SupplyDelivery",
        "SupplyRequest",
        "Task",
        "TerminologyCapabilities",
        "TestReport",
        "TestScript",
        "ValueSet",
        "VerificationResult",
        "VisionPrescription",
    ]
)

#: R4 types the R4B model library cannot validate, and types that are never stored
#: (they describe an exchange, not a record). Declared in the CapabilityStatement.
UNSUPPORTED_TYPES = frozenset(
    {
        "MedicinalProduct",
        "MedicinalProductAuthorization",
        "MedicinalProductContraindication",
        "MedicinalProductIndication",
        "MedicinalProductIngredient",
        "MedicinalProductInteraction",
        "MedicinalProductManufactured",
        "MedicinalProductPackaged",
        "MedicinalProductPharmaceutical",
        "MedicinalProductUndesirableEffect",
        "SubstanceNucleicAcid",
        "SubstancePolymer",
        "SubstanceProtein",
        "SubstanceReferenceInformation",
        "SubstanceSourceMaterial",
        "SubstanceSpecification",
        "EffectEvidenceSynthesis",
        "RiskEvidenceSynthesis",
        "Bundle",
        "OperationOutcome",
        "Parameters",
    }
)

#: Patient compartment (R4 CompartmentDefinition "patient"): the element paths whose
#: Patient reference places a resource in that patient's record, tried in order.
COMPARTMENT_PATHS: Mapping[str, tuple[str, ...]] = {
    "Account": ("subject",),
    "AdverseEvent": ("subject",),
    "AllergyIntolerance": ("patient", "recorder", "asserter"),
    "Appointment": ("participant.actor",),
    "AppointmentResponse": ("actor",),
    "AuditEvent": ("entity.what", "agent.who"),
    "Basic": ("subject", "author"),
    "Binary": ("securityContext",),
    "BodyStructure": ("patient",),
    "CarePlan": ("subject", "activity.detail.performer"),
    "CareTeam": ("subject", "participant.member"),
    "ChargeItem": ("subject",),
    "Claim": ("patient", "payee.party"),
    "ClaimResponse": ("patient",),
    "ClinicalImpression": ("subject",),
    "Communication": ("subject", "sender", "recipient"),
    "CommunicationRequest": ("subject", "sender", "recipient", "requester"),
    "Composition": ("subject", "author", "attester.party"),
    "Condition": ("subject", "asserter"),
    "Consent": ("patient",),
    "Coverage": ("beneficiary", "policyHolder", "subscriber", "payor"),
    "CoverageEligibilityRequest": ("patient",),
    "CoverageEligibilityResponse": ("patient",),
    "DetectedIssue": ("patient",),
    "Device": ("patient",),
    "DeviceRequest": ("subject", "performer"),
    "DeviceUseStatement": ("subject",),
    "DiagnosticReport": ("subject",),
    "DocumentManifest": ("subject", "author", "recipient"),
    "DocumentReference": ("subject", "author"),
    "Encounter": ("subject",),
    "EnrollmentRequest": ("candidate",),
    "EpisodeOfCare": ("patient",),
    "ExplanationOfBenefit": ("patient", "payee.party"),
    "FamilyMemberHistory": ("patient",),
    "Flag": ("subject",),
    "Goal": ("subject",),
    "Group": ("member.entity",),
    "ImagingStudy": ("subject",),
    "Immunization": ("patient",),
    "ImmunizationEvaluation": ("patient",),
    "ImmunizationRecommendation": ("patient",),
    "Invoice": ("subject", "recipient"),
    "List": ("subject", "source"),
    "MeasureReport": ("subject",),
    "Media": ("subject",),
    "MedicationAdministration": ("subject", "performer.actor"),
    "MedicationDispense": ("subject", "receiver"),
    "MedicationRequest": ("subject",),
    "MedicationStatement": ("subject",),
    "MolecularSequence": ("patient",),
    "NutritionOrder": ("patient",),
    "Observation": ("subject", "performer"),
    "Person": ("link.target",),
    "Procedure": ("subject", "performer.actor"),
    "Provenance": ("target", "agent.who"),
    "QuestionnaireResponse": ("subject", "author"),
    "RelatedPerson": ("patient",),
    "RequestGroup": ("subject", "action.participant"),
    "ResearchSubject": ("individual",),
    "RiskAssessment": ("subject",),
    "Schedule": ("actor",),
    "ServiceRequest": ("subject", "performer"),
    "Specimen": ("subject",),
    "SupplyDelivery": ("patient",),
    "SupplyRequest": ("deliverTo",),
    "VisionPrescription": ("patient",),
}

SUPPORTED_TYPES = frozenset(R4_TYPES - UNSUPPORTED_TYPES)

_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


def is_valid_id(value: str) -> bool:
    """Tell whether ``value`` is a legal FHIR id."""
    return bool(_ID.match(value))


def is_compartment_type(resource_type: str) -> bool:
    """Tell whether resources of this type belong to a patient's record."""
    return resource_type == "Patient" or resource_type in COMPARTMENT_PATHS


def is_directory_type(resource_type: str) -> bool:
    """Tell whether resources of this type live in the shared directory."""
    return resource_type in SUPPORTED_TYPES and not is_compartment_type(resource_type)


def values_at(node: Any, path: str) -> list[Any]:
    """Return every value at a dotted element path; ``x[x]`` matches choice elements ``xFoo``."""
    current: list[Any] = [node]
    for step in path.split("."):
        found: list[Any] = []
        for item in current:
            if not isinstance(item, dict):
                continue
            if step.endswith("[x]"):
                prefix = step[:-3]
                values = [
                    v
                    for k, v in item.items()
                    if k.startswith(prefix) and k[len(prefix) : len(prefix) + 1].isupper()
                ]
            else:
                values = [item[step]] if step in item else []
            for value in values:
                found.extend(value if isinstance(value, list) else [value])
        current = found
    return current


def patient_references(resource: Mapping[str, Any]) -> Iterator[str]:
    """Yield the ids of the Patients this resource's compartment paths point to, in order."""
    for path in COMPARTMENT_PATHS.get(str(resource.get("resourceType")), ()):
        for ref in values_at(resource, path):
            if isinstance(ref, dict):
                reference = ref.get("reference")
                if isinstance(reference, str) and reference.startswith("Patient/"):
                    yield reference.removeprefix("Patient/").split("/_history/")[0]


def references(node: Any) -> Iterator[str]:
    """Yield every ``Reference.reference`` string found anywhere in a resource."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                yield value
            else:
                yield from references(value)
    elif isinstance(node, list):
        for item in node:
            yield from references(item)


def replace_strings(node: Any, mapping: Mapping[str, str]) -> Any:
    """Return ``node`` with every string equal to a key of ``mapping`` replaced.

    Objects and arrays holding a replaced string are copied; the others are returned as they
    are (shared with ``node``, which is never changed).
    """
    if not mapping:
        return node
    kind = type(node)
    if kind is str:
        return mapping.get(node, node)
    if kind is dict:
        out: dict[str, Any] | None = None
        for index, (key, value) in enumerate(node.items()):
            new = replace_strings(value, mapping)
            if new is not value and out is None:
                out = dict(list(node.items())[:index])
            if out is not None:
                out[key] = new
        return node if out is None else out
    if kind is list:
        items: list[Any] | None = None
        for index, value in enumerate(node):
            new = replace_strings(value, mapping)
            if new is not value and items is None:
                items = node[:index]
            if items is not None:
                items.append(new)
        return node if items is None else items
    if isinstance(node, dict):
        return {k: replace_strings(v, mapping) for k, v in node.items()}
    if isinstance(node, list):
        return [replace_strings(v, mapping) for v in node]
    if isinstance(node, str):
        return mapping.get(node, node)
    return node


#: The Patient extension marking a closed record (« DMP fermé »): ``valueCode`` ``closed``.
RECORD_STATUS_EXTENSION = "https://carnet.health/fhir/StructureDefinition/record-status"


def is_closed(patient: Mapping[str, Any]) -> bool:
    """Tell whether a Patient resource marks its record as closed."""
    return any(
        isinstance(e, dict) and e.get("url") == RECORD_STATUS_EXTENSION and e.get("valueCode") == "closed"
        for e in patient.get("extension") or []
    )


def with_record_status(patient: Mapping[str, Any], *, closed: bool) -> dict[str, Any]:
    """Return ``patient`` with its record closed (inactive, record status ``closed``) or reopened.

    Closing adds the :data:`RECORD_STATUS_EXTENSION` with ``valueCode`` ``closed`` and sets
    ``active`` to false; reopening removes the extension and sets ``active`` to true. Any other
    extension is kept as it was.
    """
    updated = dict(patient)
    extensions = [
        e
        for e in patient.get("extension") or []
        if not (isinstance(e, dict) and e.get("url") == RECORD_STATUS_EXTENSION)
    ]
    if closed:
        extensions.append({"url": RECORD_STATUS_EXTENSION, "valueCode": "closed"})
    if extensions:
        updated["extension"] = extensions
    else:
        updated.pop("extension", None)
    updated["active"] = not closed
    return updated
