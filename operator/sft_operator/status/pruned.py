"""Spec fields the API server dropped: what the user applied but the stored object lacks.

A structural CRD prunes unknown fields: ``spec.packsize: 8192`` (a typo of ``packSize``) is stored as
nothing, and the prep runs with the default 4096 while the user believes otherwise. ``kubectl apply
--validate=strict`` refuses such a manifest up front; other clients (a plain ``kubectl apply
--validate=false``, Argo CD without strict validation, scripts) get at most a warning header. The
operator cannot see the dropped field itself, but client-side ``kubectl apply`` records the whole
applied manifest in the ``kubectl.kubernetes.io/last-applied-configuration`` annotation: every key
path there whose value is not null and is absent from the stored spec was dropped (or removed since by
another client). :func:`pruned_conditions` turns that into a ``FieldsPruned`` condition, and the
reconcile posts a Warning Event when it appears or changes.

Server-side apply writes no such annotation; there the managedFields do not list dropped fields
either, so only strict validation helps (the samples and docs use it).
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from typing import Any

from sft_operator.status.conditions import condition

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
FIELDS_PRUNED = "FieldsPruned"
MAX_LISTED = 10


def _missing(applied: Any, stored: Any, path: str, out: list[tuple[str, list[str]]]) -> None:
    if isinstance(applied, Mapping) and isinstance(stored, Mapping):
        for key, value in applied.items():
            if value is None:
                continue
            if key not in stored:
                out.append((f"{path}.{key}", [k for k in stored if isinstance(k, str)]))
            else:
                _missing(value, stored[key], f"{path}.{key}", out)
    elif isinstance(applied, list) and isinstance(stored, list):
        for index, (item, kept) in enumerate(zip(applied, stored, strict=False)):
            _missing(item, kept, f"{path}[{index}]", out)


def pruned_fields(cr: Mapping[str, Any]) -> list[str]:
    """Dotted paths (``spec.packsize``, ``spec.datasets[0].wieght``) of spec fields the last
    ``kubectl apply`` set that the stored object lacks, each with a "did you mean" when one is close."""
    annotations = (cr.get("metadata") or {}).get("annotations") or {}
    raw = annotations.get(LAST_APPLIED)
    if not raw:
        return []
    try:
        applied = json.loads(raw)
    except ValueError:
        return []
    if not isinstance(applied, Mapping):
        return []
    return dropped_fields(applied.get("spec"), cr.get("spec") or {})


def dropped_fields(applied: Any, stored: Any, path: str = "spec") -> list[str]:
    """Dotted paths of what ``applied`` has and ``stored`` lacks, each with a "did you mean" when a
    kept field is close."""
    found: list[tuple[str, list[str]]] = []
    _missing(applied, stored, path, found)
    return _guessed(found)


def unknown_fields(value: Any, schema: Mapping[str, Any], path: str = "spec") -> list[str]:
    """Dotted paths of the fields of ``value`` a structural schema does not declare, which the API
    server prunes (apiextensions-apiserver pkg/apiserver/schema/pruning/algorithm.go: kept are the
    ``properties``, anything under ``additionalProperties`` or ``x-kubernetes-preserve-unknown-fields``),
    each with a "did you mean" among the declared names (a snake_case key: its camelCase spelling)."""
    found: list[tuple[str, list[str]]] = []
    _undeclared(value, schema, path, found)
    return _guessed(found)


def _undeclared(value: Any, schema: Mapping[str, Any], path: str, out: list[tuple[str, list[str]]]) -> None:
    if isinstance(value, Mapping):
        if schema.get("x-kubernetes-preserve-unknown-fields"):
            return
        properties = schema.get("properties") or {}
        additional = schema.get("additionalProperties")
        for key, item in value.items():
            if key in properties:
                _undeclared(item, properties[key], f"{path}.{key}", out)
            elif isinstance(additional, Mapping):
                _undeclared(item, additional, f"{path}.{key}", out)
            elif additional is not True:
                out.append((f"{path}.{key}", list(properties)))
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for index, item in enumerate(value):
            _undeclared(item, schema["items"], f"{path}[{index}]", out)


def _guessed(found: list[tuple[str, list[str]]]) -> list[str]:
    """Each path, with the sibling name it most likely meant: the same name in another case or as
    camelCase (``gpus_per_node`` → ``gpusPerNode``), else a near spelling."""
    out = []
    for where, siblings in found:
        key = where.rsplit(".", 1)[-1]
        camel = _camel(key).lower()
        same = [s for s in siblings if s.lower() in (key.lower(), camel)]
        close = difflib.get_close_matches(key, siblings, n=1, cutoff=0.6)
        guess = same[0] if same else (close[0] if close else None)
        out.append(f"{where} (did you mean {guess}?)" if guess else where)
    return out


def _camel(key: str) -> str:
    """``gpus_per_node`` → ``gpusPerNode`` (the API's spelling of a Python-style name)."""
    first, *rest = key.split("_")
    return first + "".join(part[:1].upper() + part[1:] for part in rest)


def pruned_conditions(cr: Mapping[str, Any], generation: int | None) -> list[dict[str, Any]]:
    """``[FieldsPruned=True]`` naming the dropped fields, or ``[]`` when nothing was dropped (the
    condition exists only while there is something to say)."""
    fields = pruned_fields(cr)
    if not fields:
        return []
    more = len(fields) - MAX_LISTED
    listed = ", ".join(fields[:MAX_LISTED]) + (f" and {more} more" if more > 0 else "")
    kind = cr.get("kind") or "resource"
    message = (
        f"the {kind} schema has no field {listed}: the API server dropped it, so the run uses the "
        "default instead; fix the name in the manifest and apply it with `kubectl apply "
        "--validate=strict`, which refuses unknown fields"
    )
    return [condition(FIELDS_PRUNED, True, "UnknownFields", message, generation)]
