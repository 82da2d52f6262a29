"""Use case: edit an entry of the medical profile at the version its editor saw.

« Modifier une information du profil médical »: the allergy, treatment, vaccination, condition,
measure, directive or contact is read, checked to be still at the version the edit form showed,
changed by the caller's pure ``change`` function (the portal's form fields,
``carnet.web.profile_edit.apply_edit``) and written back, in one call of the record access (one
transaction, one journal entry, ``update``). A client app does the same with a FHIR ``PUT`` and
``If-Match``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from carnet.domain.errors import Conflict, InvalidRequest
from carnet.domain.policy import AccessMode
from carnet.domain.principal import Principal
from carnet.services.record_types import Stored
from carnet.services.records import RecordService

__all__ = ["edit_entry"]

Change = Callable[[Mapping[str, Any]], dict[str, Any]]


def edit_entry(
    service: RecordService,
    principal: Principal,
    resource_type: str,
    resource_id: str,
    *,
    version: int,
    change: Change,
    mode: AccessMode = AccessMode.NORMAL,
) -> Stored:
    """Apply ``change`` to an entry still at ``version``; return it as it now stands.

    An edit that changes nothing writes nothing and returns the entry as stored.

    Raises:
        Conflict: the entry is no longer at ``version`` (changed meanwhile, in another window).
        InvalidRequest: ``change`` refused the values (its ``ValueError`` message).
        NotFound, Gone, AccessDenied, InvalidResource: as for a read then an update.
    """
    with service.call(principal, "update", resource_type, write=True, mode=mode) as call:
        current = call.reads.read(resource_type, resource_id)
        if current.version_id != version:
            raise Conflict(
                f"{resource_type}/{resource_id} is at version {current.version_id}, not {version}: "
                "read it again before changing it."
            )
        resource = current.resource or {}
        try:
            updated = change(resource)
        except ValueError as error:
            raise InvalidRequest(str(error)) from None
        if updated == resource:
            return current
        return call.writes.update(resource_type, resource_id, updated, if_match=current.etag).stored
