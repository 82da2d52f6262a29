"""What both portals need of the professional's message notices (``carnet.services.message_inbox``)."""

from __future__ import annotations

import uuid
from typing import cast

from starlette.requests import Request

from carnet.domain.errors import CarnetError
from carnet.domain.principal import Principal
from carnet.services.message_inbox import MessageInbox, MessageNoticeStores
from carnet.services.messages import IDNPS_SYSTEM
from carnet.services.notifications import is_email
from carnet.web.identities import DIRECTORY_READER, idnps_of
from carnet.web.pages import portal


def message_inbox(request: Request) -> MessageInbox:
    """The professional's inbox over the portal's services."""
    service = portal(request).services.records
    return MessageInbox(vault=service.vault, notifier=service.notifier, clock=service.clock, new_id=_new_id)


def notice_store(request: Request) -> MessageNoticeStores:
    """The store that holds the notices."""
    return cast(MessageNoticeStores, portal(request).services.store)


def unread_messages(request: Request, principal: Principal) -> int:
    """How many patients' messages wait unread for this professional (0 if it cannot be told)."""
    try:
        return message_inbox(request).unread(notice_store(request), principal)
    except CarnetError:
        return 0


def directory_email(request: Request, idnps: str) -> str | None:
    """A professional's e-mail address in the directory (``Practitioner.telecom``), if any."""
    try:
        found = (
            portal(request)
            .services.records.records(DIRECTORY_READER)
            .search("Practitioner", [("identifier", f"{IDNPS_SYSTEM}|{idnps}")])
        )
    except CarnetError:
        return None
    for practitioner in found.resources:
        if idnps_of(practitioner) != idnps:
            continue
        for telecom in practitioner.get("telecom") or []:
            value = telecom.get("value") if isinstance(telecom, dict) else None
            if telecom.get("system") == "email" and isinstance(value, str) and is_email(value):
                return value
    return None


def _new_id() -> str:
    return uuid.uuid4().hex
