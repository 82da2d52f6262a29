"""What the FHIR API speaks: JSON only. A client asking for FHIR XML is answered 406, not JSON with 200.

FHIR's XML format is named by ``Accept: application/fhir+xml`` (or the older
``application/xml+fhir``) or by ``_format=xml`` / ``_format=application/fhir+xml``. A request
naming it, with no JSON type or wildcard it would also take, is refused before any other work
with ``406 Not Acceptable`` and an OperationOutcome (in JSON: the only format there is).
A plain ``Accept: application/xml`` is not FHIR XML: a Binary read (ITI-68) of a CDA document
asks for it and gets the raw document.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.responses import Response
from starlette.types import Scope

from carnet.api.fhir import fhir_response
from carnet.api.outcome import operation_outcome

FHIR_XML = frozenset({"application/fhir+xml", "application/xml+fhir"})
XML_FORMATS = frozenset({"xml", "text/xml", "application/xml", *FHIR_XML})
JSON_OR_ANY = ("json", "*/*", "application/*")


def wants_fhir_xml(accept: str, formats: list[str]) -> bool:
    """Tell whether a request asks for FHIR XML only (``Accept`` header value, ``_format`` values)."""
    if not accept and not formats:
        return False
    # An unencoded "+" in the query reads as a space: "application/fhir xml" is FHIR XML too.
    if any(f.split(";")[0].strip().lower().replace(" ", "+") in XML_FORMATS for f in formats):
        return True
    types = [t.split(";")[0].strip().lower() for t in accept.split(",") if t.strip()]
    named = any(t in FHIR_XML for t in types)
    return named and not any(any(j in t for j in JSON_OR_ANY) for t in types)


def refusal(scope: Scope) -> Response | None:
    """The 406 answer to a request under ``/fhir`` asking for FHIR XML only, or None to serve it."""
    accept = ""
    for name, value in scope.get("headers", ()):
        if name == b"accept":
            accept += value.decode("latin-1") + ","
    query = bytes(scope.get("query_string", b"")).decode("latin-1")
    formats = [v for k, v in parse_qsl(query, keep_blank_values=True) if k == "_format"] if query else []
    if not wants_fhir_xml(accept, formats):
        return None
    outcome = operation_outcome(
        "not-supported",
        "Carnet speaks FHIR JSON only: ask for application/fhir+json "
        "(Carnet ne parle que FHIR JSON : demandez application/fhir+json).",
    )
    return fhir_response(outcome, status=406)
