"""Server-side defaults of built-in kinds that controllers and operators depend on.

Only what matters to our tests: the Job controller's labels and selector (operators find a Job's
pods by ``batch.kubernetes.io/job-name``; a too-long Job name fails here exactly as on a real
cluster, because it becomes a label value), Job spec defaults, Pod and Namespace initial status.
"""

from __future__ import annotations

from typing import Any

from .errors import Cause


def _job_defaults(obj: dict[str, Any]) -> None:
    meta = obj["metadata"]
    spec = obj.setdefault("spec", {})
    spec.setdefault("parallelism", 1)
    spec.setdefault("backoffLimit", 6)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    if spec.get("completionMode") == "NonIndexed":
        spec.setdefault("completions", 1)
    selector_labels = {"batch.kubernetes.io/controller-uid": meta["uid"]}
    spec.setdefault("selector", {"matchLabels": selector_labels})
    template = spec.setdefault("template", {})
    template_meta = template.setdefault("metadata", {})
    labels = template_meta.setdefault("labels", {})
    labels.update(
        {
            "batch.kubernetes.io/controller-uid": meta["uid"],
            "batch.kubernetes.io/job-name": meta["name"],
            "controller-uid": meta["uid"],
            "job-name": meta["name"],
        }
    )


def apply_create_defaults(group: str, plural: str, obj: dict[str, Any]) -> None:
    """Mutate a freshly created built-in object the way the apiserver's strategies do."""
    if (group, plural) == ("batch", "jobs"):
        _job_defaults(obj)
        obj["status"] = {}
    elif (group, plural) == ("", "pods"):
        obj["status"] = {"phase": "Pending"}
        spec = obj.setdefault("spec", {})
        spec.setdefault("restartPolicy", "Always")
        for container in spec.get("containers") or []:
            container.setdefault("terminationMessagePath", "/dev/termination-log")
            container.setdefault("terminationMessagePolicy", "File")
    elif (group, plural) == ("", "namespaces"):
        obj["status"] = {"phase": "Active"}
        obj.setdefault("spec", {})["finalizers"] = ["kubernetes"]
        obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = obj["metadata"]["name"]


_JOB_IMMUTABLE = ("completionMode", "completions", "selector", "podFailurePolicy")


def job_causes(obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
    """The Job validations that operators trip over (on create and on update)."""
    spec = obj.get("spec") or {}
    causes: list[Cause] = []
    policy = ((spec.get("template") or {}).get("spec") or {}).get("restartPolicy")
    if policy not in ("Never", "OnFailure"):
        causes.append(
            Cause(
                "spec.template.spec.restartPolicy",
                f'Unsupported value: "{policy or "Always"}": supported values: "OnFailure", "Never"',
                "FieldValueNotSupported",
            )
        )
    if spec.get("completionMode") == "Indexed" and spec.get("completions") is None:
        causes.append(
            Cause("spec.completions", "Required value: when completion mode is Indexed", "FieldValueRequired")
        )
    for key in (
        "parallelism",
        "completions",
        "backoffLimit",
        "activeDeadlineSeconds",
        "ttlSecondsAfterFinished",
    ):
        value = spec.get(key)
        if isinstance(value, int) and value < (1 if key == "activeDeadlineSeconds" else 0):
            causes.append(Cause(f"spec.{key}", f"Invalid value: {value}: must be greater than or equal to 0"))
    if old is not None:
        old_spec = old.get("spec") or {}
        for key in _JOB_IMMUTABLE:
            if spec.get(key) != old_spec.get(key):
                causes.append(Cause(f"spec.{key}", "Invalid value: field is immutable"))
        # The pod template may change only while the Job is suspended and has never started.
        never_started = old_spec.get("suspend") and not (old.get("status") or {}).get("startTime")
        if spec.get("template") != old_spec.get("template") and not never_started:
            causes.append(Cause("spec.template", "Invalid value: field is immutable"))
    return causes
