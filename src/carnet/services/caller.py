"""The client at the other end of the current request, as the journal records it.

IHE BALP records, besides the user, the client application and its network address. The HTTP
layer sets the caller of each request (:func:`calling`); the record access reads it when it
writes a journal entry (:func:`current_caller`). Work that comes from no request (the command
line, the demo seeding, a test calling the services) has no caller.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

#: The client id of the FHIR API's callers, when their token names none.
FHIR_CLIENT = "fhir-api"
#: The client id of the web portals.
PORTAL_CLIENT = "carnet-portal"


@dataclass(frozen=True, slots=True, kw_only=True)
class Caller:
    """The client of a request: an id (the portals, the FHIR API) and its network address."""

    client: str
    address: str | None = None


_CALLER: ContextVar[Caller | None] = ContextVar("carnet_caller", default=None)


def current_caller() -> Caller | None:
    """Return the caller of the request being served, if any."""
    return _CALLER.get()


@contextmanager
def calling(caller: Caller) -> Iterator[None]:
    """Make ``caller`` the current caller for the duration of the block."""
    token = _CALLER.set(caller)
    try:
        yield
    finally:
        _CALLER.reset(token)
