"""Use case: secure messaging between the patient and their care team (« messagerie sécurisée »).

A message is a FHIR ``Communication`` of the patient's record, so it is sealed with the
record's key, decided by the policy and journaled like every other resource: the patient and
the professionals who may read the record read it; nobody else. A professional's message
notifies the patient (``NoticeEvent.NEW_MESSAGE``, see ``carnet.services.gate``). A file sent
with a message is filed into the record as a document (a ``DocumentReference`` carrying it,
published in the same call) and the message points to it (``payload.contentReference``).

Wire shape::

    Communication  status completed; subject Patient/<record>; sent <instant>;
                   sender    Patient/<record>, or {identifier idNat_PS, display} of a professional
                   recipient the same shapes;  payload [contentString <text>,
                   contentReference DocumentReference/<id> (display: its title)]
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from carnet.domain.errors import InvalidRequest
from carnet.domain.policy import AccessMode
from carnet.domain.principal import Principal
from carnet.services.record_types import Stored
from carnet.services.records import RecordService

__all__ = ["IDNPS_SYSTEM", "MAX_MESSAGE", "Party", "send_message"]

IDNPS_SYSTEM = "urn:oid:1.2.250.1.71.4.2.1"
#: The longest message text accepted (characters).
MAX_MESSAGE = 5000


@dataclass(frozen=True, slots=True, kw_only=True)
class Party:
    """Who writes or receives a message: the record's holder, or a professional by idNat_PS."""

    patient_id: str | None = None
    idnps: str | None = None
    display: str | None = None

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
    document: Mapping[str, Any] | None = None,
    mode: AccessMode = AccessMode.NORMAL,
) -> Stored:
    """Write a message into a record (filing ``document``, a DocumentReference with its content inline).

    Raises:
        InvalidRequest: an empty or too long text, or a recipient naming nobody.
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
    with service.call(principal, "create", "Communication", write=True, mode=mode) as call:
        if document is not None:
            filed = call.documents.publish(document)
            payload.append(
                {
                    "contentReference": {
                        "reference": f"DocumentReference/{filed.stored.resource_id}",
                        "display": str(document.get("description") or ""),
                    }
                }
            )
        message = {
            "resourceType": "Communication",
            "status": "completed",
            "subject": {"reference": f"Patient/{patient_id}"},
            "sent": now.isoformat().replace("+00:00", "Z"),
            "sender": sender.reference(),
            "recipient": [recipient.reference()],
            "payload": payload,
        }
        return call.writes.create(message).stored
