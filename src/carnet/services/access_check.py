"""Use case: why a professional cannot open a record, so the portal can say so plainly.

« Votre accès est bloqué », « Ce dossier est fermé »: before offering a professional the ways
into a record (the patient's consent, break-glass), the professional portal asks the policy what
it decides on a read of the record's identity in ``normal`` mode, and shows the refusal's reason
instead of forms that could only fail. The question is one call of the record access, journaled
like any refused read, so the patient sees the attempt.

A refusal that must not reveal the record (``no-record``: an occupational physician without the
worker's consent, say) comes back as that reason, and the portal answers as if no record existed.
"""

from __future__ import annotations

from carnet.domain.policy import Action, Decision
from carnet.domain.principal import Principal
from carnet.services.records import RecordService

__all__ = ["check_access"]


def check_access(service: RecordService, principal: Principal, patient_id: str) -> Decision:
    """Return the policy's decision on ``principal`` reading the record's identity in normal mode."""
    gate = service.gate
    with gate.transaction(principal, "read", "Patient") as call:
        return gate.decide(call, Action.READ, gate.target(call, patient_id, "Patient"))
