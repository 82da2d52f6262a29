"""Reading resources: read, vread and history, each in its call's transaction.

Each read follows the same path, top to bottom: admit the actor → locate the record → the
policy decides on the record → the store → open → the policy decides on the opened resource
(its document facts) → the journal notes what is returned. A refusal on something the caller may
not know exists is reported as ``NotFound``, exactly as a missing resource.
"""

from __future__ import annotations

from datetime import datetime

from carnet.domain.errors import Gone, InvalidRequest, NotFound, RecordShredded
from carnet.domain.policy import Action
from carnet.domain.resources import is_directory_type, is_valid_id
from carnet.services._call import Call
from carnet.services._checks import check_id, check_type
from carnet.services.gate import Gate
from carnet.services.ports import StoredVersion
from carnet.services.record_types import Stored, version_number
from carnet.services.vault import DIRECTORY


class Reads:
    """Read, vread and history of resources, for the principal of each call."""

    def __init__(self, *, gate: Gate) -> None:
        self._gate = gate

    def locate(self, call: Call, resource_type: str, resource_id: str, action: Action) -> str:
        """Return the record holding a resource, once the policy let the caller into it.

        Raises:
            NotFound: unknown, or a record the caller may not enter. AccessDenied: a forbidden kind.
        """
        check_id(resource_type, resource_id)
        self._gate.admit(call, action, resource_type, named=[(resource_type, resource_id)])
        return self._enter(
            call, resource_type, resource_id, action, call.session.locate(resource_type, resource_id)
        )

    def _enter(
        self, call: Call, resource_type: str, resource_id: str, action: Action, patient_id: str | None
    ) -> str:
        """Let the policy decide on the record holding a resource (``patient_id``: None, unknown).

        Raises:
            NotFound: unknown, or a record the caller may not enter.
        """
        gate = self._gate
        what = f"{resource_type}/{resource_id}"
        if patient_id is None:
            raise NotFound(f"{what} is not known.")
        decision = gate.decide(call, action, gate.target(call, patient_id, resource_type))
        # A document's facts are only known once it is opened: when the policy needs them
        # (``needs_facts``), it decides again in ``shown``.
        if not decision.allowed and not decision.needs_facts:
            raise NotFound(f"{what} is not known.")
        return patient_id

    def read(self, call: Call, resource_type: str, resource_id: str) -> Stored:
        """Read the current version of a resource.

        Raises:
            NotFound: unknown, or not for this caller. Gone: deleted, or the record was erased.
        """
        gate = self._gate
        check_id(resource_type, resource_id)
        gate.admit(call, Action.READ, resource_type, named=[(resource_type, resource_id)])
        # Located and read in one query (the version is opened only once the policy let the caller in).
        found = call.session.locate_current(resource_type, resource_id)
        patient_id = self._enter(
            call, resource_type, resource_id, Action.READ, None if found is None else found[0]
        )
        version = None if found is None else found[1]
        if version is None:
            raise NotFound(f"{resource_type}/{resource_id} is not known.")
        if version.deleted:
            self._hide_deleted(call, patient_id, version)
            raise Gone(f"{resource_type}/{resource_id} was deleted.")
        return gate.shown(call, patient_id, gate.open(gate.key(call, patient_id), version))

    def _hide_deleted(self, call: Call, patient_id: str, deletion: StoredVersion) -> None:
        """Answer "unknown" for a deleted resource whose last live version the caller could not see."""
        if deletion.version_id <= 1:
            return
        last = call.session.version(
            patient_id, deletion.resource_type, deletion.resource_id, deletion.version_id - 1
        )
        if last is not None and last.sealed is not None:
            gate = self._gate
            gate.shown(call, patient_id, gate.open(gate.key(call, patient_id), last))

    def vread(self, call: Call, resource_type: str, resource_id: str, version_id: str) -> Stored:
        """Read one version of a resource.

        Raises:
            NotFound: unknown resource or version, or not for this caller. Gone: the version is a deletion.
        """
        gate = self._gate
        patient_id = self.locate(call, resource_type, resource_id, Action.VREAD)
        number = version_number(version_id)
        if number is None:
            raise NotFound(f"{resource_type}/{resource_id} has no version {version_id[:20]!r}.")
        version = call.session.version(patient_id, resource_type, resource_id, number)
        if version is None:
            raise NotFound(f"{resource_type}/{resource_id} has no version {version_id}.")
        if version.deleted:
            raise Gone(f"Version {version_id} of {resource_type}/{resource_id} is a deletion.")
        return gate.shown(call, patient_id, gate.open(gate.key(call, patient_id), version))

    def history(
        self,
        call: Call,
        resource_type: str,
        resource_id: str | None,
        patient_id: str | None,
        since: datetime | None = None,
    ) -> list[Stored]:
        """Return the versions of a resource, or of a type within one record, newest first.

        Raises:
            InvalidRequest: a type history without a patient (records are patient-centred).
        """
        gate = self._gate
        if resource_id is not None:
            owner = self.locate(call, resource_type, resource_id, Action.HISTORY)
        else:
            check_type(resource_type)
            if is_directory_type(resource_type):
                owner = DIRECTORY
            elif patient_id is None:
                raise InvalidRequest(
                    f"History of {resource_type} covers one record: add ?patient=Patient/<id>."
                )
            elif not is_valid_id(patient_id):
                raise InvalidRequest(f"patient={patient_id[:70]!r} is not a Patient id; give Patient/<id>.")
            else:
                owner = patient_id
            gate.check(call, Action.HISTORY, gate.target(call, owner, resource_type), hide=False)
        try:
            key = gate.key(call, owner)
        except RecordShredded:
            if resource_id is not None:
                raise
            return []
        versions = call.session.history(owner, resource_type, resource_id)
        if since is not None:
            versions = [v for v in versions if v.last_updated >= since]
        opened = [gate.open(key, v) for v in versions]
        shown = [stored for stored in opened if gate.visible(call, owner, stored)]
        if resource_id is not None and opened and not any(s.resource is not None for s in shown):
            # Every version is hidden from the caller: answer as for an unknown id.
            raise NotFound(f"{resource_type}/{resource_id} is not known.")
        return shown
