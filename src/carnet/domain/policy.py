"""The access policy: one pure function deciding every request (DESIGN §3).

``decide(request, grants, profile, now)`` returns a :class:`Decision` naming the rules that
produced it. The default is **deny**. A profile is data: an ordered tuple of rule names and a
few parameters; a rule either abstains (returns ``None``) or returns a verdict, and the first
verdict is final, so deny rules listed before allow rules win.

The rules of the ``fr-dmp`` profile, in order (docs/policy.md explains each with its source):

======================================  ============================================================
rule                                    verdict
======================================  ============================================================
``forbidden-kind``                      employers, complementary insurers, banks… never (§3.6)
``blocked``                             a professional the patient blocked gets nothing (§3.1)
``record-closed``                       a closed record is out of every professional's reach
``mode-for-actor``                      the access mode must be one the actor's kind may use
``journal-readers``                     the patient, their representatives and the DPO read the journal (§5)
``admin-keys-only``                     administrators manage keys; admin and DPO never read (§3.8)
``researcher-no-identities``            researchers never read a record (§3.8)
``no-record``                           a request that names no record
``shared-directory``                    patients and professionals read and add directory entries
``feed-writes-registered``              feeds create their categories in open records (§3.5)
``occupational-consent``                the médecin du travail needs express consent (§3.6)
``professional-basis``                  authorised, treating, break-glass or regulation (§3.1)
``representative-basis``                a representative acts only for those they represent
``document-facts-required``             reading a document needs its metadata
``masked-from-professionals``           ``MASQUE_PS`` hides from all but author/treating (§3.3)
``authorisation-matrix``                profession × classCode (§3.2, matrix.json)
``author-changes-own``                  only the author updates or deletes a document
``professional-access``                 allow, with the obligations of the mode (§3.7)
``invisible-to-patient``                ``INVISIBLE_PATIENT`` hides from patient and representatives
``invisible-to-representatives``        ``INVISIBLE_REPRESENTANTS_LEGAUX`` and a minor's secret (§3.4)
``patient-own-record``                  a patient reads and writes their own record
``patient-opens-record``                a patient opens their own record
``representative-record``               a representative reads and writes the record they manage
======================================  ============================================================

The ``sovereign`` profile applies the same rules with stricter parameters (masks bind treating
physicians too, break-glass needs a second professional, feeds and research are opt-in).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from importlib import resources
from types import MappingProxyType
from typing import Any

from carnet.domain.errors import ConfigurationError
from carnet.domain.principal import FORBIDDEN_KINDS, ActorKind, Principal


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
DIRECTORY_ACTIONS = frozenset({Action.READ, Action.VREAD, Action.HISTORY, Action.SEARCH, Action.CREATE})
DIRECTORY_KINDS = frozenset({ActorKind.PATIENT, ActorKind.PROFESSIONAL})
#: DMP document classes (classCode, TRE_A03-ClasseDocument).
CLASS_CODES = frozenset({"10", "11", "31", "42", "43", "44", "45", "52", "60", "90", "95"})


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
        ActorKind.FEED: frozenset({AccessMode.NORMAL, AccessMode.FEED}),
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


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """What the request touches.

    ``patient_id`` is the record (None for the shared directory); ``opens_own_record`` is True
    when a patient creates the Patient resource that carries their own identifier;
    ``record_open`` is False once the record is closed or suspended; ``document`` carries the
    facts of the document (or resource) read or written, when there is one;
    ``declares_own_consent`` is True when a professional creates the Consent recording that the
    patient, present, agreed to their access (an authorisation or a treating-physician choice
    naming that professional).
    """

    patient_id: str | None
    resource_type: str
    in_directory: bool = False
    opens_own_record: bool = False
    record_open: bool = True
    document: DocumentFacts | None = None
    declares_own_consent: bool = False


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


class AuthorisationStatus(StrEnum):
    """The state of a patient's authorisation of a professional."""

    VALID = "valid"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True, kw_only=True)
class Authorisation:
    """A professional the patient authorised, possibly until a given instant (inclusive)."""

    status: AuthorisationStatus = AuthorisationStatus.VALID
    until: datetime | None = None

    def is_valid(self, now: datetime) -> bool:
        """Return True if the authorisation holds at ``now`` (an ``until`` in the past expires it)."""
        return self.status is AuthorisationStatus.VALID and (self.until is None or now <= self.until)


_NO_AUTHORISATIONS: Mapping[str, Authorisation] = MappingProxyType({})


@dataclass(frozen=True, slots=True, kw_only=True)
class Grants:
    """The patient's choices, read from their Consent resources (see ``carnet.domain.consent``).

    Professionals and feeds are named by id: ``authorisations`` (idNat_PS → authorisation),
    ``blocked`` (professionals refused everything), ``treating`` (médecins traitants and those
    given the same rights), ``occupational_consent`` (médecins du travail the worker expressly
    allowed). ``refused_feeds`` and ``accepted_feeds`` hold feed ids or classCodes.
    """

    authorisations: Mapping[str, Authorisation] = field(default_factory=lambda: _NO_AUTHORISATIONS)
    blocked: frozenset[str] = frozenset()
    treating: frozenset[str] = frozenset()
    opposes_break_glass: bool = False
    opposes_regulation: bool = False
    refused_feeds: frozenset[str] = frozenset()
    accepted_feeds: frozenset[str] = frozenset()
    occupational_consent: frozenset[str] = frozenset()
    research_opt_out: bool = False
    research_opt_in: bool = False


NO_GRANTS = Grants()


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """The verdict with the rules that produced it."""

    allowed: bool
    reasons: tuple[str, ...]
    obligations: frozenset[Obligation] = field(default_factory=frozenset)


# -- The authorisation matrix (data) --------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Matrix:
    """The authorisation matrix: which DMP classCodes each profession (or profession/specialty) reads.

    ``rows`` maps ``"<TRE_G15>"`` or ``"<TRE_G15>/<TRE_R38>"`` to classCodes; a specialty row,
    when present, replaces the profession's row. ``resource_classes`` gives the classCode of
    resource types that are not documents (a MedicationDispense is a dispensation, ``43``);
    ``document_types`` are the types whose reads need :class:`DocumentFacts`.
    """

    version: str
    source: str
    rows: Mapping[str, frozenset[str]]
    resource_classes: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    document_types: frozenset[str] = frozenset()

    def classes_for(self, profession: str | None, specialty: str | None) -> frozenset[str]:
        """Return the classCodes a profession (with its specialty) may read; none if unknown."""
        if profession is None:
            return frozenset()
        if specialty is not None and f"{profession}/{specialty}" in self.rows:
            return self.rows[f"{profession}/{specialty}"]
        return self.rows.get(profession, frozenset())

    def class_of(self, target: Target) -> str | None:
        """Return the classCode of what ``target`` touches: its facts, else its resource type's."""
        if target.document is not None and target.document.class_code is not None:
            return target.document.class_code
        return self.resource_classes.get(target.resource_type)


def _class_codes(value: object, where: str) -> frozenset[str]:
    if not isinstance(value, list) or not all(isinstance(c, str) and c in CLASS_CODES for c in value):
        raise ConfigurationError(
            f"{where} must be a list of DMP classCodes ({', '.join(sorted(CLASS_CODES))})."
        )
    return frozenset(value)


def load_matrix(data: Mapping[str, Any]) -> Matrix:
    """Build a :class:`Matrix` from its JSON form (docs/policy.md shows it).

    ``{"version": str, "source": str, "rows": {key: {"classes": [classCode…], …}},
    "resource_classes": {resource type: classCode}, "document_types": [resource type…]}``;
    other members of a row (``label``, ``confirmed``) document it and are not read.

    Raises:
        ConfigurationError: a member is missing or of the wrong shape, or names an unknown classCode.
    """
    version, source, rows = data.get("version"), data.get("source"), data.get("rows")
    classes, types = data.get("resource_classes", {}), data.get("document_types", [])
    if not (
        isinstance(version, str)
        and isinstance(source, str)
        and isinstance(rows, dict)
        and all(isinstance(row, dict) for row in rows.values())
        and isinstance(classes, dict)
        and isinstance(types, list)
        and all(isinstance(t, str) for t in types)
    ):
        raise ConfigurationError(
            "The matrix needs a string version and source, an object of row objects, an object "
            "resource_classes and a list of document_types; see docs/policy.md."
        )
    parsed = {key: _class_codes(row.get("classes"), f"Matrix row {key!r}") for key, row in rows.items()}
    _class_codes(list(classes.values()), "The values of resource_classes")
    return Matrix(
        version=version,
        source=source,
        rows=MappingProxyType(parsed),
        resource_classes=MappingProxyType(dict(classes)),
        document_types=frozenset(types),
    )


#: The matrix shipped with Carnet (``carnet/domain/matrix.json``), loaded once.
MATRIX = load_matrix(json.loads(resources.files("carnet.domain").joinpath("matrix.json").read_text("utf-8")))


# -- Profiles (data) ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Profile:
    """A policy profile: the ordered rule names it applies and its parameters (data, not code).

    ``masks_bind_treating``: masks (``MASQUE_PS``, named masks) hide from treating physicians too.
    ``break_glass_needs_confirmation``: a break-glass access names a second professional.
    ``feeds_opt_in``: a feed writes only once the patient accepted it (else: until refused).
    ``research_opt_in``: research uses a record only once the patient accepted (else: until refused).
    """

    name: str
    rules: tuple[str, ...]
    masks_bind_treating: bool = False
    break_glass_needs_confirmation: bool = False
    feeds_opt_in: bool = False
    research_opt_in: bool = False
    matrix: Matrix = MATRIX

    def __post_init__(self) -> None:
        unknown = [name for name in self.rules if name not in RULES]
        if unknown:
            raise ConfigurationError(
                f"Profile {self.name!r} names unknown rules {unknown}; see docs/policy.md."
            )


@dataclass(frozen=True, slots=True)
class Context:
    """One request with everything a rule may consult: the patient's grants, the profile, the time."""

    request: AccessRequest
    grants: Grants
    profile: Profile
    now: datetime

    @property
    def actor(self) -> Principal:
        """Who asks."""
        return self.request.actor

    @property
    def target(self) -> Target:
        """What is touched."""
        return self.request.target

    @property
    def document(self) -> DocumentFacts | None:
        """The facts of the document touched, if any."""
        return self.request.target.document

    @property
    def on_record(self) -> bool:
        """Whether the request touches a patient's record (not the directory, not nothing)."""
        return self.target.patient_id is not None and not self.target.in_directory

    @property
    def as_professional(self) -> bool:
        """Whether a professional asks about a record."""
        return self.actor.kind is ActorKind.PROFESSIONAL and self.on_record

    @property
    def as_representative(self) -> bool:
        """Whether a legal representative (or a patient in representative mode) asks about a record."""
        representative = (
            self.actor.kind is ActorKind.REPRESENTATIVE or self.request.mode is AccessMode.REPRESENTATIVE
        )
        return representative and self.on_record

    @property
    def as_patient_on_own(self) -> bool:
        """Whether a patient, as themselves, asks about their own record."""
        actor = self.actor
        return (
            actor.kind is ActorKind.PATIENT
            and self.request.mode is not AccessMode.REPRESENTATIVE
            and actor.patient_id is not None
            and self.on_record
            and self.target.patient_id == actor.patient_id
        )

    @property
    def masked(self) -> bool:
        """Whether the document is masked from this professional (``MASQUE_PS``, or masked by name)."""
        document = self.document
        if document is None:
            return False
        named = self.actor.professional_id in document.masked_from
        return Visibility.MASKED_FROM_PROFESSIONALS in document.visibility or named


Rule = Callable[[Context], Decision | None]

#: The reason given both for a request naming no record and for an occupational physician's
#: refused access, so that the worker's refusal is never disclosed (Code du travail L4624-8-1).
NO_RECORD = "no-record"


def _deny(reason: str) -> Decision:
    return Decision(allowed=False, reasons=(reason,))


def _allow(reason: str, *extra: Obligation) -> Decision:
    return Decision(allowed=True, reasons=(reason,), obligations=frozenset({Obligation.AUDIT, *extra}))


# -- Rules, in profile order ----------------------------------------------------------------------


def forbidden_kinds(ctx: Context) -> Decision | None:
    """Employers, complementary insurers, banks never get in (CSP L1111-18)."""
    return _deny("forbidden-kind") if ctx.actor.kind in FORBIDDEN_KINDS else None


def blocked(ctx: Context) -> Decision | None:
    """A professional the patient blocked gets nothing from the record, whatever the mode.

    An occupational physician is told ``no-record``: the worker's refusal is never disclosed.
    """
    if not ctx.as_professional or ctx.actor.professional_id not in ctx.grants.blocked:
        return None
    return _deny(NO_RECORD if ctx.actor.occupational_physician else "blocked")


def record_closed(ctx: Context) -> Decision | None:
    """A closed record (« DMP fermé ») is out of every professional's reach, in every mode.

    The patient and their representatives still read it (and may reopen it); feeds are refused
    by ``feed-writes-registered``. An occupational physician is told ``no-record``.
    """
    if not ctx.as_professional or ctx.target.record_open:
        return None
    return _deny(NO_RECORD if ctx.actor.occupational_physician else "record-closed")


def mode_for_actor(ctx: Context) -> Decision | None:
    """Refuse an access mode that the actor's kind never uses (a patient cannot break the glass)."""
    return None if ctx.request.mode in MODES.get(ctx.actor.kind, frozenset()) else _deny("mode-not-for-actor")


def journal_readers(ctx: Context) -> Decision | None:
    """A record's access journal is read by its patient, their legal representatives and the DPO.

    The DPO reads who accessed which record, when and how, never the clinical content.
    """
    if ctx.request.action is not Action.JOURNAL:
        return None
    if not ctx.on_record:
        return _deny(NO_RECORD)
    actor = ctx.actor
    if ctx.as_representative:
        allowed = ctx.target.patient_id in actor.represents
    else:
        allowed = ctx.as_patient_on_own or actor.kind is ActorKind.DPO
    return _allow("journal-reader") if allowed else _deny("journal-not-for-actor")


def admin_keys_only(ctx: Context) -> Decision | None:
    """Administrators manage keys and never read clinical content; the DPO never reads it either."""
    if ctx.actor.kind not in (ActorKind.ADMIN, ActorKind.DPO):
        return None
    if ctx.request.action in KEY_ACTIONS and ctx.actor.kind is ActorKind.ADMIN:
        return _allow("admin-manages-keys")
    return _deny("admin-never-reads-content")


def researcher_no_identities(ctx: Context) -> Decision | None:
    """Researchers never read a record: they receive pseudonymised extracts (DESIGN §8)."""
    return _deny("researcher-never-reads-identities") if ctx.actor.kind is ActorKind.RESEARCHER else None


def no_record(ctx: Context) -> Decision | None:
    """A request on a record that names none is refused (unless a patient opens their own)."""
    target = ctx.target
    if target.patient_id is not None or target.in_directory:
        return None
    opening = target.opens_own_record and ctx.actor.kind is ActorKind.PATIENT
    return None if opening else _deny(NO_RECORD)


def shared_directory(ctx: Context) -> Decision | None:
    """Patients and professionals read and add directory entries (practitioners, organisations…)."""
    if not ctx.target.in_directory:
        return None
    if ctx.request.action in DIRECTORY_ACTIONS and ctx.actor.kind in DIRECTORY_KINDS:
        return _allow("shared-directory")
    return _deny("directory-not-for-actor")


def feed_writes_registered(ctx: Context) -> Decision | None:
    """Feeds create only their registered categories, in open records, while the patient lets them.

    ``fr-dmp``: a feed writes until the patient refuses it (by feed id or classCode);
    ``sovereign``: only once the patient accepted it. Feeds never read.
    """
    actor, grants = ctx.actor, ctx.grants
    if actor.kind is not ActorKind.FEED:
        return None
    if ctx.request.action is not Action.CREATE:
        return _deny("feed-never-reads")
    if not ctx.target.record_open:
        return _deny("record-closed")
    class_code = ctx.profile.matrix.class_of(ctx.target)
    if class_code is None or class_code not in actor.feed_categories:
        return _deny("feed-category-not-registered")
    names = {class_code} if actor.feed_id is None else {class_code, actor.feed_id}
    if names & grants.refused_feeds or (ctx.profile.feeds_opt_in and not names & grants.accepted_feeds):
        return _deny("feed-refused")
    return _allow("feed-registered-category")


def occupational_consent(ctx: Context) -> Decision | None:
    """The médecin du travail reads only with the worker's express consent, in normal mode.

    A refusal is reported as ``no-record``, like a record that does not exist.
    """
    if not ctx.as_professional or not ctx.actor.occupational_physician:
        return None
    if ctx.request.mode is AccessMode.NORMAL and ctx.actor.professional_id in ctx.grants.occupational_consent:
        return None
    return _deny(NO_RECORD)


def _basis(ctx: Context) -> str:
    """Name what lets this professional into the record, or ``!reason`` for their refusal."""
    actor, grants, request = ctx.actor, ctx.grants, ctx.request
    professional_id = actor.professional_id
    if professional_id is None:
        return "!professional-id-missing"
    if request.mode in EMERGENCY_MODES and request.action not in READ_ACTIONS:
        return "!emergency-reads-only"
    if request.mode is AccessMode.TREATING:
        return "treating-physician" if professional_id in grants.treating else "!not-treating-physician"
    if request.mode is AccessMode.BREAK_GLASS:
        if grants.opposes_break_glass:
            return "!break-glass-opposed"
        if not (request.justification or "").strip():
            return "!break-glass-justification-missing"
        confirmer = request.confirmed_by
        if ctx.profile.break_glass_needs_confirmation and (not confirmer or confirmer == professional_id):
            return "!break-glass-confirmation-missing"
        return "break-glass"
    if request.mode is AccessMode.REGULATION:
        if not actor.samu_regulator:
            return "!not-a-regulator"
        return "!regulation-opposed" if grants.opposes_regulation else "regulation"
    if actor.occupational_physician:
        return "occupational-consent"  # ``occupational-consent`` checked the consent just before
    authorisation = grants.authorisations.get(professional_id)
    if authorisation is None:
        return "!not-authorised"
    return "authorised" if authorisation.is_valid(ctx.now) else "!authorisation-expired"


def professional_declares_consent(ctx: Context) -> Decision | None:
    """A professional records, in the patient's presence, the patient's agreement to their access.

    As in the DMP, the professional declares that the patient authorised them (or chose them as
    treating physician): the declaration is a Consent naming that professional, in normal mode;
    the patient is notified and may revoke it. A blocked professional never gets here, and an
    occupational physician needs the worker's own express consent instead.
    """
    if not ctx.as_professional or not ctx.target.declares_own_consent:
        return None
    actor = ctx.actor
    if (
        ctx.request.action is not Action.CREATE
        or ctx.request.mode is not AccessMode.NORMAL
        or actor.professional_id is None
        or actor.occupational_physician
    ):
        return _deny("declaration-not-allowed")
    return _allow("professional-declares-consent", Obligation.NOTIFY_PATIENT)


def choices_belong_to_patient(ctx: Context) -> Decision | None:
    """Only the patient (or their representative) writes the patient's choices (Consent resources).

    A professional's only write of a Consent is the declaration of their own access above.
    """
    if not ctx.as_professional or ctx.target.resource_type != "Consent":
        return None
    if ctx.request.action in (Action.CREATE, Action.UPDATE, Action.DELETE):
        return _deny("choices-belong-to-patient")
    return None


def professional_basis(ctx: Context) -> Decision | None:
    """A professional enters a record only if authorised, treating, in break-glass or in regulation.

    (a) normal mode: an authorisation whose status is ``valid`` and whose ``until`` is not past;
    (b) treating mode: one of the patient's treating physicians; (c) break-glass: a justification,
    unless the patient opposed it (and, in ``sovereign``, a second professional's confirmation);
    (d) regulation: a SAMU regulating physician, unless the patient opposed regulation access.
    Break-glass and regulation only read.
    """
    if not ctx.as_professional:
        return None
    basis = _basis(ctx)
    return _deny(basis[1:]) if basis.startswith("!") else None


def document_facts_required(ctx: Context) -> Decision | None:
    """A professional or representative reads a document only when its metadata is known (fail closed).

    The metadata must give at least the document's classCode, which the matrix needs.
    """
    if not (ctx.as_professional or ctx.as_representative) or ctx.request.action not in INSTANCE_READS:
        return None
    if ctx.target.resource_type not in ctx.profile.matrix.document_types:
        return None
    return (
        _deny("document-facts-missing") if ctx.document is None or ctx.document.class_code is None else None
    )


def masked_from_professionals(ctx: Context) -> Decision | None:
    """``MASQUE_PS`` hides a document from every professional but its author and the treating physicians.

    Break-glass and regulation do not lift the mask. Names in ``masked_from`` are masks for
    those professionals only. In ``sovereign``, masks bind treating physicians too.
    """
    document = ctx.document
    if not ctx.as_professional or document is None or not ctx.masked:
        return None
    if ctx.actor.professional_id in document.author_ids:
        return None
    if ctx.request.mode is AccessMode.TREATING and not ctx.profile.masks_bind_treating:
        return None
    return _deny("masked-from-professionals")


def authorisation_matrix(ctx: Context) -> Decision | None:
    """A professional reads only the classCodes the matrix gives their profession (arrêté 26/10/2023)."""
    if not ctx.as_professional or ctx.request.action not in READ_ACTIONS:
        return None
    matrix = ctx.profile.matrix
    class_code = matrix.class_of(ctx.target)
    if class_code is None or class_code in matrix.classes_for(ctx.actor.profession, ctx.actor.specialty):
        return None
    return _deny("matrix-denies-class")


def author_changes_own(ctx: Context) -> Decision | None:
    """Among professionals, only a document's author updates or deletes it (the patient may too)."""
    if not ctx.as_professional or ctx.request.action not in (Action.UPDATE, Action.DELETE):
        return None
    document = ctx.document
    if document is not None and ctx.actor.professional_id in document.author_ids:
        return None
    return _deny("author-only")


def professional_access(ctx: Context) -> Decision | None:
    """Allow a professional who passed every check above, with the obligations of the mode.

    Break-glass and regulation notify the patient and show the mode banner; a treating
    physician's read of a masked document notifies the patient.
    """
    if not ctx.as_professional or ctx.request.action not in CLINICAL_ACTIONS:
        return None
    mode = ctx.request.mode
    obligations: set[Obligation] = set()
    if mode in EMERGENCY_MODES:
        obligations |= {Obligation.NOTIFY_PATIENT, Obligation.SHOW_MODE_BANNER}
    if mode is AccessMode.TREATING and ctx.request.action in READ_ACTIONS and ctx.masked:
        obligations.add(Obligation.NOTIFY_PATIENT)
    return _allow(_basis(ctx), *obligations)


def representative_basis(ctx: Context) -> Decision | None:
    """A legal representative acts only on the records of the patients they represent."""
    if not ctx.as_representative or ctx.target.patient_id in ctx.actor.represents:
        return None
    return _deny("not-a-representative")


def invisible_to_patient(ctx: Context) -> Decision | None:
    """``INVISIBLE_PATIENT`` hides a document from the patient and the representatives.

    It holds until a professional lifts the label (once the news was given in person).
    """
    document = ctx.document
    if document is None or Visibility.INVISIBLE_TO_PATIENT not in document.visibility:
        return None
    return _deny("invisible-to-patient") if ctx.as_patient_on_own or ctx.as_representative else None


def invisible_to_representatives(ctx: Context) -> Decision | None:
    """``INVISIBLE_REPRESENTANTS_LEGAUX`` and a minor's secret mode hide a document from representatives."""
    document = ctx.document
    if document is None or not ctx.as_representative:
        return None
    if Visibility.INVISIBLE_TO_REPRESENTATIVES in document.visibility or document.minor_secret:
        return _deny("invisible-to-representatives")
    return None


def patient_own_record(ctx: Context) -> Decision | None:
    """A patient (titulaire) reads and writes their own record."""
    if ctx.as_patient_on_own and ctx.request.action in CLINICAL_ACTIONS:
        return _allow("patient-own-record")
    return None


def patient_opens_record(ctx: Context) -> Decision | None:
    """A patient without a record may open one carrying their own identifier."""
    actor, target = ctx.actor, ctx.target
    if (
        actor.kind is ActorKind.PATIENT
        and actor.patient_id is None
        and target.patient_id is None
        and ctx.request.action is Action.CREATE
        and target.resource_type == "Patient"
        and target.opens_own_record
    ):
        return _allow("patient-opens-record")
    return None


def representative_record(ctx: Context) -> Decision | None:
    """A legal representative reads and writes the record of a patient they represent."""
    # ``representative-basis`` has already refused the records of anyone else.
    if ctx.as_representative and ctx.request.action in CLINICAL_ACTIONS:
        return _allow("representative-record")
    return None


RULES: Mapping[str, Rule] = MappingProxyType(
    {
        "forbidden-kind": forbidden_kinds,
        "blocked": blocked,
        "record-closed": record_closed,
        "mode-for-actor": mode_for_actor,
        "journal-readers": journal_readers,
        "admin-keys-only": admin_keys_only,
        "researcher-no-identities": researcher_no_identities,
        "no-record": no_record,
        "shared-directory": shared_directory,
        "feed-writes-registered": feed_writes_registered,
        "occupational-consent": occupational_consent,
        "professional-declares-consent": professional_declares_consent,
        "choices-belong-to-patient": choices_belong_to_patient,
        "professional-basis": professional_basis,
        "representative-basis": representative_basis,
        "document-facts-required": document_facts_required,
        "masked-from-professionals": masked_from_professionals,
        "authorisation-matrix": authorisation_matrix,
        "author-changes-own": author_changes_own,
        "professional-access": professional_access,
        "invisible-to-patient": invisible_to_patient,
        "invisible-to-representatives": invisible_to_representatives,
        "patient-own-record": patient_own_record,
        "patient-opens-record": patient_opens_record,
        "representative-record": representative_record,
    }
)

#: The rules of both DMP profiles, in order: refusals that hold for everyone first, then each
#: family of actors' refusals before its permission. The profiles differ by their parameters.
DMP_RULES: tuple[str, ...] = (
    "forbidden-kind",
    "blocked",
    "record-closed",
    "mode-for-actor",
    "journal-readers",
    "admin-keys-only",
    "researcher-no-identities",
    "no-record",
    "shared-directory",
    "feed-writes-registered",
    "occupational-consent",
    "professional-declares-consent",
    "choices-belong-to-patient",
    "professional-basis",
    "representative-basis",
    "document-facts-required",
    "masked-from-professionals",
    "authorisation-matrix",
    "author-changes-own",
    "professional-access",
    "invisible-to-patient",
    "invisible-to-representatives",
    "patient-own-record",
    "patient-opens-record",
    "representative-record",
)

PROFILES: Mapping[str, Profile] = MappingProxyType(
    {
        "fr-dmp": Profile(name="fr-dmp", rules=DMP_RULES),
        "sovereign": Profile(
            name="sovereign",
            rules=DMP_RULES,
            masks_bind_treating=True,
            break_glass_needs_confirmation=True,
            feeds_opt_in=True,
            research_opt_in=True,
        ),
    }
)


def decide(request: AccessRequest, grants: Grants, profile: Profile, now: datetime) -> Decision:
    """Decide one request: the first rule of the profile with a verdict wins; otherwise deny."""
    ctx = Context(request, grants, profile, now)
    for name in profile.rules:
        verdict = RULES[name](ctx)
        if verdict is not None:
            return verdict
    return _deny("default-deny")


def is_research_allowed(grants: Grants, profile: Profile) -> bool:
    """Return True if research may use this record: opt-out in ``fr-dmp``, opt-in in ``sovereign``."""
    if grants.research_opt_out:
        return False
    return grants.research_opt_in or not profile.research_opt_in
