"""The CapabilityStatement, generated from the same tables the server runs on."""

from __future__ import annotations

from typing import Any

from carnet.api.smart_config import security
from carnet.domain.resources import SUPPORTED_TYPES, UNSUPPORTED_TYPES, is_directory_type
from carnet.domain.search import ParamKind, parameters_for

_DEFINITIONS = "http://hl7.org/fhir/SearchParameter/"
#: Carnet's operations (``carnet.api.operations``, ``docs/api.md``): resource type, name, what it does.
OPERATIONS: tuple[tuple[str, str, str], ...] = (
    ("Patient", "close", "Close the record (the holder)."),
    ("Patient", "reopen", "Reopen a closed record (the holder)."),
    ("Patient", "authorise", "Authorise a professional (in: professional, until)."),
    ("Patient", "block", "Block a professional (in: professional)."),
    ("Patient", "declare-treating-physician", "Name a treating physician (in: professional)."),
    ("Patient", "set-oppositions", "Oppose break-glass or regulation access (in: break-glass, regulation)."),
    ("Consent", "withdraw", "Withdraw a choice: the Consent becomes inactive."),
    ("DocumentReference", "mask", "Mask from professionals (in: professional, sovereign profile)."),
    ("DocumentReference", "unmask", "Lift a mask (in: professional, sovereign profile)."),
    ("DocumentReference", "archive", "Archive a document (the patient or its author)."),
    ("DocumentReference", "unarchive", "Take a document out of the archive."),
)
_OPERATION_BASE = "https://carnet.health/fhir/OperationDefinition/"
EVERYTHING = (
    "GET only. Parameters: _count (page size; next/previous links carry _offset), _type "
    "(comma-separated types), _since (what changed since an instant). Any other parameter is 400."
)
#: What the rest of the API says about the interactions clients expect (checked against the routes
#: by tests/integration/test_interactions.py).
INTERACTIONS = (
    "Formats: FHIR JSON only; a request for application/fhir+xml (Accept or _format) is answered "
    "406. Every interaction refuses a query parameter it does not take with 400 (create included: "
    "conditional create is If-None-Exist). PATCH takes JSON Patch (application/json-patch+json), "
    "FHIRPath Patch (a Parameters resource) or JSON Merge Patch (application/merge-patch+json, or "
    "any JSON object). Conditional update (PUT [type]?criteria) updates the one match or creates "
    "when none; conditional delete (DELETE [type]?criteria) deletes one match; several matches are 412. "
    "Read and search take _summary (true, text, data; count on search) and _elements, on top-level "
    "elements; a subset is tagged SUBSETTED. Searches take _include=Type:param[:Target] and "
    "_revinclude=Type:param[:Target] (reference parameters; no *), within the record and the "
    "directory; with :iterate they apply again to what was included, 3 rounds at most. Searches "
    "take _total and _totalMethod (fhirpy's count()): the total is always exact."
)


def _operations(resource_type: str) -> list[dict[str, Any]]:
    return [
        {"name": name, "definition": f"{_OPERATION_BASE}{kind}-{name}", "documentation": text}
        for kind, name, text in OPERATIONS
        if kind == resource_type
    ]


def _resource(resource_type: str) -> dict[str, Any]:
    params: list[dict[str, Any]] = [
        {"name": "_id", "type": "token"},
        {"name": "_lastUpdated", "type": "date"},
    ]
    if resource_type == "Patient":
        params.append(
            {"name": "identifier", "type": "token", "documentation": "Global lookup (e.g. by INS)."}
        )
    else:
        if not is_directory_type(resource_type):
            params += [
                {"name": "patient", "type": "reference", "documentation": "Required: the record searched."},
                {"name": "subject", "type": "reference", "documentation": "Same as patient."},
            ]
        for name, (kind, _) in sorted(parameters_for(resource_type).items()):
            params.append({"name": name, "type": kind.value})
    interactions = [
        "read",
        "vread",
        "update",
        "patch",
        "delete",
        "history-instance",
        "history-type",
        "create",
        "search-type",
    ]
    includes = [
        f"{resource_type}:{name}"
        for name, (kind, _) in sorted(parameters_for(resource_type).items())
        if kind is ParamKind.REFERENCE
    ]
    if resource_type != "Patient" and not is_directory_type(resource_type):
        includes += [f"{resource_type}:patient", f"{resource_type}:subject"]
    out: dict[str, Any] = {
        "type": resource_type,
        "searchInclude": includes,
        "interaction": [{"code": code} for code in interactions],
        "versioning": "versioned-update",
        "readHistory": True,
        "updateCreate": False,
        "conditionalCreate": True,
        "conditionalUpdate": True,
        "conditionalDelete": "single",
        "searchParam": params,
    }
    if resource_type == "AuditEvent":
        # Written by Carnet's journal only; read and searched by the patient, representatives, DPO.
        out.update(
            interaction=[{"code": "read"}, {"code": "search-type"}],
            readHistory=False,
            conditionalCreate=False,
            conditionalUpdate=False,
            conditionalDelete="not-supported",
            versioning="no-version",
            searchParam=[p for p in params if p["name"] in ("patient", "date")],
            searchInclude=[],
            documentation="The access journal (IHE BALP shapes); GET AuditEvent/[id]/$proof gives an inclusion proof.",
        )
    operations = _operations(resource_type)
    if resource_type == "Patient":
        operations.insert(
            0,
            {
                "name": "everything",
                "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything",
                "documentation": EVERYTHING,
            },
        )
    if operations:
        out["operation"] = operations
    return out


#: What $export does here (FHIR Bulk Data; docs/api.md, docs/research.md).
BULK_EXPORT = (
    "FHIR Bulk Data $export (Prefer: respond-async; _type, _since, _typeFilter=Type?code=system|code, "
    "_outputFormat=application/fhir+ndjson): Patient/$export with a patient's token exports their own "
    "record; Group/[study]/$export, $export?study= or Patient/$export?study= with a researcher's token "
    "exports a registered, approved study's pseudonymised, k-anonymous extract. Status at "
    "$export-status/[id] (202 + X-Progress, then the manifest), files at $export-file/[id]/[n], "
    "DELETE $export-status/[id] cancels."
)


def capability_statement(base_url: str) -> dict[str, Any]:
    """Return the server's CapabilityStatement."""
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-28",
        "publisher": "Carnet",
        "kind": "instance",
        "software": {"name": "Carnet", "version": "0.1.0"},
        "implementation": {"description": "Carnet patient-centred sealed record", "url": base_url},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "patchFormat": [
            "application/json-patch+json",
            "application/fhir+json",
            "application/merge-patch+json",
        ],
        "rest": [
            {
                "mode": "server",
                "documentation": (
                    "Every clinical resource belongs to one patient's record and is sealed with that "
                    "patient's key. Searches cover one record (patient=Patient/<id>); only Patient is "
                    "searchable globally, by identifier. Ids are assigned by the server. Not stored: "
                    + ", ".join(sorted(UNSUPPORTED_TYPES))
                    + " (R4-only types without an R4B model, and exchange-only types). Unknown search "
                    "parameters are rejected with 400 unless Prefer: handling=lenient. " + INTERACTIONS
                ),
                "security": security(base_url),
                "resource": [_resource(t) for t in sorted(SUPPORTED_TYPES)],
                "interaction": [{"code": "transaction"}, {"code": "batch"}],
                "searchParam": [],
                "operation": [
                    {
                        "name": "everything",
                        "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything",
                        "documentation": EVERYTHING,
                    },
                    {
                        "name": "export",
                        "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export",
                        "documentation": BULK_EXPORT,
                    },
                ],
            }
        ],
    }
