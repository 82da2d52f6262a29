"""The constraints of the IHE BALP profiles Carnet claims, checked on an AuditEvent (JSON).

Written from the profiles' definitions (IHE ITI Basic Audit Log Patterns, FSH sources of
``IHE.BasicAudit.Patient{Read,Query,Create,Update,Delete}``): the fixed type, subtype, action
and outcome; the client, server and user agents found by their ``type`` pattern, each with the
elements the profile makes mandatory; the patient entity; the data or query entity.
"""

from __future__ import annotations

import base64
from typing import Any

BALP = "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit."
DCM = "http://dicom.nema.org/resources/ontology/DCM"
SOURCE = (DCM, "110153")
DESTINATION = (DCM, "110152")
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"

#: profile: (subtypes allowed, action, client type, server type, user types, entity role)
PROFILES: dict[str, tuple[set[str], str, tuple[str, str], tuple[str, str], set[str], str]] = {
    "PatientRead": ({"read", "vread"}, "R", DESTINATION, SOURCE, {"IRCP"}, "4"),
    "PatientQuery": ({"search", "search-type", "search-system"}, "E", SOURCE, DESTINATION, {"IRCP"}, "24"),
    "PatientCreate": ({"create"}, "C", SOURCE, DESTINATION, {"AUT", "INF", "CST"}, "4"),
    "PatientUpdate": ({"update"}, "U", SOURCE, DESTINATION, {"AUT", "INF", "CST"}, "4"),
    "PatientDelete": (
        {"delete"},
        "D",
        (DCM, "110150"),
        ("http://terminology.hl7.org/CodeSystem/provenance-participant-type", "custodian"),
        {"AUT", "INF", "CST"},
        "4",
    ),
}


def _codes(concept: Any) -> set[tuple[str, str]]:
    codings = concept.get("coding", []) if isinstance(concept, dict) else []
    return {(c.get("system"), c.get("code")) for c in codings}


def _typed(agents: list[dict[str, Any]], kind: tuple[str, str]) -> list[dict[str, Any]]:
    return [a for a in agents if kind in _codes(a.get("type"))]


def profile_of(event: dict[str, Any]) -> str | None:
    """The BALP profile an event claims (its short name), or None."""
    claimed = [p for p in event.get("meta", {}).get("profile", []) if p.startswith(BALP)]
    assert len(claimed) <= 1, claimed
    return claimed[0][len(BALP) :] if claimed else None


def violations(event: dict[str, Any]) -> list[str]:
    """Return what in ``event`` breaks the BALP profile it claims (empty: it conforms)."""
    name = profile_of(event)
    if name is None:
        return []
    subtypes, action, client, server, users, role = PROFILES[name]
    found: list[str] = []

    def need(condition: bool, message: str) -> None:
        if not condition:
            found.append(message)

    need(
        (event.get("type", {}).get("system"), event.get("type", {}).get("code"))  # a Coding in R4
        == ("http://terminology.hl7.org/CodeSystem/audit-event-type", "rest"),
        "type",
    )
    subtype_codes = {s.get("code") for s in event.get("subtype", [])}
    need(bool(subtype_codes & subtypes), f"subtype {subtype_codes}")
    need(event.get("action") == action, f"action {event.get('action')}")
    need(bool(event.get("recorded")), "recorded")
    need(event.get("outcome") == "0", f"outcome {event.get('outcome')}")
    agents = event.get("agent", [])
    need(len(agents) >= 2, "agent 2..*")
    for label, kind in (("client", client), ("server", server)):
        matching = _typed(agents, kind)
        need(len(matching) == 1, f"agent[{label}] 1..1")
        for agent in matching:
            need(bool(agent.get("who")), f"agent[{label}].who")
            need(bool(agent.get("network", {}).get("address")), f"agent[{label}].network")
            need("media" not in agent, f"agent[{label}].media 0..0")
    user = [a for a in agents if any((PARTICIPATION, code) in _codes(a.get("type")) for code in users)]
    need(len(user) <= 1, "agent[user] 0..1")
    for agent in user:
        need(bool(agent.get("who")), "agent[user].who")
        need(agent.get("requestor") is True, "agent[user].requestor")
        need("network" not in agent and "media" not in agent, "agent[user] network/media 0..0")
    entities = event.get("entity", [])
    patients = [
        e
        for e in entities
        if (ENTITY_TYPE, "1") in {(e.get("type", {}).get("system"), e.get("type", {}).get("code"))}
        and (e.get("role", {}).get("system"), e.get("role", {}).get("code")) == (OBJECT_ROLE, "1")
    ]
    need(len(patients) == 1, "entity[patient] 1..1")
    for patient in patients:
        need(str(patient.get("what", {}).get("reference", "")).startswith("Patient/"), "entity[patient].what")
    objects = [
        e
        for e in entities
        if (e.get("type", {}).get("system"), e.get("type", {}).get("code")) == (ENTITY_TYPE, "2")
        and (e.get("role", {}).get("system"), e.get("role", {}).get("code")) == (OBJECT_ROLE, role)
    ]
    if role == "24":
        need(len(objects) == 1, "entity[query] 1..1")
        for query in objects:
            need("what" not in query, "entity[query].what 0..0")
            try:
                base64.b64decode(query.get("query", ""), validate=True)
            except ValueError:
                found.append("entity[query].query base64")
            need(bool(query.get("query")), "entity[query].query 1..1")
    else:
        need(len(objects) == 1, "entity[data] 1..1")
        for data in objects:
            need(bool(data.get("what")), "entity[data].what")
    return found
