"""Patch formats the apiserver accepts: JSON merge patch, JSON patch (RFC 6902), strategic merge.

Strategic merge patch is approximated: dict keys merge like a JSON merge patch, and lists of
objects that all carry a ``name`` key (containers, env, volumes, ports...) merge by that key, which is
the merge key Kubernetes declares for those lists. ``$patch`` directives and ``$setElementOrder`` are
not supported (a 400 names them), so a test that depends on them fails loudly instead of silently.
"""

from __future__ import annotations

import copy
from typing import Any

from .errors import ApiError, bad_request

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: dicts merge recursively, ``null`` deletes a key, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    """Merge patch plus merge-by-``name`` for lists of named objects (see the module docstring)."""
    if isinstance(patch, dict):
        directives = [key for key in patch if isinstance(key, str) and key.startswith("$")]
        if directives:
            raise bad_request(f"strategic merge patch directives are not emulated: {sorted(directives)}")
        result = dict(target) if isinstance(target, dict) else {}
        for key, value in patch.items():
            if value is None:
                result.pop(key, None)
            else:
                result[key] = strategic_merge_patch(result.get(key), value)
        return result
    if isinstance(patch, list) and isinstance(target, list) and _named_list(patch) and _named_list(target):
        merged = [copy.deepcopy(item) for item in target]
        index = {item["name"]: position for position, item in enumerate(merged)}
        for item in patch:
            if item["name"] in index:
                merged[index[item["name"]]] = strategic_merge_patch(merged[index[item["name"]]], item)
            else:
                merged.append(copy.deepcopy(item))
        return merged
    return copy.deepcopy(patch)


def _named_list(items: list[Any]) -> bool:
    return bool(items) and all(isinstance(item, dict) and isinstance(item.get("name"), str) for item in items)


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def _split_pointer(pointer: str) -> list[str]:
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise bad_request(f"JSON patch path must start with '/': {pointer!r}")
    return [_unescape(part) for part in pointer[1:].split("/")]


def _resolve(doc: Any, tokens: list[str], pointer: str) -> Any:
    node = doc
    for token in tokens:
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            raise _unprocessable(f"path {pointer!r} does not exist")
    return node


def _unprocessable(message: str) -> ApiError:
    # The real apiserver answers a failed JSON patch (including a failed "test") with 422; kopf
    # relies on it to detect that its resourceVersion "test" lost a race.
    return ApiError(
        422, "Invalid", f"the server rejected our request due to an error in our request: {message}"
    )


def json_patch(doc: Any, operations: Any) -> Any:
    """RFC 6902 add/remove/replace/move/copy/test on a deep copy of ``doc``."""
    if not isinstance(operations, list):
        raise bad_request("a JSON patch must be a list of operations")
    result = copy.deepcopy(doc)
    for operation in operations:
        if not isinstance(operation, dict) or "op" not in operation or "path" not in operation:
            raise bad_request(f"malformed JSON patch operation: {operation!r}")
        op, pointer = operation["op"], operation["path"]
        tokens = _split_pointer(pointer)
        if op == "test":
            if _resolve(result, tokens, pointer) != operation.get("value"):
                raise _unprocessable(f"test failed at {pointer!r}")
            continue
        if op in ("move", "copy"):
            source_pointer = operation.get("from", "")
            value = copy.deepcopy(_resolve(result, _split_pointer(source_pointer), source_pointer))
            if op == "move":
                result = _remove(result, _split_pointer(source_pointer), source_pointer)
            result = _add(result, tokens, value, pointer)
        elif op == "add":
            result = _add(result, tokens, copy.deepcopy(operation.get("value")), pointer)
        elif op == "remove":
            result = _remove(result, tokens, pointer)
        elif op == "replace":
            _resolve(result, tokens, pointer)
            result = _remove(result, tokens, pointer)
            result = _add(result, tokens, copy.deepcopy(operation.get("value")), pointer)
        else:
            raise bad_request(f"unknown JSON patch operation {op!r}")
    return result


def _add(doc: Any, tokens: list[str], value: Any, pointer: str) -> Any:
    if not tokens:
        return value
    parent = _resolve(doc, tokens[:-1], pointer)
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        if last == "-":
            parent.append(value)
        elif last.isdigit() and int(last) <= len(parent):
            parent.insert(int(last), value)
        else:
            raise _unprocessable(f"index out of range at {pointer!r}")
    else:
        raise _unprocessable(f"cannot add at {pointer!r}")
    return doc


def _remove(doc: Any, tokens: list[str], pointer: str) -> Any:
    if not tokens:
        return None
    parent = _resolve(doc, tokens[:-1], pointer)
    last = tokens[-1]
    if isinstance(parent, dict) and last in parent:
        del parent[last]
    elif isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        del parent[int(last)]
    else:
        raise _unprocessable(f"path {pointer!r} does not exist")
    return doc


def apply_patch(content_type: str, target: dict[str, Any], patch: Any) -> dict[str, Any]:
    """Dispatch on the request's Content-Type (parameters such as ``; charset`` are ignored)."""
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind == MERGE_PATCH:
        result = merge_patch(target, patch)
    elif kind == JSON_PATCH:
        result = json_patch(target, patch)
    elif kind == STRATEGIC_PATCH:
        result = strategic_merge_patch(target, patch)
    elif kind == APPLY_PATCH:
        # Server-side apply approximated as a merge of the applied configuration: no field managers,
        # no conflict detection, no removal of fields the applier stopped owning.
        result = merge_patch(target, patch)
    else:
        raise ApiError(
            415, "UnsupportedMediaType", f"the body of the request was in an unknown format: {kind}"
        )
    if not isinstance(result, dict):
        raise _unprocessable("the patched object is not a JSON object")
    return result
