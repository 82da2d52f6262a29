"""Errors at the edge: every ``CarnetError`` becomes an OperationOutcome and an HTTP status here."""

from __future__ import annotations

from typing import Any

from carnet.domain.errors import (
    AccessDenied,
    CarnetError,
    Conflict,
    DeadlineExceeded,
    EnvelopeError,
    Gone,
    IdentityProviderUnavailable,
    InvalidRequest,
    InvalidResource,
    JournalUnavailable,
    KeyProviderError,
    NotFound,
    NotSupported,
    PayloadTooLarge,
    PreconditionFailed,
    RateLimited,
    Unauthenticated,
    UnsupportedSearch,
)

# Most specific first.
_STATUS: tuple[tuple[type[CarnetError], int], ...] = (
    (Unauthenticated, 401),
    (RateLimited, 429),
    (AccessDenied, 403),
    (Gone, 410),
    (NotFound, 404),
    (PreconditionFailed, 412),
    (Conflict, 409),
    (PayloadTooLarge, 413),
    (InvalidResource, 422),
    (NotSupported, 405),
    (UnsupportedSearch, 400),
    (InvalidRequest, 400),
    (KeyProviderError, 503),
    (IdentityProviderUnavailable, 503),
    (DeadlineExceeded, 503),
    (JournalUnavailable, 503),
    (EnvelopeError, 500),
)


def status_of(error: CarnetError) -> int:
    """Return the HTTP status for an error."""
    for kind, status in _STATUS:
        if isinstance(error, kind):
            return status
    return 500


def operation_outcome(
    code: str, message: str, *, severity: str = "error", expression: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Build an OperationOutcome with one issue."""
    issue: dict[str, Any] = {"severity": severity, "code": code, "diagnostics": message}
    if expression:
        issue["expression"] = list(expression)
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def outcome_of(error: CarnetError) -> dict[str, Any]:
    """Build the OperationOutcome describing an error."""
    return operation_outcome(error.code, error.message, expression=error.expression)
