"""Lossless JSON for FHIR: decimals keep their digits (``1.50`` stays ``1.50``).

``orjson`` alone would turn ``1.50`` into ``1.5``; FHIR decimals are significant, so values
are parsed with :class:`decimal.Decimal` and written back as the same digits.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import orjson

from carnet.domain.errors import InvalidRequest


def _fragment(value: Any) -> orjson.Fragment:
    if isinstance(value, Decimal):
        return orjson.Fragment(str(value).encode())
    raise TypeError(f"{type(value).__name__} is not JSON")


#: The deepest nesting of objects and arrays accepted. FHIR resources stay far below it; the
#: validator and the serialiser recurse, so deeper input must be refused before they see it.
MAX_DEPTH = 100
_INT64 = 2**63


def _parse_int(text: str) -> int | Decimal:
    # Integers beyond 64 bits become Decimals: orjson cannot write them back as ints, and
    # int() refuses more than 4,300 digits.
    if len(text) < 19:
        return int(text)
    value = Decimal(text)
    return int(value) if -_INT64 <= value < _INT64 else value


def _depth_within(value: Any, limit: int) -> bool:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is None:
            continue
        if depth > limit:
            return False
        stack.extend((child, depth + 1) for child in children)
    return True


def _reject_constant(name: str) -> Any:
    raise InvalidRequest(f"{name} is not a JSON number; FHIR decimals must be finite.")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise InvalidRequest(f"The JSON object has the key {key[:40]!r} twice; send each property once.")
        out[key] = value
    return out


def loads(data: bytes | str) -> Any:
    """Parse JSON, keeping decimals exact.

    Raises:
        InvalidRequest: the bytes are not UTF-8 JSON, an object repeats a key, or the
            nesting is deeper than ``MAX_DEPTH``.
    """
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        parsed = json.loads(
            text,
            parse_float=Decimal,
            parse_int=_parse_int,
            parse_constant=_reject_constant,
            object_pairs_hook=_no_duplicates,
        )
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors.
        raise InvalidRequest(f"The body is not valid JSON ({type(exc).__name__}); send UTF-8 JSON.") from None
    if not _depth_within(parsed, MAX_DEPTH):
        raise InvalidRequest(f"The JSON is nested more than {MAX_DEPTH} levels deep; FHIR needs far fewer.")
    return parsed


def loads_stored(data: bytes) -> Any:
    """Parse JSON that Carnet itself wrote (validated, depth-checked and de-duplicated at intake).

    Decimals stay exact as in :func:`loads`; the checks that guard against hostile input are
    skipped, since opened records are read far more often than they are written.
    """
    return json.loads(data, parse_float=Decimal, parse_int=_parse_int)


def dumps(value: Any) -> bytes:
    """Serialise JSON compactly, writing decimals with their original digits."""
    return orjson.dumps(value, default=_fragment)
