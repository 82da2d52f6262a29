"""The rule tables are the code: the policy's docstring and docs/policy.md list exactly its rules.

A rule added, removed, renamed or reordered without its row — or a reason a rule gives that its
row does not name — fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

from carnet.domain import policy
from carnet.domain.policy import DMP_RULES, PROFILES, RULES

DOCS = Path(__file__).resolve().parents[2] / "docs" / "policy.md"


def _docstring_rows() -> list[tuple[str, str]]:
    """The ``N. ``rule`` — summary`` lines of the policy module's docstring, in order."""
    rows = re.findall(r"^(\d+)\. ``([a-z-]+)`` — (.+)$", policy.__doc__ or "", flags=re.MULTILINE)
    assert [int(n) for n, _, _ in rows] == list(range(1, len(rows) + 1))
    return [(name, summary) for _, name, summary in rows]


def _docs_rows() -> list[tuple[str, frozenset[str]]]:
    """The rows of the rule table of docs/policy.md: the rule and the reasons it names."""
    text = DOCS.read_text("utf-8")
    table = text[text.index("## The rules of `fr-dmp`, in order") :]
    rows: list[tuple[str, frozenset[str]]] = []
    for line in table.splitlines()[4:]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows.append((cells[1].strip("`"), frozenset(re.findall(r"`([a-z-]+)`", cells[4]))))
    return rows


def test_the_docstring_lists_every_rule_in_profile_order() -> None:
    """The policy's docstring lists the fr-dmp rules in order, each with its rule's own summary line."""
    assert _docstring_rows() == [(name, RULES[name].summary) for name in DMP_RULES]


def test_docs_list_every_rule_in_profile_order_with_its_reasons() -> None:
    """docs/policy.md has one row per fr-dmp rule, in order, naming exactly the reasons the rule may give."""
    assert _docs_rows() == [(name, RULES[name].reasons) for name in DMP_RULES]


def test_every_registered_rule_is_in_the_profiles() -> None:
    """No rule is registered that the shipped profiles do not apply (a rule without a row cannot hide)."""
    assert set(RULES) == set(DMP_RULES) == set(PROFILES["sovereign"].rules)


def test_admission_rules_are_documented() -> None:
    """docs/policy.md names the rules the profiles apply before any record is named."""
    text = DOCS.read_text("utf-8")
    for profile in PROFILES.values():
        for name in profile.admission:
            assert f"`{name}`" in text[text.index("## Before any record: admission") :]
