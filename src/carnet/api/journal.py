"""The access journal on the wire.

``GET /fhir/AuditEvent/{id}/$proof`` — an entry's inclusion proof (FHIR Parameters), for the
patient, their representatives and the DPO. The public endpoints below need no token: a
checkpoint reveals only a size and a hash, and publishing them is what lets anyone check that
the journal never forks or shrinks::

    GET /journal/checkpoint?shard=0          the latest signed checkpoint (C2SP signed note)
    GET /journal/verifier-key                the Ed25519 verifier key of the checkpoints
    GET /journal/consistency?shard=0&first=N&second=M
                                             both checkpoints and the RFC 9162 consistency proof
"""

from __future__ import annotations

import base64

import orjson
from fastapi import APIRouter, Request, Response

from carnet.api.fhir import fhir_response, records_of
from carnet.domain.errors import InvalidRequest
from carnet.offload import offload

router = APIRouter()
public = APIRouter()


@router.get("/AuditEvent/{event_id}/$proof")
async def proof(event_id: str, request: Request) -> Response:
    """Return the inclusion proof of one journal entry under a signed checkpoint."""
    records = await records_of(request)
    return fhir_response(await offload(records.audit_proof, event_id))


def _whole(request: Request, name: str, default: int | None = None) -> int:
    raw = request.query_params.get(name)
    if raw is None and default is not None:
        return default
    if raw is None or not raw.isdigit() or len(raw) > 19:
        raise InvalidRequest(f"{name} must be a whole number.")
    return int(raw)


@public.get("/checkpoint")
async def checkpoint(request: Request) -> Response:
    """Return the latest signed checkpoint of a journal shard."""
    journal = request.app.state.services.journal
    note: bytes = await offload(journal.checkpoint, _whole(request, "shard", 0))
    return Response(note, media_type="text/plain; charset=utf-8", headers={"Cache-Control": "no-store"})


@public.get("/verifier-key")
async def verifier_key(request: Request) -> Response:
    """Return the verifier key of the journal's checkpoints."""
    key: str = request.app.state.services.journal.signer.verifier_key
    return Response(key + "\n", media_type="text/plain; charset=utf-8")


@public.get("/consistency")
async def consistency(request: Request) -> Response:
    """Return two checkpoints of a shard and the consistency proof from the first to the second."""
    journal = request.app.state.services.journal
    shard = _whole(request, "shard", 0)
    first, second = _whole(request, "first"), _whole(request, "second")
    old_note, new_note, path = await offload(journal.consistency, shard, first, second)
    body = {
        "first": old_note.decode(),
        "second": new_note.decode(),
        "proof": [base64.b64encode(h).decode("ascii") for h in path],
    }
    return Response(orjson.dumps(body), media_type="application/json")
