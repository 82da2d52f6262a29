"""Checks on error responses shared by the API tests: every refusal is a clean FHIR OperationOutcome."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import unquote

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
    sent = _sent(response)
    for issue in issues:
        diagnostics = str(issue.get("diagnostics", "")) if isinstance(issue, dict) else ""
        # A message may echo what the client sent (an id such as ``sqlalchemy.url`` is a valid
        # FHIR id): only what the request did not hold is a leak.
        if any(match.group() not in sent for match in _LEAKS.finditer(diagnostics)):
            problems.append(f"diagnostics leak internals: {diagnostics[:200]!r}")
    return problems


def _sent(response: httpx.Response) -> str:
    """The request's URL (decoded) and body, as text: what an error message may rightly echo."""
    try:
        request = response.request
    except RuntimeError:  # a response built by hand has no request
        return ""
    body = request.content.decode("utf-8", "replace") if request.content else ""
    return f"{unquote(str(request.url))} {body}"


def assert_outcome(response: httpx.Response, status: int) -> dict[str, Any]:
    """Assert ``response`` has ``status`` and a clean OperationOutcome body; return its first issue."""
    assert response.status_code == status, response.text[:500]
    assert outcome_problems(response) == []
    issue: dict[str, Any] = response.json()["issue"][0]
    return issue
