"""Minimal JSON merge patches between two status dicts (RFC 7386), skipping workload-owned keys.

This is the seam every value the operator writes into a status passes: :func:`merge_patch` redacts
credentials (``sft_common.redact``) in the new status before comparing, so a derived status that
quotes a termination message or an error holding ``user:password@`` writes ``[REDACTED]``, and
(redaction being idempotent) compares equal to what is already stored.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from sft_common.redact import redact_value


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


def aliases(model: Any) -> frozenset[str]:
    """The camelCase keys of a status model (what the status dict holds)."""
    return frozenset(f.alias or n for n, f in model.model_fields.items())


def operator_view(status: Mapping[str, Any] | None, shared: Mapping[str, frozenset[str]]) -> dict[str, Any]:
    """The part of ``status`` the operator owns. The one ownership rule for every kind: the operator
    owns every top-level key, except that under a ``shared`` key (written by the workload too) it owns
    only the listed sub-keys. (A shallow view: the caller only reads it, and :func:`merge_patch` copies
    what it puts into a patch.)"""
    out = dict(status or {})
    for key, mine in shared.items():
        sub = out.pop(key, None)
        if isinstance(sub, Mapping):
            kept = {k: v for k, v in sub.items() if k in mine}
            if kept:
                out[key] = kept
    return out


def status_patch(
    cr: Mapping[str, Any], new_status: Mapping[str, Any], shared: Mapping[str, frozenset[str]]
) -> dict[str, Any]:
    """The merge patch for ``status`` (empty when nothing changed), never touching the workload's keys."""
    old = operator_view(cr.get("status"), shared)
    patch = merge_patch(old, operator_view(new_status, shared))
    for key in shared:
        if key in patch and patch[key] is None:
            # "key": null would delete the workload's sub-keys too: delete only ours
            patch[key] = {sub: None for sub in old.get(key) or {}}
    return patch
