"""Server-side printing: the ``meta.k8s.io/v1`` Table the API server answers ``kubectl get`` with.

kubectl asks ``Accept: application/json;as=Table;v=v1;g=meta.k8s.io, ..., application/json`` and prints
the Table's columns (cli-runtime pkg/printers/tableprinter.go). For a custom resource the
apiextensions-apiserver builds it (pkg/registry/customresource/tableconvertor/tableconvertor.go): a
``Name`` column (format ``name``), then the served version's ``additionalPrinterColumns``, each cell the
first result of the column's JSONPath; ``string`` columns as the JSONPath prints the value, ``integer``,
``number`` and ``boolean`` as JSON values, ``date`` as a human age (metatable
ConvertToHumanReadableDateType: duration.HumanDuration since the time); a missing value is null (kubectl
prints nothing). A CRD without columns gets ``Age`` (``.metadata.creationTimestamp``, apiextensions'
customresource_handler.go). Rows carry the object's metadata (``includeObject=Metadata``, the default)
as a PartialObjectMetadata, or the whole object (``Object``), or nothing (``None``).

Built-in resources are served as plain objects here; kubectl then prints its NAME/AGE fallback.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sft_common.progress import human_duration, parse_time

Json = dict[str, Any]

NAME_DESCRIPTION = (
    "Name must be unique within a namespace. Is required when creating resources, although some resources "
    "may allow a client to request the generation of an appropriate name automatically. Name is primarily "
    "intended for creation idempotence and configuration definition. Cannot be updated. More info: "
    "https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names"
)
DEFAULT_COLUMNS = ({"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},)


def wants_table(accept: str | None) -> bool:
    """Whether the first media range the client accepts that we serve is a v1 Table."""
    for media in (accept or "").split(","):
        params = {k.strip(): v.strip() for k, _, v in (p.partition("=") for p in media.split(";")[1:])}
        if params.get("as") == "Table":
            if params.get("v") == "v1" and params.get("g") == "meta.k8s.io":
                return True
            continue
        if media.split(";")[0].strip() in ("application/json", "*/*"):
            return False
    return False


def printer_columns(crd: Mapping[str, Any], version: str) -> list[Json]:
    for served in (crd.get("spec") or {}).get("versions") or []:
        if served.get("name") == version:
            return list(served.get("additionalPrinterColumns") or DEFAULT_COLUMNS)
    return list(DEFAULT_COLUMNS)


def to_table(
    items: Sequence[Json],
    columns: Sequence[Mapping[str, Any]],
    *,
    resource_version: str,
    include_object: str | None = None,
    now: datetime | None = None,
) -> Json:
    now = now or datetime.now(UTC)
    definitions = [
        {"name": "Name", "type": "string", "format": "name", "description": NAME_DESCRIPTION, "priority": 0}
    ]
    for col in columns:
        definitions.append(
            {
                "name": col["name"],
                "type": col["type"],
                "format": col.get("format", ""),
                "description": col.get("description")
                or f"Custom resource definition column (in JSONPath format): {col['jsonPath']}",
                "priority": int(col.get("priority") or 0),
            }
        )
    rows = []
    for obj in items:
        cells: list[Any] = [obj["metadata"]["name"]]
        for col in columns:
            found = find(obj, col["jsonPath"])
            cells.append(None if found is _MISSING else _cell(col["type"], found, now))
        row: Json = {"cells": cells}
        if (include_object or "Metadata") == "Metadata":
            row["object"] = {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj["metadata"],
            }
        elif include_object == "Object":
            row["object"] = obj
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": definitions,
        "rows": rows,
    }


def _cell(kind: str, value: Any, now: datetime) -> Any:
    if value is None:
        return None
    if kind == "string":
        return _text(value)
    if kind == "integer" and isinstance(value, int | float) and not isinstance(value, bool):
        return int(value)
    if kind == "number" and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if kind == "boolean" and isinstance(value, bool):
        return value
    if kind == "date" and isinstance(value, str):
        then = parse_time(value)
        if then is None:
            return "<invalid>"
        return human_duration((now - then).total_seconds())
    return None


def _text(value: Any) -> str:
    """How client-go's JSONPath prints a value (fmt.Fprint of the decoded JSON)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value, separators=(",", ":"))  # numbers; Go prints maps differently (unused here)


# ------------------------------------------------------------------------------ JSONPath (the subset
# CRD columns use: client-go's jsonpath with {...} around it; fields, [N], [*], [?(@.a.b=="v")])
_MISSING = object()
_STEP = re.compile(
    r"\.([A-Za-z0-9_\-]+)|\[(\d+|\*)\]|\[\?\(@((?:\.[A-Za-z0-9_\-]+)+)\s*==\s*[\"']([^\"']*)[\"']\)\]"
)


def find(obj: Any, path: str) -> Any:
    """The first result of ``path`` in ``obj``, or :data:`_MISSING`."""
    current: list[Any] = [obj]
    pos = 0
    while pos < len(path):
        match = _STEP.match(path, pos)
        if match is None:
            raise ValueError(f"unsupported JSONPath {path!r} at {pos}")
        pos = match.end()
        current = [result for value in current for result in _step(value, *match.groups())]
    return current[0] if current else _MISSING


def _step(value: Any, field: str | None, index: str | None, where: str | None, want: str | None) -> list[Any]:
    if field is not None:
        return [value[field]] if isinstance(value, Mapping) and field in value else []
    if index == "*":
        return (
            list(value.values())
            if isinstance(value, Mapping)
            else list(value)
            if isinstance(value, list)
            else []
        )
    if index is not None:
        return [value[int(index)]] if isinstance(value, list) and int(index) < len(value) else []
    assert where is not None
    out = []
    for item in value if isinstance(value, list) else []:
        got = item
        for key in where.strip(".").split("."):
            got = got.get(key, _MISSING) if isinstance(got, Mapping) else _MISSING
        if got is not _MISSING and _text(got) == want:
            out.append(item)
    return out
