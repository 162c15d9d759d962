"""Minimal JSON merge patches between two status dicts (RFC 7386), skipping workload-owned keys."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any


def without(data: Mapping[str, Any] | None, paths: Sequence[tuple[str, ...]]) -> dict[str, Any]:
    """A deep copy of ``data`` with the keys at ``paths`` removed."""
    out = copy.deepcopy(dict(data or {}))
    for path in paths:
        node: Any = out
        for key in path[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
            if node is None:
                break
        if isinstance(node, dict):
            node.pop(path[-1], None)
    return out


def merge_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The merge patch that turns ``old`` into ``new`` (None deletes; lists are replaced whole)."""
    patch: dict[str, Any] = {}
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, Mapping) and isinstance(before, Mapping):
            sub = merge_patch(before, value)
            if sub:
                patch[key] = sub
        elif value != before or key not in old:
            patch[key] = copy.deepcopy(value)
    for key in old:
        if key not in new:
            patch[key] = None
    return patch
