"""The studies registry over the API: FHIR ``ResearchStudy``, registered, approved and withdrawn.

=================================================  ==============================================
``GET  [base]/ResearchStudy``                       the studies the caller may see (a Bundle)
``GET  [base]/ResearchStudy/{id}``                  one study, as a FHIR R4 ResearchStudy
``PUT  [base]/ResearchStudy/{id}``                  register (an administrator): the body is the
                                                    registration of docs/research.md
``POST [base]/ResearchStudy/{id}/$approve``         approve (the DPO)
``POST [base]/ResearchStudy/{id}/$withdraw``        withdraw (the DPO): its key is destroyed
=================================================  ==============================================

Who may register, approve and withdraw is the policy's rule ``study-registry`` (as for
``carnet research``). Administrators, the DPO and researchers see every study; anyone else
signed in (a patient, a professional) sees the approved and withdrawn ones only, as the
patient portal lists them.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request, Response

from carnet.api.fhir import fhir_response, principal_of, read_body
from carnet.domain.errors import InvalidRequest, NotFound
from carnet.domain.principal import ActorKind, Principal
from carnet.offload import offload
from carnet.research.study import Study, StudyStatus, research_study

router = APIRouter()

_REGISTRY_ROLES = frozenset({ActorKind.ADMIN, ActorKind.DPO, ActorKind.RESEARCHER})


def _visible(principal: Principal, study: Study) -> bool:
    return principal.kind in _REGISTRY_ROLES or study.status in (StudyStatus.APPROVED, StudyStatus.WITHDRAWN)


@router.get("/ResearchStudy")
async def list_studies(request: Request) -> Response:
    """Return the studies the caller may see, as a searchset Bundle."""
    principal = await principal_of(request)
    studies: list[Study] = await offload(request.app.state.services.studies.list)
    shown = [research_study(s) for s in studies if _visible(principal, s)]
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(shown),
        "entry": [{"resource": r, "search": {"mode": "match"}} for r in shown],
    }
    return fhir_response(bundle)


@router.get("/ResearchStudy/{study_id}")
async def read_study(study_id: str, request: Request) -> Response:
    """Return one study (404 if unknown, or not yet approved and the caller not of the registry)."""
    principal = await principal_of(request)
    study: Study = await offload(request.app.state.services.studies.get, study_id)
    if not _visible(principal, study):
        raise NotFound(f"No study {study_id!r} is open to you.")
    return fhir_response(research_study(study))


@router.put("/ResearchStudy/{study_id}")
async def register_study(study_id: str, request: Request) -> Response:
    """Register a study (an administrator); 201 with the ResearchStudy, pending the DPO's approval.

    Raises:
        InvalidRequest: the body is not JSON or not a valid registration (400).
        AccessDenied: not an administrator (403).
    """
    principal = await principal_of(request)
    raw = await read_body(request)
    try:
        registration = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidRequest("The registration is not JSON (see docs/research.md).") from None
    study: Study = await offload(
        request.app.state.services.studies.register, principal, study_id, registration
    )
    return fhir_response(research_study(study), status=201)


@router.post("/ResearchStudy/{study_id}/$approve")
async def approve_study(study_id: str, request: Request) -> Response:
    """Approve a registered study (the DPO)."""
    principal = await principal_of(request)
    study: Study = await offload(request.app.state.services.studies.approve, principal, study_id)
    return fhir_response(research_study(study))


@router.post("/ResearchStudy/{study_id}/$withdraw")
async def withdraw_study(study_id: str, request: Request) -> Response:
    """Withdraw a study (the DPO): no export starts any more and its pseudonym key is destroyed."""
    principal = await principal_of(request)
    study: Study = await offload(request.app.state.services.studies.withdraw, principal, study_id)
    return fhir_response(research_study(study))
