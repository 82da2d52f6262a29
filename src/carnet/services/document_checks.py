"""The checks a document write makes (IHE MHD): its content matches it, its uniqueId is its own.

Both run in the writing call's transaction: :class:`carnet.services.writes.Writes` checks each
DocumentReference it creates or updates, :class:`carnet.services.documents.Documents` each
document it publishes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from carnet.domain.documents import (
    attachments,
    binary_content,
    check_attachment,
    content_fingerprint,
    decode_base64,
    master_identifier,
)
from carnet.domain.errors import Conflict, InvalidResource
from carnet.domain.principal import ActorKind
from carnet.domain.resources import is_valid_id
from carnet.domain.search import parse_search
from carnet.feeds.cda import parse_tree
from carnet.feeds.cnam_hr import REMB_CODE, read_tree_if_cnam_hr
from carnet.feeds.dispensation import DISPENSATION_CODE, read_tree_if_dispensation
from carnet.services._call import Call
from carnet.services.gate import Gate
from carnet.services.record_search import Search
from carnet.services.record_types import Stored


def is_reimbursement_history(document: Mapping[str, Any]) -> bool:
    """Tell whether a DocumentReference's type is the insurer's reimbursement history (REMB)."""
    codings = (document.get("type") or {}).get("coding") or []
    return any(isinstance(c, dict) and c.get("code") == REMB_CODE for c in codings)


def is_dispensation(document: Mapping[str, Any]) -> bool:
    """Tell whether a DocumentReference's type is a pharmacy's dispensation (LOINC 60593-1)."""
    codings = (document.get("type") or {}).get("coding") or []
    return any(isinstance(c, dict) and c.get("code") == DISPENSATION_CODE for c in codings)


def check_structured(document: Mapping[str, Any], content: bytes, where: str) -> None:
    """Read a structured volet before the document is stored, refusing a malformed one whole.

    A reimbursement history (REMB) declaring CNAM-HR, or a pharmacy's dispensation (60593-1)
    carrying the FR-Dispensation-medicaments section, must read into its lines; a level 1
    document of either type (a PDF inside) or content that is not a CDA is stored as any.

    Raises:
        InvalidResource: the document's volet cannot be read into its lines (naming ``where``).
    """
    reader: Callable[[Any], object]
    if is_reimbursement_history(document):
        reader = read_tree_if_cnam_hr
    elif is_dispensation(document):
        reader = read_tree_if_dispensation
    else:
        return
    if not content.lstrip().startswith(b"<"):
        return
    try:
        root = parse_tree(content)
    except InvalidResource:
        return  # not a CDA: the content is stored as it is, like any attachment
    try:
        reader(root)
    except InvalidResource as exc:
        raise InvalidResource(f"{where}: {exc.message}", expression=(where,)) from None


class DocumentChecks:
    """Each attachment against its content, and a resubmission against the stored document."""

    def __init__(self, *, gate: Gate, search: Search) -> None:
        self._gate = gate
        self._search = search

    def check_contents(self, call: Call, document: Mapping[str, Any], patient_id: str) -> None:
        """Check each attachment's size and hash against its content (inline or in a Binary).

        Raises:
            InvalidResource: a size or hash that does not match, or a Binary not in this record.
        """
        for index, attachment in attachments(document):
            where = f"DocumentReference.content[{index}].attachment"
            if isinstance(attachment.get("data"), str):
                content = decode_base64(attachment["data"], f"{where}.data")
                check_attachment(attachment, content, where)
                check_structured(document, content, where)
                continue
            url = attachment.get("url")
            if not isinstance(url, str) or not url.startswith("Binary/"):
                continue
            binary_id = url.removeprefix("Binary/")
            fresh = call.written_binaries.get((patient_id, binary_id))
            if fresh is not None:
                check_attachment(attachment, binary_content(fresh), where)
                check_structured(document, binary_content(fresh), where)
                continue
            session = call.session
            owner = session.locate("Binary", binary_id) if is_valid_id(binary_id) else None
            version = session.current(patient_id, "Binary", binary_id) if owner == patient_id else None
            if version is None or version.deleted:
                raise InvalidResource(f"{where}.url points to {url[:80]}, which is not in this record.")
            binary = self._gate.open(self._gate.key(call, patient_id), version).resource or {}
            check_attachment(attachment, binary_content(binary), where)
            check_structured(document, binary_content(binary), where)

    def same_unique_id(self, call: Call, document: Mapping[str, Any], patient_id: str) -> Stored | None:
        """Return the stored document with the same uniqueId and content (idempotent resubmission).

        Raises:
            Conflict: the same uniqueId was submitted before with other content.
        """
        unique = master_identifier(document)
        if unique is None:
            return None
        query = parse_search("DocumentReference", [("identifier", f"{unique[0]}|{unique[1]}")])
        # A feed never reads, so sees nothing: its resubmission is recognised before visibility.
        if call.actor.kind is ActorKind.FEED:
            found = self._gate.matches(call, patient_id, query)
        else:
            found = self._search.matching(call, patient_id, query)
        for stored in found:
            existing = stored.resource or {}
            if master_identifier(existing) != unique:
                continue
            if content_fingerprint(existing) != content_fingerprint(document):
                raise Conflict(
                    f"A document with uniqueId {unique[1][:80]} already exists with other content; "
                    "a new version needs a new uniqueId and relatesTo = replaces."
                )
            return stored
        return None
