"""The access policy: one pure function deciding every request (DESIGN §3).

``decide(request, grants, profile, now)`` returns a :class:`Decision` naming the rules that
produced it. The default is **deny**. A profile is data: an ordered tuple of rule names and a
few parameters; a rule either abstains (returns ``None``) or returns a verdict, and the first
verdict is final, so deny rules listed before allow rules win. ``admit(request, profile, now)``
applies, before any record is named, the rules that look only at who asks.

The policy is split by concept: the vocabulary of a request (:mod:`carnet.domain.access`), the
patient's grants (:mod:`carnet.domain.grants`), the matrix (:mod:`carnet.domain.matrix`), the
rules (:mod:`carnet.domain.rules`); this module holds the profiles and the two decisions, and
names everything a caller needs.

The rules of the ``fr-dmp`` profile, in order (docs/policy.md explains each with its source and
reasons; ``tests/unit/test_policy_docs.py`` fails when this list, that table and the code differ):

1. ``forbidden-kind`` — Employers, complementary insurers, banks never get in (CSP L1111-18).
2. ``blocked`` — A professional the patient blocked gets nothing from the record, whatever the mode.
3. ``record-closed`` — A closed record (« DMP fermé ») is out of every professional's reach, in every mode.
4. ``mode-for-actor`` — Refuse an access mode that the actor's kind never uses (a patient cannot break the glass).
5. ``app-within-grant`` — An app reaches only its patient's record, within both the patient's grant and its token's scopes.
6. ``journal-readers`` — A record's access journal is read by its patient, their legal representatives and the DPO.
7. ``study-registry`` — Administrators register research studies and the DPO approves them; nobody else does either.
8. ``admin-keys-only`` — Administrators manage keys and never read clinical content; the DPO never reads it either.
9. ``research-study`` — A research export of a record serves an approved study only, on the patient's terms.
10. ``researcher-no-identities`` — Researchers never read a record: they receive pseudonymised extracts (DESIGN §8).
11. ``no-record`` — A request on a record that names none is refused (unless a patient opens their own).
12. ``shared-directory`` — Patients and professionals read and add directory entries (practitioners, organisations…).
13. ``feed-writes-registered`` — Feeds create only their registered categories, in open records, while the patient lets them.
14. ``occupational-consent`` — The médecin du travail reads only with the worker's express consent, in normal mode.
15. ``professional-declares-consent`` — A professional records, in the patient's presence, the patient's agreement to their access.
16. ``choices-belong-to-patient`` — Only the patient (or their representative) writes the patient's choices (Consent resources).
17. ``professional-basis`` — A professional enters a record only if authorised, treating, in break-glass or in regulation.
18. ``representative-basis`` — A legal representative acts only on the records of the patients they represent.
19. ``document-facts-required`` — A professional or representative reads a document only when its metadata is known (fail closed).
20. ``masked-from-professionals`` — ``MASQUE_PS`` hides a document from every professional but its author and the treating physicians.
21. ``authorisation-matrix`` — A professional reads only the classCodes the matrix gives their profession (arrêté 26/10/2023).
22. ``author-changes-own`` — Among professionals, only a document's author updates or deletes it (the patient may too).
23. ``professional-access`` — Allow a professional who passed every check above, with the obligations of the mode.
24. ``invisible-to-patient`` — ``INVISIBLE_PATIENT`` hides a document from the patient and the representatives.
25. ``invisible-to-representatives`` — ``INVISIBLE_REPRESENTANTS_LEGAUX`` and a minor's secret mode hide a document from representatives.
26. ``patient-own-record`` — A patient (titulaire) reads and writes their own record.
27. ``patient-opens-record`` — A patient without a record may open one carrying their own identifier.
28. ``representative-record`` — A legal representative reads and writes the record of a patient they represent.

The ``sovereign`` profile applies the same rules with stricter parameters (masks bind treating
physicians too, break-glass needs a second professional, feeds and research are opt-in).
"""

from __future__ import annotations

from collections.abc import Mapping
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
from carnet.domain.grants import NO_GRANTS, Authorisation, AuthorisationStatus, Grants
from carnet.domain.matrix import CLASS_CODES, MATRIX, Matrix, load_matrix
from carnet.domain.rules import (
    JOURNAL_READER,
    NO_RECORD,
    RULES,
    Context,
    Profile,
    RuleSpec,
    is_research_allowed,
)

__all__ = [
    "ADMITTED",
    "CLASS_CODES",
    "CLINICAL_ACTIONS",
    "DEFAULT_DENY",
    "DIRECTORY_ACTIONS",
    "DIRECTORY_KINDS",
    "DMP_RULES",
    "EMERGENCY_MODES",
    "INSTANCE_READS",
    "JOURNAL_READER",
    "KEY_ACTIONS",
    "MATRIX",
    "MODES",
    "NO_GRANTS",
    "NO_RECORD",
    "PROFILES",
    "READ_ACTIONS",
    "RULES",
    "STUDY_ACTIONS",
    "AccessMode",
    "AccessRequest",
    "Action",
    "Authorisation",
    "AuthorisationStatus",
    "Decision",
    "DocumentFacts",
    "Grants",
    "Matrix",
    "Obligation",
    "Profile",
    "ResearchUse",
    "RuleSpec",
    "Target",
    "Visibility",
    "admit",
    "decide",
    "is_research_allowed",
    "load_matrix",
]

#: The verdict when no rule of the profile has one.
DEFAULT_DENY = Decision(allowed=False, reasons=("default-deny",))
#: The answer of :func:`admit` when no admission rule refuses.
ADMITTED = Decision(allowed=True, reasons=("admitted",))

#: The rules of both DMP profiles, in order: refusals that hold for everyone first, then each
#: family of actors' refusals before its permission. The profiles differ by their parameters.
DMP_RULES: tuple[str, ...] = (
    "forbidden-kind",
    "blocked",
    "record-closed",
    "mode-for-actor",
    "app-within-grant",
    "journal-readers",
    "study-registry",
    "admin-keys-only",
    "research-study",
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
        verdict = RULES[name].check(ctx)
        if verdict is not None:
            return verdict
    return DEFAULT_DENY


def admit(request: AccessRequest, profile: Profile, now: datetime) -> Decision:
    """Decide what can be decided on who asks alone, before any record is named.

    Applies the profile's ``admission`` rules (``forbidden-kind``) to ``request``, whose target
    names no record. Their refusal depends only on the actor, so the caller may answer it (403)
    before looking anything up: it is the same whether what the request names exists or not.
    ``allowed`` (reason ``admitted``, no obligation) only lets the request go on to the
    decisions about each record it touches, which apply the same rules again.
    """
    ctx = Context(request, NO_GRANTS, profile, now)
    for name in profile.admission:
        verdict = RULES[name].check(ctx)
        if verdict is not None and not verdict.allowed:
            return verdict
    return ADMITTED
