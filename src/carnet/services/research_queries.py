"""Aggregate questions of a study, answered with differential privacy against its ε budget.

A question (wire format, JSON)::

    {"kind": "count", "code": "http://loinc.org|29463-7", "epsilon": 0.1}
    {"kind": "histogram", "by": "sex" | "age", "categories": ["female", "male"], "epsilon": 0.2}

counts the study's cohort — the records the policy lets into the study, so an opted-out patient
is in no answer — optionally only those holding ``code``, or splits it by sex or 10-year age
band (one value per patient: each patient changes one row, the privacy unit OpenDP is told). The budget is checked before the cohort is walked and spent in the transaction that
appends the question to the study's ledger; the answer is released only once that row is
committed. A question that would take the study past its budget is refused (403).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from carnet.domain.errors import Conflict, InvalidRequest
from carnet.domain.principal import Principal
from carnet.research import kanon, privacy
from carnet.research.deidentify import clinical_tokens
from carnet.research.study import Study
from carnet.services.ports import Store
from carnet.services.record_types import Stored
from carnet.services.research_export import ResearchExports
from carnet.services.research_ports import LedgerRow
from carnet.services.research_studies import StudyRegistry, research

Clock = Callable[[], datetime]
#: What a histogram splits by: one value per patient, so each patient changes one row (d_in = 1).
_BY = frozenset({"sex", "age"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Question:
    """A parsed aggregate question."""

    kind: str
    epsilon: float
    code: str | None = None
    by: str | None = None
    categories: tuple[str, ...] = ()

    def describe(self) -> str:
        """The question as kept in the ledger (canonical JSON)."""
        data: dict[str, Any] = {"kind": self.kind, "epsilon": self.epsilon}
        if self.code:
            data["code"] = self.code
        if self.by:
            data["by"] = self.by
            data["categories"] = list(self.categories)
        return orjson.dumps(data, option=orjson.OPT_SORT_KEYS).decode()


def parse_question(data: object) -> Question:
    """Read a question (the wire format of the module docstring).

    Raises:
        InvalidRequest: an unknown kind, a bad ε, code, grouping or categories.
    """
    if not isinstance(data, Mapping):
        raise InvalidRequest("A question is a JSON object.")
    kind = data.get("kind")
    epsilon = data.get("epsilon")
    if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)):
        raise InvalidRequest("A question names the ε it spends ('epsilon', a number).")
    code = data.get("code")
    if code is not None and (not isinstance(code, str) or "|" not in code):
        raise InvalidRequest("'code' is a FHIR token 'system|code'.")
    if kind == "count":
        return Question(kind="count", epsilon=float(epsilon), code=code)
    if kind != "histogram":
        raise InvalidRequest("'kind' is 'count' or 'histogram'.")
    by, categories = data.get("by"), data.get("categories")
    if by not in _BY:
        raise InvalidRequest("A histogram is 'by' 'sex' or 'age'.")
    if not isinstance(categories, list) or not all(isinstance(c, str) for c in categories):
        raise InvalidRequest("A histogram lists its 'categories' (texts).")
    return Question(
        kind="histogram", epsilon=float(epsilon), code=code, by=str(by), categories=tuple(categories)
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Released:
    """A released answer and the budget left after it."""

    answer: privacy.Answer
    spent: float
    budget: float


class ResearchQueries:
    """Answers a study's aggregate questions (see the module docstring)."""

    def __init__(
        self, *, store: Store, registry: StudyRegistry, exports: ResearchExports, clock: Clock
    ) -> None:
        self._store = store
        self._registry = registry
        self._exports = exports
        self._clock = clock

    def ledger(self, study_id: str) -> list[LedgerRow]:
        """Return the study's ledger (auditable: every answered question, by whom, for how much ε)."""
        self._registry.get(study_id)
        with self._store.session() as session:
            return research(session).ledger(study_id)

    def ask(self, actor: Principal, study_id: str, question: Question) -> Released:
        """Answer one question, spending its ε from the study's budget.

        Raises:
            NotFound: no such study. AccessDenied: not approved, out of period, not a researcher,
                or past the budget (``privacy-budget-spent``). InvalidRequest: a bad question.
        """
        study = self._registry.get(study_id)
        study.check_open(self._clock().date())
        self._exports.admit(actor, study)
        budget = study.privacy.epsilon
        privacy.spend(self._spent(study_id), budget, question.epsilon)  # refuse before walking the cohort
        rows = self._rows(actor, study, question)
        for _ in range(3):
            try:
                with self._store.session(write=True) as session:
                    ledger = research(session).ledger(study_id)
                    spent = privacy.spend(sum(r.epsilon for r in ledger), budget, question.epsilon)
                    if question.kind == "count":
                        answer = privacy.count(rows, question.epsilon)
                    else:
                        answer = privacy.histogram(rows, question.categories, question.epsilon)
                    research(session).add_ledger(
                        LedgerRow(
                            study_id=study_id,
                            seq=len(ledger) + 1,
                            asked_at=self._clock(),
                            asked_by=actor.subject,
                            question=question.describe(),
                            epsilon=answer.epsilon,
                        )
                    )
                return Released(answer=answer, spent=spent, budget=budget)
            except Conflict:
                continue
        raise Conflict("The study's ledger is busy; ask again.")

    def _spent(self, study_id: str) -> float:
        with self._store.session() as session:
            return sum(row.epsilon for row in research(session).ledger(study_id))

    def _rows(self, actor: Principal, study: Study, question: Question) -> list[str]:
        """One row per patient of the cohort (who holds ``code`` if asked): the value grouped by."""
        today = self._clock().date()
        rows: list[str] = []
        for _, opened in self._exports.cohort(actor, study):
            if opened is None:
                continue
            held = _held(opened)
            if question.code is not None and question.code not in held:
                continue
            patient = next((s.resource for s in opened if s.resource_type == "Patient"), None)
            if patient is None:
                continue
            traits = kanon.traits_of(patient)
            if question.by == "sex":
                rows.append(traits.sex or "unknown")
            elif question.by == "age":
                rows.append(kanon.generalise(traits, 1, today).age)
            else:
                rows.append("1")
        return rows


def _held(opened: list[Stored]) -> set[str]:
    held: set[str] = set()
    for stored in opened:
        if stored.resource is not None:
            held |= clinical_tokens(stored.resource)
    return held
