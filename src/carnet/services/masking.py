"""Use cases: mask a document from professionals, or from one professional, and lift the mask.

« Masquer un document aux professionnels »: the ``MASQUE_PS`` visibility label
(``carnet.domain.documents.with_masked``); in the ``sovereign`` profile the patient may also
mask a document from one named professional, treating physicians included
(``with_masked_from``). Each use case reads the DocumentReference and writes its new version in
one call of the record access, decided like an update (the holder, or the document's author)
and journaled once (``$mask``, ``$unmask``). The FHIR API (``POST DocumentReference/{id}/$mask``,
``$unmask``) and the patient portal call these functions.
"""

from __future__ import annotations

from carnet.domain.documents import with_masked, with_masked_from
from carnet.domain.errors import InvalidRequest
from carnet.domain.policy import AccessMode
from carnet.domain.principal import Principal
from carnet.services.record_types import Stored
from carnet.services.records import RecordService

__all__ = ["set_masked"]


def set_masked(
    service: RecordService,
    principal: Principal,
    document_id: str,
    *,
    masked: bool,
    professional_id: str | None = None,
    mode: AccessMode = AccessMode.NORMAL,
) -> Stored:
    """Mask a document from every professional (or, with ``professional_id``, from that one), or unmask it.

    Returns the DocumentReference as it now stands (unchanged when it already was so).

    Raises:
        InvalidRequest: ``professional_id`` is not an idNat_PS (6 to 20 letters or digits).
            Or ``professional_id`` under a profile other than ``sovereign``.
        NotFound, AccessDenied: as for an update of the document.
    """
    if professional_id is not None:
        if not (professional_id.isascii() and professional_id.isalnum() and 6 <= len(professional_id) <= 20):
            raise InvalidRequest("The professional is named by their idNat_PS: 6 to 20 letters or digits.")
        if not service.profile.masks_bind_treating:  # named masks come with the sovereign profile
            raise InvalidRequest(
                "Masking a document from one professional is offered by the sovereign profile only."
            )
    operation = "$mask" if masked else "$unmask"
    with service.call(principal, operation, "DocumentReference", write=True, mode=mode) as call:
        current = call.reads.read("DocumentReference", document_id)
        document = current.resource or {}
        if professional_id is None:
            updated = with_masked(document, masked=masked)
        else:
            updated = with_masked_from(document, professional_id, masked=masked)
        if updated == document:
            return current
        return call.writes.update("DocumentReference", document_id, updated, if_match=current.etag).stored
