"""The access history told as visits: grouping, plain words in French and English, refusals once."""

from __future__ import annotations

import dataclasses
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from carnet.domain.audit_event import audit_event
from carnet.domain.journal import Entry
from carnet.web import access_visits
from carnet.web.access_visits import Access, Teller, group_visits, order_visits, read_access

PATIENT = "p-1"
ME = "patient:me"
DOCTOR = "810001234567"
START = datetime(2021, 12, 6, 9, 27, tzinfo=UTC)  # a Monday, 10 h 27 in Paris
TITLES = {"d1": "Lettre de liaison", "d2": "Ordonnance", "d3": "Compte rendu de biologie"}
BINARIES = {"b1": "d1", "b2": "d2"}
WEB = Path(access_visits.__file__).parent


def entry(seconds: int, **fields: object) -> Entry:
    """A journal entry of the doctor ``seconds`` after START, with ``fields`` overriding."""
    values: dict[str, object] = {
        "recorded": START + timedelta(seconds=seconds),
        "patient_id": PATIENT,
        "actor_kind": "professional",
        "actor_id": DOCTOR,
        "actor_display": "Dr Ribeiro",
        "actor_profession": "10",
        "actor_specialty": "SM54",
        "action": "read",
        "resource_type": "DocumentReference",
    }
    values.update(fields)
    return Entry(**values)  # type: ignore[arg-type]


def accesses(*entries: Entry) -> list[Access]:
    """The entries as the history reads them: through their AuditEvents."""
    return [read_access(audit_event(f"0-{i}", e), ME) for i, e in enumerate(entries)]


def teller(language: str) -> Teller:
    """A teller knowing three visible documents, in December 2021."""
    return Teller(language, TITLES, BINARIES, START)


def test_a_gp_reading_documents_and_the_profile_is_one_sentence() -> None:
    """Five reads of documents and their contents, and the identity, make one visit told in plain words."""
    visit_entries = [
        entry(0, action="read", resource_type="Patient", targets=(f"Patient/{PATIENT}/_history/1",)),
        entry(5, targets=("DocumentReference/d1/_history/1",)),
        entry(6, resource_type="Binary", targets=("Binary/b1/_history/1",)),
        entry(9, targets=("DocumentReference/d2/_history/1",)),
        entry(10, resource_type="Binary", targets=("Binary/b2/_history/1",)),
        entry(60, targets=("DocumentReference/d3/_history/1",)),
        entry(70, targets=("DocumentReference/hidden/_history/1",)),
        entry(80, targets=("DocumentReference/gone/_history/2",)),
        entry(90, targets=("DocumentReference/other/_history/1",)),
    ]
    visits = group_visits(accesses(*visit_entries))
    assert len(visits) == 1
    french = teller("fr").tell(visits[0])
    assert french.headline == "Dr Ribeiro, médecin généraliste, a consulté 6 documents et votre profil"
    assert french.when == "lundi 6 décembre à 10 h 27 à 10 h 28"
    assert french.documents == ["Lettre de liaison", "Ordonnance", "Compte rendu de biologie"]
    assert french.unnamed == 3
    english = teller("en").tell(visits[0])
    assert english.headline == "Dr Ribeiro, general practitioner, read 6 documents and your profile"
    assert english.when == "Monday 6 December at 10:27 to 10:28"
    assert visits[0].kind == "authorised"


def test_a_refusal_tried_in_two_modes_then_break_glass_is_one_emergency_visit() -> None:
    """The two refused ways in and the break-glass reads that follow are one visit, refusal told once."""
    visit = accesses(
        entry(0, action="search-type", mode="treating", decision="deny", reasons=("not-treating-physician",)),
        entry(1, action="search-type", mode="normal", decision="deny", reasons=("not-authorised",)),
        entry(20, mode="break_glass", justification="Coma", targets=("DocumentReference/d1/_history/1",)),
        entry(25, mode="break_glass", action="$everything", targets=("DocumentReference/d2/_history/1",)),
    )
    [told_visit] = group_visits(visit)
    assert told_visit.kind == "break_glass"
    assert told_visit.justification == "Coma"
    told = teller("fr").tell(told_visit)
    assert told.refusals == [
        "Ce professionnel n'est ni autorisé par vous ni votre médecin traitant : il n'a rien vu."
    ]
    assert told.headline == (
        "Dr Ribeiro, médecin généraliste, a consulté 1 document et la liste de vos documents"
    )
    assert len(told.steps) == 4


def test_emergencies_then_refusals_come_first() -> None:
    """Notable visits are listed first (emergency before refusal), the rest newest first."""
    visits = group_visits(
        accesses(
            entry(0, actor_id="1", mode="break_glass", targets=("DocumentReference/d1/_history/1",)),
            entry(10, actor_id="2", decision="deny", reasons=("blocked",)),
            entry(20, actor_id="3", targets=("DocumentReference/d1/_history/1",)),
            entry(30, actor_id="4", targets=("DocumentReference/d2/_history/1",)),
        )
    )
    notable, others = order_visits(visits)
    assert [v.first.who_id for v in notable] == ["1", "2"]
    assert [v.first.who_id for v in others] == ["4", "3"]
    assert teller("en").tell(notable[1]).headline == "Dr Ribeiro, general practitioner, was refused access"
    assert teller("en").tell(notable[1]).refusals == ["You blocked this professional: they saw nothing."]


def test_a_pause_starts_a_new_visit_and_a_hundred_reads_stay_one() -> None:
    """A hundred reads a few seconds apart are one visit; the same person an hour later is another."""
    many = [entry(i * 5, targets=(f"DocumentReference/d{i % 3 + 1}/_history/1",)) for i in range(100)]
    later = entry(100 * 5 + 3600, targets=("DocumentReference/d1/_history/1",))
    visits = group_visits(accesses(*many, later))
    assert [len(v.accesses) for v in visits] == [1, 100]
    assert teller("en").tell(visits[1]).headline == "Dr Ribeiro, general practitioner, read 3 documents"


def test_another_patient_is_never_named_by_their_record_id() -> None:
    """A refused attempt by someone signed in as another patient names no id, and is explained."""
    stranger = entry(
        0,
        actor_kind="patient",
        actor_id="patient:other-record-42",
        actor_display=None,
        actor_profession=None,
        actor_specialty=None,
        decision="deny",
        reasons=("patient-own-record",),
    )
    [visit] = group_visits(accesses(stranger))
    told = teller("en").tell(visit)
    assert visit.kind == "refused"
    words = [told.headline, told.when, *told.refusals, *(step for _, _, step in told.steps)]
    assert [w for w in words if "other-record-42" in w] == []
    assert told.headline == "Someone signed in as another patient was refused access"
    assert visit.first.actor != "patient:other-record-42"


def test_my_own_visits_are_mine() -> None:
    """The holder's own reading is a visit of kind ``mine``, told with "You"."""
    own = entry(0, actor_kind="patient", actor_id=ME, actor_display=None, mode="patient", action="read")
    [visit] = group_visits(accesses(own))
    assert visit.kind == "mine"
    assert teller("fr").tell(visit).headline.startswith("Vous ")


def test_every_message_of_the_history_has_a_french_translation() -> None:
    """Each message the teller may look up (tables and literal calls) is in the French catalog."""
    french = json.loads((WEB / "locales" / "fr.json").read_text(encoding="utf-8"))
    source = Path(access_visits.__file__).read_text(encoding="utf-8")
    used = {m.group(2) for m in re.finditer(r"""self\._\(\s*(["'])((?:(?!\1).)+)\1""", source)}
    used |= set(access_visits.PROFESSIONS.values()) | set(access_visits.SPECIALTIES.values())
    used |= set(access_visits.REFUSALS.values()) | set(access_visits._WEEKDAYS) | set(access_visits._MONTHS)
    used |= {"added {what}", "changed {what}", "deleted {what}", "{count} documents", "1 document"}
    assert sorted(m for m in used if m not in french) == []


def test_a_declared_consent_is_told_as_such() -> None:
    """A professional recording the patient's consent is told so, not as a read of the profile."""
    declared = entry(
        0, action="$declare-consent", resource_type="Consent", targets=("Consent/c1/_history/1",)
    )
    [visit] = group_visits(accesses(declared, entry(5, targets=("DocumentReference/d1/_history/1",))))
    assert teller("fr").tell(visit).headline == (
        "Dr Ribeiro, médecin généraliste, a consulté 1 document et a enregistré votre accord pour son accès"
    )


def test_a_feed_offer_says_which_class_it_offered_never_what() -> None:
    """A lab's document waiting for the patient ("ask me first"), then a refused one: the class offered, in both languages."""
    offered = entry(
        0,
        actor_kind="feed",
        actor_id="lab-77",
        actor_display="Laboratoire 77",
        actor_profession=None,
        actor_specialty=None,
        action="create",
        mode="feed",
        decision="deny",
        outcome="forbidden",
        reasons=("feed-ask-patient",),
        query="class=10",
    )
    refused = dataclasses.replace(offered, recorded=START + timedelta(seconds=60), reasons=("feed-refused",))
    found = accesses(offered, refused)
    assert [a.offered for a in found] == ["10", "10"]
    (visit,) = group_visits(found)
    assert teller("en").tell(visit).refusals == [
        "You asked to decide first: it waits for your decision in My feeds, not in your record. (offered: Reports)",
        "You refused this feed: nothing was added. (offered: Reports)",
    ]
    assert teller("fr").tell(visit).refusals[1] == (
        "Vous avez refusé cette alimentation : rien n'a été ajouté. (proposé : Comptes rendus)"
    )
