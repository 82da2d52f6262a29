"""Differentially private answers to a study's aggregate questions (OpenDP), against its ε budget.

A question is a count of the study's cohort, or a histogram of it over given categories. Each
is answered by an OpenDP measurement — the count (or the counts by category) followed by the
discrete Laplace mechanism — whose privacy loss for one patient (``d_in = 1``, each patient
contributes one row) is the ε the question asks for; :func:`spend` refuses a question whose ε
would take the study past its budget, before anything is computed. The ledger itself (who
asked what, when, for how much ε) is kept by the service, one row per answered question.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import opendp.prelude as dp

from carnet.domain.errors import AccessDenied, InvalidRequest

dp.enable_features("contrib")

MIN_EPSILON = 0.001
MAX_CATEGORIES = 200


@dataclass(frozen=True, slots=True, kw_only=True)
class Answer:
    """A released answer: the noisy counts (one per category, a single one for a count) and ε spent."""

    counts: tuple[int, ...]
    epsilon: float
    categories: tuple[str, ...] = ()


def spend(spent: float, budget: float, epsilon: float) -> float:
    """Return the budget spent after a question of ``epsilon``.

    Raises:
        InvalidRequest: ε is not a positive number. AccessDenied: the question would go past the
            study's budget (``privacy-budget-spent``).
    """
    if not MIN_EPSILON <= epsilon <= budget:
        raise InvalidRequest(f"ε must be between {MIN_EPSILON} and the study's budget {budget}.")
    if spent + epsilon > budget + 1e-12:
        raise AccessDenied(
            f"This question needs ε = {epsilon}, and the study has {max(0.0, budget - spent):.4g} left of {budget}.",
            reasons=("privacy-budget-spent",),
        )
    return spent + epsilon


def _scale(epsilon: float, build: object) -> float:
    return float(dp.binary_search_param(build, d_in=1, d_out=epsilon))  # type: ignore[arg-type]


def count(rows: Sequence[str], epsilon: float) -> Answer:
    """Release a count of ``rows`` (one per patient) with ε-differential privacy."""
    domain, metric = dp.vector_domain(dp.atom_domain(T=str)), dp.symmetric_distance()

    def build(scale: float) -> dp.Measurement:
        return cast(dp.Measurement, dp.t.make_count(domain, metric) >> dp.m.then_laplace(scale=scale))

    measurement = build(_scale(epsilon, build))
    return Answer(counts=(int(measurement(list(rows))),), epsilon=float(measurement.map(1)))  # type: ignore[no-untyped-call]


def histogram(rows: Sequence[str], categories: Sequence[str], epsilon: float) -> Answer:
    """Release the counts of ``rows`` in each category (and one for every other value)."""
    names = list(dict.fromkeys(categories))
    if not names or len(names) > MAX_CATEGORIES:
        raise InvalidRequest(f"A histogram names between 1 and {MAX_CATEGORIES} categories.")
    domain, metric = dp.vector_domain(dp.atom_domain(T=str)), dp.symmetric_distance()

    def build(scale: float) -> dp.Measurement:
        counts = dp.t.make_count_by_categories(domain, metric, categories=names)
        return cast(dp.Measurement, counts >> dp.m.then_laplace(scale=scale))

    measurement = build(_scale(epsilon, build))
    released = measurement(list(rows))
    return Answer(
        counts=tuple(int(n) for n in released),
        epsilon=float(measurement.map(1)),  # type: ignore[no-untyped-call]
        categories=(*names, "*"),
    )
