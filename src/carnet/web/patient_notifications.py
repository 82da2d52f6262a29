"""The patient portal's notification centre: the notices also sent by e-mail, read and unread.

``GET /patient/notifications`` lists every notice the patient asked for (``Notifier.inbox``:
the outbox, opened with the record's key) — emergency and SAMU accesses, new documents, a
professional's first access, a treating physician reading a hidden document — newest first,
unread ones marked; ``POST /patient/notifications/read`` marks one notice (``id``) or all of
them read. A notice says who, when and in which mode, never what was read: the access history
(one click away) says that.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from carnet.domain.errors import CarnetError
from carnet.offload import offload
from carnet.services.notifications import InboxItem, NoticeEvent, NoticeMode
from carnet.web.access_visits import PROFESSIONS, Teller
from carnet.web.csrf import checked_form, form_text
from carnet.web.holder import Holder, holder_of, page, utc_now
from carnet.web.i18n import language_of, translate
from carnet.web.pages import flash, portal

router = APIRouter(prefix="/patient", include_in_schema=False)

#: What happened, in the patient's words (``{who}``: the professional or service).
EVENTS = {
    NoticeEvent.BREAK_GLASS: "{who} opened your record in an emergency (break-glass).",
    NoticeEvent.REGULATION: "{who}, SAMU regulating physician, opened your record during an emergency call.",
    NoticeEvent.NEW_DOCUMENT: "{who} added a document to your record.",
    NoticeEvent.NEW_PROFESSIONAL: "{who} accessed your record for the first time.",
    NoticeEvent.MASKED_ACCESS: "{who}, your treating physician, read a document you hid from professionals.",
    NoticeEvent.NEW_MESSAGE: "{who} wrote to you.",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Shown:
    """One notice as the centre shows it."""

    id: str
    text: str
    when: str
    emergency: bool
    read: bool


def inbox(request: Request, holder: Holder) -> list[InboxItem] | None:
    """The holder's notices (None when the notification store cannot answer)."""
    services = portal(request).services
    try:
        return services.records.notifier.inbox(services.store, holder.principal, holder.patient_id)
    except CarnetError:
        return None


def unread_count(request: Request, holder: Holder) -> int:
    """How many notices the holder has not marked read."""
    return sum(1 for item in inbox(request, holder) or [] if not item.read)


def _shown(item: InboxItem, language: str, now: datetime) -> Shown:
    notice = item.notice
    name = notice.actor_display or notice.actor_id
    if notice.actor_profession in PROFESSIONS:
        name = f"{name}, {translate(language, PROFESSIONS[notice.actor_profession])}"
    moment = Teller(language, {}, {}, now).moment(notice.at)
    return Shown(
        id=item.message_id,
        text=translate(language, EVENTS[notice.event], who=name),
        when=moment,
        emergency=notice.mode is not NoticeMode.NORMAL,
        read=item.read,
    )


@router.get("/notifications")
def notifications(request: Request) -> Response:
    """My notifications: newest first, unread ones marked, each leading to the access history."""
    holder = holder_of(request)
    items = inbox(request, holder)
    language, now = language_of(request), utc_now()
    shown = [_shown(i, language, now) for i in items or []]
    return page(
        request,
        "patient/notifications.html",
        "notifications",
        {"notices": shown, "available": items is not None, "unread": sum(1 for s in shown if not s.read)},
    )


@router.post("/notifications/read")
async def mark_read(request: Request) -> Response:
    """Mark one notice (``id``) or, without one, every notice read."""
    form = await checked_form(request)
    holder = holder_of(request)
    message_id = form_text(form, "id", 80) or None
    services = portal(request).services
    await offload(
        services.records.notifier.mark_read,
        services.store,
        holder.principal,
        holder.patient_id,
        [message_id] if message_id else None,
    )
    if message_id is None:
        flash(request, "Every notification is marked read.")
    return RedirectResponse("/patient/notifications", status_code=303)
