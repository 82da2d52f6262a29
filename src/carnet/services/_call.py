"""The per-call context of the record access: who asks, how, and what one call did.

A :class:`Call` is created once per use-case call by :meth:`carnet.services.gate.Gate.transaction`
and handed, explicitly, to every collaborator (the gate, reads, writes, search, documents, the
journal view, Bundles). None of them keeps anything of a call on itself, and nothing of a call
outlives it: the record keys it unwrapped, the patients' grants, whether each record is open, the
document facts it learnt and the Binaries it wrote are cached here for its transaction only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from carnet.domain.policy import AccessMode, AccessRequest, Decision, DocumentFacts, Grants, Obligation
from carnet.domain.principal import Principal
from carnet.services.ports import StoreSession
from carnet.services.trail import Touch


@dataclass(slots=True, kw_only=True, eq=False)
class Call:
    """One call of the record access: one principal, one transaction, one journal entry per record.

    ``interaction`` and ``resource_type`` name the call in its journal entries (``read``,
    ``search-type``, ``$archive``…); ``query`` is a search's parameters, URL-encoded, kept in its
    entries. ``trail`` is what the call did with each record it touched; ``obligations`` collects
    the obligations of the decisions that allowed it (DESIGN §3).
    """

    principal: Principal
    mode: AccessMode = AccessMode.NORMAL
    justification: str | None = None
    confirmed_by: str | None = None
    session: StoreSession
    interaction: str
    resource_type: str
    query: str | None = None
    #: The record a patient without one opened in this call; they hold it for the rest of the call.
    opened_record: str | None = None
    obligations: set[Obligation] = field(default_factory=set)
    trail: dict[str, Touch] = field(default_factory=dict)
    #: Record keys unwrapped in this call (one unwrap per record, not per row).
    keys: dict[str, bytes] = field(default_factory=dict)
    #: The blind-index subkeys of those records, derived once per call.
    index_keys: dict[str, bytes] = field(default_factory=dict)
    grants: dict[str, Grants] = field(default_factory=dict)
    #: The policy's verdicts in this call, by question: a record's 500 resources ask a handful of
    #: distinct questions (type, document facts), each decided once. The call's grants and open
    #: state are read once per call already; this makes the call decided as of one state.
    decisions: dict[AccessRequest, Decision] = field(default_factory=dict)
    open_records: dict[str, bool] = field(default_factory=dict)
    #: Per record: its current Patient as the policy read it (for a professional or a feed), so
    #: that the call's notice finds the patient's address without reading it again; dropped
    #: when the call writes a Patient of that record.
    patients: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    #: ``Binary/<id>`` → the facts of the current DocumentReference pointing to it.
    binary_facts: dict[str, DocumentFacts] = field(default_factory=dict)
    #: Binaries written by this call, so that a DocumentReference of the same transaction is
    #: checked against its content without reading it back.
    written_binaries: dict[tuple[str, str], Mapping[str, Any]] = field(default_factory=dict)
    #: The facts of the document a Simplified Publish of this call is storing: a feed writes its
    #: Binaries and SubmissionSet under the document's classCode (``Documents.publish``).
    publishing: DocumentFacts | None = None
    #: The patient accepted the document this call publishes from their feed inbox.
    accepted_offer: bool = False
    #: The document this call publishes is news the patient is told of already: the second CDA
    #: of an HL7 v2 message (the same report at level 3), whose first document's notice tells
    #: them. No new-document notice of its own (the journal still names it).
    already_told: bool = False
    #: Per record: the references (``DocumentReference/<id>``, ``Binary/<id>``) of the documents
    #: the caller may not see yet, which the journal view does not name to them.
    hidden_targets: dict[str, frozenset[str]] = field(default_factory=dict)
    #: :attr:`actor` once made (the principal holding ``opened_record``), not rebuilt per resource.
    _holding: tuple[Principal, str, Principal] | None = field(default=None, init=False, repr=False)

    @property
    def actor(self) -> Principal:
        """Who asks, as the policy sees them: a patient holds the record they opened in this call."""
        if self.opened_record is None:
            return self.principal
        held = self._holding
        if held is None or held[0] is not self.principal or held[1] != self.opened_record:
            actor = dataclasses.replace(self.principal, patient_id=self.opened_record)
            held = self._holding = (self.principal, self.opened_record, actor)
        return held[2]
