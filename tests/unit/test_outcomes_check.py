"""The OperationOutcome check the API tests share (tests/outcomes.py) tells an echo from a leak."""

from __future__ import annotations

import httpx

from outcomes import outcome_problems

_BODY = (
    b'{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"not-found",'
    b'"diagnostics":"Immunization/sqlalchemy.url is not known."}]}'
)


def test_an_id_the_client_sent_is_an_echo_not_a_leak() -> None:
    """A message naming the id the request held (a valid FHIR id that looks like a module path) passes."""
    request = httpx.Request("GET", "http://carnet.test/fhir/Immunization/sqlalchemy.url")
    assert outcome_problems(httpx.Response(404, content=_BODY, request=request)) == []


def test_a_module_path_the_client_did_not_send_is_a_leak() -> None:
    """The same message in answer to another request names internals: it is reported."""
    request = httpx.Request("GET", "http://carnet.test/fhir/Immunization/other")
    problems = outcome_problems(httpx.Response(404, content=_BODY, request=request))
    assert problems == ["diagnostics leak internals: 'Immunization/sqlalchemy.url is not known.'"]
