"""Structural CRD schemas for built-in Kubernetes types, built from the official OpenAPI definitions.

Third-party CRDs (JobSet, Kubeflow Trainer) embed core types: a JobSet's ``replicatedJobs[].template``
is a ``batch/v1`` JobTemplateSpec, a TrainJob's ``trainer.env`` is a list of ``core/v1`` EnvVar. Their
published CRDs carry these types expanded inline (controller-gen does it from the Go types). Here the
same expansion is made from the Kubernetes 1.33 OpenAPI definitions bundled with ``kubernetes-validate``
(the ones :mod:`kubeemu.builtin_schema` validates built-ins with), following controller-gen's output:

- ``$ref`` inlined; ``type: [T, "null"]`` becomes ``type: T``;
- ``Quantity`` and ``IntOrString`` become ``x-kubernetes-int-or-string: true`` (the real CRDs also
  carry a pattern for quantities; not checked here);
- ``additionalProperties: false`` dropped (a structural schema prunes unknown fields instead of
  rejecting them, which is what a real apiserver does with a misspelled field of a CR);
- an embedded ``ObjectMeta`` (templates) becomes ``labels``/``annotations``/``finalizers``/``name``/
  ``namespace`` only, as controller-gen's ``generateEmbeddedObjectMeta=true`` writes it (JobSet's and
  Trainer's CRDs are generated that way);
- descriptions dropped (size).
"""

from __future__ import annotations

import copy
import functools
from typing import Any

import kubernetes_validate.utils as kv_utils

from .builtin_schema import KUBERNETES_VERSION

Json = dict[str, Any]

_PREFIX = "#/$defs/"
_INT_OR_STRING = (
    "io.k8s.apimachinery.pkg.api.resource.Quantity",
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString",
)
_OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
EMBEDDED_OBJECT_META: Json = {
    "type": "object",
    "properties": {
        "annotations": _STRING_MAP,
        "finalizers": {"type": "array", "items": {"type": "string"}},
        "labels": _STRING_MAP,
        "name": {"type": "string"},
        "namespace": {"type": "string"},
    },
}


@functools.cache
def _definitions() -> dict[str, Json]:
    version = [v for v in kv_utils.all_versions() if kv_utils.major_minor(v) <= KUBERNETES_VERSION][-1]
    contents = kv_utils.schema_contents(f"kubernetes-json-schema/v{version}-local/_definitions.json", version)
    return dict(contents["$defs"])


def _convert(node: Any, stack: tuple[str, ...]) -> Any:
    if isinstance(node, list):
        return [_convert(item, stack) for item in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith(_PREFIX):
        return _resolve(ref[len(_PREFIX) :], stack)
    result: Json = {}
    for key, value in node.items():
        if key in ("description", "$schema", "$id"):
            continue
        if key == "type" and isinstance(value, list):
            kinds = [kind for kind in value if kind != "null"]
            value = kinds[0] if len(kinds) == 1 else kinds
        if key == "additionalProperties" and value is False:
            continue
        if key in ("properties", "patternProperties"):
            result[key] = {name: _convert(sub, stack) for name, sub in value.items()}
            continue
        result[key] = _convert(value, stack)
    return result


def _resolve(name: str, stack: tuple[str, ...]) -> Json:
    if name in _INT_OR_STRING:
        return {"x-kubernetes-int-or-string": True}
    if name == _OBJECT_META:
        return copy.deepcopy(EMBEDDED_OBJECT_META)
    if name in stack:  # recursive types (none in the workload API; kept for safety)
        return {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    return _convert(_definitions()[name], (*stack, name))


@functools.cache
def _cached(name: str) -> Json:
    return _resolve(name, ())


def k8s_schema(definition: str) -> Json:
    """The structural schema of one Kubernetes definition, e.g. ``"io.k8s.api.batch.v1.JobTemplateSpec"``.

    Short names resolve in the core and batch groups: ``"core.v1.EnvVar"``, ``"batch.v1.JobTemplateSpec"``.
    """
    name = definition if definition.startswith("io.k8s.") else f"io.k8s.api.{definition}"
    if name not in _definitions():
        raise KeyError(f"no Kubernetes OpenAPI definition {definition!r}")
    return copy.deepcopy(_cached(name))


# Small builders for the hand-written parts of CRD schemas.


def obj_schema(
    properties: Json, required: list[str] | None = None, *, rules: list[Json] | None = None, **extra: Any
) -> Json:
    """An object schema; ``rules`` become its ``x-kubernetes-validations``."""
    schema: Json = {"type": "object", "properties": properties, **extra}
    if required:
        schema["required"] = required
    if rules:
        schema["x-kubernetes-validations"] = rules
    return schema


def str_schema(*, rules: list[Json] | None = None, **extra: Any) -> Json:
    schema: Json = {"type": "string", **extra}
    if rules:
        schema["x-kubernetes-validations"] = rules
    return schema


def int_schema(minimum: int | None = None, fmt: str = "int32") -> Json:
    schema: Json = {"type": "integer", "format": fmt}
    if minimum is not None:
        schema["minimum"] = minimum
    return schema


def str_list_schema() -> Json:
    return {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "atomic"}


def condition_schema() -> Json:
    """``metav1.Condition`` as controller-gen writes it."""
    return obj_schema(
        {
            "lastTransitionTime": str_schema(format="date-time"),
            "message": str_schema(maxLength=32768),
            "observedGeneration": int_schema(0, "int64"),
            "reason": str_schema(maxLength=1024, minLength=1),
            "status": str_schema(enum=["True", "False", "Unknown"]),
            "type": str_schema(maxLength=316),
        },
        ["lastTransitionTime", "message", "reason", "status", "type"],
    )
