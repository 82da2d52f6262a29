"""The vocabulary of an access question: who asks what, how, on what — and the answer.

:class:`AccessRequest` (an actor, an :class:`Action`, a :class:`Target`, an :class:`AccessMode`)
is what :func:`carnet.domain.policy.decide` is asked; :class:`Decision` is its answer, with the
rules' reasons and the :class:`Obligation` s the caller must honour.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

from carnet.domain.principal import ActorKind, Principal


class Action(StrEnum):
    """What is asked: FHIR interaction codes and named operations."""

    READ = "read"
    VREAD = "vread"
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    HISTORY = "history"
    SEARCH = "search-type"
    EVERYTHING = "$everything"
    KEYS_ROTATE = "keys-rotate"
    PATIENT_SHRED = "patient-shred"
    #: Read a record's access journal (« historique des accès »).
    JOURNAL = "journal"
    #: Extract a record for a registered research study (FHIR Bulk Data ``$export``, DESIGN §8).
    EXPORT = "$export"
    #: Register a research study in the registry (an administrator), approve it (the DPO).
    STUDY_REGISTER = "study-register"
    STUDY_APPROVE = "study-approve"


CLINICAL_ACTIONS = frozenset(
    {
        Action.READ,
        Action.VREAD,
        Action.CREATE,
        Action.UPDATE,
        Action.DELETE,
        Action.HISTORY,
        Action.SEARCH,
        Action.EVERYTHING,
    }
)
READ_ACTIONS = frozenset({Action.READ, Action.VREAD, Action.HISTORY, Action.SEARCH, Action.EVERYTHING})
#: Reads of one resource (whose facts the caller knows), as opposed to searches and histories.
INSTANCE_READS = frozenset({Action.READ, Action.VREAD})
KEY_ACTIONS = frozenset({Action.KEYS_ROTATE, Action.PATIENT_SHRED})
STUDY_ACTIONS = frozenset({Action.STUDY_REGISTER, Action.STUDY_APPROVE})
DIRECTORY_ACTIONS = frozenset({Action.READ, Action.VREAD, Action.HISTORY, Action.SEARCH, Action.CREATE})
DIRECTORY_KINDS = frozenset({ActorKind.PATIENT, ActorKind.PROFESSIONAL})


class AccessMode(StrEnum):
    """How the actor reaches the record."""

    NORMAL = "normal"
    TREATING = "treating"
    BREAK_GLASS = "break_glass"
    REGULATION = "regulation"
    PATIENT = "patient"
    REPRESENTATIVE = "representative"
    FEED = "feed"
    RESEARCH = "research"
    ADMIN = "admin"


#: The modes each kind of actor may use; any other mode is refused (``mode-for-actor``).
MODES: Mapping[ActorKind, frozenset[AccessMode]] = MappingProxyType(
    {
        ActorKind.PATIENT: frozenset({AccessMode.NORMAL, AccessMode.PATIENT, AccessMode.REPRESENTATIVE}),
        ActorKind.REPRESENTATIVE: frozenset({AccessMode.NORMAL, AccessMode.REPRESENTATIVE}),
        ActorKind.PROFESSIONAL: frozenset(
            {AccessMode.NORMAL, AccessMode.TREATING, AccessMode.BREAK_GLASS, AccessMode.REGULATION}
        ),
        # A feed writes only through the feed routes, which set this mode (issue 13, item 6).
        ActorKind.FEED: frozenset({AccessMode.FEED}),
        ActorKind.RESEARCHER: frozenset({AccessMode.NORMAL, AccessMode.RESEARCH}),
        ActorKind.ADMIN: frozenset({AccessMode.NORMAL, AccessMode.ADMIN}),
        ActorKind.DPO: frozenset({AccessMode.NORMAL, AccessMode.ADMIN}),
    }
)
#: Modes in which a professional only reads (mode urgence / accès régulateur).
EMERGENCY_MODES = frozenset({AccessMode.BREAK_GLASS, AccessMode.REGULATION})


class Obligation(StrEnum):
    """What the caller must do when the decision allows."""

    AUDIT = "audit"
    NOTIFY_PATIENT = "notify_patient"
    SHOW_MODE_BANNER = "show_mode_banner"
    #: Show who accessed what, when and how, never the clinical content (the DPO's view of the journal).
    WITHHOLD_CONTENT = "withhold_content"


class Visibility(StrEnum):
    """A document's visibility label (DMP confidentialityCode, TRE_A07 ``1.2.250.1.213.1.1.4.13``)."""

    NORMAL = "N"
    #: « Masqué aux professionnels de santé ».
    MASKED_FROM_PROFESSIONALS = "MASQUE_PS"
    #: « Non visible par le patient » (until a professional has told them).
    INVISIBLE_TO_PATIENT = "INVISIBLE_PATIENT"
    #: « Non visible par les représentants légaux du patient ».
    INVISIBLE_TO_REPRESENTATIVES = "INVISIBLE_REPRESENTANTS_LEGAUX"


@dataclass(frozen=True, slots=True, kw_only=True)
class DocumentFacts:
    """What the policy needs to know of one document (or of any resource that carries such facts).

    ``class_code`` is the DMP classCode; ``author_ids`` the idNat_PS of its authors;
    ``minor_secret`` is set when a minor chose to keep it from their representatives (mode
    secret); ``masked_from`` names professionals the patient masked it from by name.
    """

    class_code: str | None = None
    visibility: frozenset[Visibility] = frozenset()
    author_ids: frozenset[str] = frozenset()
    minor_secret: bool = False
    masked_from: frozenset[str] = frozenset()
    document_id: str | None = None
    #: The patient accepted this feed's document from their inbox (« me demander d'abord »). Set
    #: by the acceptance use case for its own call only, never read from the document itself.
    accepted_by_patient: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class ResearchUse:
    """A registered, approved study that asks to use a record (« étude », DESIGN §8).

    ``study_id`` names the study (the patient's per-study choice names it too);
    ``consent_based`` is True when the study's legal basis is the patient's consent (the
    patient must opt in), False for a public-interest study (the patient may opt out).
    """

    study_id: str
    consent_based: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """What the request touches.

    ``patient_id`` is the record (None for the shared directory); ``opens_own_record`` is True
    when a patient creates the Patient resource that carries their own identifier;
    ``record_open`` is False once the record is closed or suspended; ``document`` carries the
    facts of the document (or resource) read or written, when there is one;
    ``declares_own_consent`` is True when a professional creates the Consent recording that the
    patient, present, agreed to their access (an authorisation or a treating-physician choice
    naming that professional); ``all_records`` is True when the request covers every record at
    once (with ``patient_id`` None: the DPO's search of the whole access journal);
    ``research`` is the approved study a research export of the record is for.
    ``categories`` are the categories of the one resource read or written (``system|code`` and
    ``code``), None when the request is about a type (a search) rather than one resource.
    """

    patient_id: str | None
    resource_type: str
    in_directory: bool = False
    all_records: bool = False
    opens_own_record: bool = False
    record_open: bool = True
    document: DocumentFacts | None = None
    declares_own_consent: bool = False
    research: ResearchUse | None = None
    categories: frozenset[str] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AccessRequest:
    """One question to the policy.

    ``justification`` is the break-glass reason; ``confirmed_by`` the idNat_PS of the second
    professional who confirms a break-glass access (required by the ``sovereign`` profile).
    """

    actor: Principal
    action: Action
    target: Target
    mode: AccessMode = AccessMode.NORMAL
    justification: str | None = None
    confirmed_by: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """The verdict with the rules that produced it.

    ``needs_facts`` marks a refusal given only because the document's facts were not supplied:
    the caller may open the document and ask again with them (``document-facts-required``).
    """

    allowed: bool
    reasons: tuple[str, ...]
    obligations: frozenset[Obligation] = field(default_factory=frozenset)
    needs_facts: bool = False
