"""Documents as the DMP shares them: IHE MHD Simplified Publish (ITI-105) and archiving.

Both run in their call's transaction, through the reads and writes of the record access.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from carnet.domain.documents import (
    FLAG_SYSTEM,
    SUBMISSION_SET_CODE,
    attachments,
    check_attachment,
    decode_base64,
    document_facts,
    master_identifier,
    sha1_base64,
)
from carnet.domain.errors import InvalidResource, NotFound
from carnet.domain.policy import (
    Action,
)
from carnet.domain.principal import ActorKind
from carnet.domain.search import parse_search
from carnet.domain.validation import validate
from carnet.services._call import Call
from carnet.services.document_checks import DocumentChecks
from carnet.services.gate import Gate
from carnet.services.reads import Reads
from carnet.services.record_types import Stored, WriteResult, instant
from carnet.services.writes import Writes

Clock = Callable[[], datetime]


def check_publishable(document: Mapping[str, Any]) -> None:
    """Check a document offered to Simplified Publish before any transaction is opened.

    Raises:
        InvalidResource: not valid R4, or no document inline in ``content.attachment.data``.
    """
    validate(document)
    if not any(isinstance(a.get("data"), str) for _, a in attachments(document)):
        raise InvalidResource("Simplified Publish carries the document in content.attachment.data.")


def _revisable(document: Mapping[str, Any]) -> dict[str, Any]:
    """Copy a document so that what publishing changes in it is the copy's own, the rest shared.

    Publishing sets each attachment's size, hash and url (dropping its data) and points each
    ``relatesTo`` target at the replaced document's id; nothing else of the document is changed,
    here or by the writes, so the rest is shared with the caller's document (a deep copy of a
    feed's DocumentReference was ~90 µs per message). The caller's document is left as it was:
    a feed's unit of work may run twice (group commit) and an offer keeps what was sent.
    """
    revised = dict(document)
    content = revised.get("content")
    if isinstance(content, list):
        revised["content"] = [
            {**item, "attachment": dict(item["attachment"])}
            if isinstance(item, dict) and isinstance(item.get("attachment"), dict)
            else item
            for item in content
        ]
    relations = revised.get("relatesTo")
    if isinstance(relations, list):
        revised["relatesTo"] = [dict(r) if isinstance(r, dict) else r for r in relations]
    return revised


class Documents:
    """Publishing a document with its content inline, and archiving one."""

    def __init__(
        self, *, gate: Gate, reads: Reads, writes: Writes, checks: DocumentChecks, clock: Clock
    ) -> None:
        self._gate = gate
        self._reads = reads
        self._writes = writes
        self._checks = checks
        self._clock = clock

    def archive(self, call: Call, document_id: str, *, archived: bool) -> WriteResult:
        """Archive (or unarchive) a document: a new version tagged ``archived``, content untouched.

        An archived document stays readable and in its history; ITI-67 finds the archived ones
        with ``_tag=https://carnet.health/fhir/CodeSystem/document-flag|archived``. Decided like
        an update (the patient, or the authoring professional).
        """
        current = self._reads.read(call, "DocumentReference", document_id)
        resource = dict(current.resource or {})
        meta = dict(resource.get("meta") or {})
        tags = [
            t
            for t in meta.get("tag") or []
            if not (t.get("system") == FLAG_SYSTEM and t.get("code") == "archived")
        ]
        if archived:
            tags.append({"system": FLAG_SYSTEM, "code": "archived", "display": "Document archivé"})
        if tags:
            meta["tag"] = tags
        else:
            meta.pop("tag", None)
        resource["meta"] = meta
        return self._writes.update(
            call, "DocumentReference", document_id, resource, if_match=f'W/"{current.version_id}"'
        )

    def publish(self, call: Call, document: Mapping[str, Any], *, checked: bool = False) -> WriteResult:
        """Simplified Publish (IHE MHD ITI-105): store a DocumentReference carrying its document inline.

        As a Document Recipient does: validate, extract each ``attachment.data`` into a Binary of
        the same record, point the attachment at it (size and hash filled in), and record the
        SubmissionSet (a ``List``), all in one transaction. ``checked``: the caller passed this
        very document to :func:`check_publishable` before the transaction (it raised nothing).

        Raises:
            InvalidResource: no inline document, bad base64, size or hash mismatch, no patient.
        """
        if not checked:
            check_publishable(document)
        gate = self._gate
        patient_id = self._writes.place(call, document)
        revised = _revisable(document)
        inline: list[tuple[dict[str, Any], str]] = []
        for index, attachment in attachments(revised):
            data = attachment.get("data")
            if not isinstance(data, str):
                continue
            where = f"DocumentReference.content[{index}].attachment"
            content = decode_base64(data, f"{where}.data")
            check_attachment(attachment, content, where)
            attachment["size"] = len(content)
            attachment["hash"] = sha1_base64(content)
            inline.append((attachment, data))
        # A resubmission (same uniqueId, same content) is answered before any Binary is made,
        # so that resending a document leaves nothing behind.
        facts = document_facts(revised)
        if call.accepted_offer:
            facts = dataclasses.replace(facts, accepted_by_patient=True)
        if call.actor.kind is ActorKind.FEED:
            self._resolve_replaced(call, revised, patient_id)
            # A feed writes by classCode: the document's decides, and its Binaries and
            # SubmissionSet are written under it (the policy sees no class of their own).
            call.publishing = facts
            target = gate.target(call, patient_id, "DocumentReference", document=facts)
        else:
            target = gate.target(call, patient_id, "DocumentReference")
        gate.check(call, Action.CREATE, target, hide=False)
        self._writes.ensure_record(call, patient_id)
        same = self._checks.same_unique_id(call, revised, patient_id)
        if same is not None:
            return WriteResult(stored=same, created=False)
        for attachment, data in inline:
            binary: dict[str, Any] = {
                "resourceType": "Binary",
                "contentType": attachment.get("contentType", "application/octet-stream"),
                "securityContext": {"reference": f"Patient/{patient_id}"},
                "data": data,
            }
            # Valid by construction: the document's validated contentType and base64, a reference.
            made = self._writes.create(call, binary, validated=True).stored
            del attachment["data"]
            attachment["url"] = f"Binary/{made.resource_id}"
        # Validated by check_publishable; since then only its attachments' size, hash and url and
        # its relatesTo targets were set here, each valid by construction.
        result = self._writes.create(call, revised, unique_checked=True, validated=True)
        if result.created:
            submission = {
                "resourceType": "List",
                "status": "current",
                "mode": "working",
                "code": {
                    "coding": [
                        {
                            "system": "https://profiles.ihe.net/ITI/MHD/CodeSystem/MHDlistTypes",
                            "code": SUBMISSION_SET_CODE,
                        }
                    ]
                },
                "subject": {"reference": f"Patient/{patient_id}"},
                "date": instant(self._clock()),
                "entry": [{"item": {"reference": f"DocumentReference/{result.stored.resource_id}"}}],
            }
            self._writes.create(call, submission, validated=True)  # valid by construction
        return result

    def locate_unique(self, call: Call, patient_id: str, system: str, value: str) -> Stored | None:
        """Return the current DocumentReference of a record whose uniqueId is ``system|value``.

        Found before any visibility check, for a feed about to replace or delete a document it
        sent (a feed never reads): the write that follows is decided by the policy, which lets a
        feed touch only the documents it wrote.
        """
        query = parse_search("DocumentReference", [("identifier", f"{system}|{value}")])
        for stored in self._gate.matches(call, patient_id, query):
            resource = stored.resource or {}
            if master_identifier(resource) == (system, value) and resource.get("status") == "current":
                return stored
        return None

    def withdraw(self, call: Call, patient_id: str, system: str, value: str) -> str:
        """Delete the current document of a record whose uniqueId is ``system|value``; return its id.

        Raises:
            NotFound: no current document with that uniqueId. AccessDenied: not the caller's.
        """
        found = self.locate_unique(call, patient_id, system, value)
        if found is None:
            raise NotFound(f"No current document has the uniqueId {value[:80]} in this record.")
        self._writes.delete(call, "DocumentReference", found.resource_id)
        return found.resource_id

    def _resolve_replaced(self, call: Call, document: dict[str, Any], patient_id: str) -> None:
        """Point a feed's ``relatesTo`` (replaces) given by the parent's uniqueId at the parent's id.

        Raises:
            InvalidResource: no current document of the record has that uniqueId.
        """
        for relation in document.get("relatesTo") or []:
            target = relation.get("target") if isinstance(relation, dict) else None
            if not isinstance(target, dict) or "reference" in target:
                continue
            identifier = target.get("identifier")
            if not isinstance(identifier, dict):
                continue
            system, value = str(identifier.get("system")), str(identifier.get("value"))
            parent = self.locate_unique(call, patient_id, system, value)
            if parent is None:
                raise InvalidResource(
                    f"The replaced document {value[:80]} is not a current document of this record.",
                    expression=("DocumentReference.relatesTo.target.identifier",),
                )
            relation["target"] = {"reference": f"DocumentReference/{parent.resource_id}"}
