"""The core of the record access: the policy gate, the journal of each call, reads and writes.

Each operation follows the same path: load what the policy needs → ``decide`` → act →
seal/open, inside one store transaction, and one journal entry per record touched (DESIGN §5).
A refusal on something the caller may not know exists is reported as ``NotFound``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

from carnet.domain import fhirjson
from carnet.domain.consent import declares_for, grants_from_consents
from carnet.domain.documents import (
    attachments,
    binary_content,
    check_attachment,
    content_fingerprint,
    decode_base64,
    document_facts,
    master_identifier,
    replaced_ids,
)
from carnet.domain.errors import (
    Conflict,
    Gone,
    InvalidRequest,
    InvalidResource,
    NotFound,
    NotSupported,
    PreconditionFailed,
    RecordShredded,
)
from carnet.domain.policy import (
    Action,
    DocumentFacts,
)
from carnet.domain.principal import ActorKind
from carnet.domain.resources import (
    SUPPORTED_TYPES,
    is_directory_type,
    is_valid_id,
    patient_references,
)
from carnet.domain.search import (
    SearchQuery,
    clause_keys,
    index_tokens,
    matches_dates,
    parse_search,
    token_keys,
)
from carnet.domain.validation import validate
from carnet.services.ports import StoredVersion, StoreSession
from carnet.services.record_gate import RecordGate
from carnet.services.record_types import (
    Stored,
    WriteResult,
    instant,
    parse_etag,
    version_number,
)
from carnet.services.vault import DIRECTORY


def _check_type(resource_type: str) -> None:
    if resource_type not in SUPPORTED_TYPES:
        raise NotFound(f"Resource type {resource_type[:64]!r} is not served here; see /fhir/metadata.")


def _check_writable(resource_type: str) -> None:
    """Refuse writing the types Carnet writes itself.

    Raises:
        NotSupported: an AuditEvent (the journal is written by Carnet, never by a client).
    """
    if resource_type == "AuditEvent":
        raise NotSupported("AuditEvents are written by Carnet's access journal, never by a client.")


def _check_id(resource_type: str, resource_id: str) -> None:
    _check_type(resource_type)
    if not is_valid_id(resource_id):
        raise InvalidRequest(f"{resource_id[:70]!r} is not a valid FHIR id (1-64 of A-Z a-z 0-9 - .).")


class RecordCore(RecordGate):
    """Everything one principal may do with records; each call is one transaction.

    The policy gate, the journal of each call, reading, writing, documents and search; the
    access journal's view (:mod:`carnet.services.journal_view`) and Bundles
    (:mod:`carnet.services.bundles`) build on it, and :class:`carnet.services.records.Records`
    puts them together.
    """

    def _facts(self, patient_id: str, stored: Stored) -> DocumentFacts | None:
        """The document facts the policy needs for one opened resource (None if not a document).

        A Binary takes the facts of the current DocumentReference of its record that points to it.
        """
        if stored.resource_type == "DocumentReference" and stored.resource is not None:
            facts = document_facts(stored.resource)
            if stored.resource.get("status") == "current":
                # A Binary read in the same request takes these facts without another query.
                for _, attachment in attachments(stored.resource):
                    if isinstance(attachment.get("url"), str):
                        self._binary_facts.setdefault(attachment["url"], facts)
            return facts
        if stored.resource_type != "Binary" or self._active is None:
            return None
        cached = self._binary_facts.get(f"Binary/{stored.resource_id}")
        if cached is not None:
            return cached
        query = parse_search("DocumentReference", [("binary", f"Binary/{stored.resource_id}")])
        documents = [d for d in self._matching(self._active, patient_id, query, filtered=False) if d.resource]
        return document_facts(documents[0].resource or {}) if documents else None

    def _stored_facts(
        self, session: StoreSession, patient_id: str, version: StoredVersion
    ) -> DocumentFacts | None:
        """The document facts of a stored version (its authors decide who may change it)."""
        if version.deleted or version.resource_type not in ("DocumentReference", "Binary"):
            return None
        try:
            return self._facts(patient_id, self._open(self._key(session, patient_id), version))
        except RecordShredded:
            return None

    def _visible(self, patient_id: str, stored: Stored) -> bool:
        """Tell whether the caller may see one opened resource (its facts decided, per resource)."""
        if stored.json is None:  # a deletion; ``json`` does not parse, ``resource`` would
            return True
        target = self._target(patient_id, stored.resource_type, document=self._facts(patient_id, stored))
        if not self._decide(Action.READ, target).allowed:
            return False
        self._disclose(patient_id, stored)
        return True

    # -- reading --------------------------------------------------------------------------

    def _locate(self, session: StoreSession, resource_type: str, resource_id: str, action: Action) -> str:
        _check_id(resource_type, resource_id)
        self._refuse_forbidden_kind(
            action, resource_type, session=session, named=[(resource_type, resource_id)]
        )
        what = f"{resource_type}/{resource_id}"
        patient_id = session.locate(resource_type, resource_id)
        if patient_id is None:
            raise NotFound(f"{what} is not known.")
        decision = self._decide(action, self._target(patient_id, resource_type))
        # A document's facts are only known once it is opened: that check follows in ``_shown``.
        if not decision.allowed and decision.reasons != ("document-facts-missing",):
            raise NotFound(f"{what} is not known.")
        return patient_id

    def _shown(self, patient_id: str, stored: Stored) -> Stored:
        """Return an opened resource if the caller may see it, else the same NotFound as a missing one."""
        if not self._visible(patient_id, stored):
            raise NotFound(f"{stored.resource_type}/{stored.resource_id} is not known.")
        return stored

    def _read(self, session: StoreSession, resource_type: str, resource_id: str) -> Stored:
        patient_id = self._locate(session, resource_type, resource_id, Action.READ)
        version = session.current(patient_id, resource_type, resource_id)
        if version is None:
            raise NotFound(f"{resource_type}/{resource_id} is not known.")
        if version.deleted:
            self._hide_deleted(session, patient_id, version)
            raise Gone(f"{resource_type}/{resource_id} was deleted.")
        return self._shown(patient_id, self._open(self._key(session, patient_id), version))

    def _hide_deleted(self, session: StoreSession, patient_id: str, deletion: StoredVersion) -> None:
        """Answer "unknown" for a deleted resource whose last live version the caller could not see."""
        if deletion.version_id <= 1:
            return
        last = session.version(
            patient_id, deletion.resource_type, deletion.resource_id, deletion.version_id - 1
        )
        if last is not None and last.sealed is not None:
            self._shown(patient_id, self._open(self._key(session, patient_id), last))

    def read(self, resource_type: str, resource_id: str) -> Stored:
        """Read the current version of a resource.

        Raises:
            NotFound: unknown, or not for this caller. Gone: deleted, or the record was erased.
        """
        with self._session("read", resource_type) as session:
            return self._read(session, resource_type, resource_id)

    def _vread(self, session: StoreSession, resource_type: str, resource_id: str, version_id: str) -> Stored:
        patient_id = self._locate(session, resource_type, resource_id, Action.VREAD)
        number = version_number(version_id)
        if number is None:
            raise NotFound(f"{resource_type}/{resource_id} has no version {version_id[:20]!r}.")
        version = session.version(patient_id, resource_type, resource_id, number)
        if version is None:
            raise NotFound(f"{resource_type}/{resource_id} has no version {version_id}.")
        if version.deleted:
            raise Gone(f"Version {version_id} of {resource_type}/{resource_id} is a deletion.")
        return self._shown(patient_id, self._open(self._key(session, patient_id), version))

    def vread(self, resource_type: str, resource_id: str, version_id: str) -> Stored:
        """Read one version of a resource."""
        with self._session("vread", resource_type) as session:
            return self._vread(session, resource_type, resource_id, version_id)

    def history(
        self,
        resource_type: str,
        resource_id: str | None,
        patient_id: str | None,
        since: datetime | None = None,
    ) -> list[Stored]:
        """Return the versions of a resource, or of a type within one record, newest first.

        Raises:
            InvalidRequest: a type history without a patient (records are patient-centred).
        """
        with self._session("history", resource_type) as session:
            if resource_id is not None:
                owner = self._locate(session, resource_type, resource_id, Action.HISTORY)
            else:
                _check_type(resource_type)
                if is_directory_type(resource_type):
                    owner = DIRECTORY
                elif patient_id is None:
                    raise InvalidRequest(
                        f"History of {resource_type} covers one record: add ?patient=Patient/<id>."
                    )
                elif not is_valid_id(patient_id):
                    raise InvalidRequest(
                        f"patient={patient_id[:70]!r} is not a Patient id; give Patient/<id>."
                    )
                else:
                    owner = patient_id
                self._check(Action.HISTORY, self._target(owner, resource_type), hide=False)
            try:
                key = self._key(session, owner)
            except RecordShredded:
                if resource_id is not None:
                    raise
                return []
            versions = session.history(owner, resource_type, resource_id)
            if since is not None:
                versions = [v for v in versions if v.last_updated >= since]
            opened = [self._open(key, v) for v in versions]
            shown = [stored for stored in opened if self._visible(owner, stored)]
            if resource_id is not None and opened and not any(s.resource is not None for s in shown):
                # Every version is hidden from the caller: answer as for an unknown id.
                raise NotFound(f"{resource_type}/{resource_id} is not known.")
            return shown

    # -- writing --------------------------------------------------------------------------

    def _place(self, session: StoreSession, resource: Mapping[str, Any], hint: str | None = None) -> str:
        """Return the record a new resource belongs to.

        A Binary names its record through ``securityContext`` (the Patient, or the resource it
        belongs to); inside a transaction, the DocumentReference that points to it gives the hint.
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
                owner = session.locate(*context.split("/"))
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

    def _ensure_record(self, session: StoreSession, patient_id: str) -> bytes:
        try:
            return self._key(session, patient_id)
        except RecordShredded:
            raise InvalidResource(f"Patient/{patient_id} is not a record on this server.") from None

    def _write(
        self,
        session: StoreSession,
        *,
        patient_id: str,
        key: bytes,
        resource_type: str,
        resource_id: str,
        version_id: int,
        resource: Mapping[str, Any] | None,
    ) -> Stored:
        now = self._svc.clock()
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
            self._written_binaries[(patient_id, resource_id)] = body
        tokens = index_tokens(body) if body is not None else set()
        session.set_tokens(
            patient_id, resource_type, resource_id, self._vault.token_hashes(key, tokens), new=version_id == 1
        )
        if resource_type == "Patient":
            session.set_identities(patient_id, self._identity_hashes(session, body))
        written = Stored(
            resource_type=resource_type,
            resource_id=resource_id,
            version_id=version_id,
            last_updated=now,
            resource=body,
        )
        self._disclose(patient_id, written)
        trail = self._trail_of(patient_id)
        if trail is not None:
            trail.allowed = True
            trail.new_document |= resource_type == "DocumentReference" and body is not None
        return written

    def _identity_hashes(self, session: StoreSession, patient: Mapping[str, Any] | None) -> set[bytes]:
        if patient is None:
            return set()
        out: set[bytes] = set()
        for ident in patient.get("identifier") or []:
            for parts in token_keys(ident):
                if parts[0] != "s":  # a system alone would link every patient of that system
                    out.add(self._vault.identity_hash(session, *parts, now=self._svc.clock()))
        return out

    def _opens_own_record(self, resource: Mapping[str, Any]) -> bool:
        ident = self.actor.identifier
        if ident is None:
            return False
        return any(
            isinstance(i, dict) and i.get("system") == ident.system and i.get("value") == ident.value
            for i in resource.get("identifier") or []
        )

    def _create(
        self,
        session: StoreSession,
        resource: Mapping[str, Any],
        *,
        if_none_exist: str | None = None,
        assigned_id: str | None = None,
        hint: str | None = None,
    ) -> WriteResult:
        _check_type(str(resource.get("resourceType")))
        _check_writable(str(resource.get("resourceType")))
        validate(resource)
        resource_type = str(resource["resourceType"])
        if resource_type == "Patient":
            target = self._target(None, "Patient", opens=self._opens_own_record(resource))
            self._check(Action.CREATE, target, hide=False)
            if if_none_exist is not None:
                existing = self._conditional(session, "Patient", if_none_exist, None)
                if existing is not None:
                    return WriteResult(stored=existing, created=False)
            patient_id = assigned_id or self._svc.new_id()
            key = self._vault.create_key(session, patient_id, self._svc.clock())
            self._keys[patient_id] = key
            stored = self._write(
                session,
                patient_id=patient_id,
                key=key,
                resource_type="Patient",
                resource_id=patient_id,
                version_id=1,
                resource=resource,
            )
            if self.actor.kind is ActorKind.PATIENT and self.actor.patient_id is None:
                # The patient now holds this record for the rest of the transaction.
                self.actor = dataclasses.replace(self.actor, patient_id=patient_id)
            return WriteResult(stored=stored, created=True)
        patient_id = self._place(session, resource, hint)
        # Feeds and professionals write by classCode (registered categories, the matrix).
        writes_by_class = self.actor.kind in (ActorKind.FEED, ActorKind.PROFESSIONAL)
        facts = document_facts(resource) if resource_type == "DocumentReference" and writes_by_class else None
        target = self._target(patient_id, resource_type, document=facts)
        if resource_type == "Consent" and self.actor.kind is ActorKind.PROFESSIONAL:
            target = dataclasses.replace(
                target, declares_own_consent=declares_for(resource, self.actor.professional_id)
            )
        self._check(Action.CREATE, target, hide=False)
        key = self._ensure_record(session, patient_id)
        if if_none_exist is not None:
            existing = self._conditional(session, resource_type, if_none_exist, patient_id)
            if existing is not None:
                return WriteResult(stored=existing, created=False)
        if resource_type == "DocumentReference":
            self._check_contents(session, resource, patient_id)
            same = self._same_unique_id(session, resource, patient_id)
            if same is not None:
                return WriteResult(stored=same, created=False)
        resource_id = assigned_id or self._svc.new_id()
        stored = self._write(
            session,
            patient_id=patient_id,
            key=key,
            resource_type=resource_type,
            resource_id=resource_id,
            version_id=1,
            resource=resource,
        )
        if resource_type == "DocumentReference":
            self._supersede(session, resource, patient_id, resource_id)
        return WriteResult(stored=stored, created=True)

    # -- documents: the checks the writes make (IHE MHD) -----------------------------------

    def _check_contents(self, session: StoreSession, document: Mapping[str, Any], patient_id: str) -> None:
        """Check each attachment's size and hash against its content (inline or in a Binary)."""
        for index, attachment in attachments(document):
            where = f"DocumentReference.content[{index}].attachment"
            if isinstance(attachment.get("data"), str):
                check_attachment(attachment, decode_base64(attachment["data"], f"{where}.data"), where)
                continue
            url = attachment.get("url")
            if not isinstance(url, str) or not url.startswith("Binary/"):
                continue
            binary_id = url.removeprefix("Binary/")
            fresh = self._written_binaries.get((patient_id, binary_id))
            if fresh is not None:
                check_attachment(attachment, binary_content(fresh), where)
                continue
            owner = session.locate("Binary", binary_id) if is_valid_id(binary_id) else None
            version = session.current(patient_id, "Binary", binary_id) if owner == patient_id else None
            if version is None or version.deleted:
                raise InvalidResource(f"{where}.url points to {url[:80]}, which is not in this record.")
            binary = self._open(self._key(session, patient_id), version).resource or {}
            check_attachment(attachment, binary_content(binary), where)

    def _same_unique_id(
        self, session: StoreSession, document: Mapping[str, Any], patient_id: str
    ) -> Stored | None:
        """Return the stored document with the same uniqueId and content (idempotent resubmission).

        Raises:
            Conflict: the same uniqueId was submitted before with other content.
        """
        unique = master_identifier(document)
        if unique is None:
            return None
        query = parse_search("DocumentReference", [("identifier", f"{unique[0]}|{unique[1]}")])
        for stored in self._matching(session, patient_id, query):
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

    def _supersede(
        self, session: StoreSession, document: Mapping[str, Any], patient_id: str, new_id: str
    ) -> None:
        """Mark the documents a new one replaces as superseded (a new version of each)."""
        for old_id in replaced_ids(document):
            if old_id == new_id or session.locate("DocumentReference", old_id) != patient_id:
                raise InvalidResource(
                    f"relatesTo replaces DocumentReference/{old_id[:64]}, which is not in this record."
                )
            self._check(Action.UPDATE, self._target(patient_id, "DocumentReference"), hide=False)
            current = session.current(patient_id, "DocumentReference", old_id)
            if current is None or current.deleted:
                raise InvalidResource(f"DocumentReference/{old_id} was deleted and cannot be replaced.")
            old = self._open(self._key(session, patient_id), current).resource or {}
            if old.get("status") == "superseded":
                raise Conflict(
                    f"DocumentReference/{old_id} was already replaced; replace its newest version."
                )
            self._write(
                session,
                patient_id=patient_id,
                key=self._key(session, patient_id),
                resource_type="DocumentReference",
                resource_id=old_id,
                version_id=current.version_id + 1,
                resource={**old, "status": "superseded"},
            )

    def _conditional(
        self, session: StoreSession, resource_type: str, criteria: str, patient_id: str | None
    ) -> Stored | None:
        # "identifier=…", "?identifier=…" and "Observation?identifier=…" all mean the same criteria.
        _, _, after = criteria.rpartition("?")
        params = parse_qsl(after, keep_blank_values=True)
        if not params:
            raise InvalidRequest(
                "If-None-Exist is empty; give search criteria such as identifier=<system>|<value>."
            )
        query = parse_search(resource_type, params)
        if resource_type == "Patient":
            found = self._search_patients(session, query)
        else:
            found = self._matching(
                session, patient_id or DIRECTORY, dataclasses.replace(query, patient_id=None)
            )
        if len(found) > 1:
            raise PreconditionFailed(
                f"If-None-Exist matched {len(found)} resources; make the criteria selective."
            )
        if not found:
            return None
        return found[0]

    def create(self, resource: Mapping[str, Any], *, if_none_exist: str | None = None) -> WriteResult:
        """Create a resource with a server-assigned id (conditionally, with ``If-None-Exist``).

        Raises:
            InvalidResource: not valid R4, or a clinical resource without its patient.
            AccessDenied: the policy refused. PreconditionFailed: several matches.
        """
        with self._session("create", str(resource.get("resourceType")), write=True) as session:
            return self._create(session, resource, if_none_exist=if_none_exist)

    def _update(
        self,
        session: StoreSession,
        resource_type: str,
        resource_id: str,
        resource: Mapping[str, Any],
        if_match: str | None,
    ) -> WriteResult:
        # The URL before the body: an unknown type is 404, a type or id mismatch 400 (FHIR RESTful update).
        _check_id(resource_type, resource_id)
        _check_writable(resource_type)
        if resource.get("resourceType") != resource_type:
            raise InvalidRequest(
                f"The body is a {str(resource.get('resourceType'))[:64]}, not a {resource_type}."
            )
        if resource.get("id") != resource_id:
            raise InvalidRequest(
                f"The body's id must be {resource_id!r}, the id in the URL.", expression=("id",)
            )
        validate(resource)
        self._refuse_forbidden_kind(
            Action.UPDATE, resource_type, session=session, named=[(resource_type, resource_id)]
        )
        patient_id = session.locate(resource_type, resource_id)
        if patient_id is None:
            raise NotFound(
                f"{resource_type}/{resource_id} does not exist; ids are assigned by the server, "
                f"so create it with POST /fhir/{resource_type}."
            )
        current = session.current(patient_id, resource_type, resource_id)
        if current is None:
            raise NotFound(f"{resource_type}/{resource_id} is not known.")
        self._check(
            Action.UPDATE,
            self._target(
                patient_id, resource_type, document=self._stored_facts(session, patient_id, current)
            ),
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
            and self._place(session, resource, patient_id) != patient_id
        ):
            raise InvalidResource(f"{resource_type}/{resource_id} cannot move to another patient's record.")
        if resource_type == "DocumentReference":
            self._check_contents(session, resource, patient_id)
        key = self._key(session, patient_id)
        stored = self._write(
            session,
            patient_id=patient_id,
            key=key,
            resource_type=resource_type,
            resource_id=resource_id,
            version_id=current.version_id + 1,
            resource=resource,
        )
        return WriteResult(stored=stored, created=False)

    def update(
        self,
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
        with self._session("update", resource_type, write=True) as session:
            return self._update(session, resource_type, resource_id, resource, if_match)

    def _delete(self, session: StoreSession, resource_type: str, resource_id: str) -> None:
        _check_id(resource_type, resource_id)
        _check_writable(resource_type)
        self._refuse_forbidden_kind(
            Action.DELETE, resource_type, session=session, named=[(resource_type, resource_id)]
        )
        what = f"{resource_type}/{resource_id}"
        patient_id = session.locate(resource_type, resource_id)
        current = session.current(patient_id, resource_type, resource_id) if patient_id is not None else None
        if patient_id is None or current is None:
            raise NotFound(f"{what} is not known.")
        facts = self._stored_facts(session, patient_id, current)
        self._check(
            Action.DELETE, self._target(patient_id, resource_type, document=facts), hide=True, what=what
        )
        if current.deleted:
            return
        key = self._key(session, patient_id)
        self._write(
            session,
            patient_id=patient_id,
            key=key,
            resource_type=resource_type,
            resource_id=resource_id,
            version_id=current.version_id + 1,
            resource=None,
        )

    def delete(self, resource_type: str, resource_id: str) -> None:
        """Delete a resource logically (its history stays; a deleted resource reads as Gone)."""
        with self._session("delete", resource_type, write=True) as session:
            self._delete(session, resource_type, resource_id)

    # -- searching ------------------------------------------------------------------------

    def _matching(
        self, session: StoreSession, patient_id: str, query: SearchQuery, *, filtered: bool = True
    ) -> list[Stored]:
        """Open every current resource of a record that matches the query (unsorted, unpaged).

        Token clauses are answered by the blind indexes in SQL; date clauses on the opened
        resources (parsed only when a date clause asks for it). Unless ``filtered`` is False
        (internal lookups), every result the caller may not see is dropped here, before counts
        and pages are computed, so totals and links reveal nothing either.
        """
        try:
            key = self._key(session, patient_id)
        except RecordShredded:
            return []
        filters = [
            (c.param, [self._vault.token_hash(key, c.param, clause_keys(v)) for v in c.values])
            for c in query.tokens
        ]
        versions = session.search(patient_id, query.resource_type, query.ids, filters)
        out: list[Stored] = []
        for version in versions:
            stored = self._open(key, version)
            if query.dates and (stored.resource is None or not matches_dates(stored.resource, query.dates)):
                continue
            if filtered and not self._visible(patient_id, stored):
                continue
            out.append(stored)
        return out

    def _search_patients(self, session: StoreSession, query: SearchQuery) -> list[Stored]:
        found: list[Stored] = []
        for patient_id in self._patients_named(session, query):
            if not self._decide(Action.READ, self._target(patient_id, "Patient")).allowed:
                continue
            found.extend(self._matching(session, patient_id, dataclasses.replace(query, ids=(patient_id,))))
        return found

    def _patients_named(self, session: StoreSession, query: SearchQuery) -> list[str]:
        """The records a Patient search names (by ``_id`` and/or ``identifier``), before any rule."""
        candidates: list[str] = list(query.ids)
        identifier_clauses = [c for c in query.tokens if c.param == "identifier"]
        if identifier_clauses:
            for clause in identifier_clauses:
                ids: set[str] = set()
                for value in clause.values:
                    parts = clause_keys(value)
                    if parts[0] == "s":
                        raise InvalidRequest("Patient?identifier= needs a value, not only a system.")
                    ids.update(
                        session.find_identities(
                            self._vault.identity_hash(session, *parts, now=self._svc.clock())
                        )
                    )
                candidates = [c for c in candidates if c in ids] if query.ids else sorted(ids)
        elif not query.ids:
            raise InvalidRequest(
                "Patients are found by identifier only (e.g. Patient?identifier=urn:oid:1.2.250.1.213.1.4.10|<INS>); "
                "the record is patient-centred."
            )
        return list(dict.fromkeys(candidates))
