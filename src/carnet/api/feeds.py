"""The feeds' HTTP endpoint: one HL7 v2 message per request, answered with its acknowledgement.

``POST /feeds/{feed}/hl7v2`` with the feed's secret as bearer token (``carnet feeds add`` prints
it) and the message as the body (``application/hl7-v2``, ``x-application/hl7-v2+er7`` or
``text/plain``; CR, CRLF or LF between segments). The answer is the technical ACK, followed by
the business ack (ZAM) when the message asked for one, as ``application/hl7-v2``: ``200`` with
``AA``, ``422`` with ``AE`` (the content is in error), ``400`` with ``AR`` (the message is
rejected). The same use case answers the MLLP listener.

``GET /feeds/{feed}/hl7v2/{MSH-10}`` answers the current ACK of a message already sent: the same
ACK, or an application reject (``AE``) once the patient declined a document they had asked to
decide first.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from carnet.api.fhir import content_type_of, read_body
from carnet.domain.errors import InvalidRequest, Unauthenticated
from carnet.domain.feeds import check_feed_id
from carnet.offload import offload

HL7_MEDIA_TYPES = ("application/hl7-v2", "x-application/hl7-v2+er7", "text/plain")
router = APIRouter()


@router.post("/feeds/{feed_id}/hl7v2")
async def hl7v2(feed_id: str, request: Request) -> Response:
    """Take one HL7 v2 message (ORU^R01, MDM^T02/T10/T04) of a registered feed; answer its ACK."""
    services = request.app.state.services
    await _authenticated(request, feed_id)
    if content_type_of(request) not in HL7_MEDIA_TYPES:
        raise InvalidRequest(
            "Send the HL7 v2 message as application/hl7-v2, x-application/hl7-v2+er7 or text/plain."
        )
    raw = await read_body(request)
    receipt = await offload(services.hl7v2.receive, feed_id, raw)
    status = 200 if receipt.error is None else (400 if receipt.error.rejected else 422)
    return Response(receipt.reply, status_code=status, media_type="application/hl7-v2")


@router.get("/feeds/{feed_id}/hl7v2/{control_id}")
async def answer(feed_id: str, control_id: str, request: Request) -> Response:
    """The current answer to one message (by MSH-10): its ACK, or an AE once the patient declined it."""
    services = request.app.state.services
    await _authenticated(request, feed_id)
    ack = await offload(services.hl7v2.answer, feed_id, control_id)
    return Response(ack, status_code=200, media_type="application/hl7-v2")


async def _authenticated(request: Request, feed_id: str) -> None:
    """Check that the request carries this registered, active feed's secret as its bearer token.

    Raises:
        InvalidRequest: not a feed id. Unauthenticated: no bearer, or not the feed's secret.
        AccessDenied: the feed is paused.
    """
    check_feed_id(feed_id)
    authorization = request.headers.get("authorization", "")
    if not authorization.lower().startswith("bearer "):
        raise Unauthenticated(
            "Send the feed's secret as a bearer token: Authorization: Bearer <secret>.", bearer_error=None
        )
    await offload(request.app.state.services.feeds.authenticate, feed_id, authorization[7:].strip())
