"""Minimal JSON merge patches between two status dicts (RFC 7386), skipping workload-owned keys.

This is the seam every value the operator writes into a status passes: :func:`merge_patch` redacts
credentials (``sft_common.redact``) in the new status before comparing, so a derived status that
quotes a termination message or an error holding ``user:password@`` writes ``[REDACTED]``, and
(redaction being idempotent) compares equal to what is already stored.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from sft_common.redact import redact_value


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
    """The merge patch that turns ``old`` into ``new`` with its credentials redacted (None deletes;
    lists are replaced whole)."""
    return _merge_patch(old, redact_value(new))


def _merge_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    patch: dict[str, Any] = {}
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, Mapping) and isinstance(before, Mapping):
            sub = _merge_patch(before, value)
            if sub:
                patch[key] = sub
        elif value != before or key not in old:
            patch[key] = copy.deepcopy(value)
    for key in old:
        if key not in new:
            patch[key] = None
    return patch
