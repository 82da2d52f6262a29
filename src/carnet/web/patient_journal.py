"""The patient portal's access history: visits in plain words, the raw AuditEvents, their proofs.

Each entry is read through ``Records.search("AuditEvent", …)`` (IHE BALP shapes, see
``carnet.domain.audit_event``) and grouped into visits by ``carnet.web.access_visits``:
emergencies (break-glass, SAMU) and refusals first and explained, then the others, newest
first; filters by person, period and kind; each access of a visit and its proof one click
away. ``/patient/access/export.json`` downloads every raw AuditEvent. The proof page checks
``Records.audit_proof`` with ``carnet.audit.verify.verify_event_proof`` against the server's
checkpoint key.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from carnet.audit.verify import HeadStatus, head_status, verify_event_proof
from carnet.domain.errors import CarnetError
from carnet.web.access_visits import (
    KINDS,
    VISIT_GAP,
    Access,
    Teller,
    Told,
    Visit,
    group_visits,
    order_visits,
    read_access,
)
from carnet.web.holder import Holder, holder_of, page, search, utc_now
from carnet.web.i18n import language_of
from carnet.web.pages import portal
from carnet.web.record_summary import document_line

router = APIRouter(prefix="/patient", include_in_schema=False)


# -- who accessed my record -------------------------------------------------------------------

#: How many of the newest journal entries the home page's "since your last visit" reads.
HISTORY_ENTRIES = 1000
#: The periods the history can be narrowed to, in days.
PERIODS = (7, 30, 365)
#: Visits shown per page of the history (at least: a page never cuts a visit in two).
VISITS_PER_PAGE = 30
#: Journal entries read per step while walking back through the journal.
JOURNAL_BATCH = 500
_EXPORT_PAGE = 1000


def _instant(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def journal(
    holder: Holder,
    *,
    since: str | None = None,
    until: datetime | None = None,
    before: datetime | None = None,
    count: int = HISTORY_ENTRIES,
) -> tuple[list[Access], bool]:
    """Return the newest journal entries of the record (and whether the journal answered).

    ``since`` (an instant) and ``until`` bound the entries inclusively, ``before`` strictly.
    """
    params = [("patient", f"Patient/{holder.patient_id}"), ("_sort", "-date"), ("_count", str(count))]
    if since:
        params.append(("date", f"ge{since}"))
    if until is not None:
        params.append(("date", f"le{_instant(until)}"))
    if before is not None:
        params.append(("date", f"lt{_instant(before)}"))
    try:
        events = holder.records.search("AuditEvent", params).resources
    except CarnetError:
        return [], False
    return [read_access(e, holder.principal.subject) for e in events], True


@dataclass(frozen=True, slots=True, kw_only=True)
class HistoryPage:
    """One page of the history: whole visits, newest first, and where the next page starts."""

    visits: list[Visit]
    """Every visit of the page, whatever the filters (newest end first)."""
    shown: list[Visit]
    """The page's visits that pass the filters."""
    older: datetime | None
    """The ``before`` of the next page (None: the page reaches the journal's first entry)."""


def page_of_visits(
    fetch: Callable[[datetime | None], list[Access]],
    keeps: Callable[[Visit], bool],
    *,
    want: int = VISITS_PER_PAGE,
    batch: int = JOURNAL_BATCH,
    gap: timedelta = VISIT_GAP,
) -> HistoryPage:
    """Walk the journal back from its newest entry in batches until a page of whole visits is read.

    ``fetch(until)`` returns up to ``batch`` entries recorded at or before ``until`` (None: the
    newest), newest first. The page holds the newest visits until ``want`` of them pass
    ``keeps``, then every visit that ends after the oldest start among them, so that the page's
    boundary (that oldest start, the keyset of the next page) cuts no visit in two. A visit is
    taken only once the journal was read more than ``gap`` before its start (or to its first
    entry): an older entry of the same person could still belong to it.
    """
    entries: dict[str, Access] = {}
    until: datetime | None = None
    exhausted = False
    while True:
        found = fetch(until)
        fresh = [a for a in found if a.id not in entries]
        entries.update((a.id, a) for a in fresh)
        exhausted = len(found) < batch or not fresh
        if found:
            until = min(a.recorded for a in found)
        oldest = min((a.recorded for a in entries.values()), default=None)
        visits: list[Visit] = []
        shown: list[Visit] = []
        boundary: datetime | None = None
        complete = True
        for visit in group_visits(entries.values(), gap):
            if boundary is not None and visit.end < boundary and len(shown) >= want:
                return HistoryPage(visits=visits, shown=shown, older=boundary)
            if not exhausted and oldest is not None and visit.start - oldest <= gap:
                complete = False
                break
            visits.append(visit)
            if keeps(visit):
                shown.append(visit)
            boundary = visit.start if boundary is None else min(boundary, visit.start)
        if exhausted and complete:
            return HistoryPage(visits=visits, shown=shown, older=None)


def teller(request: Request, holder: Holder) -> Teller:
    """A :class:`Teller` in the request's language, naming the documents the holder may see."""
    titles: dict[str, str] = {}
    binaries: dict[str, str] = {}
    for document in search(holder, "DocumentReference", ("_count", "1000")):
        line = document_line(document)
        # The policy already hides INVISIBLE_PATIENT documents from the holder; never name one anyway.
        if not line.id or "INVISIBLE_PATIENT" in line.visibility:
            continue
        titles[line.id] = line.title
        if line.binary:
            binaries[line.binary] = line.id
    return Teller(language_of(request), titles, binaries, utc_now())


def recent_visits(request: Request, holder: Holder, since: str) -> tuple[list[tuple[Visit, Told]], bool]:
    """Other people's visits since ``since`` (an instant), told in words, notable first (the home page)."""
    entries, available = journal(holder, since=since)
    notable, others = order_visits([v for v in group_visits(entries) if v.kind != "mine"])
    if not notable and not others:
        return [], available
    tell = teller(request, holder)
    return [(v, tell.tell(v)) for v in notable + others], available


@dataclass(frozen=True, slots=True, kw_only=True)
class Filters:
    """What the patient narrowed the history to: who, when (days) and which kind of visit."""

    who: str
    period: int | None
    kind: str

    @classmethod
    def of(cls, request: Request) -> Filters:
        """Read the filters from the query string (an unknown value means no filter)."""
        query = request.query_params
        period = query.get("period", "")
        kind = query.get("kind", "")
        if query.get("mine") == "1":  # the links of the first timeline
            kind = kind or "mine"
        return cls(
            who=query.get("who", "")[:40],
            period=int(period) if period.isdigit() and int(period) in PERIODS else None,
            kind=kind if kind in (*KINDS, "emergency") else "",
        )

    def keeps(self, visit: Visit) -> bool:
        """Whether a visit passes the filters (the holder's own visits only when asked for)."""
        if self.who and visit.first.actor != self.who:
            return False
        if self.kind == "emergency":
            return visit.kind in ("break_glass", "regulation")
        if self.kind == "refused":
            return any(a.refused for a in visit.accesses) and visit.kind != "mine"
        if self.kind:
            return visit.kind == self.kind
        return visit.kind != "mine"


def _before(request: Request) -> datetime | None:
    """The keyset of the page asked for (``before``, an instant; anything else: the newest page)."""
    value = request.query_params.get("before", "")[:40]
    try:
        instant = datetime.fromisoformat(value.replace(" ", "+")) if value else None
    except ValueError:
        return None
    return instant if instant is None or instant.tzinfo is not None else instant.replace(tzinfo=UTC)


@router.get("/access")
def access(request: Request) -> Response:
    """Who accessed my record: one line per visit, emergencies and refusals first, filters, pages."""
    holder = holder_of(request)
    filters = Filters.of(request)
    since = None
    if filters.period is not None:
        since = (utc_now() - timedelta(days=filters.period)).isoformat().replace("+00:00", "Z")
    before = _before(request)
    answered = [True]

    def fetch(until: datetime | None) -> list[Access]:
        found, available = journal(holder, since=since, until=until, before=before, count=JOURNAL_BATCH)
        answered[0] = answered[0] and available
        return found

    history = page_of_visits(fetch, filters.keeps)
    notable, others = order_visits(history.shown)
    tell = teller(request, holder)
    people = {v.first.actor: v for v in history.visits if v.kind != "mine"}
    query = {
        k: v for k, v in (("who", filters.who), ("period", filters.period or ""), ("kind", filters.kind)) if v
    }
    return page(
        request,
        "patient/access.html",
        "access",
        {
            "notable": [(v, tell.tell(v)) for v in notable],
            "others": [(v, tell.tell(v)) for v in others],
            "people": sorted(
                ((key, tell.who(v).rstrip(",")) for key, v in people.items()), key=lambda p: p[1]
            ),
            "filters": filters,
            "periods": PERIODS,
            "filtered": bool(filters.who or filters.period or filters.kind),
            "available": answered[0],
            "older": urlencode({**query, "before": _instant(history.older)}) if history.older else None,
            "newest": urlencode(query) if before is not None else None,
            "mine": sum(1 for v in history.visits if v.kind == "mine"),
            "witnessing": _witnessing(request, holder),
        },
    )


@router.get("/journal")
def journal_link(request: Request) -> Response:
    """The address the notification e-mails gave before the history was named "access": go there."""
    return RedirectResponse("/patient/access", status_code=301)


@router.get("/access/export.json")
def export(request: Request) -> Response:
    """Every raw AuditEvent of the record's journal, as a FHIR Bundle to download."""
    holder = holder_of(request)
    events: list[dict[str, Any]] = []
    while True:
        params = [
            ("patient", f"Patient/{holder.patient_id}"),
            ("_sort", "date"),
            ("_count", str(_EXPORT_PAGE)),
            ("_offset", str(len(events))),
        ]
        batch = holder.records.search("AuditEvent", params).resources
        events.extend(batch)
        if len(batch) < _EXPORT_PAGE:
            break
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "timestamp": utc_now().isoformat().replace("+00:00", "Z"),
        "total": len(events),
        "entry": [{"fullUrl": f"AuditEvent/{e.get('id')}", "resource": e} for e in events],
    }
    return Response(
        json.dumps(bundle, ensure_ascii=False),
        media_type="application/fhir+json",
        headers={"Content-Disposition": 'attachment; filename="access-journal.json"'},
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
