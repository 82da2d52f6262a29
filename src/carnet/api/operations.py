"""FHIR operations for what the portals do: close a record, mask a document, record a choice…

Each route parses its ``Parameters``, calls one use case of ``carnet.services`` (the same
function the portal calls: one transaction, one journal entry) and answers a ``Parameters``
whose ``return`` parameter carries the resource(s) as they now stand. Errors are
OperationOutcomes (4xx). The body may be empty when an operation takes no parameter.

=====================================================  =========================================
``POST Patient/{id}/$close``                           close the record (holder)
``POST Patient/{id}/$reopen``                          reopen it (holder)
``POST Patient/{id}/$authorise``                       ``professional`` (idNat_PS), ``until``
                                                       (date); a professional without
                                                       ``professional`` declares the present
                                                       patient's consent to their own access
``POST Patient/{id}/$block``                           ``professional``
``POST Patient/{id}/$declare-treating-physician``      ``professional`` (default: the caller)
``POST Patient/{id}/$set-oppositions``                 ``break-glass``, ``regulation`` (booleans;
                                                       an absent one is left as it is)
``POST Consent/{id}/$withdraw``                        withdraw a choice (the Consent inactive)
``POST DocumentReference/{id}/$mask``                  mask from professionals; ``professional``
                                                       masks from that one (``sovereign``)
``POST DocumentReference/{id}/$unmask``                lift the mask (same parameter)
=====================================================  =========================================

A parameter ``professional`` is a ``valueIdentifier`` (system ``urn:oid:1.2.250.1.71.4.2.1``)
or a ``valueString`` holding the idNat_PS.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

from fastapi import APIRouter, Request, Response

from carnet.api.fhir import content_type_of, fhir_response, read_body, records_of
from carnet.domain import fhirjson
from carnet.domain.consent import IDNPS_SYSTEM, ConsentKind
from carnet.domain.errors import InvalidRequest
from carnet.domain.principal import ActorKind
from carnet.offload import offload
from carnet.services.choices import Oppositions, end_of_day, record_choice, set_oppositions, withdraw_choice
from carnet.services.masking import set_masked
from carnet.services.record_status import close_record, reopen_record
from carnet.services.record_types import Stored
from carnet.services.records import RecordService

router = APIRouter()


async def _parameters(request: Request) -> dict[str, Any]:
    """Read the operation's ``Parameters``: each name to its ``value[x]`` (an empty body: none).

    Raises:
        InvalidRequest: a body that is not a Parameters resource, or a parameter given twice.
    """
    raw = await read_body(request)
    if not raw:
        return {}
    content_type = content_type_of(request)
    if content_type and "json" not in content_type:
        raise InvalidRequest(
            f"Content-Type {content_type[:60]!r} is not accepted; send application/fhir+json."
        )
    body = fhirjson.loads(raw)
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise InvalidRequest("An operation takes a Parameters resource (or an empty body).")
    found: dict[str, Any] = {}
    parameters = body.get("parameter") or []
    if not isinstance(parameters, list):
        raise InvalidRequest("Parameters.parameter must be a list.")
    for parameter in parameters:
        if not isinstance(parameter, dict) or not isinstance(parameter.get("name"), str):
            raise InvalidRequest("Each parameter needs a name.")
        name = parameter["name"]
        values = [v for k, v in parameter.items() if k.startswith("value")]
        if name in found:
            raise InvalidRequest(f"The parameter {name[:40]!r} is given twice; give it once.")
        found[name] = values[0] if len(values) == 1 else None
    return found


def _professional(parameters: Mapping[str, Any], default: str | None = None) -> str | None:
    """The idNat_PS of the ``professional`` parameter (an Identifier or a string), else ``default``.

    Raises:
        InvalidRequest: the parameter is neither.
    """
    if "professional" not in parameters:
        return default
    value = parameters["professional"]
    if isinstance(value, dict) and value.get("system") in (None, IDNPS_SYSTEM):
        value = value.get("value")
    if not isinstance(value, str) or not value:
        raise InvalidRequest(
            f"The parameter 'professional' is the idNat_PS, as a valueIdentifier (system {IDNPS_SYSTEM}) "
            "or a valueString."
        )
    return value


def _boolean(parameters: Mapping[str, Any], name: str) -> bool | None:
    if name not in parameters:
        return None
    value = parameters[name]
    if not isinstance(value, bool):
        raise InvalidRequest(f"The parameter {name!r} is a valueBoolean.")
    return value


def _until(parameters: Mapping[str, Any]) -> date | None:
    value = parameters.get("until")
    if value is None and "until" not in parameters:
        return None
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise InvalidRequest("The parameter 'until' is a valueDate (YYYY-MM-DD).") from None


def _answer(resources: Sequence[Stored]) -> Response:
    returned = [{"name": "return", "resource": s.resource} for s in resources if s.resource is not None]
    return fhir_response({"resourceType": "Parameters", "parameter": returned})


def _service(request: Request) -> RecordService:
    service: RecordService = request.app.state.services.records
    return service


@router.post("/Patient/{patient_id}/$close")
async def close(patient_id: str, request: Request) -> Response:
    """Close a record (``carnet.services.record_status``)."""
    records = await records_of(request)
    await _parameters(request)
    closed = await offload(close_record, _service(request), records.actor, patient_id, mode=records.mode)
    return _answer([closed])


@router.post("/Patient/{patient_id}/$reopen")
async def reopen(patient_id: str, request: Request) -> Response:
    """Reopen a closed record."""
    records = await records_of(request)
    await _parameters(request)
    reopened = await offload(reopen_record, _service(request), records.actor, patient_id, mode=records.mode)
    return _answer([reopened])


async def _choice(request: Request, patient_id: str, kind: ConsentKind) -> Response:
    records = await records_of(request)
    parameters = await _parameters(request)
    actor = records.actor
    # A professional declares the patient's consent to their own access: they are the default.
    own = actor.professional_id if actor.kind is ActorKind.PROFESSIONAL else None
    professional = _professional(parameters, own)
    if professional is None:
        raise InvalidRequest("Name the professional: the parameter 'professional' (idNat_PS).")
    until = _until(parameters) if kind is ConsentKind.AUTHORISATION else None
    stored = await offload(
        record_choice,
        _service(request),
        actor,
        patient_id,
        kind,
        professional,
        until=end_of_day(until) if until else None,
        mode=records.mode,
    )
    return _answer([stored])


@router.post("/Patient/{patient_id}/$authorise")
async def authorise(patient_id: str, request: Request) -> Response:
    """Authorise a professional (``carnet.services.choices.record_choice``)."""
    return await _choice(request, patient_id, ConsentKind.AUTHORISATION)


@router.post("/Patient/{patient_id}/$block")
async def block(patient_id: str, request: Request) -> Response:
    """Block a professional: they get nothing of the record, whatever the mode."""
    return await _choice(request, patient_id, ConsentKind.BLOCK)


@router.post("/Patient/{patient_id}/$declare-treating-physician")
async def declare_treating_physician(patient_id: str, request: Request) -> Response:
    """Name a treating physician (« médecin traitant »)."""
    return await _choice(request, patient_id, ConsentKind.TREATING_PHYSICIAN)


@router.post("/Patient/{patient_id}/$set-oppositions")
async def oppositions(patient_id: str, request: Request) -> Response:
    """Oppose (or stop opposing) break-glass and SAMU regulation access."""
    records = await records_of(request)
    parameters = await _parameters(request)
    wanted = Oppositions(
        break_glass=_boolean(parameters, "break-glass"), regulation=_boolean(parameters, "regulation")
    )
    if wanted == Oppositions():
        raise InvalidRequest("Give 'break-glass' and/or 'regulation' as valueBoolean.")
    changed = await offload(
        set_oppositions, _service(request), records.actor, patient_id, wanted, mode=records.mode
    )
    return _answer(changed)


@router.post("/Consent/{consent_id}/$withdraw")
async def withdraw(consent_id: str, request: Request) -> Response:
    """Withdraw a choice: its Consent becomes inactive."""
    records = await records_of(request)
    await _parameters(request)
    withdrawn = await offload(
        withdraw_choice, _service(request), records.actor, consent_id, mode=records.mode
    )
    return _answer([withdrawn])


async def _mask(request: Request, document_id: str, *, masked: bool) -> Response:
    records = await records_of(request)
    parameters = await _parameters(request)
    stored = await offload(
        set_masked,
        _service(request),
        records.actor,
        document_id,
        masked=masked,
        professional_id=_professional(parameters),
        mode=records.mode,
    )
    return _answer([stored])


@router.post("/DocumentReference/{document_id}/$mask")
async def mask(document_id: str, request: Request) -> Response:
    """Mask a document from professionals (or from one, ``sovereign``)."""
    return await _mask(request, document_id, masked=True)


@router.post("/DocumentReference/{document_id}/$unmask")
async def unmask(document_id: str, request: Request) -> Response:
    """Lift a document's mask."""
    return await _mask(request, document_id, masked=False)
