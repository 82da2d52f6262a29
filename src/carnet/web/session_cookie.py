"""The portals' session middleware: an opaque cookie in front of a server-side session.

It takes the place of Starlette's ``SessionMiddleware`` (``request.session`` works the same):
before a request, the ``carnet_session`` cookie's id opens the session's content from
:class:`carnet.services.portal_sessions.PortalSessions` (in a worker thread: the database is
never touched on the event loop); when the response starts, a changed session is saved:

- a new session (or one whose cookie pointed to nothing) gets a fresh id and the cookie;
- signing in (:func:`carnet.web.session.login` sets ``ROTATE``) draws a new id and deletes the
  old session, so an id planted before sign-in is worthless after it;
- a session emptied (signing out) is deleted, and the cookie expired;
- a cookie whose session is gone (ended, expired) is expired too.

The cookie: ``HttpOnly``, ``SameSite=Strict``, ``Path=/``, ``Secure`` in production mode,
``Max-Age`` the session's lifetime. Its value is 43 characters of random URL-safe base64.
"""

from __future__ import annotations

import json
import secrets
from http.cookies import SimpleCookie
from typing import Any

from anyio import to_thread
from starlette.datastructures import MutableHeaders
from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from carnet.services.portal_sessions import PortalSessions

#: Set in the scope by signing in: the next save draws a new session id.
ROTATE = "carnet_session_rotate"
_ID_LENGTH = 43  # secrets.token_urlsafe(32)


def _snapshot(content: dict[str, Any]) -> str:
    return json.dumps(content, sort_keys=True, default=str)


class ServerSessionMiddleware:
    """ASGI middleware: ``scope["session"]`` from the server-side store, saved when it changes."""

    def __init__(
        self, app: ASGIApp, *, sessions: PortalSessions, cookie: str, max_age: int, https_only: bool
    ) -> None:
        self.app = app
        self._sessions = sessions
        self._cookie = cookie
        self._max_age = max_age
        self._https_only = https_only

    def _sid_of(self, scope: Scope) -> str | None:
        for name, value in scope.get("headers", ()):
            if name == b"cookie":
                sid = cookie_parser(value.decode("latin-1")).get(self._cookie)
                # A well-formed id only: anything else is no session (and never reaches the store).
                if sid and len(sid) == _ID_LENGTH and sid.replace("-", "").replace("_", "").isalnum():
                    return sid
                return None
        return None

    def _set_cookie(self, headers: MutableHeaders, value: str, max_age: int) -> None:
        cookie: SimpleCookie = SimpleCookie()
        cookie[self._cookie] = value
        morsel = cookie[self._cookie]
        morsel["path"] = "/"
        morsel["max-age"] = str(max_age)
        morsel["httponly"] = True
        morsel["samesite"] = "strict"
        if self._https_only:
            morsel["secure"] = True
        headers.append("set-cookie", morsel.OutputString())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Open the session, serve the request, save the session as the response starts."""
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        sid = self._sid_of(scope)
        if sid is None:
            # No session cookie (every API request): nothing to open, and a session to save only
            # if the request filled one (signing in) — the same as below, without the snapshot.
            scope["session"] = {}

            async def send_fresh(message: Message) -> None:
                if message["type"] == "http.response.start" and scope["session"]:
                    await self._save(scope, MutableHeaders(scope=message), None, None, "")
                await send(message)

            await self.app(scope, receive, send_fresh)
            return
        opened = await to_thread.run_sync(self._sessions.open, sid)
        scope["session"] = dict(opened or {})
        before = _snapshot(opened or {})

        async def send_with_session(message: Message) -> None:
            if message["type"] == "http.response.start":
                await self._save(scope, MutableHeaders(scope=message), sid, opened, before)
            await send(message)

        await self.app(scope, receive, send_with_session)

    async def _save(
        self,
        scope: Scope,
        headers: MutableHeaders,
        sid: str | None,
        opened: dict[str, Any] | None,
        before: str,
    ) -> None:
        content: dict[str, Any] = scope["session"]
        rotate = bool(scope.pop(ROTATE, False))
        live = sid is not None and opened is not None
        if content:
            if live and not rotate:
                if _snapshot(content) != before:
                    await to_thread.run_sync(lambda: self._sessions.save(str(sid), content, new=False))
                return
            fresh = secrets.token_urlsafe(32)
            replaces = sid if live else None
            await to_thread.run_sync(lambda: self._sessions.save(fresh, content, new=True, replaces=replaces))
            self._set_cookie(headers, fresh, self._max_age)
        elif live:
            await to_thread.run_sync(self._sessions.end, str(sid))
            self._set_cookie(headers, "", 0)
        elif sid is not None:
            self._set_cookie(headers, "", 0)  # its session is gone: forget the cookie
