"""Journal entries as FHIR R4 ``AuditEvent`` resources, in the shapes of IHE BALP.

IHE Basic Audit Log Patterns (BALP) records a RESTful access as::

    type      audit-event-type#rest        subtype   restful-interaction#<interaction>
    action    C | R | U | D | E            outcome   0 success, 4 minor failure, 8 serious failure
    agent     the user (requestor; IRCP information recipient for reads and searches, AUT
              author for writes), the client application with its network address, and the
              server (Carnet, named by its journal origin)
    source    the Carnet server (observer)
    entity    the patient (object-role#1), each resource touched (object-role#4), and for a
              search the query (object-role#24, the parameters base64-encoded)

A successful read, search, create, update or delete that came over the network (so its client
is known) declares the matching BALP profile in ``meta.profile`` (``PatientRead``,
``PatientQuery``, ``PatientCreate``, ``PatientUpdate``, ``PatientDelete``); refusals, failures,
history, operations and Bundles keep the same shape without claiming a profile, which BALP
defines for successes only.

Carnet adds, in ``purposeOfEvent``, its access mode (``access-mode`` code system) and, for a
break-glass or regulation access, ``v3-ActReason#ETREAT`` with the justification as text. The
DPO's view (``clinical=False``) keeps who, when, how and the decision, and drops the resources
touched and the search parameters, since they are part of the record's content.
"""

from __future__ import annotations

import base64
import ipaddress
from dataclasses import dataclass
from typing import Any

from carnet.domain.journal import Entry

ACCESS_MODE_SYSTEM = "https://carnet.health/fhir/CodeSystem/access-mode"
JOURNAL_SYSTEM = "https://carnet.health/fhir/NamingSystem/journal-entry"
DECISION_EXTENSION = "https://carnet.health/fhir/StructureDefinition/access-decision"
BALP = "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit."
#: The client applications (``fhir-api``, ``carnet-portal``, or an OAuth client id).
CLIENT_SYSTEM = "https://carnet.health/fhir/NamingSystem/client"
#: A Carnet server, named by its journal origin.
SERVER_SYSTEM = "https://carnet.health/fhir/NamingSystem/journal-origin"
PROFESSION_SYSTEM = "https://mos.esante.gouv.fr/NOS/TRE_G15-ProfessionSante/FHIR/TRE-G15-ProfessionSante"
SPECIALTY_SYSTEM = "https://mos.esante.gouv.fr/NOS/TRE_R38-SpecialiteOrdinale/FHIR/TRE-R38-SpecialiteOrdinale"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
_SOURCE = (DCM, "110153", "Source Role ID")
_DESTINATION = (DCM, "110152", "Destination Role ID")
_PARTICIPATIONS = {"IRCP": "information recipient", "AUT": "author"}


@dataclass(frozen=True, slots=True)
class _Pattern:
    """How BALP types the agents of one interaction, and the profile a success conforms to."""

    profile: str
    client: tuple[str, str, str]
    server: tuple[str, str, str]
    user: str
    query: bool = False


_BALP = {
    "read": _Pattern("PatientRead", _DESTINATION, _SOURCE, "IRCP"),
    "vread": _Pattern("PatientRead", _DESTINATION, _SOURCE, "IRCP"),
    "search-type": _Pattern("PatientQuery", _SOURCE, _DESTINATION, "IRCP", query=True),
    "create": _Pattern("PatientCreate", _SOURCE, _DESTINATION, "AUT"),
    "update": _Pattern("PatientUpdate", _SOURCE, _DESTINATION, "AUT"),
    "patch": _Pattern("PatientUpdate", _SOURCE, _DESTINATION, "AUT"),
    "delete": _Pattern(
        "PatientDelete",
        (DCM, "110150", "Application"),
        ("http://terminology.hl7.org/CodeSystem/provenance-participant-type", "custodian", "Custodian"),
        "AUT",
    ),
}

#: Carnet's own operations, named in an AuditEvent's subtype beside ``operation``.
OPERATION_SYSTEM = "urn:carnet:operation"
#: The identifier system of a professional's structure (the RPPS's technical structure id).
STRUCTURE_SYSTEM = "urn:carnet:structure"

_INTERACTIONS = {
    "read": ("read", "R"),
    "vread": ("vread", "R"),
    "history": ("history-instance", "R"),
    "search-type": ("search-type", "E"),
    "$everything": ("operation", "E"),
    "journal": ("search-type", "E"),
    "create": ("create", "C"),
    "update": ("update", "U"),
    "patch": ("patch", "U"),
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
#: The user's kind, as a second coding of the user agent's type (professionals: their role).
_KIND_ROLE = {
    "patient": ("http://terminology.hl7.org/CodeSystem/v3-RoleCode", "PAT", "patient"),
    "representative": ("http://terminology.hl7.org/CodeSystem/v3-RoleCode", "GUARD", "guardian"),
}


def audit_event(
    event_id: str, entry: Entry, *, clinical: bool = True, server: str = "carnet"
) -> dict[str, Any]:
    """Return the AuditEvent of one journal entry (``clinical=False``: the DPO's view).

    ``server`` names this Carnet (its journal origin, e.g. ``carnet.example.org/journal``).
    """
    interaction, action = _INTERACTIONS.get(entry.action, ("operation", "E"))
    refused = entry.decision != "permit"
    outcome = "4" if refused else _OUTCOME_CODES.get(entry.outcome, "8")
    pattern = _BALP.get(interaction)
    if pattern is not None:
        client_type, server_type, participation = pattern.client, pattern.server, pattern.user
    else:  # history, operations, Bundles: the read or query pattern, no profile claimed
        client_type, server_type = (_DESTINATION, _SOURCE) if action == "R" else (_SOURCE, _DESTINATION)
        participation = "IRCP" if action in ("R", "E") else "AUT"
    purposes = _purposes(entry)
    agents = [_user(entry, participation, purposes)]
    if entry.client is not None:
        agents.append(_network_agent(client_type, CLIENT_SYSTEM, entry.client, entry.client_address))
    host = server.split("/", 1)[0] or server
    agents.append(_network_agent(server_type, SERVER_SYSTEM, server, host))
    entities = _entities(entry, clinical)
    # BALP defines its profiles for successes that came from a known client.
    profile = (
        BALP + pattern.profile
        if pattern is not None
        and outcome == "0"
        and entry.client_address is not None
        and any(e["role"]["code"] == ("24" if pattern.query else "4") for e in entities)
        else None
    )
    return {
        "resourceType": "AuditEvent",
        "id": event_id,
        **({"meta": {"profile": [profile]}} if profile else {}),
        "extension": [_decision(entry)],
        "type": {
            "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
            "code": "rest",
            "display": "Restful Operation",
        },
        "subtype": [
            {"system": "http://hl7.org/fhir/restful-interaction", "code": interaction},
            # An operation of Carnet's own (a representation, a sign-in credential…) is named too.
            *(
                [{"system": OPERATION_SYSTEM, "code": entry.action}]
                if entry.action not in _INTERACTIONS
                else []
            ),
        ],
        "action": action,
        "recorded": entry.recorded.isoformat().replace("+00:00", "Z"),
        "outcome": outcome,
        "outcomeDesc": entry.outcome if not refused else "refused: " + ", ".join(entry.reasons),
        "purposeOfEvent": purposes,
        "agent": agents,
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


def _user(entry: Entry, participation: str, purposes: list[dict[str, Any]]) -> dict[str, Any]:
    """The user agent: who asked (requestor), typed by BALP's participation and by their kind."""
    codings = [{"system": PARTICIPATION, "code": participation, "display": _PARTICIPATIONS[participation]}]
    kind = _KIND_ROLE.get(entry.actor_kind)
    if kind is not None:
        codings.append({"system": kind[0], "code": kind[1], "display": kind[2]})
    agent: dict[str, Any] = {
        "type": {"coding": codings},
        "who": {
            "identifier": {"system": _actor_system(entry), "value": entry.actor_id},
            **({"display": entry.actor_display} if entry.actor_display else {}),
        },
        "requestor": True,
    }
    if entry.actor_display:
        agent["name"] = entry.actor_display
    roles: list[dict[str, Any]] = []
    if entry.actor_profession:
        roles.append({"coding": [{"system": PROFESSION_SYSTEM, "code": entry.actor_profession}]})
    if entry.actor_specialty:
        # The specialty tells the patient who read their record ("médecin généraliste", not "médecin").
        roles.append({"coding": [{"system": SPECIALTY_SYSTEM, "code": entry.actor_specialty}]})
    if roles:
        agent["role"] = roles
    if entry.actor_structure:
        # The structure the professional acts for (lieu d'exercice), chosen at sign-in.
        agent["location"] = {
            "identifier": {"system": STRUCTURE_SYSTEM, "value": entry.actor_structure},
            **({"display": entry.actor_structure_name} if entry.actor_structure_name else {}),
        }
    agent["purposeOfUse"] = purposes
    return agent


def _network_agent(
    kind: tuple[str, str, str], system: str, identifier: str, address: str | None
) -> dict[str, Any]:
    """A client or server agent: an application named by an identifier, at a network address."""
    agent: dict[str, Any] = {
        "type": {"coding": [{"system": kind[0], "code": kind[1], "display": kind[2]}]},
        "who": {"identifier": {"system": system, "value": identifier}},
        "requestor": False,
    }
    if address:
        agent["network"] = {"address": address, "type": "2" if _is_ip(address) else "1"}
    return agent


def _is_ip(address: str) -> bool:
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return False
    return True


def _purposes(entry: Entry) -> list[dict[str, Any]]:
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
    return purpose


def _decision(entry: Entry) -> dict[str, Any]:
    return {
        "url": DECISION_EXTENSION,
        "extension": [
            {"url": "decision", "valueCode": entry.decision},
            *({"url": "reason", "valueCode": reason} for reason in entry.reasons),
            *({"url": "notified", "valueCode": event} for event in entry.notified),
            *([{"url": "confirmedBy", "valueString": entry.confirmed_by}] if entry.confirmed_by else []),
        ],
    }


def _entities(entry: Entry, clinical: bool) -> list[dict[str, Any]]:
    entities: list[dict[str, Any]] = [
        {
            "what": {"reference": f"Patient/{entry.patient_id}"},
            "type": {"system": ENTITY_TYPE, "code": "1", "display": "Person"},
            "role": {"system": OBJECT_ROLE, "code": "1", "display": "Patient"},
        }
    ]
    if not clinical:
        return entities
    for target in entry.targets:
        entities.append(
            {
                "what": {"reference": target},
                "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
                "role": {"system": OBJECT_ROLE, "code": "4", "display": "Domain Resource"},
            }
        )
    if entry.query is not None:
        entities.append(
            {
                "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
                "role": {"system": OBJECT_ROLE, "code": "24", "display": "Query"},
                "query": base64.b64encode(entry.query.encode()).decode("ascii"),
            }
        )
    return entities


def _actor_system(entry: Entry) -> str:
    if entry.actor_kind == "professional":
        return "urn:oid:1.2.250.1.71.4.2.1"  # idNat_PS (RPPS/ADELI), ANS
    return f"https://carnet.health/fhir/NamingSystem/{entry.actor_kind}"
