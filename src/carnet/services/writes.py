"""Writing resources: create, update and delete, each in its call's transaction.

Each write follows the same path, top to bottom: validate → admit the actor → place the resource
in its record → the policy decides → seal → the store → the journal entry, in the same
transaction as the change (DESIGN §5).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

from carnet.domain import fhirjson
from carnet.domain.consent import declares_for, grants_from_consents
from carnet.domain.documents import document_facts, replaced_ids
from carnet.domain.errors import (
    Conflict,
    InvalidRequest,
    InvalidResource,
    NotFound,
    PreconditionFailed,
    RecordShredded,
)
from carnet.domain.keys import WrappedKey
from carnet.domain.policy import Action, DocumentFacts, Visibility
from carnet.domain.principal import ActorKind
from carnet.domain.resources import is_directory_type, patient_references
from carnet.domain.search import index_tokens, parse_search, token_keys
from carnet.domain.validation import validate
from carnet.services._call import Call
from carnet.services._checks import check_id, check_type, check_writable
from carnet.services.document_checks import DocumentChecks
from carnet.services.gate import Gate
from carnet.services.ports import StoredVersion
from carnet.services.record_search import Search
from carnet.services.record_types import Stored, WriteResult, instant, parse_etag
from carnet.services.vault import DIRECTORY, Vault


def serialise_criteria(call: Call, resource_type: str, params: Sequence[tuple[str, str]]) -> None:
    """Make conditional writes with the same criteria run one after the other.

    A conditional create, update or delete searches, then writes: two concurrent ones with the
    same criteria would each find nothing and each create (or each update the same match). The
    transaction takes a lock on the criteria before searching, held until it commits, so the
    second searches after the first is durable and finds what it wrote.
    """
    criteria = "&".join(f"{name}={value}" for name, value in sorted(params))
    call.session.serialise(f"conditional {resource_type}?{criteria}")


Clock = Callable[[], datetime]
NewId = Callable[[], str]


Tokens = set[tuple[str, tuple[str, ...]]]


@dataclasses.dataclass(frozen=True, slots=True)
class Derived:
    """What a create derives from its resource alone, worked out before the write transaction.

    A transaction Bundle's POST entries on SQLite (:meth:`carnet.services.bundles.Bundles.prepare`):
    this work then runs outside the writer lock every other writer waits for. ``tokens``: the
    resource's :func:`index_tokens` (its own elements only, not the id, version or time the write
    gives it). ``patient_id`` and ``hashes``: the record the entry names and the tokens' blind
    hashes under that record's key, used only if the entry lands there. ``new_key``: for a new
    Patient, its record key and the key wrapped (its erasure share made durable already).
    """

    tokens: Tokens
    patient_id: str | None = None
    hashes: set[tuple[str, bytes]] | None = None
    new_key: tuple[bytes, WrappedKey] | None = None


class Writes:
    """Create, update and delete resources, for the principal of each call."""

    def __init__(
        self,
        *,
        gate: Gate,
        search: Search,
        documents: DocumentChecks,
        vault: Vault,
        clock: Clock,
        new_id: NewId,
    ) -> None:
        self._gate = gate
        self._search = search
        self._documents = documents
        self._vault = vault
        self._clock = clock
        self._new_id = new_id

    # -- placing and sealing --------------------------------------------------------------------

    def place(self, call: Call, resource: Mapping[str, Any], hint: str | None = None) -> str:
        """Return the record a new resource belongs to.

        A Binary names its record through ``securityContext`` (the Patient, or the resource it
        belongs to); inside a transaction, the DocumentReference that points to it gives the hint.

        Raises:
            InvalidResource: a clinical resource that names no patient.
        """
        resource_type = str(resource["resourceType"])
        if is_directory_type(resource_type):
            return DIRECTORY
        candidates = list(dict.fromkeys(patient_references(resource)))
        if candidates:
            return candidates[0]
        if resource_type == "Binary":
            context = (resource.get("securityContext") or {}).get("reference")
            if isinstance(context, str) and context.count("/") == 1:
                owner = call.session.locate(*context.split("/"))
                if owner is not None and owner != DIRECTORY:
                    return owner
            if hint is not None:
                return hint
            raise InvalidResource(
                "A Binary names its record through securityContext (Patient/<id> or the resource it belongs to).",
                expression=("securityContext",),
            )
        raise InvalidResource(
            f"{resource_type} must reference its patient (e.g. subject or patient = Patient/<id>): "
            "every clinical resource belongs to one record."
        )

    def new_id(self, call: Call, patient_id: str) -> str:
        """Return a new id for a resource of this record.

        On Citus it starts with the key of the record shard's journal log, where the resource's
        location is then written (one shard group per create, docs/scale.md); elsewhere a UUID.
        """
        return call.session.id_prefix(patient_id) + self._new_id()

    def derive(
        self, resource: Mapping[str, Any], assigned_id: str | None, index_keys: dict[str, bytes]
    ) -> Derived:
        """Work out a valid new resource's :class:`Derived` before the write transaction.

        A Patient with its ``assigned_id`` gets its new record key here (``index_keys`` then holds
        that record's blind-index key); another resource gets its blind hashes when the first
        patient it names is such a record (where :meth:`place` will put it). A Patient's key made
        for a Bundle that then fails (or a conditional create that finds its match) is never
        stored: its erasure share is left unused, as a failed write's is.
        """
        tokens = index_tokens(resource)
        new_key = None
        if resource.get("resourceType") == "Patient":
            if assigned_id is None:
                return Derived(tokens)
            new_key = self._vault.new_key()
            index_keys[assigned_id] = self._vault.index_key(new_key[0])
            patient_id: str | None = assigned_id
        else:
            patient_id = next(patient_references(resource), None)
        index_key = index_keys.get(patient_id) if patient_id is not None else None
        if index_key is None:
            return Derived(tokens)
        return Derived(tokens, patient_id, self._vault.hashes_under(index_key, tokens), new_key)

    def ensure_record(self, call: Call, patient_id: str) -> bytes:
        """Return the key of a record that exists.

        Raises:
            InvalidResource: no such record on this server.
        """
        try:
            return self._gate.key(call, patient_id)
        except RecordShredded:
            raise InvalidResource(f"Patient/{patient_id} is not a record on this server.") from None

    def _write(
        self,
        call: Call,
        *,
        patient_id: str,
        key: bytes,
        resource_type: str,
        resource_id: str,
        version_id: int,
        resource: Mapping[str, Any] | None,
        derived: Derived | None = None,
    ) -> Stored:
        """Write one version, its search index and its journal trail in the call's transaction.

        ``derived``: its index tokens (and their blind hashes) worked out before the transaction.
        """
        session = call.session
        now = self._clock()
        if resource_type == "Patient":
            call.patients.pop(patient_id, None)  # the notice reads the new version
        body: dict[str, Any] | None = None
        sealed = None
        if resource is not None:
            if resource_type == "Consent":
                # A patient's choice that the policy could not read later would lock the record:
                # refuse it now (InvalidResource, 422), like any other invalid resource.
                grants_from_consents([resource], now)
            meta = dict(resource.get("meta") or {})
            meta["versionId"] = str(version_id)
            meta["lastUpdated"] = instant(now)
            body = {"resourceType": resource_type, "id": resource_id, "meta": meta}
            body.update({k: v for k, v in resource.items() if k not in body})
            sealed = self._vault.seal_resource(
                key, patient_id, resource_type, resource_id, version_id, fhirjson.dumps(body)
            )
        session.write_version(
            StoredVersion(
                patient_id=patient_id,
                resource_type=resource_type,
                resource_id=resource_id,
                version_id=version_id,
                last_updated=now,
                deleted=resource is None,
                sealed=sealed,
            )
        )
        if resource_type == "Binary" and body is not None:
            call.written_binaries[(patient_id, resource_id)] = body
        hashes = derived.hashes if derived is not None and derived.patient_id == patient_id else None
        if hashes is None:
            if body is None:
                tokens: Tokens = set()
            else:
                tokens = derived.tokens if derived is not None else index_tokens(body)
            index_key = call.index_keys.get(patient_id)
            if index_key is None:
                index_key = call.index_keys[patient_id] = self._vault.index_key(key)
            hashes = self._vault.hashes_under(index_key, tokens)
        session.set_tokens(patient_id, resource_type, resource_id, hashes, new=version_id == 1)
        if resource_type == "Patient":
            session.set_identities(patient_id, self._identity_hashes(call, body))
        written = Stored(
            resource_type=resource_type,
            resource_id=resource_id,
            version_id=version_id,
            last_updated=now,
            resource=body,
        )
        self._gate.disclose(call, patient_id, written)
        trail = self._gate.trail_of(call, patient_id)
        if trail is not None:
            trail.allowed = True
            # A document the patient may not see yet (INVISIBLE_PATIENT) is no news to tell them.
            trail.new_document |= (
                resource_type == "DocumentReference"
                and body is not None
                and not call.already_told
                and Visibility.INVISIBLE_TO_PATIENT not in document_facts(body).visibility
            )
            trail.new_message |= resource_type == "Communication" and body is not None
        return written

    def _identity_hashes(self, call: Call, patient: Mapping[str, Any] | None) -> set[bytes]:
        if patient is None:
            return set()
        out: set[bytes] = set()
        for ident in patient.get("identifier") or []:
            for parts in token_keys(ident):
                if parts[0] != "s":  # a system alone would link every patient of that system
                    out.add(self._vault.identity_hash(call.session, *parts, now=self._clock()))
        return out

    # -- create ---------------------------------------------------------------------------------

    def create(
        self,
        call: Call,
        resource: Mapping[str, Any],
        *,
        if_none_exist: str | None = None,
        assigned_id: str | None = None,
        hint: str | None = None,
        unique_checked: bool = False,
        validated: bool = False,
        derived: Derived | None = None,
    ) -> WriteResult:
        """Create a resource with a server-assigned id (conditionally, with ``If-None-Exist``).

        ``assigned_id`` is the id a Bundle reserved for it; ``hint`` the record of the
        DocumentReference of the same Bundle that points to a Binary; ``unique_checked``: the
        caller looked for a document with this one's uniqueId in this call and found none
        (Simplified Publish, before making its Binaries), so it is not looked for again;
        ``validated``: the caller validated it (Simplified Publish in this call, a transaction
        Bundle's entry just before it), so it is not validated again; ``derived``: what the
        caller worked out from it before the transaction (:class:`Derived`).

        Raises:
            InvalidResource: not valid R4, or a clinical resource without its patient.
            AccessDenied: the policy refused. PreconditionFailed: several matches.
        """
        gate = self._gate
        check_type(str(resource.get("resourceType")))
        check_writable(str(resource.get("resourceType")))
        if not validated:
            validate(resource)
        resource_type = str(resource["resourceType"])
        actor = call.actor
        if resource_type == "Patient":
            return self._open_record(
                call, resource, if_none_exist=if_none_exist, assigned_id=assigned_id, derived=derived
            )
        patient_id = self.place(call, resource, hint)
        # Feeds and professionals write by classCode (registered categories, the matrix).
        writes_by_class = actor.kind in (ActorKind.FEED, ActorKind.PROFESSIONAL)
        facts = document_facts(resource) if resource_type == "DocumentReference" and writes_by_class else None
        if facts is None and actor.kind is ActorKind.FEED:
            # A feed's publish: the document's content and SubmissionSet (a device feed's
            # measures) are written under the facts the publishing use case set; a resource the
            # patient accepted from the inbox (a MedicationDispense) under its type's class.
            facts = call.publishing or (DocumentFacts() if call.accepted_offer else None)
        if facts is not None and call.accepted_offer:
            facts = dataclasses.replace(facts, accepted_by_patient=True)
        target = gate.target(call, patient_id, resource_type, document=facts, resource=resource)
        if resource_type == "Consent" and actor.kind is ActorKind.PROFESSIONAL:
            target = dataclasses.replace(
                target, declares_own_consent=declares_for(resource, actor.professional_id)
            )
        gate.check(call, Action.CREATE, target, hide=False)
        key = self.ensure_record(call, patient_id)
        if if_none_exist is not None:
            existing = self._conditional(call, resource_type, if_none_exist, patient_id)
            if existing is not None:
                return WriteResult(stored=existing, created=False)
        if resource_type == "DocumentReference":
            self._documents.check_contents(call, resource, patient_id)
            same = None if unique_checked else self._documents.same_unique_id(call, resource, patient_id)
            if same is not None:
                return WriteResult(stored=same, created=False)
        resource_id = assigned_id or self.new_id(call, patient_id)
        stored = self._write(
            call,
            patient_id=patient_id,
            key=key,
            resource_type=resource_type,
            resource_id=resource_id,
            version_id=1,
            resource=resource,
            derived=derived,
        )
        if resource_type == "DocumentReference":
            self._supersede(call, resource, patient_id, resource_id)
        return WriteResult(stored=stored, created=True)

    def _open_record(
        self,
        call: Call,
        patient: Mapping[str, Any],
        *,
        if_none_exist: str | None,
        assigned_id: str | None,
        derived: Derived | None = None,
    ) -> WriteResult:
        """Create a Patient: a new record, with its own key.

        A patient who opens the record carrying their own identifier holds it for the rest of
        the call (``Call.opened_record``): the writes that follow in the same Bundle are theirs.
        """
        gate = self._gate
        target = gate.target(call, None, "Patient", opens=self._opens_own_record(call, patient))
        gate.check(call, Action.CREATE, target, hide=False)
        if if_none_exist is not None:
            existing = self._conditional(call, "Patient", if_none_exist, None)
            if existing is not None:
                return WriteResult(stored=existing, created=False)
        patient_id = assigned_id or self._new_id()
        if derived is not None and derived.new_key is not None and derived.patient_id == patient_id:
            key, wrapped = derived.new_key  # made before the transaction (Bundles.prepare)
            self._vault.store_key(call.session, patient_id, wrapped, self._clock())
        else:
            key = self._vault.create_key(call.session, patient_id, self._clock())
        call.keys[patient_id] = key
        stored = self._write(
            call,
            patient_id=patient_id,
            key=key,
            resource_type="Patient",
            resource_id=patient_id,
            version_id=1,
            resource=patient,
            derived=derived,
        )
        actor = call.actor
        if actor.kind is ActorKind.PATIENT and actor.patient_id is None:
            call.opened_record = patient_id
        return WriteResult(stored=stored, created=True)

    def _opens_own_record(self, call: Call, resource: Mapping[str, Any]) -> bool:
        ident = call.actor.identifier
        if ident is None:
            return False
        return any(
            isinstance(i, dict) and i.get("system") == ident.system and i.get("value") == ident.value
            for i in resource.get("identifier") or []
        )

    def _supersede(self, call: Call, document: Mapping[str, Any], patient_id: str, new_id: str) -> None:
        """Mark the documents a new one replaces as superseded (a new version of each)."""
        gate, session = self._gate, call.session
        for old_id in replaced_ids(document):
            if old_id == new_id or session.locate("DocumentReference", old_id) != patient_id:
                raise InvalidResource(
                    f"relatesTo replaces DocumentReference/{old_id[:64]}, which is not in this record."
                )
            feed = call.actor.kind is ActorKind.FEED
            if not feed:
                gate.check(
                    call, Action.UPDATE, gate.target(call, patient_id, "DocumentReference"), hide=False
                )
            current = session.current(patient_id, "DocumentReference", old_id)
            if current is None or current.deleted:
                raise InvalidResource(f"DocumentReference/{old_id} was deleted and cannot be replaced.")
            old = gate.open(gate.key(call, patient_id), current).resource or {}
            if feed:
                # A feed replaces only what it wrote: the policy reads the old document's authors.
                target = gate.target(call, patient_id, "DocumentReference", document=document_facts(old))
                gate.check(call, Action.UPDATE, target, hide=False)
            if old.get("status") == "superseded":
                raise Conflict(
                    f"DocumentReference/{old_id} was already replaced; replace its newest version."
                )
            self._write(
                call,
                patient_id=patient_id,
                key=gate.key(call, patient_id),
                resource_type="DocumentReference",
                resource_id=old_id,
                version_id=current.version_id + 1,
                resource={**old, "status": "superseded"},
            )

    def _conditional(
        self, call: Call, resource_type: str, criteria: str, patient_id: str | None
    ) -> Stored | None:
        # "identifier=…", "?identifier=…" and "Observation?identifier=…" all mean the same criteria.
        _, _, after = criteria.rpartition("?")
        params = parse_qsl(after, keep_blank_values=True)
        if not params:
            raise InvalidRequest(
                "If-None-Exist is empty; give search criteria such as identifier=<system>|<value>."
            )
        query = parse_search(resource_type, params)
        serialise_criteria(call, resource_type, params)
        if resource_type == "Patient":
            found = self._search.search_patients(call, query)
        else:
            found = self._search.matching(
                call, patient_id or DIRECTORY, dataclasses.replace(query, patient_id=None)
            )
        if len(found) > 1:
            raise PreconditionFailed(
                f"If-None-Exist matched {len(found)} resources; make the criteria selective."
            )
        if not found:
            return None
        return found[0]

    # -- update and delete ------------------------------------------------------------------------

    def update(
        self,
        call: Call,
        resource_type: str,
        resource_id: str,
        resource: Mapping[str, Any],
        *,
        if_match: str | None = None,
    ) -> WriteResult:
        """Write a new version of an existing resource.

        Raises:
            NotFound: no such resource (ids are server-assigned). PreconditionFailed: stale ``If-Match``.
        """
        gate, session = self._gate, call.session
        # The URL before the body: an unknown type is 404, a type or id mismatch 400 (FHIR RESTful update).
        check_id(resource_type, resource_id)
        check_writable(resource_type)
        if resource.get("resourceType") != resource_type:
            raise InvalidRequest(
                f"The body is a {str(resource.get('resourceType'))[:64]}, not a {resource_type}."
            )
        if resource.get("id") != resource_id:
            raise InvalidRequest(
                f"The body's id must be {resource_id!r}, the id in the URL.", expression=("id",)
            )
        validate(resource)
        gate.admit(call, Action.UPDATE, resource_type, named=[(resource_type, resource_id)])
        patient_id = session.locate(resource_type, resource_id)
        if patient_id is None:
            raise NotFound(
                f"{resource_type}/{resource_id} does not exist; ids are assigned by the server, "
                f"so create it with POST /fhir/{resource_type}."
            )
        current = session.current(patient_id, resource_type, resource_id)
        if current is None:
            raise NotFound(f"{resource_type}/{resource_id} is not known.")
        facts = gate.stored_facts(call, patient_id, current)
        gate.check(
            call,
            Action.UPDATE,
            gate.target(call, patient_id, resource_type, document=facts, resource=resource),
            hide=True,
            what=f"{resource_type}/{resource_id}",
        )
        if if_match is not None and parse_etag(if_match) != current.version_id:
            raise PreconditionFailed(
                f"{resource_type}/{resource_id} is at version {current.version_id}, not {if_match}; "
                "read it again and reapply the change."
            )
        if (
            resource_type != "Patient"
            and patient_id != DIRECTORY
            and self.place(call, resource, patient_id) != patient_id
        ):
            raise InvalidResource(f"{resource_type}/{resource_id} cannot move to another patient's record.")
        if resource_type == "DocumentReference":
            self._documents.check_contents(call, resource, patient_id)
        stored = self._write(
            call,
            patient_id=patient_id,
            key=gate.key(call, patient_id),
            resource_type=resource_type,
            resource_id=resource_id,
            version_id=current.version_id + 1,
            resource=resource,
        )
        return WriteResult(stored=stored, created=False)

    def delete(self, call: Call, resource_type: str, resource_id: str) -> None:
        """Delete a resource logically (its history stays; a deleted resource reads as Gone).

        Raises:
            NotFound: unknown, or not this caller's to delete.
        """
        gate, session = self._gate, call.session
        check_id(resource_type, resource_id)
        check_writable(resource_type)
        gate.admit(call, Action.DELETE, resource_type, named=[(resource_type, resource_id)])
        what = f"{resource_type}/{resource_id}"
        patient_id = session.locate(resource_type, resource_id)
        current = session.current(patient_id, resource_type, resource_id) if patient_id is not None else None
        if patient_id is None or current is None:
            raise NotFound(f"{what} is not known.")
        facts = gate.stored_facts(call, patient_id, current)
        gate.check(
            call,
            Action.DELETE,
            gate.target(call, patient_id, resource_type, document=facts),
            hide=True,
            what=what,
        )
        if current.deleted:
            return
        self._write(
            call,
            patient_id=patient_id,
            key=gate.key(call, patient_id),
            resource_type=resource_type,
            resource_id=resource_id,
            version_id=current.version_id + 1,
            resource=None,
        )
