"""Use case: secure messaging between the patient and their care team (« messagerie sécurisée »).

A message is a FHIR ``Communication`` of the patient's record, so it is sealed with the
record's key, decided by the policy and journaled like every other resource: the patient and
the professionals who may read the record read it; nobody else. A professional's message
notifies the patient (``NoticeEvent.NEW_MESSAGE``, see ``carnet.services.gate``); a patient's
message notifies the professional (``carnet.services.message_inbox``: their inbox, and an e-mail
without name or content). A message may carry one file (PDF, JPEG or PNG, at most
:data:`MAX_ATTACHMENT` bytes) inside the Communication, so sealed with it; either side may then
file it into the record as a document (:func:`file_attachment`: a ``DocumentReference`` whose
``context.related`` names the message, published and journaled in one call).

Wire shape::

    Communication  status completed; subject Patient/<record>; sent <instant>;
                   sender    Patient/<record>, or {identifier idNat_PS, display} of a professional
                   recipient the same shapes;  payload [contentString <text>,
                   contentAttachment {contentType, data, title, size, creation}]
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from carnet.domain.errors import InvalidRequest, NotFound
from carnet.domain.policy import AccessMode
from carnet.domain.principal import Principal
from carnet.services.message_inbox import MessageInbox
from carnet.services.record_types import Stored
from carnet.services.records import Records, RecordService

__all__ = [
    "ATTACHMENT_TYPES",
    "IDNPS_SYSTEM",
    "MAX_ATTACHMENT",
    "MAX_MESSAGE",
    "Attachment",
    "Party",
    "attachment_of",
    "attachment_type",
    "carried_attachment",
    "file_attachment",
    "filed_documents",
    "send_message",
]

IDNPS_SYSTEM = "urn:oid:1.2.250.1.71.4.2.1"
#: The longest message text accepted (characters).
MAX_MESSAGE = 5000
#: The largest file a message carries (bytes).
MAX_ATTACHMENT = 4 * 1024 * 1024
#: The files a message may carry, by their first bytes (never by the declared type).
ATTACHMENT_TYPES = {
    "application/pdf": b"%PDF-",
    "image/jpeg": b"\xff\xd8\xff",
    "image/png": b"\x89PNG\r\n\x1a\n",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Attachment:
    """A file a message carries."""

    content_type: str
    data: bytes
    title: str


def attachment_type(data: bytes) -> str | None:
    """The media type of a file a message may carry (PDF, JPEG, PNG by their first bytes), else None."""
    return next((t for t, magic in ATTACHMENT_TYPES.items() if data.startswith(magic)), None)


def attachment_of(message: Mapping[str, Any]) -> Attachment | None:
    """The file a Communication carries, if any."""
    for part in message.get("payload") or []:
        found = part.get("contentAttachment") if isinstance(part, Mapping) else None
        if isinstance(found, Mapping) and isinstance(found.get("data"), str):
            return Attachment(
                content_type=str(found.get("contentType") or "application/octet-stream"),
                data=base64.b64decode(found["data"]),
                title=str(found.get("title") or ""),
            )
    return None


def carried_attachment(records: Records, patient_id: str, message_id: str) -> Attachment:
    """The file a message of this record carries, read (so decided and journaled) as its reader.

    Raises NotFound when the message is another record's or carries no file (and the read's own
    AccessDenied / Gone / NotFound as they come): the portals answer each with a plain 404.
    """
    message = records.read("Communication", message_id).resource or {}
    if (message.get("subject") or {}).get("reference") != f"Patient/{patient_id}":
        raise NotFound("not this record's")
    found = attachment_of(message)
    if found is None:
        raise NotFound("no file")
    return found


@dataclass(frozen=True, slots=True, kw_only=True)
class Party:
    """Who writes or receives a message: the record's holder, or a professional by idNat_PS."""

    patient_id: str | None = None
    idnps: str | None = None
    display: str | None = None
    #: A professional's address for the notice that a message waits (not part of the message).
    email: str | None = None

    def reference(self) -> dict[str, Any]:
        """The FHIR Reference naming this party."""
        if self.patient_id is not None:
            return {
                "reference": f"Patient/{self.patient_id}",
                **({"display": self.display} if self.display else {}),
            }
        return {
            "identifier": {"system": IDNPS_SYSTEM, "value": self.idnps},
            **({"display": self.display} if self.display else {}),
        }


def send_message(
    service: RecordService,
    principal: Principal,
    patient_id: str,
    *,
    sender: Party,
    recipient: Party,
    text: str,
    now: datetime,
    attachment: Attachment | None = None,
    mode: AccessMode = AccessMode.NORMAL,
) -> Stored:
    """Write a message into a record (carrying ``attachment``); a professional recipient is notified.

    Raises:
        InvalidRequest: an empty or too long text, a recipient naming nobody, a file of another
            kind or too large.
        AccessDenied, NotFound: the policy refuses the writer this record.
    """
    text = text.strip()
    if not text:
        raise InvalidRequest("Write the message before sending it.")
    if len(text) > MAX_MESSAGE:
        raise InvalidRequest(f"A message has at most {MAX_MESSAGE} characters.")
    if recipient.patient_id is None and not recipient.idnps:
        raise InvalidRequest("Choose whom the message is for.")
    payload: list[dict[str, Any]] = [{"contentString": text}]
    if attachment is not None:
        if attachment_type(attachment.data) != attachment.content_type:
            raise InvalidRequest("Only PDF, JPEG and PNG files can be sent.")
        if len(attachment.data) > MAX_ATTACHMENT:
            raise InvalidRequest("A file sent with a message is at most 4 MB.")
        payload.append(
            {
                "contentAttachment": {
                    "contentType": attachment.content_type,
                    "data": base64.b64encode(attachment.data).decode("ascii"),
                    "title": attachment.title[:200] or "Document",
                    "size": len(attachment.data),
                    "creation": now.isoformat().replace("+00:00", "Z"),
                }
            }
        )
    with service.call(principal, "create", "Communication", write=True, mode=mode) as call:
        message = {
            "resourceType": "Communication",
            "status": "completed",
            "subject": {"reference": f"Patient/{patient_id}"},
            "sent": now.isoformat().replace("+00:00", "Z"),
            "sender": sender.reference(),
            "recipient": [recipient.reference()],
            "payload": payload,
        }
        stored = call.writes.create(message).stored
        if recipient.idnps and sender.patient_id is not None:
            session = call.context.session
            key = call.context.keys.get(patient_id) or service.vault.key(session, patient_id, now)
            MessageInbox(
                vault=service.vault, notifier=service.notifier, clock=service.clock, new_id=_new_id
            ).note_message(
                session,
                key,
                principal,
                patient_id=patient_id,
                idnps=recipient.idnps,
                writer=sender.display or "",
                message_id=stored.resource_id,
                email=recipient.email,
            )
        return stored


def _new_id() -> str:
    return uuid.uuid4().hex


def filed_documents(documents: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """Which messages were filed as documents: Communication id -> DocumentReference id."""
    filed: dict[str, str] = {}
    for document in documents:
        for related in (document.get("context") or {}).get("related") or []:
            reference = str((related or {}).get("reference") or "")
            if reference.startswith("Communication/") and document.get("id"):
                filed.setdefault(reference.removeprefix("Communication/"), str(document["id"]))
    return filed


def file_attachment(
    service: RecordService,
    principal: Principal,
    patient_id: str,
    message_id: str,
    build: Callable[[Attachment], dict[str, Any]],
    *,
    mode: AccessMode = AccessMode.NORMAL,
) -> str:
    """File the file a message carries into the record as a document; return the document's id.

    ``build`` makes the DocumentReference (its author, class and type: the filer's); it is
    published with ``context.related`` naming the message, in one call (journaled). A message
    already filed gives the document it was filed as.

    Raises:
        NotFound: no such message in this record, or one without a file.
        AccessDenied: the policy refuses the filer this record.
    """
    with service.call(principal, "create", "DocumentReference", write=True, mode=mode) as call:
        message = call.reads.read("Communication", message_id).resource or {}
        if (message.get("subject") or {}).get("reference") != f"Patient/{patient_id}":
            raise NotFound(f"Communication/{message_id[:64]} is not known.")
        attachment = attachment_of(message)
        if attachment is None:
            raise NotFound(f"Communication/{message_id[:64]} carries no file.")
        documents = call.search.search(
            "DocumentReference", [("patient", f"Patient/{patient_id}"), ("_count", "1000")]
        ).resources
        already = filed_documents(documents).get(message_id)
        if already is not None:
            return already
        document = build(attachment)
        context = dict(document.get("context") or {})
        context["related"] = [*(context.get("related") or []), {"reference": f"Communication/{message_id}"}]
        document["context"] = context
        return call.documents.publish(document).stored.resource_id
