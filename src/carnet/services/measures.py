"""Use case: take a device's measures into a record (« Mesures de santé », connected devices and apps).

:func:`submit_measures` is the one entry point for every adapter that receives a measures or
biology Bundle of the ANS IG: the FHIR API (``POST /fhir`` with a Bundle claiming the flux's
profile, from a granted app) and the feeds (a registered device feed may call it with its own
principal). It checks the Bundle against the profiles (:mod:`carnet.feeds.devices`: codes,
units, value ranges), then writes it in **one call** of the record access (one transaction,
journaled once as ``$submit-measures``), so the policy decides each write (an app within its
patient's grant and its scopes, a feed within its categories).

Deduplication is the server's, not the sender's: each Observation carries its measure key
(:data:`carnet.feeds.devices.MEASURE_ID_SYSTEM`) and is not written again when the record already
holds one with that key; a Device with the same identifier is reused. The check looks at the
record whatever the sender may read (an app that only writes measures, a feed that never reads),
and answers with the existing resource's location only, never its content.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from carnet.domain.errors import InvalidResource
from carnet.domain.policy import AccessMode, Action, DocumentFacts
from carnet.domain.principal import ActorKind, Principal
from carnet.domain.resources import replace_strings
from carnet.domain.search import parse_search
from carnet.feeds.devices import MEASURE_ID_SYSTEM, measure_type, read_measure_bundle
from carnet.services.record_types import Stored
from carnet.services.records import RecordCall, RecordService

__all__ = ["SubmittedEntry", "submit_measures"]

#: Devices first (the measures point to them), then the measures, then the report citing them.
_ORDER = {"Device": 0, "Observation": 1, "DiagnosticReport": 2}


@dataclass(frozen=True, slots=True, kw_only=True)
class SubmittedEntry:
    """What became of one entry: ``created`` (201), or already in the record (200)."""

    stored: Stored
    created: bool


def submit_measures(
    service: RecordService,
    principal: Principal,
    bundle: Mapping[str, Any],
    *,
    mode: AccessMode = AccessMode.NORMAL,
    accepted_offer: bool = False,
) -> list[SubmittedEntry]:
    """Check and store a measures or biology Bundle for ``principal``; return each entry's outcome, in order.

    A device feed (``mode`` FEED) writes by measure type as other feeds write by classCode: each
    Observation under its profile's LOINC code (:func:`carnet.feeds.devices.measure_type`), the
    Device and DiagnosticReport under the first Observation's, so the policy enforces the
    types the feed is registered for and the patient's choice for the feed.
    ``accepted_offer``: the patient accepted these measures from their feed inbox.

    Raises:
        InvalidResource: the Bundle or an Observation is outside its profile (nothing stored).
        AccessDenied, NotFound: the policy refused a write (nothing stored).
    """
    checked = read_measure_bundle(bundle)
    patient_id = _patient_of(checked.entries)
    mapping: dict[str, str] = {}
    results: dict[int, SubmittedEntry] = {}
    order = sorted(
        range(len(checked.entries)), key=lambda i: (_ORDER[checked.entries[i]["resource"]["resourceType"]], i)
    )
    types = [measure_type(profile) for profile in checked.profiles]
    observations = iter(types)
    with service.call(principal, "$submit-measures", "Observation", write=True, mode=mode) as call:
        call.context.accepted_offer = accepted_offer
        for index in order:
            entry = checked.entries[index]
            resource: dict[str, Any] = replace_strings(entry["resource"], mapping)
            if principal.kind is ActorKind.FEED:
                kind = next(observations) if resource["resourceType"] == "Observation" else types[0]
                call.context.publishing = DocumentFacts(class_code=kind, accepted_by_patient=accepted_offer)
            existing = _existing(service, call, patient_id, resource)
            if existing is not None:
                results[index] = SubmittedEntry(stored=existing, created=False)
            else:
                results[index] = SubmittedEntry(stored=call.writes.create(resource).stored, created=True)
            full_url = entry.get("fullUrl")
            if isinstance(full_url, str):
                stored = results[index].stored
                mapping[full_url] = f"{stored.resource_type}/{stored.resource_id}"
    return [results[i] for i in range(len(checked.entries))]


def _patient_of(entries: tuple[dict[str, Any], ...]) -> str:
    """The record the measures are for: the ``Patient/<id>`` every Observation's subject names.

    Raises:
        InvalidResource: the Observations name no record, or several.
    """
    subjects = {
        (entry["resource"].get("subject") or {}).get("reference")
        for entry in entries
        if entry["resource"]["resourceType"] == "Observation"
    }
    if len(subjects) != 1:
        raise InvalidResource("Every measure of a Bundle is for one patient.", expression=("Bundle.entry",))
    subject = subjects.pop()
    if not isinstance(subject, str) or not subject.startswith("Patient/") or subject.count("/") != 1:
        raise InvalidResource(
            "Observation.subject references the patient's record as Patient/<id>.",
            expression=("Bundle.entry.resource.subject",),
        )
    return subject.removeprefix("Patient/")


def _key_of(resource: Mapping[str, Any]) -> str | None:
    """The identifier a resource is deduplicated by: a measure's key, a device's first identifier."""
    identifiers = [i for i in resource.get("identifier") or [] if isinstance(i, dict) and i.get("value")]
    if resource.get("resourceType") == "Observation":
        identifiers = [i for i in identifiers if i.get("system") == MEASURE_ID_SYSTEM]
    elif resource.get("resourceType") != "Device":
        return None
    if not identifiers:
        return None
    first = identifiers[0]
    return f"{first['system']}|{first['value']}" if first.get("system") else str(first["value"])


def _existing(
    service: RecordService, call: RecordCall, patient_id: str, resource: Mapping[str, Any]
) -> Stored | None:
    """The resource of the record that already says the same (by key), whatever the caller may read."""
    key = _key_of(resource)
    if key is None:
        return None
    # Only a caller the policy lets write this resource learns that it is already there.
    resource_type = str(resource["resourceType"])
    target = service.gate.target(
        call.context, patient_id, resource_type, document=call.context.publishing, resource=resource
    )
    service.gate.check(call.context, Action.CREATE, target, hide=False)
    query = parse_search(str(resource["resourceType"]), [("identifier", key)])
    found = [s for s in service.gate.matches(call.context, patient_id, query) if s.resource is not None]
    return found[0] if found else None
