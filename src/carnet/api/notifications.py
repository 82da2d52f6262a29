"""The patient's notification choices: ``GET`` / ``PUT /fhir/Patient/{id}/$notification-preferences``.

Both take and return a FHIR ``Parameters`` resource::

    new-document       valueBoolean   notify when a document is added          (default true)
    new-professional   valueBoolean   notify on a professional's first access  (default true)
    masked-access      valueBoolean   notify when a treating physician reads a masked document (default true)
    language           valueCode      ``fr`` or ``en``                          (default fr)
    email              valueString    address to use instead of Patient.telecom (optional)

``PUT`` replaces the whole choice: a parameter left out takes its default. Break-glass and
SAMU regulation accesses always notify and are not choices. Only the patient holding the record
and their legal representatives may read or change it; anyone else gets the same 404 as for an
unknown record.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, Request, Response

from carnet.api.fhir import fhir_response, json_body, principal_of
from carnet.domain.errors import InvalidRequest, NotFound
from carnet.domain.principal import Principal
from carnet.offload import offload
from carnet.services.notifications import Notifier, Preferences, may_choose

router = APIRouter()

#: Parameter name → (its value[x] key, the Preferences field it sets).
_PARAMETERS: Mapping[str, tuple[str, str]] = {
    "new-document": ("valueBoolean", "new_document"),
    "new-professional": ("valueBoolean", "new_professional"),
    "masked-access": ("valueBoolean", "masked_access"),
    "language": ("valueCode", "language"),
    "email": ("valueString", "email"),
}


def _notifier(request: Request) -> Notifier:
    records = request.app.state.services.records
    return Notifier(vault=records.vault, clock=records.clock, new_id=records.new_id)


def parameters_of(prefs: Preferences) -> dict[str, Any]:
    """Render preferences as a FHIR ``Parameters`` resource."""
    parameter: list[dict[str, Any]] = [
        {"name": "new-document", "valueBoolean": prefs.new_document},
        {"name": "new-professional", "valueBoolean": prefs.new_professional},
        {"name": "masked-access", "valueBoolean": prefs.masked_access},
        {"name": "language", "valueCode": prefs.language},
    ]
    if prefs.email is not None:
        parameter.append({"name": "email", "valueString": prefs.email})
    return {"resourceType": "Parameters", "parameter": parameter}


def preferences_of(body: Mapping[str, Any]) -> Preferences:
    """Parse a ``Parameters`` resource into preferences.

    Raises:
        InvalidRequest: not a Parameters resource, an unknown or repeated parameter, a value of
            the wrong type, an unsupported language or an invalid e-mail address.
    """
    if body.get("resourceType") != "Parameters":
        raise InvalidRequest("Send the preferences as a FHIR Parameters resource.")
    extra = set(body) - {"resourceType", "id", "meta", "parameter"}
    if extra:
        raise InvalidRequest(
            f"Parameters has an unexpected element {sorted(extra)[0][:40]!r}; send only 'parameter'."
        )
    entries = body.get("parameter", [])
    if not isinstance(entries, list):
        raise InvalidRequest("Parameters.parameter must be a list.", expression=("Parameters.parameter",))
    chosen: dict[str, Any] = {}
    for index, entry in enumerate(entries):
        where = (f"Parameters.parameter[{index}]",)
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str) or name not in _PARAMETERS:
            raise InvalidRequest(
                f"Parameter {str(name)[:40]!r} is not a notification preference; use "
                f"{', '.join(_PARAMETERS)}.",
                expression=where,
            )
        value_key, field = _PARAMETERS[name]
        value = entry.get(value_key)
        expected = bool if value_key == "valueBoolean" else str
        if set(entry) != {"name", value_key} or not isinstance(value, expected):
            raise InvalidRequest(
                f"Parameter {name!r} takes exactly one {value_key}.", expression=(*where, value_key)
            )
        if field in chosen:
            raise InvalidRequest(f"Parameter {name!r} is given twice; send it once.", expression=where)
        chosen[field] = value.strip() if isinstance(value, str) else value
    return Preferences(**chosen)


def _check(principal: Principal, patient_id: str) -> None:
    """Refuse anyone but the record's holder and representatives, before reading anything."""
    if not may_choose(principal, patient_id):
        raise NotFound(f"Patient/{patient_id[:64]} is not known.")


@router.get("/Patient/{patient_id}/$notification-preferences")
async def read_preferences(patient_id: str, request: Request) -> Response:
    """Return the record's notification preferences as ``Parameters``."""
    principal = await principal_of(request)
    _check(principal, patient_id)
    services = request.app.state.services
    prefs = await offload(_notifier(request).preferences_for, services.store, principal, patient_id)
    return fhir_response(parameters_of(prefs))


@router.put("/Patient/{patient_id}/$notification-preferences")
async def write_preferences(patient_id: str, request: Request) -> Response:
    """Replace the record's notification preferences; return them as ``Parameters``."""
    principal = await principal_of(request)
    _check(principal, patient_id)
    prefs = preferences_of(await json_body(request))
    services = request.app.state.services
    stored = await offload(_notifier(request).choose, services.store, principal, patient_id, prefs)
    return fhir_response(parameters_of(stored))
