"""Journal entries as FHIR R4 ``AuditEvent`` resources, in the shapes of IHE BALP.

IHE Basic Audit Log Patterns (BALP) records a RESTful access as::

    type      audit-event-type#rest        subtype   restful-interaction#<interaction>
    action    C | R | U | D | E            outcome   0 success, 4 minor failure, 8 serious failure
    agent     the user (who.identifier, requestor = true, type IRCP information recipient)
    source    the Carnet server (observer)
    entity    the patient (object-role#1) and each resource touched (object-role#4)

Carnet adds, in ``purposeOfEvent``, its access mode (``access-mode`` code system) and, for a
break-glass or regulation access, ``v3-ActReason#ETREAT`` with the justification as text. The
DPO's view (``clinical=False``) keeps who, when, how and the decision, and drops the resources
touched, since their types and ids are part of the record's content.
"""

from __future__ import annotations

from typing import Any

from carnet.domain.journal import Entry

ACCESS_MODE_SYSTEM = "https://carnet.health/fhir/CodeSystem/access-mode"
JOURNAL_SYSTEM = "https://carnet.health/fhir/NamingSystem/journal-entry"
DECISION_EXTENSION = "https://carnet.health/fhir/StructureDefinition/access-decision"
BALP_PROFILE = "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit.PatientRead"

_INTERACTIONS = {
    "read": ("read", "R"),
    "vread": ("vread", "R"),
    "history": ("history-instance", "R"),
    "search-type": ("search-type", "E"),
    "$everything": ("operation", "E"),
    "journal": ("search-type", "E"),
    "create": ("create", "C"),
    "update": ("update", "U"),
    "$archive": ("update", "U"),
    "delete": ("delete", "D"),
    "transaction": ("transaction", "E"),
    "batch": ("batch", "E"),
}
_OUTCOME_CODES = {"ok": "0", "not-found": "4", "gone": "4", "invalid": "4", "invalid-request": "4"}
_MODE_DISPLAY = {
    "normal": "Accès autorisé",
    "treating": "Médecin traitant",
    "break_glass": "Accès en urgence (bris de glace)",
    "regulation": "Accès du médecin régulateur (SAMU)",
    "patient": "Le patient",
    "representative": "Représentant légal",
    "feed": "Alimentation automatique",
    "admin": "Administration",
}
_KIND_ROLE = {
    "professional": (
        "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
        "IRCP",
        "information recipient",
    ),
    "patient": ("http://terminology.hl7.org/CodeSystem/v3-RoleCode", "PAT", "patient"),
    "representative": ("http://terminology.hl7.org/CodeSystem/v3-RoleCode", "GUARD", "guardian"),
    "feed": ("http://dicom.nema.org/resources/ontology/DCM", "110153", "Source Role ID"),
}


def audit_event(event_id: str, entry: Entry, *, clinical: bool = True) -> dict[str, Any]:
    """Return the AuditEvent of one journal entry (``clinical=False``: the DPO's view)."""
    interaction, action = _INTERACTIONS.get(entry.action, ("operation", "E"))
    refused = entry.decision != "permit"
    outcome = "4" if refused else _OUTCOME_CODES.get(entry.outcome, "8")
    agent: dict[str, Any] = {
        "who": {
            "identifier": {"system": _actor_system(entry), "value": entry.actor_id},
            **({"display": entry.actor_display} if entry.actor_display else {}),
        },
        "requestor": True,
    }
    role = _KIND_ROLE.get(entry.actor_kind)
    if role is not None:
        agent["type"] = {"coding": [{"system": role[0], "code": role[1], "display": role[2]}]}
    if entry.actor_profession:
        agent["role"] = [
            {
                "coding": [
                    {
                        "system": "https://mos.esante.gouv.fr/NOS/TRE_G15-ProfessionSante/FHIR/TRE-G15-ProfessionSante",
                        "code": entry.actor_profession,
                    }
                ]
            }
        ]
    purpose: list[dict[str, Any]] = [
        {
            "coding": [
                {
                    "system": ACCESS_MODE_SYSTEM,
                    "code": entry.mode,
                    "display": _MODE_DISPLAY.get(entry.mode, entry.mode),
                }
            ]
        }
    ]
    if entry.mode in ("break_glass", "regulation"):
        emergency: dict[str, Any] = {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason",
                    "code": "ETREAT",
                    "display": "Emergency Treatment",
                }
            ]
        }
        if entry.justification:
            emergency["text"] = entry.justification
        purpose.append(emergency)
    agent["purposeOfUse"] = purpose
    entities: list[dict[str, Any]] = [
        {
            "what": {"reference": f"Patient/{entry.patient_id}"},
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1"},
            "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1"},
        }
    ]
    if clinical:
        for target in entry.targets:
            entities.append(
                {
                    "what": {"reference": target},
                    "type": {
                        "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                        "code": "2",
                    },
                    "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "4"},
                }
            )
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": event_id,
        "meta": {"profile": [BALP_PROFILE]},
        "extension": [
            {
                "url": DECISION_EXTENSION,
                "extension": [
                    {"url": "decision", "valueCode": entry.decision},
                    *({"url": "reason", "valueCode": reason} for reason in entry.reasons),
                    *({"url": "notified", "valueCode": event} for event in entry.notified),
                    *(
                        [{"url": "confirmedBy", "valueString": entry.confirmed_by}]
                        if entry.confirmed_by
                        else []
                    ),
                ],
            }
        ],
        "type": {
            "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
            "code": "rest",
            "display": "Restful Operation",
        },
        "subtype": [{"system": "http://hl7.org/fhir/restful-interaction", "code": interaction}],
        "action": action,
        "recorded": entry.recorded.isoformat().replace("+00:00", "Z"),
        "outcome": outcome,
        "outcomeDesc": entry.outcome if not refused else "refused: " + ", ".join(entry.reasons),
        "purposeOfEvent": purpose,
        "agent": [agent],
        "source": {
            "observer": {"display": "Carnet"},
            "type": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/security-source-type",
                    "code": "4",
                    "display": "Application Server",
                }
            ],
        },
        "entity": entities,
    }
    return event


def _actor_system(entry: Entry) -> str:
    if entry.actor_kind == "professional":
        return "urn:oid:1.2.250.1.71.4.2.1"  # idNat_PS (RPPS/ADELI), ANS
    return f"https://carnet.health/fhir/NamingSystem/{entry.actor_kind}"
