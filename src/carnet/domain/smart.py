"""SMART App Launch 2.x scopes: their grammar, what each allows, and how they narrow.

A clinical scope is ``<context>/<type>.<permissions>[?<param>=<value>]``:

- ``context`` is ``patient`` (the record of the patient in context), ``user`` or ``system``;
- ``type`` is a FHIR resource type or ``*`` (every type);
- ``permissions`` are the letters ``c`` (create), ``r`` (read), ``u`` (update), ``d`` (delete),
  ``s`` (search), in that order (v2), or the v1 words ``read`` (``rs``), ``write`` (``cud``)
  and ``*`` (``cruds``);
- the only parameter Carnet understands is ``category`` (``system|code`` or ``code``): the scope
  then covers only the resources carrying that category (``Observation.category``…). A scope
  with any other parameter is refused rather than widened.

Other scopes carry no data access: ``openid``, ``fhirUser``, ``launch``, ``launch/patient``,
``offline_access``, ``online_access`` (see :data:`CONTEXT_SCOPES`).

An app's access is the intersection of the scopes of its token, the scopes the patient granted
(:mod:`carnet.domain.consent`, kind ``app-grant``) and the policy (``app-within-grant`` in
:mod:`carnet.domain.rules`): :func:`permits` is asked of each.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from carnet.domain.access import Action
from carnet.domain.errors import InvalidRequest

__all__ = [
    "CONTEXT_SCOPES",
    "PERMISSION_LETTERS",
    "Scope",
    "categories_of",
    "covers",
    "narrow",
    "parse_scope",
    "parse_scopes",
    "permits",
    "split_scopes",
]

#: Scopes that grant no data: identity, launch context and refresh-token requests.
CONTEXT_SCOPES = frozenset(
    {"openid", "fhirUser", "profile", "launch", "launch/patient", "offline_access", "online_access"}
)
#: The v2 permission letters, in their required order.
PERMISSION_LETTERS = "cruds"
_V1 = {"read": "rs", "write": "cud", "*": "cruds"}
_SCOPE = re.compile(r"(patient|user|system)/(\*|[A-Z][A-Za-z]{1,63})\.([a-z*]+)(?:\?(.*))?")
#: Which letter each interaction needs.
_LETTER = {
    Action.READ: "r",
    Action.VREAD: "r",
    Action.HISTORY: "r",
    Action.JOURNAL: "r",
    Action.SEARCH: "s",
    Action.EVERYTHING: "s",
    Action.CREATE: "c",
    Action.UPDATE: "u",
    Action.DELETE: "d",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Scope:
    """One clinical scope, parsed: ``context``, ``resource_type`` (or ``*``), permission letters, category."""

    context: str
    resource_type: str
    permissions: frozenset[str]
    category: str | None = None

    def allows(self, action: Action, resource_type: str, categories: frozenset[str] | None) -> bool:
        """Tell whether this scope covers one interaction on one resource type.

        ``categories`` are the resource's categories as ``system|code`` and ``code`` (None when
        the request is about a type, not one resource: a category scope then allows the search,
        whose results are each checked in turn).
        """
        letter = _LETTER.get(action)
        if letter is None or letter not in self.permissions:
            return False
        if self.resource_type not in ("*", resource_type):
            return False
        if self.category is None or categories is None:
            return True
        return self.category in categories

    def within(self, other: Scope) -> bool:
        """Tell whether every access this scope gives is also given by ``other``."""
        return (
            self.context == other.context
            and other.resource_type in ("*", self.resource_type)
            and self.permissions <= other.permissions
            and (other.category is None or other.category == self.category)
        )


def parse_scope(text: str) -> Scope | None:
    """Parse one scope; return None for a scope that grants no data (``openid``, ``launch/patient``…).

    Raises:
        InvalidRequest: not a scope Carnet knows, permission letters out of order or repeated,
            or a parameter other than ``category``.
    """
    if text in CONTEXT_SCOPES:
        return None
    match = _SCOPE.fullmatch(text)
    if match is None:
        raise InvalidRequest(f"The scope {text[:80]!r} is not a SMART scope this server knows.")
    context, resource_type, letters, query = match.groups()
    letters = _V1.get(letters, letters)
    if not letters or not _in_order(letters):
        raise InvalidRequest(
            f"The scope {text[:80]!r} must list its permissions once each in the order c, r, u, d, s."
        )
    category = None
    if query is not None:
        name, _, value = query.partition("=")
        if name != "category" or not value or "&" in value:
            raise InvalidRequest(
                f"The scope {text[:80]!r} has a parameter this server does not apply; only category= is."
            )
        category = value
    return Scope(
        context=context, resource_type=resource_type, permissions=frozenset(letters), category=category
    )


def _in_order(letters: str) -> bool:
    positions = [PERMISSION_LETTERS.find(letter) for letter in letters]
    return all(p >= 0 for p in positions) and positions == sorted(set(positions))


def split_scopes(text: str | None) -> tuple[str, ...]:
    """Split a space-separated scope string into its scopes, without repeats, in order."""
    return tuple(dict.fromkeys((text or "").split()))


def parse_scopes(texts: Iterable[str]) -> tuple[Scope, ...]:
    """Parse several scopes; leave out those that grant no data.

    Raises:
        InvalidRequest: one of them is not a scope this server knows.
    """
    return tuple(scope for scope in map(parse_scope, texts) if scope is not None)


def permits(
    scopes: Iterable[Scope],
    action: Action,
    resource_type: str,
    categories: frozenset[str] | None = None,
    *,
    context: str = "patient",
) -> bool:
    """Tell whether any of ``scopes`` of the given ``context`` covers the interaction."""
    return any(s.context == context and s.allows(action, resource_type, categories) for s in scopes)


def covers(allowed: Iterable[str], wanted: str) -> bool:
    """Tell whether the scope ``wanted`` is within one of ``allowed`` (context scopes by name).

    Raises:
        InvalidRequest: ``wanted`` or one of ``allowed`` is not a scope this server knows.
    """
    scope = parse_scope(wanted)
    if scope is None:
        return wanted in allowed
    return any(scope.within(other) for other in parse_scopes(allowed))


def narrow(requested: Iterable[str], allowed: Iterable[str]) -> tuple[str, ...]:
    """Keep the requested scopes that one of ``allowed`` covers, in the order requested.

    Raises:
        InvalidRequest: a requested scope is not a scope this server knows.
    """
    allowed = tuple(allowed)
    return tuple(text for text in dict.fromkeys(requested) if covers(allowed, text))


def categories_of(resource: object) -> frozenset[str]:
    """Return a resource's categories as a category scope names them: ``system|code`` and ``code``.

    Reads ``category`` (one CodeableConcept or a list of them, as FHIR R4 types differ).
    """
    if not isinstance(resource, dict):
        return frozenset()
    concepts = resource.get("category")
    concepts = concepts if isinstance(concepts, list) else [concepts]
    found: set[str] = set()
    for concept in concepts:
        codings = concept.get("coding") if isinstance(concept, dict) else None
        for coding in codings if isinstance(codings, list) else []:
            code = coding.get("code") if isinstance(coding, dict) else None
            if isinstance(code, str) and code:
                found.add(code)
                system = coding.get("system")
                if isinstance(system, str) and system:
                    found.add(f"{system}|{code}")
    return frozenset(found)
