"""Bounded exhaustive check: in small worlds, the engine and the reference model agree on every request.

A world is one patient (``p1``, record open or closed), three professionals (a general
practitioner, a pharmacist, and a third physician who is either a SAMU regulator or an
occupational physician) and three documents (a report ``10`` by the GP, a dispensation ``43`` by
the pharmacist, a certificate ``52`` by nobody there). Each test enumerates every combination of
the dimensions it names; a decision depends only on the asking actor's own grants, the patient's
oppositions and the touched document, so the combinations cover every such world.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import product

from carnet.domain.policy import admit, decide
from reference_policy import Actor, Case, Choices, Document, Verdict, reference_admit, reference_decide
from strategies import engine_inputs, policy_tables

TABLES = policy_tables()
PROFILES = ("fr-dmp", "sovereign")

GP = Actor(kind="professional", professional_id="810001", profession="10", specialty="SM54")
PHARMACIST = Actor(kind="professional", professional_id="810002", profession="21")
REGULATOR = Actor(kind="professional", professional_id="810003", profession="10", samu_regulator=True)
OCCUPATIONAL = Actor(
    kind="professional", professional_id="810003", profession="10", occupational_physician=True
)
PROFESSIONALS = (GP, PHARMACIST, REGULATOR, OCCUPATIONAL)
#: (classCode, authors) of the three documents.
DOCUMENTS = (("10", frozenset({"810001"})), ("43", frozenset({"810002"})), ("52", frozenset()))
VISIBILITIES = ("N", "MASQUE_PS", "INVISIBLE_PATIENT", "INVISIBLE_REPRESENTANTS_LEGAUX")
#: Every subset of the four visibility labels.
LABEL_SETS = tuple(
    frozenset(label for label, on in zip(VISIBILITIES, bits, strict=True) if on)
    for bits in product((False, True), repeat=len(VISIBILITIES))
)
#: An authorisation of the asking professional: none, valid (no end, ends later, ends now, ended), expired.
AUTHORISATIONS = (None, ("valid", None), ("valid", 1), ("valid", 0), ("valid", -1), ("expired", None))
#: (mode, justification, confirmed_by) — break-glass with every justification and confirmation.
MODE_VARIANTS = (
    ("normal", None, None),
    ("treating", None, None),
    ("regulation", None, None),
    ("patient", None, None),
    *(
        ("break_glass", justification, confirmer)
        for justification in (None, "  ", "douleur thoracique")
        for confirmer in (None, "self", "810002")
    ),
)
ALL_MODES = (
    "normal",
    "treating",
    "break_glass",
    "regulation",
    "patient",
    "representative",
    "feed",
    "research",
    "admin",
)
ALL_ACTIONS = (
    "read",
    "vread",
    "create",
    "update",
    "delete",
    "history",
    "search-type",
    "$everything",
    "keys-rotate",
    "patient-shred",
    "journal",
)


def _document(
    index: int,
    labels: frozenset[str] = frozenset(),
    *,
    masked_from: frozenset[str] = frozenset(),
    minor_secret: bool = False,
) -> Document:
    class_code, authors = DOCUMENTS[index]
    return Document(
        class_code=class_code,
        visibility=labels,
        author_ids=authors,
        masked_from=masked_from,
        minor_secret=minor_secret,
    )


def _disagreements(cases: Iterable[Case]) -> tuple[int, list[tuple[Case, tuple[str, ...], Verdict]]]:
    """Decide every case both ways; return how many there were and the first disagreements."""
    count, wrong = 0, []
    for case in cases:
        count += 1
        decision = decide(*engine_inputs(case))
        expected = reference_decide(case, TABLES)
        got = Verdict(decision.allowed, frozenset(str(o) for o in decision.obligations), decision.needs_facts)
        if got != expected and len(wrong) < 5:
            wrong.append((case, decision.reasons, expected))
    return count, wrong


def _own_choices(me: str) -> list[Choices]:
    """Every state of one professional's grants, with every pair of the patient's oppositions."""
    return [
        Choices(
            authorisations={me: authorisation} if authorisation else {},
            blocked=frozenset({me}) if blocked else frozenset(),
            treating=frozenset({me}) if treating else frozenset(),
            occupational_consent=frozenset({me}) if consent else frozenset(),
            opposes_break_glass=opposes_break_glass,
            opposes_regulation=opposes_regulation,
        )
        for authorisation, blocked, treating, consent, opposes_break_glass, opposes_regulation in product(
            AUTHORISATIONS, *([(False, True)] * 5)
        )
    ]


def _access_cases() -> Iterator[Case]:
    choices = {actor: _own_choices(str(actor.professional_id)) for actor in PROFESSIONALS}
    for profile, actor, with_document, (mode, justification, confirmer), action in product(
        PROFILES, PROFESSIONALS, (False, True), MODE_VARIANTS, ("read", "create", "update")
    ):
        confirmed_by = actor.professional_id if confirmer == "self" else confirmer
        document = _document(0) if with_document else None
        resource_type = "DocumentReference" if with_document else "Observation"
        for own in choices[actor]:
            yield Case(
                profile=profile,
                actor=actor,
                action=action,
                mode=mode,
                patient_id="p1",
                resource_type=resource_type,
                choices=own,
                document=document,
                justification=justification,
                confirmed_by=confirmed_by,
            )


def test_access_is_exhaustively_the_reference() -> None:
    """Every professional, mode, justification, confirmation, authorisation state, block and opposition."""
    count, wrong = _disagreements(_access_cases())
    assert (count, wrong) == (2 * 4 * 2 * 13 * 3 * 6 * 2**5, [])


def _visibility_cases() -> Iterator[Case]:
    everything = Choices(
        authorisations={
            p.professional_id: ("valid", None) for p in (GP, PHARMACIST, REGULATOR) if p.professional_id
        },
        treating=frozenset({"810001", "810002", "810003"}),
        occupational_consent=frozenset({"810003"}),
    )
    modes = (
        ("normal", None, None),
        ("treating", None, None),
        ("regulation", None, None),
        ("break_glass", "coma", "810001"),
        ("break_glass", "coma", None),
    )
    for profile, actor, index, labels, named, secret, (
        mode,
        justification,
        confirmer,
    ), choices, action in product(
        PROFILES,
        PROFESSIONALS,
        range(len(DOCUMENTS)),
        LABEL_SETS,
        (False, True),
        (False, True),
        modes,
        (everything, Choices()),
        ("read", "update"),
    ):
        masked_from = frozenset({actor.professional_id}) if named and actor.professional_id else frozenset()
        yield Case(
            profile=profile,
            actor=actor,
            action=action,
            mode=mode,
            patient_id="p1",
            resource_type="DocumentReference",
            choices=choices,
            document=_document(index, labels, masked_from=masked_from, minor_secret=secret),
            justification=justification,
            confirmed_by=confirmer,
        )


def test_visibility_is_exhaustively_the_reference() -> None:
    """Every professional on every document under every set of labels, named mask and secret."""
    count, wrong = _disagreements(_visibility_cases())
    assert (count, wrong) == (2 * 4 * 3 * 16 * 2 * 2 * 5 * 2 * 2, [])


HOLDERS = (
    Actor(kind="patient", patient_id="p1"),
    Actor(kind="patient", patient_id="p2"),
    Actor(kind="patient"),
    Actor(kind="representative", represents=frozenset({"p1"})),
    Actor(kind="representative", represents=frozenset({"p2"})),
    Actor(kind="patient", patient_id="p2", represents=frozenset({"p1"})),
)
#: (patient_id, resource_type, in_directory, opens_own_record) of the targets besides documents.
PLACES = (
    ("p1", "Observation", False, False),
    ("p1", "DocumentReference", False, False),
    (None, "Practitioner", True, False),
    (None, "Observation", False, False),
    (None, "Patient", False, True),
    ("p1", "Patient", False, True),
)


def _holder_cases() -> Iterator[Case]:
    for profile, actor, mode, action in product(PROFILES, HOLDERS, ALL_MODES, ALL_ACTIONS):
        for labels, secret in product(LABEL_SETS, (False, True)):
            document = _document(0, labels, minor_secret=secret)
            yield Case(profile, actor, action, mode, "p1", "DocumentReference", document=document)
        for patient_id, resource_type, in_directory, opens in PLACES:
            yield Case(
                profile,
                actor,
                action,
                mode,
                patient_id,
                resource_type,
                in_directory=in_directory,
                opens_own_record=opens,
            )


def test_holders_are_exhaustively_the_reference() -> None:
    """Patients, representatives and patients acting for a child, in every mode, action and place."""
    count, wrong = _disagreements(_holder_cases())
    assert (count, wrong) == (2 * 6 * 9 * 11 * (16 * 2 + 6), [])


FEEDS = (
    Actor(kind="feed", feed_id="cnam", feed_categories=frozenset({"60"})),
    Actor(kind="feed", feed_id="lab", feed_categories=frozenset({"10", "43"})),
    Actor(kind="feed", feed_categories=frozenset({"60"})),
)
FEED_TARGETS = (
    ("p1", "ExplanationOfBenefit", False, None),
    ("p1", "DiagnosticReport", False, _document(0)),
    ("p1", "DocumentReference", False, _document(1)),
    ("p1", "Observation", False, None),
    (None, "Practitioner", True, None),
    (None, "ExplanationOfBenefit", False, None),
)
FEED_NAMES = ("cnam", "lab", "60")


def _subsets(pool: tuple[str, ...]) -> list[frozenset[str]]:
    return [
        frozenset(x for x, on in zip(pool, bits, strict=True) if on)
        for bits in product((0, 1), repeat=len(pool))
    ]


def _feed_cases() -> Iterator[Case]:
    for profile, actor, mode, action, (
        patient_id,
        resource_type,
        in_directory,
        document,
    ), record_open in product(
        PROFILES,
        FEEDS,
        ("normal", "feed", "treating"),
        ("create", "read", "update", "search-type"),
        FEED_TARGETS,
        (True, False),
    ):
        for refused, accepted in product(_subsets(FEED_NAMES), _subsets(FEED_NAMES[::2])):
            yield Case(
                profile,
                actor,
                action,
                mode,
                patient_id,
                resource_type,
                choices=Choices(refused_feeds=refused, accepted_feeds=accepted),
                in_directory=in_directory,
                record_open=record_open,
                document=document,
            )


def test_feeds_are_exhaustively_the_reference() -> None:
    """Every feed, mode, action, target, record state, refusal and acceptance."""
    count, wrong = _disagreements(_feed_cases())
    assert (count, wrong) == (2 * 3 * 3 * 4 * 6 * 2 * 8 * 4, [])


OTHERS = tuple(
    Actor(kind=kind, professional_id="810001", patient_id="p1")
    for kind in (
        "admin",
        "dpo",
        "researcher",
        "employer",
        "bank",
        "complementary_insurer",
        "contract_assessor",
    )
)


def _other_cases() -> Iterator[Case]:
    for profile, actor, mode, action, (patient_id, resource_type, in_directory, _) in product(
        PROFILES, OTHERS, ALL_MODES, ALL_ACTIONS, FEED_TARGETS
    ):
        yield Case(
            profile,
            actor,
            action,
            mode,
            patient_id,
            resource_type,
            choices=Choices(authorisations={"810001": ("valid", None)}, treating=frozenset({"810001"})),
            in_directory=in_directory,
        )


def test_everyone_else_is_exhaustively_the_reference() -> None:
    """Administrators, the DPO, researchers and the forbidden kinds, in every mode, action and place."""
    count, wrong = _disagreements(_other_cases())
    assert (count, wrong) == (2 * 7 * 9 * 11 * 6, [])


ALL_KINDS = (
    "patient",
    "representative",
    "professional",
    "feed",
    "researcher",
    "admin",
    "dpo",
    "employer",
    "bank",
    "complementary_insurer",
    "contract_assessor",
)


def _every_kind_cases(*, all_records: bool = False) -> Iterator[Case]:
    for profile, kind, mode, action in product(PROFILES, ALL_KINDS, ALL_MODES, ALL_ACTIONS):
        actor = Actor(kind=kind, professional_id="810001", patient_id="p1", represents=frozenset({"p1"}))
        yield Case(profile, actor, action, mode, None, "AuditEvent", all_records=all_records)


def test_every_records_journal_is_exhaustively_the_reference() -> None:
    """Every kind, mode and action on every record at once: only the DPO's journal search, content withheld."""
    count, wrong = _disagreements(_every_kind_cases(all_records=True))
    assert (count, wrong) == (2 * 11 * 9 * 11, [])


def test_admission_is_exhaustively_the_reference() -> None:
    """Every kind, mode and action before any record is named: admit agrees with the reference model."""
    count, wrong = 0, []
    for case in _every_kind_cases():
        count += 1
        request, _, profile, now = engine_inputs(case)
        decision = admit(request, profile, now)
        got = Verdict(decision.allowed, frozenset(str(o) for o in decision.obligations), decision.needs_facts)
        if got != reference_admit(case):
            wrong.append(case)
    assert (count, wrong[:5]) == (2 * 11 * 9 * 11, [])
