"""The portals' request-size limit: an oversized form or upload gets the 413 page, never a 500.

Every portal request body is counted as it arrives. Past ``CARNET_MAX_BODY_BYTES`` plus
:data:`FORM_ALLOWANCE` (the form's other fields and multipart framing) the request is answered
with the 413 error page in the visitor's language ("Le fichier est trop volumineux."):

- a declared ``Content-Length`` over the limit is refused before the handler runs;
- a body sent without one is cut where it crosses the limit: the handler sees the body end
  there, whatever it answers to that is discarded, and the 413 page is sent instead.

Nothing of an oversized upload is stored, and nothing is truncated silently.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from carnet.offload import offload
from carnet.web.errors import error_page
from carnet.web.headers import is_web_path

#: Room for a form's fields and multipart boundaries around a file of the maximum size.
FORM_ALLOWANCE = 64 * 1024
_END: Message = {"type": "http.request", "body": b"", "more_body": False}


class BodyLimitMiddleware:
    """ASGI middleware: refuse portal request bodies over ``max_bytes`` with the 413 page."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self._limit = max_bytes + FORM_ALLOWANCE

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve the request, counting its body's bytes as the handler reads them."""
        if scope["type"] != "http" or not is_web_path(str(scope.get("path", ""))):
            await self.app(scope, receive, send)
            return
        declared = next((v for k, v in scope.get("headers", ()) if k == b"content-length"), b"")
        if declared.isdigit() and (len(declared) > 18 or int(declared) > self._limit):
            await self._refuse(scope, receive, send)
            return
        received = 0
        crossed = False
        answered = False

        async def counted() -> Message:
            nonlocal received, crossed
            if crossed:
                return _END
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self._limit:
                    crossed = True
                    return _END
            return message

        async def send_unless_crossed(message: Message) -> None:
            nonlocal answered
            if crossed and not answered:
                return  # the handler's answer to a cut body: replaced by the 413 page below
            answered = True
            await send(message)

        try:
            await self.app(scope, counted, send_unless_crossed)
        except Exception:
            if not crossed or answered:
                raise
        if crossed and not answered:
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await offload(error_page, Request(scope, receive), 413)
        await response(scope, receive, send)
