"""FHIR interactions beyond read, create, update and delete by id: PATCH, conditional update and delete.

- ``PATCH /fhir/{type}/{id}``: JSON Patch (``application/json-patch+json``), FHIRPath Patch
  (a ``Parameters`` in ``application/fhir+json``) or JSON Merge Patch (``application/merge-patch+json``,
  or any other JSON object: what ``fhirpy`` sends). Applied to the current version and stored as an
  update (``If-Match`` honoured); see :mod:`carnet.domain.patch`.
- ``PUT /fhir/{type}?criteria``: update the one resource matching the search criteria, create
  it when none does, ``412`` when several do.
- ``DELETE /fhir/{type}?criteria``: delete the one match (``204`` when none), ``412`` when several.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from starlette.exceptions import HTTPException

from carnet.api.fhir import (
    content_type_of,
    json_body,
    only_parameters,
    parse_json,
    read_body,
    records_of,
    write_response,
)
from carnet.domain.errors import InvalidRequest
from carnet.offload import offload

router = APIRouter()

PATCH_TYPES = (
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/fhir+json",
    "application/json",
)


@router.patch("/{resource_type}/{resource_id}")
async def patch(resource_type: str, resource_id: str, request: Request) -> Response:
    """Patch the current version of a resource (``If-Match`` for optimistic locking)."""
    records = await records_of(request)
    only_parameters(request, "A patch")
    content_type = content_type_of(request)
    if content_type and content_type not in PATCH_TYPES:
        raise InvalidRequest(
            f"Content-Type {content_type[:60]!r} is not a patch Carnet applies; send "
            "application/json-patch+json, a FHIRPath Patch Parameters, or application/merge-patch+json."
        )
    raw = await read_body(request)
    if not raw:
        raise InvalidRequest("The PATCH has no body.")
    body = parse_json(request, raw)
    if content_type == "application/json-patch+json" and not isinstance(body, list):
        raise InvalidRequest("A JSON Patch is a JSON array of operations.")
    result = await offload(
        records.patch, resource_type, resource_id, body, if_match=request.headers.get("if-match")
    )
    return write_response(request, result)


def _criteria(request: Request, resource_type: str, what: str) -> list[tuple[str, str]]:
    if resource_type == "metadata":  # the CapabilityStatement's endpoint takes GET only
        raise HTTPException(status_code=405)
    params = [(k, v) for k, v in request.query_params.multi_items() if k not in ("_format", "_pretty")]
    if not params:
        raise InvalidRequest(
            f"A conditional {what} needs search criteria, e.g. ?identifier=<system>|<value>."
        )
    return params


@router.put("/{resource_type}")
async def conditional_update(resource_type: str, request: Request) -> Response:
    """Update the resource matching the criteria, or create it when none matches."""
    records = await records_of(request)
    params = _criteria(request, resource_type, "update")
    body = await json_body(request)
    if body.get("resourceType") != resource_type:
        raise InvalidRequest(
            f"The body is a {str(body.get('resourceType'))[:64]}, sent to /fhir/{resource_type[:64]}."
        )
    return write_response(request, await offload(records.conditional_update, resource_type, params, body))


@router.delete("/{resource_type}")
async def conditional_delete(resource_type: str, request: Request) -> Response:
    """Delete the resource matching the criteria (nothing when none matches)."""
    records = await records_of(request)
    params = _criteria(request, resource_type, "delete")
    await offload(records.conditional_delete, resource_type, params)
    return Response(status_code=204)
