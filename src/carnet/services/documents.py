"""Documents as the DMP shares them: IHE MHD Simplified Publish (ITI-105) and archiving."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from carnet.domain.documents import (
    FLAG_SYSTEM,
    SUBMISSION_SET_CODE,
    attachments,
    check_attachment,
    decode_base64,
    sha1_base64,
)
from carnet.domain.errors import (
    InvalidResource,
)
from carnet.domain.policy import (
    Action,
)
from carnet.domain.validation import validate
from carnet.services.record_search import RecordSearch
from carnet.services.record_types import (
    WriteResult,
    instant,
)


class DocumentAccess(RecordSearch):
    """Publishing a document with its content inline, and archiving one."""

    def archive(self, document_id: str, *, archived: bool) -> WriteResult:
        """Archive (or unarchive) a document: a new version tagged ``archived``, content untouched.

        An archived document stays readable and in its history; ITI-67 finds the archived ones
        with ``_tag=https://carnet.health/fhir/CodeSystem/document-flag|archived``. Decided like
        an update (the patient, or the authoring professional).
        """
        with self._session("$archive", "DocumentReference", write=True) as session:
            current = self._read(session, "DocumentReference", document_id)
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
            return self._update(
                session, "DocumentReference", document_id, resource, f'W/"{current.version_id}"'
            )

    def publish(self, document: Mapping[str, Any]) -> WriteResult:
        """Simplified Publish (IHE MHD ITI-105): store a DocumentReference carrying its document inline.

        As a Document Recipient does: validate, extract each ``attachment.data`` into a Binary of
        the same record, point the attachment at it (size and hash filled in), and record the
        SubmissionSet (a ``List``), all in one transaction.

        Raises:
            InvalidResource: no inline document, bad base64, size or hash mismatch, no patient.
        """
        validate(document)
        if not any(isinstance(a.get("data"), str) for _, a in attachments(document)):
            raise InvalidResource("Simplified Publish carries the document in content.attachment.data.")
        with self._session("create", "DocumentReference", write=True) as session:
            patient_id = self._place(session, document)
            revised = copy.deepcopy(dict(document))
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
            self._check(Action.CREATE, self._target(patient_id, "DocumentReference"), hide=False)
            self._ensure_record(session, patient_id)
            same = self._same_unique_id(session, revised, patient_id)
            if same is not None:
                return WriteResult(stored=same, created=False)
            for attachment, data in inline:
                binary: dict[str, Any] = {
                    "resourceType": "Binary",
                    "contentType": attachment.get("contentType", "application/octet-stream"),
                    "securityContext": {"reference": f"Patient/{patient_id}"},
                    "data": data,
                }
                made = self._create(session, binary).stored
                del attachment["data"]
                attachment["url"] = f"Binary/{made.resource_id}"
            result = self._create(session, revised)
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
                    "date": instant(self._svc.clock()),
                    "entry": [{"item": {"reference": f"DocumentReference/{result.stored.resource_id}"}}],
                }
                self._create(session, submission)
            return result
