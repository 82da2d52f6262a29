"""PATCH of a FHIR resource: JSON Patch (RFC 6902), FHIRPath Patch (a ``Parameters``), JSON Merge Patch.

:func:`apply_patch` returns the patched copy of a resource; the caller validates and stores it
as an update (same rules, same policy). The three forms, told apart by the body:

- a JSON array: **JSON Patch** (``application/json-patch+json``), applied by ``jsonpatch``;
- a ``Parameters`` resource: **FHIRPath Patch** (FHIR R4 §3.1.0.8.2): operations ``add``,
  ``insert``, ``delete``, ``replace``, ``move``, each ``path`` a FHIRPath expression evaluated by
  ``fhirpathpy``. Each operation is turned into JSON Patch operations at the JSON pointers its
  path selects: every object of the resource is tagged with its pointer before the expression
  is evaluated. Limits: an ``add`` of an element the container lacks writes one value (send a
  list value for a repeating element); a ``path`` ending in a primitive names that whole element;
- any other JSON object: **JSON Merge Patch** (RFC 7386; what ``fhirpy``'s ``patch()`` sends).

``id`` and ``resourceType`` cannot be changed by a patch; ``meta.versionId`` and ``meta.lastUpdated``
are the server's.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

import jsonpatch
from fhirpathpy import evaluate

from carnet.domain.errors import InvalidRequest

_POINTER = "__carnet_pointer"
_TAIL = re.compile(r"^(?P<parent>.+)\.(?P<name>[A-Za-z][A-Za-z0-9_]*)$")


def apply_patch(resource: Mapping[str, Any], body: Any) -> dict[str, Any]:
    """Return ``resource`` with ``body`` applied (JSON Patch, FHIRPath Patch or JSON Merge Patch).

    Raises:
        InvalidRequest: a malformed patch, a path that selects nothing or too much, a failed
            ``test``, or a change of ``id`` or ``resourceType``.
    """
    original = copy.deepcopy(dict(resource))
    if isinstance(body, list):
        patched = _json_patch(original, body)
    elif isinstance(body, dict) and body.get("resourceType") == "Parameters":
        patched = _json_patch(original, fhirpath_operations(original, body))
    elif isinstance(body, dict):
        patched = merge_patch(original, body)
    else:
        raise InvalidRequest(
            "A PATCH body is a JSON Patch array, a FHIRPath Patch Parameters, or a JSON object."
        )
    if patched.get("resourceType") != resource.get("resourceType") or patched.get("id") != resource.get("id"):
        raise InvalidRequest("A patch cannot change a resource's resourceType or id.")
    return patched


def _json_patch(resource: dict[str, Any], operations: list[Any]) -> dict[str, Any]:
    try:
        patched = jsonpatch.JsonPatch(operations).apply(resource)
    except jsonpatch.JsonPatchTestFailed as exc:
        raise InvalidRequest(f"The patch's test operation failed: {str(exc)[:200]}") from None
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, TypeError, KeyError) as exc:
        raise InvalidRequest(f"The JSON Patch does not apply: {str(exc)[:200]}") from None
    if not isinstance(patched, dict):
        raise InvalidRequest("The JSON Patch must leave a JSON object.")
    return patched


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: ``null`` removes a member, an object merges into an object, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for name, value in patch.items():
        if value is None:
            result.pop(name, None)
        else:
            result[name] = merge_patch(result.get(name), value)
    return result


# -- FHIRPath Patch --------------------------------------------------------------------------------


def _tagged(value: Any, pointer: str) -> Any:
    """A copy of ``value`` whose every object carries its JSON pointer under a private key."""
    if isinstance(value, dict):
        out = {k: _tagged(v, f"{pointer}/{_escape(k)}") for k, v in value.items()}
        out[_POINTER] = pointer
        return out
    if isinstance(value, list):
        return [_tagged(v, f"{pointer}/{i}") for i, v in enumerate(value)]
    return value


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def _select(tagged: dict[str, Any], path: str) -> list[Any]:
    try:
        return list(evaluate(tagged, path))
    except Exception as exc:  # fhirpathpy raises many kinds on a bad expression
        raise InvalidRequest(
            f"The FHIRPath {path[:80]!r} does not evaluate ({type(exc).__name__})."
        ) from None


def _pointers(tagged: dict[str, Any], path: str) -> list[str]:
    """The JSON pointers of what a FHIRPath selects (objects by their tag, primitives by their element)."""
    found = _select(tagged, path)
    if not found:
        return []
    if all(isinstance(f, dict) and _POINTER in f for f in found):
        return [str(f[_POINTER]) for f in found]
    tail = _TAIL.match(path)
    if tail is None:
        raise InvalidRequest(f"The FHIRPath {path[:80]!r} selects values Carnet cannot locate.")
    parents = _pointers(tagged, tail["parent"])
    return [f"{p}/{tail['name']}" for p in parents]


def _value_of(parts: list[Any]) -> Any:
    """The ``value`` part of an operation: a ``value[x]``, or nested parts making an object."""
    for part in parts:
        if part.get("name") != "value":
            continue
        for key, value in part.items():
            if key.startswith("value"):
                return value
        if isinstance(part.get("part"), list):
            return {p.get("name"): _value_of([{**p, "name": "value"}]) for p in part["part"]}
    raise InvalidRequest("A FHIRPath Patch operation lacks its value.")


def _part(parts: list[Any], name: str) -> Any:
    for part in parts:
        if part.get("name") == name:
            for key, value in part.items():
                if key.startswith("value"):
                    return value
    return None


def fhirpath_operations(resource: dict[str, Any], parameters: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Turn a FHIRPath Patch ``Parameters`` into JSON Patch operations on ``resource``.

    Operations are located one after the other on the resource as the previous ones left it.

    Raises:
        InvalidRequest: an unknown type, a path selecting nothing (or several) where one is needed.
    """
    operations: list[dict[str, Any]] = []
    current = resource
    for index, parameter in enumerate(parameters.get("parameter") or []):
        parts = parameter.get("part") if isinstance(parameter, dict) else None
        if (
            not isinstance(parameter, dict)
            or parameter.get("name") != "operation"
            or not isinstance(parts, list)
        ):
            raise InvalidRequest(f"Parameter {index} of the FHIRPath Patch is not an operation with parts.")
        kind, path = _part(parts, "type"), _part(parts, "path")
        if not isinstance(path, str) or kind not in ("add", "insert", "delete", "replace", "move"):
            raise InvalidRequest(
                f"Operation {index}: type must be add, insert, delete, replace or move, with a path."
            )
        ops = _operation(_tagged(current, ""), kind, path, parts, index)
        current = _json_patch(current, ops)
        operations.extend(ops)
    return operations


def _one(pointers: list[str], path: str, index: int) -> str:
    if len(pointers) != 1:
        raise InvalidRequest(
            f"Operation {index}: {path[:80]!r} selects {len(pointers)} elements; it must select one."
        )
    return pointers[0]


def _operation(
    tagged: dict[str, Any], kind: str, path: str, parts: list[Any], index: int
) -> list[dict[str, Any]]:
    if kind == "delete":
        pointers = _pointers(tagged, path)
        if len(pointers) > 1:
            raise InvalidRequest(
                f"Operation {index}: {path[:80]!r} selects {len(pointers)} elements to delete."
            )
        return [{"op": "remove", "path": p} for p in pointers]
    if kind == "replace":
        return [
            {"op": "replace", "path": _one(_pointers(tagged, path), path, index), "value": _value_of(parts)}
        ]
    if kind == "add":
        name = _part(parts, "name")
        if not isinstance(name, str) or not name:
            raise InvalidRequest(f"Operation {index}: add needs the name of the element to add.")
        container = _one(_pointers(tagged, path), path, index)
        existing = _select(tagged, f"{path}.{name}") if re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name) else []
        target = f"{container}/{_escape(name)}"
        if existing and _is_list_at(tagged, target):
            target += "/-"
        return [{"op": "add", "path": target, "value": _value_of(parts)}]
    # insert and move work in a list: the path selects its items (objects), or names it (primitives).
    items = _pointers(tagged, path)
    if len(items) == 1 and _is_list_at(tagged, items[0]):
        array, length = items[0], len(_node(tagged, items[0]))
    elif items:
        array, length = items[0].rsplit("/", 1)[0], len(items)
    else:
        raise InvalidRequest(f"Operation {index}: {path[:80]!r} selects no list to {kind} into.")
    if kind == "insert":
        at = _part(parts, "index")
        if not isinstance(at, int) or not 0 <= at <= length:
            raise InvalidRequest(f"Operation {index}: insert needs an index between 0 and {length}.")
        return [{"op": "add", "path": f"{array}/{at}", "value": _value_of(parts)}]
    source, destination = _part(parts, "source"), _part(parts, "destination")
    if not all(isinstance(v, int) and 0 <= v < length for v in (source, destination)):
        raise InvalidRequest(f"Operation {index}: move needs source and destination within the list.")
    return [{"op": "move", "from": f"{array}/{source}", "path": f"{array}/{destination}"}]


def _node(tagged: dict[str, Any], pointer: str) -> Any:
    node: Any = tagged
    for raw in pointer.strip("/").split("/"):
        token = raw.replace("~1", "/").replace("~0", "~")
        node = node[int(token)] if isinstance(node, list) else node.get(token)
    return node


def _is_list_at(tagged: dict[str, Any], pointer: str) -> bool:
    return isinstance(_node(tagged, pointer), list)
