"""Checks of a request's URL that every collaborator of the record access makes the same way."""

from __future__ import annotations

from carnet.domain.errors import InvalidRequest, NotFound, NotSupported
from carnet.domain.resources import SUPPORTED_TYPES, is_valid_id


def check_type(resource_type: str) -> None:
    """Refuse a resource type Carnet does not serve.

    Raises:
        NotFound: the type is not served here.
    """
    if resource_type not in SUPPORTED_TYPES:
        raise NotFound(f"Resource type {resource_type[:64]!r} is not served here; see /fhir/metadata.")


def check_writable(resource_type: str) -> None:
    """Refuse writing the types Carnet writes itself.

    Raises:
        NotSupported: an AuditEvent (the journal is written by Carnet, never by a client).
    """
    if resource_type == "AuditEvent":
        raise NotSupported("AuditEvents are written by Carnet's access journal, never by a client.")


def check_id(resource_type: str, resource_id: str) -> None:
    """Refuse an unserved type or a malformed id.

    Raises:
        NotFound: the type is not served here. InvalidRequest: not a FHIR id.
    """
    check_type(resource_type)
    if not is_valid_id(resource_id):
        raise InvalidRequest(f"{resource_id[:70]!r} is not a valid FHIR id (1-64 of A-Z a-z 0-9 - .).")
