"""The patient portal's feeds: my choice for each feed, and the documents waiting for my decision.

``/patient/feeds`` lists the registered feeds (hospitals, labs, the insurer, pharmacies) with the
patient's choice — accept automatically, ask me first, refuse — or the profile's default, and
the inbox of documents a feed offered while the patient asked to be asked first. Accepting
stores the document as if it had just been received; refusing deletes it: nothing of its
content stays (``carnet.services.feed_inbox``).
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from carnet.domain.errors import CarnetError
from carnet.offload import offload
from carnet.services.feed_inbox import FeedChoice
from carnet.web.csrf import checked_form, form_text
from carnet.web.document_classes import CLASSES
from carnet.web.holder import holder_of, page
from carnet.web.pages import flash, portal

router = APIRouter(prefix="/patient", include_in_schema=False)


@router.get("/feeds")
async def feeds(request: Request) -> Response:
    """My feeds: a choice per feed, and the documents waiting for my decision."""
    holder = holder_of(request)
    inbox = portal(request).services.feed_inbox
    settings = await offload(inbox.settings, holder.principal)
    offers = await offload(inbox.pending, holder.principal)
    return page(
        request,
        "patient/feeds.html",
        "feeds",
        {
            "settings": settings,
            "offers": offers,
            "class_labels": CLASSES,
            "error": request.session.pop("feeds_error", None),
        },
    )


@router.post("/feeds/choice")
async def choose(request: Request) -> Response:
    """Record my choice for one feed."""
    form = await checked_form(request)
    holder = holder_of(request)
    try:
        choice = FeedChoice(form_text(form, "choice", 10))
    except ValueError:
        request.session["feeds_error"] = "Choose accept, ask me first or refuse."
        return RedirectResponse("/patient/feeds", status_code=303)
    try:
        await offload(
            portal(request).services.feed_inbox.choose, holder.principal, form_text(form, "feed", 64), choice
        )
    except CarnetError:
        request.session["feeds_error"] = "This feed is not known."
        return RedirectResponse("/patient/feeds", status_code=303)
    flash(request, "Your choice was saved.")
    return RedirectResponse("/patient/feeds", status_code=303)


@router.post("/feeds/offers/{offer_id}/accept")
async def accept(offer_id: str, request: Request) -> Response:
    """Accept a waiting document: it is stored in my record as if just received."""
    return await _decide(
        request,
        offer_id,
        accept=True,
        done="The document was added to your record.",
        failed="This document could not be added; it stays waiting.",
    )


@router.post("/feeds/offers/{offer_id}/decline")
async def decline(offer_id: str, request: Request) -> Response:
    """Refuse a waiting document: nothing of it stays."""
    return await _decide(
        request,
        offer_id,
        accept=False,
        done="The document was refused: nothing of it was kept.",
        failed="This document is no longer waiting for your decision.",
    )


async def _decide(request: Request, offer_id: str, *, accept: bool, done: str, failed: str) -> Response:
    """Accept or refuse one waiting document, then back to My feeds with what happened."""
    await checked_form(request)
    holder = holder_of(request)
    inbox = portal(request).services.feed_inbox
    try:
        await offload(inbox.accept if accept else inbox.decline, holder.principal, offer_id)
    except CarnetError:
        request.session["feeds_error"] = failed
        return RedirectResponse("/patient/feeds", status_code=303)
    flash(request, done)
    return RedirectResponse("/patient/feeds", status_code=303)
