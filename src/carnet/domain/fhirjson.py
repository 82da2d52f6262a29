"""Lossless JSON for FHIR: decimals keep their digits (``1.50`` stays ``1.50``).

``orjson`` alone would turn ``1.50`` into ``1.5``; FHIR decimals are significant, so values
are parsed with :class:`decimal.Decimal` and written back as the same digits.

Input is checked in one cheap pass over the parsed JSON, before any model validation, so that
what Carnet stores always reads back with a standard JSON parser and hostile bodies are refused
before the expensive work:

- nesting at most :attr:`Limits.max_depth` levels (400 Bad Request);
- at most :attr:`Limits.max_elements` JSON values in the body, :attr:`Limits.max_resource_elements`
  in one resource (each entry's, in a Bundle) and :attr:`Limits.max_bundle_entries` entries in
  a Bundle (413 Payload Too Large, checked before the full walk for the entries);
- strings and keys are Unicode text: no lone UTF-16 surrogate (400), and no control character
  other than tab, CR and LF, which FHIR strings forbid (422);
- numbers fit a double and FHIR's bounded precision: at most :data:`MAX_DIGITS` significant
  digits and a decimal exponent within ±:data:`MAX_EXPONENT` (422, naming the element).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson

from carnet.domain.errors import InvalidRequest, InvalidResource, PayloadTooLarge


def _fragment(value: Any) -> orjson.Fragment:
    if isinstance(value, Decimal):
        return orjson.Fragment(str(value).encode())
    raise TypeError(f"{type(value).__name__} is not JSON")


#: The deepest nesting of objects and arrays accepted. FHIR resources stay far below it; the
#: validator and the serialiser recurse, so deeper input must be refused before they see it.
MAX_DEPTH = 100
#: The most JSON values (objects, arrays, strings, numbers…) in one body, by default: the
#: largest Synthea patient Bundle holds 55,397, its largest resource 1,895.
MAX_ELEMENTS = 200_000
#: The most JSON values in one resource, by default.
MAX_RESOURCE_ELEMENTS = 20_000
#: The most entries of a Bundle, by default (the largest Synthea Bundle has 952).
MAX_BUNDLE_ENTRIES = 1000
#: The most significant digits of a number: FHIR decimals need 18 (XML Schema); room is left
#: for values that were computed, never for a 100,000-digit number.
MAX_DIGITS = 32
#: The largest decimal exponent (by magnitude) of a number: beyond it a double is infinite or zero.
MAX_EXPONENT = 307
_INT64 = 2**63
_INT_BOUND = 10**MAX_DIGITS
#: Characters no FHIR string may hold: C0 controls except tab, LF, CR; lone surrogates.
_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff]")
_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """How large and deep a JSON body may be (``CARNET_MAX_DEPTH``, ``CARNET_MAX_ELEMENTS``,
    ``CARNET_MAX_RESOURCE_ELEMENTS``, ``CARNET_MAX_BUNDLE_ENTRIES``)."""

    max_depth: int = MAX_DEPTH
    max_elements: int = MAX_ELEMENTS
    max_resource_elements: int = MAX_RESOURCE_ELEMENTS
    max_bundle_entries: int = MAX_BUNDLE_ENTRIES


DEFAULT_LIMITS = Limits()


def _parse_int(text: str) -> int | Decimal:
    # Integers beyond 64 bits become Decimals: orjson cannot write them back as ints, and
    # int() refuses more than 4,300 digits.
    if len(text) < 19:
        return int(text)
    value = Decimal(text)
    return int(value) if -_INT64 <= value < _INT64 else value


def _reject_constant(name: str) -> Any:
    raise InvalidRequest(f"{name} is not a JSON number; FHIR decimals must be finite.")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise InvalidRequest(f"The JSON object has the key {key[:40]!r} twice; send each property once.")
        out[key] = value
    return out


def is_number_in_range(value: Decimal | int) -> bool:
    """Whether a number fits FHIR's bounded precision and a finite, non-vanishing double."""
    if isinstance(value, int):
        return bool(-_INT_BOUND < value < _INT_BOUND)
    if not value.is_finite():
        return False
    if value.is_zero():
        return True
    digits = value.as_tuple().digits
    return len(digits) <= MAX_DIGITS and -MAX_EXPONENT <= value.adjusted() <= MAX_EXPONENT


def _path_to(root: Any, target: Any) -> str:
    """The FHIRPath-like location of ``target`` (found by identity) inside ``root``."""
    stack: list[tuple[Any, tuple[str, ...]]] = [(root, ())]
    while stack:
        node, path = stack.pop()
        if node is target:
            return ".".join(path)
        if isinstance(node, dict):
            stack.extend((child, (*path, key)) for key, child in node.items())
            if any(target is key for key in node):
                return ".".join(path)
        elif isinstance(node, list):
            stack.extend((child, path) for child in node)  # FHIRPath names repeats without an index
    return ""


def _check_string(root: Any, text: str) -> None:
    found = _FORBIDDEN.search(text)
    if found is None:
        return
    where = _path_to(root, text)
    if _SURROGATE.match(found.group()):
        raise InvalidRequest(
            f"The JSON holds a lone UTF-16 surrogate (\\u{ord(found.group()):04x}) at "
            f"{where or 'the top'}; send Unicode text.",
            expression=(where,) if where else (),
        )
    raise InvalidResource(
        f"{where or 'A string'} holds the control character U+{ord(found.group()):04X}; FHIR strings "
        "allow no control character other than tab, carriage return and line feed.",
        expression=(where,) if where else (),
    )


def _check_sizes(parsed: Any, limits: Limits, total: int) -> None:
    """Check a resource's size, or for a Bundle its entry count and each entry resource's size."""
    too_many = (
        "{what} holds more than {limit} elements (CARNET_MAX_RESOURCE_ELEMENTS); FHIR resources "
        "need far fewer: split it."
    )
    if not isinstance(parsed, dict) or parsed.get("resourceType") != "Bundle":
        if total > limits.max_resource_elements:
            raise PayloadTooLarge(too_many.format(what="The resource", limit=limits.max_resource_elements))
        return
    entries = parsed.get("entry")
    if not isinstance(entries, list):
        return
    for index, entry in enumerate(entries):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if count_elements(resource, limits.max_resource_elements) > limits.max_resource_elements:
            raise PayloadTooLarge(
                too_many.format(what=f"The resource of entry {index}", limit=limits.max_resource_elements)
            )


def _check_entry_count(parsed: Any, limits: Limits) -> None:
    entries = parsed.get("entry") if isinstance(parsed, dict) else None
    if isinstance(entries, list) and len(entries) > limits.max_bundle_entries:
        raise PayloadTooLarge(
            f"The Bundle has {len(entries)} entries, over the {limits.max_bundle_entries} accepted "
            "(CARNET_MAX_BUNDLE_ENTRIES); send it as several Bundles."
        )


def check(parsed: Any, limits: Limits = DEFAULT_LIMITS) -> None:
    """Check parsed JSON against ``limits`` and FHIR's rules for strings and numbers.

    Raises:
        InvalidRequest: nesting deeper than ``limits.max_depth``, or a lone surrogate.
        PayloadTooLarge: too many values in the body or a resource, too many Bundle entries.
        InvalidResource: a control character in a string, a number out of range or precision.
    """
    _check_entry_count(parsed, limits)
    stack: list[tuple[Any, int]] = [(parsed, 1)]
    count = 0
    while stack:
        node, depth = stack.pop()
        count += 1
        if count > limits.max_elements:
            raise PayloadTooLarge(
                f"The JSON holds more than {limits.max_elements} elements (CARNET_MAX_ELEMENTS); "
                "send smaller resources or fewer at a time."
            )
        if isinstance(node, str):
            _check_string(parsed, node)
        elif isinstance(node, dict):
            if depth > limits.max_depth:
                raise InvalidRequest(
                    f"The JSON is nested more than {limits.max_depth} levels deep; FHIR needs far fewer."
                )
            for key, child in node.items():
                _check_string(parsed, key)
                stack.append((child, depth + 1))
        elif isinstance(node, list):
            if depth > limits.max_depth:
                raise InvalidRequest(
                    f"The JSON is nested more than {limits.max_depth} levels deep; FHIR needs far fewer."
                )
            stack.extend((child, depth + 1) for child in node)
        elif isinstance(node, (int, Decimal)) and not isinstance(node, bool) and not is_number_in_range(node):
            where = _path_to(parsed, node)
            raise InvalidResource(
                f"The number at {where or 'the top'} is out of range: FHIR numbers have at most "
                f"{MAX_DIGITS} significant digits and must fit a double.",
                expression=(where,) if where else (),
            )
    _check_sizes(parsed, limits, count)


def count_elements(value: Any, limit: int) -> int:
    """Count the JSON values in ``value``, stopping once the count passes ``limit``."""
    stack = [value]
    count = 0
    while stack and count <= limit:
        node = stack.pop()
        count += 1
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return count


class _Budget:
    """Counts objects' members and numbers while the parser runs, and stops it past the limit.

    The parser calls back into Python for every object and number, which is where a hostile
    body's cost lies (a 6 MB body of 400,000 tiny objects): counting there refuses it after
    ``max_elements`` values instead of after parsing all of it.
    """

    __slots__ = ("left", "limit", "unusual")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.left = limit
        #: A number long or with an exponent was read: :func:`check` must look at its range.
        self.unusual = False

    def spend(self, amount: int) -> None:
        self.left -= amount
        if self.left < 0:
            raise PayloadTooLarge(
                f"The JSON holds more than {self.limit} elements (CARNET_MAX_ELEMENTS); "
                "send smaller resources or fewer at a time."
            )

    def pairs(self, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        self.spend(len(pairs) + 1)
        return _no_duplicates(pairs)

    def integer(self, text: str) -> int | Decimal:
        self.spend(1)
        if len(text) > MAX_DIGITS:
            self.unusual = True
        return _parse_int(text)

    def decimal(self, text: str) -> Decimal:
        self.spend(1)
        if len(text) > MAX_DIGITS or "e" in text or "E" in text:
            self.unusual = True
        return Decimal(text)


def loads(data: bytes | str, limits: Limits = DEFAULT_LIMITS) -> Any:
    """Parse JSON, keeping decimals exact, and :func:`check` it.

    Raises:
        InvalidRequest: the bytes are not UTF-8 JSON, an object repeats a key, or :func:`check`
            refuses it (and its subclasses ``PayloadTooLarge``, ``InvalidResource``).
    """
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except ValueError as exc:
        raise InvalidRequest(f"The body is not valid JSON ({type(exc).__name__}); send UTF-8 JSON.") from None
    if isinstance(data, bytes):
        quick = _loads_quickly(text, limits)
        if quick is not None:
            return quick[0]
    try:
        budget = _Budget(limits.max_elements)
        parsed = json.loads(
            text,
            parse_float=budget.decimal,
            parse_int=budget.integer,
            parse_constant=_reject_constant,
            object_pairs_hook=budget.pairs,
        )
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors.
        raise InvalidRequest(f"The body is not valid JSON ({type(exc).__name__}); send UTF-8 JSON.") from None
    check(parsed, limits)
    return parsed


#: The end of an object's key: a closing quote, blanks, a colon. In a JSON text it also appears
#: only after an escaped quote inside a string (``"a\\": b"``), never fewer times than there are keys.
_KEY_END = re.compile('"[ \t\n\r]*:')


def _loads_quickly(text: str, limits: Limits) -> tuple[Any] | None:
    """Parse UTF-8 JSON without a Python call per object, when it certainly passes :func:`check`.

    Returns ``(parsed,)``, or None for :func:`loads`' full path (its messages, its budget). The
    full path calls Python for every object, to refuse duplicate keys and to stop a hostile
    body early; here the parser runs in C, which is safe because:

    - the values in the text are at most its commas, brackets and braces plus one, so a text
      whose count of those is within ``max_elements`` cannot hold more values than allowed;
    - a repeated key leaves fewer keys in the parsed objects than key ends (``":``) in the
      text, which are counted: equal counts, no key was repeated;
    - the parser refuses raw control characters in strings and UTF-8 holds no surrogate: only
      a ``\\u`` escape can bring either in, and a text holding one takes the full path;
    - a number that is long or has an exponent takes the full path, for its range check.
    The depth and the counts per resource are then checked on the parsed value.
    """
    if "\\u" in text or text.count(",") + text.count("{") + text.count("[") + 1 > limits.max_elements:
        return None
    budget = _Budget(limits.max_elements)
    try:
        parsed = json.loads(
            text, parse_float=budget.decimal, parse_int=budget.integer, parse_constant=_reject_constant
        )
    except (ValueError, RecursionError, InvalidRequest):
        return None
    if budget.unusual:
        return None
    shape = _Shape(limits.max_depth)
    try:
        total = shape.count(parsed, 1)
    except RecursionError:
        return None
    if shape.too_deep or shape.keys != len(_KEY_END.findall(text)) or not _sizes_fit(parsed, limits, total):
        return None
    return (parsed,)


def _sizes_fit(parsed: Any, limits: Limits, total: int) -> bool:
    """:func:`_check_sizes` and :func:`_check_entry_count`, as a verdict instead of an error."""
    if total > limits.max_elements:
        return False
    entries = parsed.get("entry") if isinstance(parsed, dict) else None
    if not isinstance(parsed, dict) or parsed.get("resourceType") != "Bundle":
        return total <= limits.max_resource_elements and not (
            isinstance(entries, list) and len(entries) > limits.max_bundle_entries
        )
    if not isinstance(entries, list):
        return True
    if len(entries) > limits.max_bundle_entries:
        return False
    for entry in entries:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if count_elements(resource, limits.max_resource_elements) > limits.max_resource_elements:
            return False
    return True


class _Shape:
    """Counts the values and keys of parsed JSON and notes nesting beyond ``max_depth``."""

    __slots__ = ("keys", "max_depth", "too_deep")

    def __init__(self, max_depth: int) -> None:
        self.max_depth = max_depth
        self.keys = 0
        self.too_deep = False

    def count(self, node: Any, depth: int) -> int:
        """The values in ``node``, itself included."""
        if type(node) is dict:
            self.keys += len(node)
            children: Any = node.values()
        elif type(node) is list:
            children = node
        else:
            return 1
        if depth > self.max_depth:
            self.too_deep = True
            return 1
        count = 1
        for child in children:
            kind = type(child)
            count += self.count(child, depth + 1) if kind is dict or kind is list else 1
        return count


def loads_stored(data: bytes) -> Any:
    """Parse JSON that Carnet itself wrote (validated, depth-checked and de-duplicated at intake).

    Decimals stay exact as in :func:`loads`; the checks that guard against hostile input are
    skipped, since opened records are read far more often than they are written.
    """
    return json.loads(data, parse_float=Decimal, parse_int=_parse_int)


def loads_lossy(data: bytes) -> Any:
    """Parse JSON that Carnet itself wrote, for reading strings only (dates of a search): decimals
    become floats, so the result must never be written back or shown. Several times faster than
    :func:`loads_stored`; falls back to it on what orjson refuses (integers beyond 64 bits)."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return loads_stored(data)


def dumps(value: Any) -> bytes:
    """Serialise JSON compactly, writing decimals with their original digits."""
    return orjson.dumps(value, default=_fragment)
