"""The patient portal's access history: the journal's AuditEvents as a timeline, and their proofs.

Each entry is read through ``Records.search("AuditEvent", …)`` (IHE BALP shapes, see
``carnet.domain.audit_event``): the access mode is the ``access-mode`` coding of the agent's
``purposeOfUse`` (``break_glass`` and ``regulation`` are highlighted; a v3-ActReason ``BTG``
counts as break-glass too), the justification its ``text``. The proof page checks
``Records.audit_proof`` with ``carnet.audit.verify.verify_event_proof`` against the server's
checkpoint key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from carnet.audit.verify import HeadStatus, head_status, verify_event_proof
from carnet.domain.errors import CarnetError
from carnet.web.holder import Holder, holder_of, page
from carnet.web.pages import portal

router = APIRouter(prefix="/patient", include_in_schema=False)


# -- who accessed my record -------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Access:
    """One journal entry as the timeline shows it."""

    id: str
    when: str
    who: str
    who_id: str
    profession: str | None
    mode: str
    action: str
    outcome: str
    refused: bool
    justification: str | None
    confirmed_by: str | None
    targets: list[str]
    by_me: bool


def _access(event: Mapping[str, Any], me: str) -> Access:
    agent = next((a for a in event.get("agent") or [] if isinstance(a, dict) and a.get("requestor")), None)
    agent = agent or next(iter(event.get("agent") or [{}]))
    who = (agent or {}).get("who") or {}
    identifier = who.get("identifier") or {}
    mode = "normal"
    justification = None
    codes: set[str] = set()
    purposes = list((agent or {}).get("purposeOfUse") or []) + list(event.get("purposeOfEvent") or [])
    for purpose in purposes:
        if not isinstance(purpose, dict):
            continue
        for coding in purpose.get("coding") or []:
            if isinstance(coding, dict) and coding.get("code"):
                codes.add(str(coding["code"]))
                if str(coding.get("system", "")).endswith("/access-mode"):
                    mode = str(coding["code"])
        if purpose.get("text"):
            justification = str(purpose["text"])
    if mode == "normal" and "BTG" in codes:
        mode = "break_glass"
    if mode == "normal" and codes & {"regulation", "REGUL"}:
        mode = "regulation"
    profession = next(
        (
            str(c.get("code"))
            for r in (agent or {}).get("role") or []
            for c in (r or {}).get("coding") or []
            if c.get("code")
        ),
        None,
    )
    targets = [
        str((e.get("what") or {}).get("reference"))
        for e in event.get("entity") or []
        if isinstance(e, dict)
        and (e.get("what") or {}).get("reference")
        and not str((e.get("what") or {}).get("reference")).startswith("Patient/")
    ]
    who_id = str(identifier.get("value") or "")
    kinds = {
        str(c.get("code"))
        for c in ((agent or {}).get("type") or {}).get("coding") or []
        if isinstance(c, dict)
    }
    refused = str(event.get("outcome") or "0") != "0"
    confirmed_by = next(
        (
            str(part["valueString"])
            for extension in event.get("extension") or []
            if isinstance(extension, dict)
            for part in extension.get("extension") or []
            if isinstance(part, dict) and part.get("url") == "confirmedBy" and part.get("valueString")
        ),
        None,
    )
    return Access(
        id=str(event.get("id") or ""),
        when=str(event.get("recorded") or ""),
        who=str(who.get("display") or who_id or "—"),
        who_id=who_id,
        profession=profession,
        mode=mode,
        action=str(event.get("action") or ""),
        outcome=str(event.get("outcome") or ""),
        refused=refused,
        justification=justification,
        confirmed_by=confirmed_by,
        targets=targets,
        # The policy lets a patient into no record but their own: a permitted patient is the holder
        # (on another device or app, say, or opening the record), whatever their sign-in subject.
        by_me=mode == "patient" or who_id == me or ("PAT" in kinds and not refused),
    )


def journal(holder: Holder, *, since: str | None = None, count: int = 50) -> tuple[list[Access], bool]:
    """Return the newest journal entries of the record (and whether the journal answered)."""
    params = [("patient", f"Patient/{holder.patient_id}"), ("_sort", "-date"), ("_count", str(count))]
    if since:
        params.append(("date", f"gt{since}"))
    try:
        events = holder.records.search("AuditEvent", params).resources
    except CarnetError:
        return [], False
    return [_access(e, holder.principal.subject) for e in events], True


@router.get("/access")
def access(request: Request) -> Response:
    """Who accessed my record: the journal, newest first, emergencies highlighted."""
    holder = holder_of(request)
    show_mine = request.query_params.get("mine") == "1"
    entries, available = journal(holder, count=200)
    shown = [e for e in entries if show_mine or not e.by_me]
    return page(
        request,
        "patient/access.html",
        "access",
        {
            "entries": shown,
            "available": available,
            "show_mine": show_mine,
            "hidden_mine": len(entries) - len(shown),
            "witnessing": _witnessing(request, holder),
        },
    )


def _witnessing(request: Request, holder: Holder) -> HeadStatus | None:
    """Whether the head of the holder's journal is cosigned by a quorum of known witnesses (None: no witness)."""
    settings = portal(request).settings
    if not settings.witnesses:
        return None
    recent = portal(request).services.journal.recent_checkpoints(holder.patient_id)
    keys = [key for _, key in settings.witnesses]
    return head_status(recent, keys, settings.effective_witness_quorum, datetime.now(UTC))


@router.get("/access/{event_id}/verify")
def verify(event_id: str, request: Request) -> Response:
    """An entry's inclusion proof under a signed checkpoint, and whether it verifies."""
    holder = holder_of(request)
    parameters = holder.records.audit_proof(event_id)
    values = [
        (str(p.get("name")), next((str(v) for k, v in p.items() if k.startswith("value")), ""))
        for p in parameters.get("parameter") or []
        if isinstance(p, dict) and p.get("name") not in ("content", "salt")
    ]
    # Checked against the server's own key, never against the key the proof names.
    server_key = portal(request).services.records.journal.signer.verifier_key
    try:
        verified, detail = True, str(verify_event_proof(parameters, server_key).size)
    except CarnetError as error:
        verified, detail = False, error.message
    return page(
        request,
        "patient/verify.html",
        "access",
        {"event_id": event_id, "values": values, "verified": verified, "detail": detail},
    )
