"""What one call did with each record it touched: the journal entry it will write."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from carnet.domain.errors import (
    AccessDenied,
    CarnetError,
    Conflict,
    Gone,
    InvalidRequest,
    InvalidResource,
    NotFound,
    PreconditionFailed,
    RecordShredded,
)

#: How a failed request ends, as the journal records it.
_OUTCOMES: tuple[tuple[type[CarnetError], str], ...] = (
    (Gone, "gone"),
    (NotFound, "not-found"),
    (AccessDenied, "denied"),
    (PreconditionFailed, "precondition-failed"),
    (Conflict, "conflict"),
    (InvalidResource, "invalid"),
    (InvalidRequest, "invalid-request"),
    (RecordShredded, "erased"),
)


def outcome(error: CarnetError | None) -> str:
    """Name how a request ended (``ok``, ``not-found``, ``denied``…) for its journal entry."""
    if error is None:
        return "ok"
    return next((name for kind, name in _OUTCOMES if isinstance(error, kind)), "error")


@dataclass(slots=True)
class Touch:
    """What one call did with one record: the journal entry it will write."""

    allowed: bool = False
    allowed_reasons: set[str] = dataclasses.field(default_factory=set)
    denied_reasons: set[str] = dataclasses.field(default_factory=set)
    targets: dict[str, None] = dataclasses.field(default_factory=dict)
    notify: bool = False
    new_document: bool = False
    #: A message (FHIR ``Communication``) was written into the record (the secure messaging).
    new_message: bool = False
