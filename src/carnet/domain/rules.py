"""The rules of the access policy, each a pure function of one request (DESIGN §3).

A rule reads a :class:`Context` (the request, the patient's grants, the profile, the time) and
either abstains (``None``) or returns a verdict. Each rule is registered with :func:`rule`
under its name, with every reason it may give: the registry :data:`RULES` is what profiles name,
and what ``docs/policy.md`` and the table of :mod:`carnet.domain.policy` are tested against.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType

from carnet.domain.access import (
    CLINICAL_ACTIONS,
    DIRECTORY_ACTIONS,
    DIRECTORY_KINDS,
    EMERGENCY_MODES,
    INSTANCE_READS,
    KEY_ACTIONS,
    MODES,
    READ_ACTIONS,
    STUDY_ACTIONS,
    AccessMode,
    AccessRequest,
    Action,
    Decision,
    DocumentFacts,
    Obligation,
    ResearchUse,
    Target,
    Visibility,
)
from carnet.domain.errors import ConfigurationError, InvalidRequest
from carnet.domain.grants import Grants
from carnet.domain.matrix import MATRIX, Matrix
from carnet.domain.principal import FORBIDDEN_KINDS, ActorKind, Principal
from carnet.domain.smart import Scope, parse_scopes, permits


@dataclass(frozen=True, slots=True, kw_only=True)
class Profile:
    """A policy profile: the ordered rule names it applies and its parameters (data, not code).

    ``masks_bind_treating``: masks (``MASQUE_PS``, named masks) hide from treating physicians too.
    ``break_glass_needs_confirmation``: a break-glass access names a second professional.
    ``feeds_opt_in``: a feed writes only once the patient accepted it (else: until refused).
    ``research_opt_in``: research uses a record only once the patient accepted (else: until refused).
    ``admission``: the rules decided on who asks alone, before any record is named (see
    :func:`carnet.domain.policy.admit`); each is one of ``rules`` too, so that every decision
    about a record applies it as well.
    """

    name: str
    rules: tuple[str, ...]
    admission: tuple[str, ...] = ("forbidden-kind",)
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
        outside = [name for name in self.admission if name not in self.rules]
        if outside:
            raise ConfigurationError(
                f"Profile {self.name!r} admits by rules {outside} that it does not apply; list them in its rules."
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


@dataclass(frozen=True, slots=True, kw_only=True)
class RuleSpec:
    """One rule as data: its name, its check, and every reason its verdicts may give."""

    name: str
    check: Rule
    reasons: frozenset[str]

    @property
    def summary(self) -> str:
        """What the rule says, in one line: the first line of its docstring."""
        return (self.check.__doc__ or "").strip().splitlines()[0]


_REGISTRY: dict[str, RuleSpec] = {}

#: Every rule, by name, in the order they are defined; profiles name them.
RULES: Mapping[str, RuleSpec] = MappingProxyType(_REGISTRY)


def rule(name: str, *reasons: str) -> Callable[[Rule], Rule]:
    """Register a rule under ``name``, with every reason its verdicts may give."""

    def register(check: Rule) -> Rule:
        _REGISTRY[name] = RuleSpec(name=name, check=check, reasons=frozenset(reasons))
        return check

    return register


#: The reason given both for a request naming no record and for an occupational physician's
#: refused access, so that the worker's refusal is never disclosed (Code du travail L4624-8-1).
NO_RECORD = "no-record"
JOURNAL_READER = "journal-reader"


def _deny(reason: str) -> Decision:
    return Decision(allowed=False, reasons=(reason,))


def _allow(reason: str, *extra: Obligation) -> Decision:
    return Decision(allowed=True, reasons=(reason,), obligations=frozenset({Obligation.AUDIT, *extra}))


# -- Rules, in profile order ----------------------------------------------------------------------


@rule("forbidden-kind", "forbidden-kind")
def forbidden_kinds(ctx: Context) -> Decision | None:
    """Employers, complementary insurers, banks never get in (CSP L1111-18)."""
    return _deny("forbidden-kind") if ctx.actor.kind in FORBIDDEN_KINDS else None


@rule("blocked", "blocked", "no-record")
def blocked(ctx: Context) -> Decision | None:
    """A professional the patient blocked gets nothing from the record, whatever the mode.

    An occupational physician is told ``no-record``: the worker's refusal is never disclosed.
    """
    if not ctx.as_professional or ctx.actor.professional_id not in ctx.grants.blocked:
        return None
    return _deny(NO_RECORD if ctx.actor.occupational_physician else "blocked")


@rule("record-closed", "record-closed", "no-record")
def record_closed(ctx: Context) -> Decision | None:
    """A closed record (« DMP fermé ») is out of every professional's reach, in every mode.

    The patient and their representatives still read it (and may reopen it); feeds are refused
    by ``feed-writes-registered``. An occupational physician is told ``no-record``.
    """
    if not ctx.as_professional or ctx.target.record_open:
        return None
    return _deny(NO_RECORD if ctx.actor.occupational_physician else "record-closed")


@rule("mode-for-actor", "mode-not-for-actor")
def mode_for_actor(ctx: Context) -> Decision | None:
    """Refuse an access mode that the actor's kind never uses (a patient cannot break the glass)."""
    return None if ctx.request.mode in MODES.get(ctx.actor.kind, frozenset()) else _deny("mode-not-for-actor")


def _reads_something(scopes: tuple[Scope, ...]) -> bool:
    """Tell whether patient-context ``scopes`` read at least one resource type."""
    return any(scope.context == "patient" and "r" in scope.permissions for scope in scopes)


@rule("app-within-grant", "app-outside-record", "app-not-granted", "app-scope-not-granted", "app-no-choices")
def app_within_grant(ctx: Context) -> Decision | None:
    """An app reaches only its patient's record, within both the patient's grant and its token's scopes.

    The app then goes on as its patient would (the rules below), so that its access is the
    intersection of the patient's grant, the token's scopes and the policy. An app never
    changes the patient's choices (Consent), its own grant included.
    """
    actor, target = ctx.actor, ctx.target
    if actor.app_id is None:
        return None
    if not ctx.on_record or target.patient_id != actor.patient_id or actor.kind is not ActorKind.PATIENT:
        return _deny("app-outside-record")
    if target.resource_type == "Consent" and ctx.request.action not in READ_ACTIONS:
        return _deny("app-no-choices")
    grant = ctx.grants.apps.get(actor.app_id)
    if grant is None or not grant.is_valid(ctx.now):
        return _deny("app-not-granted")
    action, resource_type, categories = ctx.request.action, target.resource_type, target.categories
    try:
        if action is Action.EXPORT:
            # Portability through an app (Patient/$export): the kick-off needs something to read that
            # the grant and the token both give; each resource is then decided as a READ (Gate.visible).
            granted = _reads_something(parse_scopes(grant.scopes))
            asked = _reads_something(parse_scopes(actor.app_scopes))
        else:
            granted = permits(parse_scopes(grant.scopes), action, resource_type, categories)
            asked = permits(parse_scopes(actor.app_scopes), action, resource_type, categories)
    except InvalidRequest:
        return _deny("app-scope-not-granted")  # a scope the server no longer knows grants nothing
    return None if granted and asked else _deny("app-scope-not-granted")


@rule("journal-readers", "journal-reader", "journal-not-for-actor", "no-record")
def journal_readers(ctx: Context) -> Decision | None:
    """A record's access journal is read by its patient, their legal representatives and the DPO.

    The DPO reads who accessed which record, when and how, never the clinical content
    (obligation ``withhold_content``), and is the only one to search every record's journal at
    once (``Target.all_records``); anyone else reads one record's journal at a time.
    """
    if ctx.request.action is not Action.JOURNAL:
        return None
    actor = ctx.actor
    if ctx.target.all_records:
        return (
            _allow(JOURNAL_READER, Obligation.WITHHOLD_CONTENT)
            if actor.kind is ActorKind.DPO
            else _deny(NO_RECORD)
        )
    if not ctx.on_record:
        return _deny(NO_RECORD)
    if ctx.as_representative:
        allowed = ctx.target.patient_id in actor.represents
    elif actor.kind is ActorKind.DPO:
        return _allow(JOURNAL_READER, Obligation.WITHHOLD_CONTENT)
    else:
        allowed = ctx.as_patient_on_own
    return _allow(JOURNAL_READER) if allowed else _deny("journal-not-for-actor")


@rule("study-registry", "admin-registers-studies", "dpo-approves-studies", "study-registry-not-for-actor")
def study_registry(ctx: Context) -> Decision | None:
    """Administrators register research studies and the DPO approves them; nobody else does either."""
    action, kind = ctx.request.action, ctx.actor.kind
    if action not in STUDY_ACTIONS:
        return None
    if action is Action.STUDY_REGISTER and kind is ActorKind.ADMIN:
        return _allow("admin-registers-studies")
    if action is Action.STUDY_APPROVE and kind is ActorKind.DPO:
        return _allow("dpo-approves-studies")
    return _deny("study-registry-not-for-actor")


@rule("admin-keys-only", "admin-manages-keys", "admin-never-reads-content")
def admin_keys_only(ctx: Context) -> Decision | None:
    """Administrators manage keys and never read clinical content; the DPO never reads it either."""
    if ctx.actor.kind not in (ActorKind.ADMIN, ActorKind.DPO):
        return None
    if ctx.request.action in KEY_ACTIONS and ctx.actor.kind is ActorKind.ADMIN:
        return _allow("admin-manages-keys")
    return _deny("admin-never-reads-content")


def is_research_allowed(grants: Grants, profile: Profile, use: ResearchUse | None = None) -> bool:
    """Return True if research may use this record (DESIGN §8).

    The patient's choice about the study itself wins, then their choice about every study;
    without either, the default follows the profile and the study's legal basis: ``fr-dmp``
    lets public-interest studies in until the patient opts out and consent-based ones only once
    they opt in; ``sovereign`` lets no study in before the patient opts in.
    """
    if use is not None:
        if use.study_id in grants.research_opted_out:
            return False
        if use.study_id in grants.research_opted_in:
            return True
    if grants.research_opt_out:
        return False
    if grants.research_opt_in:
        return True
    opt_in = profile.research_opt_in or (use is not None and use.consent_based)
    return not opt_in


@rule("research-study", "research-study", "research-opted-out")
def research_study(ctx: Context) -> Decision | None:
    """A research export of a record serves an approved study only, on the patient's terms."""
    use, request = ctx.target.research, ctx.request
    if ctx.actor.kind is not ActorKind.RESEARCHER or use is None:
        return None
    if request.action is not Action.EXPORT or request.mode is not AccessMode.RESEARCH:
        return None
    if ctx.target.in_directory:
        return None
    if ctx.target.patient_id is None:
        return _allow("research-study")  # the kick-off names no record; each is decided in turn
    if not is_research_allowed(ctx.grants, ctx.profile, use):
        return _deny("research-opted-out")
    return _allow("research-study")


@rule("researcher-no-identities", "researcher-never-reads-identities")
def researcher_no_identities(ctx: Context) -> Decision | None:
    """Researchers never read a record: they receive pseudonymised extracts (DESIGN §8)."""
    return _deny("researcher-never-reads-identities") if ctx.actor.kind is ActorKind.RESEARCHER else None


@rule("no-record", "no-record")
def no_record(ctx: Context) -> Decision | None:
    """A request on a record that names none is refused (unless a patient opens their own)."""
    target = ctx.target
    if target.patient_id is not None or target.in_directory:
        return None
    opening = target.opens_own_record and ctx.actor.kind is ActorKind.PATIENT
    return None if opening else _deny(NO_RECORD)


@rule("shared-directory", "shared-directory", "directory-not-for-actor")
def shared_directory(ctx: Context) -> Decision | None:
    """Patients and professionals read and add directory entries (practitioners, organisations…)."""
    if not ctx.target.in_directory:
        return None
    if ctx.request.action in DIRECTORY_ACTIONS and ctx.actor.kind in DIRECTORY_KINDS:
        return _allow("shared-directory")
    return _deny("directory-not-for-actor")


@rule(
    "feed-writes-registered",
    "feed-registered-category",
    "feed-never-reads",
    "record-closed",
    "feed-category-not-registered",
    "feed-refused",
    "feed-own-document",
    "feed-ask-patient",
)
def feed_writes_registered(ctx: Context) -> Decision | None:
    """Feeds create only their registered categories, in open records, while the patient lets them.

    ``fr-dmp``: a feed writes until the patient refuses it (by feed id or classCode);
    ``sovereign``: only once the patient accepted it. Feeds never read; a feed replaces or
    deletes only a document it wrote itself (its feed id among the document's authors).
    """
    actor, grants = ctx.actor, ctx.grants
    if actor.kind is not ActorKind.FEED:
        return None
    document = ctx.target.document
    own = (
        ctx.request.action in (Action.UPDATE, Action.DELETE)
        and document is not None
        and actor.feed_id is not None
        and actor.feed_id in document.author_ids
    )
    if ctx.request.action is not Action.CREATE and not own:
        return _deny("feed-never-reads")
    if not ctx.target.record_open:
        return _deny("record-closed")
    class_code = ctx.profile.matrix.class_of(ctx.target)
    if class_code is None or class_code not in actor.feed_categories:
        return _deny("feed-category-not-registered")
    names = {class_code} if actor.feed_id is None else {class_code, actor.feed_id}
    if names & grants.refused_feeds:
        return _deny("feed-refused")
    # "Ask me first" (chosen, or the opt-in profile's default): the document waits in the inbox.
    asks = names & grants.asked_feeds or (ctx.profile.feeds_opt_in and not names & grants.accepted_feeds)
    if asks and not own and not (document is not None and document.accepted_by_patient):
        return _deny("feed-ask-patient")
    return _allow("feed-own-document" if own else "feed-registered-category")


@rule("occupational-consent", "no-record")
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


@rule("professional-declares-consent", "professional-declares-consent", "declaration-not-allowed")
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


@rule("choices-belong-to-patient", "choices-belong-to-patient")
def choices_belong_to_patient(ctx: Context) -> Decision | None:
    """Only the patient (or their representative) writes the patient's choices (Consent resources).

    A professional's only write of a Consent is the declaration of their own access above.
    """
    if not ctx.as_professional or ctx.target.resource_type != "Consent":
        return None
    if ctx.request.action in (Action.CREATE, Action.UPDATE, Action.DELETE):
        return _deny("choices-belong-to-patient")
    return None


@rule(
    "professional-basis",
    "professional-id-missing",
    "emergency-reads-only",
    "not-treating-physician",
    "break-glass-opposed",
    "break-glass-justification-missing",
    "break-glass-confirmation-missing",
    "not-a-regulator",
    "regulation-opposed",
    "not-authorised",
    "authorisation-expired",
)
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


@rule("document-facts-required", "document-facts-missing")
def document_facts_required(ctx: Context) -> Decision | None:
    """A professional or representative reads a document only when its metadata is known (fail closed).

    The metadata must give at least the document's classCode, which the matrix needs. The
    refusal says ``needs_facts``: nothing else refused, so the caller may open the document and
    ask again with its facts (every rule after this one needs them to refuse).
    """
    if not (ctx.as_professional or ctx.as_representative) or ctx.request.action not in INSTANCE_READS:
        return None
    if ctx.target.resource_type not in ctx.profile.matrix.document_types:
        return None
    if ctx.document is not None and ctx.document.class_code is not None:
        return None
    return Decision(allowed=False, reasons=("document-facts-missing",), needs_facts=True)


@rule("masked-from-professionals", "masked-from-professionals")
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


@rule("authorisation-matrix", "matrix-denies-class")
def authorisation_matrix(ctx: Context) -> Decision | None:
    """A professional reads only the classCodes the matrix gives their profession (arrêté 26/10/2023)."""
    if not ctx.as_professional or ctx.request.action not in READ_ACTIONS:
        return None
    matrix = ctx.profile.matrix
    class_code = matrix.class_of(ctx.target)
    if class_code is None or class_code in matrix.classes_for(ctx.actor.profession, ctx.actor.specialty):
        return None
    return _deny("matrix-denies-class")


@rule("author-changes-own", "author-only")
def author_changes_own(ctx: Context) -> Decision | None:
    """Among professionals, only a document's author updates or deletes it (the patient may too)."""
    if not ctx.as_professional or ctx.request.action not in (Action.UPDATE, Action.DELETE):
        return None
    document = ctx.document
    if document is not None and ctx.actor.professional_id in document.author_ids:
        return None
    return _deny("author-only")


@rule(
    "professional-access",
    "authorised",
    "treating-physician",
    "break-glass",
    "regulation",
    "occupational-consent",
)
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


@rule("representative-basis", "not-a-representative")
def representative_basis(ctx: Context) -> Decision | None:
    """A legal representative acts only on the records of the patients they represent."""
    if not ctx.as_representative or ctx.target.patient_id in ctx.actor.represents:
        return None
    return _deny("not-a-representative")


@rule("invisible-to-patient", "invisible-to-patient")
def invisible_to_patient(ctx: Context) -> Decision | None:
    """``INVISIBLE_PATIENT`` hides a document from the patient and the representatives.

    It holds until a professional lifts the label (once the news was given in person).
    """
    document = ctx.document
    if document is None or Visibility.INVISIBLE_TO_PATIENT not in document.visibility:
        return None
    return _deny("invisible-to-patient") if ctx.as_patient_on_own or ctx.as_representative else None


@rule("invisible-to-representatives", "invisible-to-representatives")
def invisible_to_representatives(ctx: Context) -> Decision | None:
    """``INVISIBLE_REPRESENTANTS_LEGAUX`` and a minor's secret mode hide a document from representatives."""
    document = ctx.document
    if document is None or not ctx.as_representative:
        return None
    if Visibility.INVISIBLE_TO_REPRESENTATIVES in document.visibility or document.minor_secret:
        return _deny("invisible-to-representatives")
    return None


@rule("patient-own-record", "patient-own-record")
def patient_own_record(ctx: Context) -> Decision | None:
    """A patient (titulaire) reads and writes their own record."""
    # ``$export``: the patient's own bulk export of their record (portability, DESIGN §1).
    if ctx.as_patient_on_own and (
        ctx.request.action in CLINICAL_ACTIONS or ctx.request.action is Action.EXPORT
    ):
        return _allow("patient-own-record")
    return None


@rule("patient-opens-record", "patient-opens-record")
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


@rule("representative-record", "representative-record")
def representative_record(ctx: Context) -> Decision | None:
    """A legal representative reads and writes the record of a patient they represent."""
    # ``representative-basis`` has already refused the records of anyone else.
    if ctx.as_representative and ctx.request.action in CLINICAL_ACTIONS:
        return _allow("representative-record")
    return None
