"""A reference model of Carnet's access rules (DESIGN §3, docs/policy.md), written for clarity.

It shares no code with ``carnet.domain.policy``: it reads a :class:`Case` made of plain strings,
sets and numbers, and answers with a :class:`Verdict` by walking the rules as the design states
them, one actor family at a time, instead of through an ordered chain of rule functions. The
property and exhaustive tests check that the engine and this model always agree on whether a
request is allowed and on the obligations that come with it.

The matrix is an argument (the tests read ``matrix.json`` themselves): this model checks the
rules, not the data.

Apps the patient connected (SMART on FHIR, issue 14) are actors of kind ``patient`` carrying an
``app_id`` and the scopes of their token: such an app reaches no more than the intersection of
its token's scopes, the patient's grant (scopes, until an hour) and what the patient could do.
The scopes are read here from their strings (SMART App Launch 2.x grammar), not by the engine's parser.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

# Plain-string vocabulary, spelled as on the wire.
FORBIDDEN_KINDS = frozenset({"employer", "complementary_insurer", "bank", "contract_assessor"})
KIND_MODES = {
    "patient": {"normal", "patient", "representative"},
    "representative": {"normal", "representative"},
    "professional": {"normal", "treating", "break_glass", "regulation"},
    "feed": {"feed"},
    "researcher": {"normal", "research"},
    "admin": {"normal", "admin"},
    "dpo": {"normal", "admin"},
}
READS = frozenset({"read", "vread", "history", "search-type", "$everything"})
CLINICAL = READS | {"create", "update", "delete"}
KEY_ACTIONS = frozenset({"keys-rotate", "patient-shred"})
DIRECTORY_ACTIONS = frozenset({"read", "vread", "history", "search-type", "create"})

MASQUE_PS = "MASQUE_PS"
INVISIBLE_PATIENT = "INVISIBLE_PATIENT"
INVISIBLE_REPRESENTATIVES = "INVISIBLE_REPRESENTANTS_LEGAUX"

AUDIT = "audit"
NOTIFY = "notify_patient"
BANNER = "show_mode_banner"
WITHHOLD = "withhold_content"


@dataclass(frozen=True)
class Parameters:
    """What distinguishes the profiles."""

    masks_bind_treating: bool
    break_glass_needs_confirmation: bool
    feeds_opt_in: bool


PROFILE_PARAMETERS = {
    "fr-dmp": Parameters(masks_bind_treating=False, break_glass_needs_confirmation=False, feeds_opt_in=False),
    "sovereign": Parameters(masks_bind_treating=True, break_glass_needs_confirmation=True, feeds_opt_in=True),
}


@dataclass(frozen=True)
class Actor:
    """Who asks, in plain values."""

    kind: str
    patient_id: str | None = None
    professional_id: str | None = None
    profession: str | None = None
    specialty: str | None = None
    samu_regulator: bool = False
    occupational_physician: bool = False
    represents: frozenset[str] = frozenset()
    feed_id: str | None = None
    feed_categories: frozenset[str] = frozenset()
    #: An app acting for its patient: its client id, and the scopes of the token it presented.
    app_id: str | None = None
    app_scopes: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Document:
    """The facts of the document touched."""

    class_code: str | None = None
    visibility: frozenset[str] = frozenset()
    author_ids: frozenset[str] = frozenset()
    minor_secret: bool = False
    masked_from: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Choices:
    """The patient's choices; ``authorisations`` maps a professional to (status, until or None)."""

    authorisations: Mapping[str, tuple[str, int | None]] = field(default_factory=dict)
    blocked: frozenset[str] = frozenset()
    treating: frozenset[str] = frozenset()
    opposes_break_glass: bool = False
    opposes_regulation: bool = False
    refused_feeds: frozenset[str] = frozenset()
    accepted_feeds: frozenset[str] = frozenset()
    occupational_consent: frozenset[str] = frozenset()
    #: The apps the patient connected: client id -> (scopes granted, until hour or None).
    apps: Mapping[str, tuple[frozenset[str], int | None]] = field(default_factory=dict)


@dataclass(frozen=True)
class Case:
    """One request in plain values; times are whole hours (``now`` and ``until`` alike)."""

    profile: str
    actor: Actor
    action: str
    mode: str
    patient_id: str | None
    resource_type: str
    choices: Choices = Choices()
    in_directory: bool = False
    opens_own_record: bool = False
    record_open: bool = True
    document: Document | None = None
    justification: str | None = None
    confirmed_by: str | None = None
    now: int = 0
    declares_own_consent: bool = False
    all_records: bool = False
    #: The categories of the one resource touched (``system|code`` and ``code``); None for a type.
    categories: frozenset[str] | None = None


@dataclass(frozen=True)
class Verdict:
    """Allowed or not, and what must be done; ``needs_facts``: refused only for want of the document's facts."""

    allowed: bool
    obligations: frozenset[str] = frozenset()
    needs_facts: bool = False


DENY = Verdict(False)
ALLOW = Verdict(True, frozenset({AUDIT}))
#: The DPO's view of the journal: who, when and how, never the clinical content.
ALLOW_WITHHELD = Verdict(True, frozenset({AUDIT, WITHHOLD}))
#: A document read without its facts: refused, to be decided again once they are known.
FACTS_NEEDED = Verdict(False, needs_facts=True)


@dataclass(frozen=True)
class Tables:
    """The data the rules consult: matrix rows, classCodes of resource types, document types."""

    rows: Mapping[str, frozenset[str]]
    resource_classes: Mapping[str, str]
    document_types: frozenset[str]

    def readable(self, profession: str | None, specialty: str | None) -> frozenset[str]:
        """The classCodes a profession (with its specialty) reads."""
        if profession is None:
            return frozenset()
        if specialty is not None and f"{profession}/{specialty}" in self.rows:
            return self.rows[f"{profession}/{specialty}"]
        return self.rows.get(profession, frozenset())

    def class_of(self, case: Case) -> str | None:
        """The classCode of what is touched."""
        if case.document is not None and case.document.class_code is not None:
            return case.document.class_code
        return self.resource_classes.get(case.resource_type)


def reference_admit(case: Case) -> Verdict:
    """Decide, on who asks alone, whether ``case`` may go on to the decisions per record (§3.6)."""
    return DENY if case.actor.kind in FORBIDDEN_KINDS else Verdict(True)


def reference_decide(case: Case, tables: Tables) -> Verdict:
    """Decide ``case`` as DESIGN §3 states the rules."""
    actor = case.actor
    on_record = case.patient_id is not None and not case.in_directory
    # §3.6: nobody of these kinds, ever.
    if actor.kind in FORBIDDEN_KINDS:
        return DENY
    # §3.1: a blocked professional gets nothing from the record, whatever the mode.
    if actor.kind == "professional" and on_record and actor.professional_id in case.choices.blocked:
        return DENY
    # A closed record: no professional, in any mode.
    if actor.kind == "professional" and on_record and not case.record_open:
        return DENY
    if case.mode not in KIND_MODES[actor.kind]:
        return DENY
    # Issue 14: an app stays within its patient's record, the patient's grant and its token's
    # scopes, and never changes the patient's choices; within them it is the patient (below).
    if actor.app_id is not None and not _app_within_grant(case, on_record):
        return DENY
    # §5: the journal is read by the patient, their representatives and the DPO; the DPO sees
    # who, when and how but no clinical content, and alone searches every record's journal at once.
    if case.action == "journal":
        if case.all_records:
            return ALLOW_WITHHELD if actor.kind == "dpo" else DENY
        if not on_record:
            return DENY
        if actor.kind == "representative" or case.mode == "representative":
            return ALLOW if case.patient_id in actor.represents else DENY
        if actor.kind == "dpo":
            return ALLOW_WITHHELD
        own = actor.kind == "patient" and actor.patient_id == case.patient_id
        return ALLOW if own else DENY
    # §8: the study registry — administrators register, the DPO approves, nobody else.
    if case.action in ("study-register", "study-approve"):
        registers = case.action == "study-register" and actor.kind == "admin"
        return ALLOW if registers or (case.action == "study-approve" and actor.kind == "dpo") else DENY
    # §3.8: administrators manage keys; neither they nor the DPO read content.
    if actor.kind in ("admin", "dpo"):
        return ALLOW if actor.kind == "admin" and case.action in KEY_ACTIONS else DENY
    if actor.kind == "researcher":
        return DENY
    if case.in_directory:
        allowed = actor.kind in ("patient", "professional") and case.action in DIRECTORY_ACTIONS
        return ALLOW if allowed else DENY
    if case.patient_id is None:
        return _opening(case)
    if actor.kind == "feed":
        return _feed(case, tables)
    if actor.kind == "professional" and case.declares_own_consent:
        # §3.1(a): the professional records the present patient's agreement to their own access.
        declared = case.action == "create" and case.mode == "normal" and actor.professional_id is not None
        return (
            Verdict(True, frozenset({AUDIT, NOTIFY}))
            if declared and not actor.occupational_physician
            else DENY
        )
    if (
        actor.kind == "professional"
        and case.resource_type == "Consent"
        and case.action in ("create", "update", "delete")
    ):
        return DENY  # the patient's choices are written by the patient only
    if actor.kind == "professional":
        return _professional(case, tables)
    if actor.kind == "representative" or case.mode == "representative":
        return _representative(case, tables)
    return _patient(case)


#: The permission letter each interaction needs (SMART v2: c r u d s).
SCOPE_LETTERS = {
    "read": "r",
    "vread": "r",
    "history": "r",
    "journal": "r",
    "search-type": "s",
    "$everything": "s",
    "create": "c",
    "update": "u",
    "delete": "d",
}
#: SMART v1 permission words, as v2 letters.
SCOPE_WORDS = {"read": "rs", "write": "cud", "*": "cruds"}


def scope_allows(scope: str, case: Case) -> bool:
    """Whether one scope string (``patient/<Type|*>.<letters>[?category=<c>]``) covers the case's request."""
    context, _, rest = scope.partition("/")
    body, _, query = rest.partition("?")
    resource_type, _, letters = body.rpartition(".")
    letters = SCOPE_WORDS.get(letters, letters)
    letter = SCOPE_LETTERS.get(case.action)
    if context != "patient" or letter is None or letter not in letters:
        return False
    if resource_type not in ("*", case.resource_type):
        return False
    if query and case.categories is not None:
        return query.removeprefix("category=") in case.categories
    return True


def _app_within_grant(case: Case, on_record: bool) -> bool:
    """An app: its patient's record only, no change of choices, within the grant and its token."""
    actor = case.actor
    if actor.kind != "patient" or not on_record or case.patient_id != actor.patient_id:
        return False
    if case.resource_type == "Consent" and case.action not in READS:
        return False
    if actor.app_id not in case.choices.apps:
        return False
    granted, until = case.choices.apps[actor.app_id]
    if until is not None and case.now > until:
        return False
    if case.action == "$export":  # the kick-off of the patient's own export through the app
        return any(map(_reads_something, granted)) and any(map(_reads_something, actor.app_scopes))
    return any(scope_allows(s, case) for s in granted) and any(
        scope_allows(s, case) for s in actor.app_scopes
    )


def _reads_something(scope: str) -> bool:
    """Whether one scope string reads some resource type of the patient's record."""
    context, _, rest = scope.partition("/")
    letters = rest.partition("?")[0].rpartition(".")[2]
    return context == "patient" and "r" in SCOPE_WORDS.get(letters, letters)


def _opening(case: Case) -> Verdict:
    """A patient without a record opens one that carries their own identifier."""
    actor = case.actor
    opens = (
        actor.kind == "patient"
        and actor.patient_id is None
        and case.opens_own_record
        and case.action == "create"
        and case.resource_type == "Patient"
    )
    return ALLOW if opens else DENY


def _feed(case: Case, tables: Tables) -> Verdict:
    """§3.5: feeds create their registered categories in open records, while the patient lets them;
    they replace or delete only what they wrote (issue 13)."""
    actor, choices, document = case.actor, case.choices, case.document
    own = (
        case.action in ("update", "delete")
        and document is not None
        and actor.feed_id is not None
        and actor.feed_id in document.author_ids
    )
    if (case.action != "create" and not own) or not case.record_open:
        return DENY
    class_code = tables.class_of(case)
    if class_code is None or class_code not in actor.feed_categories:
        return DENY
    names = {class_code}
    if actor.feed_id is not None:
        names.add(actor.feed_id)
    if names & choices.refused_feeds:
        return DENY
    if PROFILE_PARAMETERS[case.profile].feeds_opt_in and not names & choices.accepted_feeds:
        return DENY
    return ALLOW


def _may_enter(case: Case) -> bool:
    """§3.1 and §3.6: whether this professional may enter the record at all, in this mode."""
    actor, choices, mode = case.actor, case.choices, case.mode
    me = actor.professional_id
    if actor.occupational_physician:
        return mode == "normal" and me in choices.occupational_consent
    if me is None:
        return False
    if mode in ("break_glass", "regulation") and case.action not in READS:
        return False
    if mode == "normal":
        if me not in choices.authorisations:
            return False
        status, until = choices.authorisations[me]
        return status == "valid" and (until is None or case.now <= until)
    if mode == "treating":
        return me in choices.treating
    if mode == "break_glass":
        justified = case.justification is not None and case.justification.strip() != ""
        confirmed = case.confirmed_by is not None and case.confirmed_by not in ("", me)
        needs_confirmation = PROFILE_PARAMETERS[case.profile].break_glass_needs_confirmation
        return not choices.opposes_break_glass and justified and (confirmed or not needs_confirmation)
    # The only mode left is regulation.
    return actor.samu_regulator and not choices.opposes_regulation


def _facts_missing(case: Case, tables: Tables) -> bool:
    """Whether a document is read (one instance) without knowing at least its classCode."""
    reads_one = case.action in ("read", "vread") and case.resource_type in tables.document_types
    return reads_one and (case.document is None or case.document.class_code is None)


def _professional(case: Case, tables: Tables) -> Verdict:
    """§3.1-3.3, §3.7: enter, then see only unmasked documents of the classes the matrix allows."""
    actor, document, mode = case.actor, case.document, case.mode
    me = actor.professional_id
    if not _may_enter(case):
        return DENY
    if _facts_missing(case, tables):
        return FACTS_NEEDED
    masked = document is not None and (MASQUE_PS in document.visibility or me in document.masked_from)
    if masked:
        assert document is not None
        is_author = me in document.author_ids
        treating_sees = mode == "treating" and not PROFILE_PARAMETERS[case.profile].masks_bind_treating
        if not (is_author or treating_sees):
            return DENY
    if case.action in READS:
        class_code = tables.class_of(case)
        if class_code is not None and class_code not in tables.readable(actor.profession, actor.specialty):
            return DENY
    if case.action in ("update", "delete") and (document is None or me not in document.author_ids):
        return DENY
    if case.action not in CLINICAL:
        return DENY
    obligations = {AUDIT}
    if mode in ("break_glass", "regulation"):
        obligations |= {NOTIFY, BANNER}
    if mode == "treating" and masked and case.action in READS:
        obligations.add(NOTIFY)
    return Verdict(True, frozenset(obligations))


def _representative(case: Case, tables: Tables) -> Verdict:
    """§3.4: a legal representative manages the records of those they represent, minus hidden documents."""
    document = case.document
    if case.patient_id not in case.actor.represents:
        return DENY
    if _facts_missing(case, tables):
        return FACTS_NEEDED
    if document is not None:
        hidden = {INVISIBLE_PATIENT, INVISIBLE_REPRESENTATIVES} & document.visibility
        if hidden or document.minor_secret:
            return DENY
    return ALLOW if case.action in CLINICAL else DENY


def _patient(case: Case) -> Verdict:
    """The holder reads and writes their own record, minus documents not yet announced to them."""
    # Every other kind was answered above: this is a patient acting as themselves.
    if case.actor.patient_id is None or case.actor.patient_id != case.patient_id:
        return DENY
    if case.document is not None and INVISIBLE_PATIENT in case.document.visibility:
        return DENY
    # The holder's own bulk export (portability) is theirs too.
    return ALLOW if case.action in CLINICAL or case.action == "$export" else DENY
