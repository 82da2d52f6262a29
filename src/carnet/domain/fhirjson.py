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
        InvalidRequest: the bytes are not UTF-8 JSON, or an object repeats a key.
    """
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        return json.loads(
            text, parse_float=Decimal, parse_constant=_reject_constant, object_pairs_hook=_no_duplicates
        )
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise InvalidRequest(f"The body is not valid JSON ({type(exc).__name__}); send UTF-8 JSON.") from None


def dumps(value: Any) -> bytes:
    """Serialise JSON compactly, writing decimals with their original digits."""
    return orjson.dumps(value, default=_fragment)
