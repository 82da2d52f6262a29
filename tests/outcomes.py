"""Checks on error responses shared by the API tests: every refusal is a clean FHIR OperationOutcome."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx

#: What leaks when an exception escapes: a traceback, a source line, a Python class or module path.
_LEAKS = re.compile(
    r"Traceback|File \"|line \d+, in|<class '|<module"
    r"|\b(?:carnet|fastapi|starlette|pydantic|pydantic_core|sqlalchemy|psycopg|sqlite3|orjson|builtins"
    r"|fhir\.resources|json\.decoder|jwt|anyio)\.\w"
)


def outcome_problems(response: httpx.Response) -> list[str]:
    """Return what is wrong with ``response`` as an OperationOutcome (empty when it is a good one)."""
    try:
        body: Any = json.loads(response.content)
    except ValueError:
        return [f"the body is not JSON: {response.content[:120]!r}"]
    if not isinstance(body, dict) or body.get("resourceType") != "OperationOutcome":
        return [f"the body is not an OperationOutcome: {response.text[:120]!r}"]
    issues = body.get("issue")
    if not isinstance(issues, list) or not issues or not isinstance(issues[0], dict):
        return ["the OperationOutcome has no issue"]
    problems = []
    for field in ("severity", "code", "diagnostics"):
        if not isinstance(issues[0].get(field), str) or not issues[0][field]:
            problems.append(f"issue[0].{field} is missing")
    for issue in issues:
        diagnostics = str(issue.get("diagnostics", "")) if isinstance(issue, dict) else ""
        if _LEAKS.search(diagnostics):
            problems.append(f"diagnostics leak internals: {diagnostics[:200]!r}")
    return problems


def assert_outcome(response: httpx.Response, status: int) -> dict[str, Any]:
    """Assert ``response`` has ``status`` and a clean OperationOutcome body; return its first issue."""
    assert response.status_code == status, response.text[:500]
    assert outcome_problems(response) == []
    issue: dict[str, Any] = response.json()["issue"][0]
    return issue
