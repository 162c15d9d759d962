"""A status model → the JSON the API gets, and the merge patch (RFC 7386) from the stored status to it.

This is the seam every value the operator writes into a status passes: :func:`merge_patch` redacts
credentials (``sft_common.redact``) in the new status before comparing, so a derived status that
quotes a termination message or an error holding ``user:password@`` writes ``[REDACTED]``, and
(redaction being idempotent) compares equal to what is already stored.

Who owns what is read from the status model itself: a sub-model with fields marked
:data:`~sft_operator.api.status.WORKLOAD` (``status.progress``) is shared, and the operator's patch
covers only its unmarked fields; everything else at the top level is the operator's.
"""

from __future__ import annotations

import copy
import functools
import types
import typing
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from sft_common.redact import redact_value
from sft_operator.api.status import WORKLOAD

M = typing.TypeVar("M", bound=BaseModel)
PARSE_TRIES = 8
"""Invalid parts dropped, one error at a time at most, before a stored status counts as empty."""


def to_json(status: BaseModel) -> dict[str, Any]:
    """The status as the API receives it: camelCase keys, None fields and fields never set left out
    (an empty ``conditions`` list of a status nobody derived is no condition to write)."""
    return status.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_unset=True)


def parse_status(model: type[M], stored: Mapping[str, Any] | None) -> M:
    """The stored status as ``model``. The CRD's schema already holds it to the model's shape, so this
    validates (cheap, and gives typed reads); a part the model still refuses (written by another
    client, or by an older operator) is dropped rather than failing every reconcile of the CR."""
    raw: Any = stored or {}
    for _ in range(PARSE_TRIES):
        try:
            return model.model_validate(raw)
        except ValidationError as exc:
            if raw is stored and stored is not None:
                raw = copy.deepcopy(dict(stored))  # (only a status with a bad part is copied, to drop it)
            _drop(raw, exc.errors()[0]["loc"])
    return model()


def _drop(raw: Any, loc: tuple[int | str, ...]) -> None:
    """Remove the key (at most two levels deep: a field, or a field of a sub-object) ``loc`` points into."""
    path = loc[:2] if len(loc) > 1 else loc
    parent = raw
    for part in path[:-1]:
        parent = parent[part] if isinstance(parent, Mapping) and part in parent else None
    if isinstance(parent, dict):
        parent.pop(path[-1], None)
    else:
        raw.pop(loc[0], None)


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


def apply_merge_patch(target: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """``target`` with the merge ``patch`` applied (RFC 7386, as the API server applies a status
    patch): for a status kept without one (``sftctl run --local``)."""
    out = copy.deepcopy(dict(target))
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, Mapping):
            before = out.get(key)
            out[key] = apply_merge_patch(before if isinstance(before, Mapping) else {}, value)
        else:
            out[key] = copy.deepcopy(value)
    return out


@functools.cache
def shared(model: type[BaseModel]) -> dict[str, frozenset[str]]:
    """``{key: the sub-keys the operator owns}`` for each field of ``model`` the workload writes into
    too (a sub-model with WORKLOAD fields), in camelCase; computed once per model."""
    out: dict[str, frozenset[str]] = {}
    for name, field in model.model_fields.items():
        sub = _sub_model(field.annotation)
        if sub is None:
            continue
        fields = sub.model_fields.items()
        if any(WORKLOAD in f.metadata for _, f in fields):
            out[field.alias or name] = frozenset(
                f.alias or n for n, f in fields if WORKLOAD not in f.metadata
            )
    return out


def _sub_model(annotation: Any) -> type[BaseModel] | None:
    """The model in ``X | None`` (or ``X``), else None."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        models = [a for a in typing.get_args(annotation) if isinstance(a, type) and issubclass(a, BaseModel)]
        return models[0] if len(models) == 1 else None
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


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


def status_patch(stored: Mapping[str, Any] | None, new: BaseModel) -> dict[str, Any]:
    """The merge patch from the ``stored`` status (as the API holds it) to ``new`` (empty when nothing
    changed), never touching the workload's keys. The diff is taken against the stored JSON rather
    than its parsed model: the patch must turn what is stored into the new status."""
    mine = shared(type(new))
    old = operator_view(stored, mine)
    patch = merge_patch(old, operator_view(to_json(new), mine))
    for key in mine:
        if key in patch and patch[key] is None:
            # "key": null would delete the workload's sub-keys too: delete only ours
            patch[key] = {sub: None for sub in old.get(key) or {}}
    return patch
