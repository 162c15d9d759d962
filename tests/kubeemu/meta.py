"""Object metadata rules the apiserver enforces on every write: names, labels, finalizers, owners.

Checked here (and not only in CRD schemas) because operator bugs hide exactly there: a generated
name longer than 63 characters becomes an invalid ``job-name`` label, a label value with a slash
is rejected, a finalizer added to an object that is already being deleted is forbidden.
"""

from __future__ import annotations

import re
from typing import Any

from .errors import Cause

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")

#: Resources whose object names must be DNS-1123 labels (≤63) rather than subdomains (≤253).
LABEL_NAMED = {("", "namespaces"), ("", "services")}


def validate_name(name: Any, label_only: bool, path: str = "metadata.name") -> list[Cause]:
    if not isinstance(name, str) or not name:
        return [Cause(path, "Required value: name or generateName is required", "FieldValueRequired")]
    if label_only:
        if len(name) > 63 or not _DNS_LABEL.match(name):
            return [
                Cause(
                    path,
                    f'Invalid value: "{name}": a lowercase RFC 1123 label must consist of lower case '
                    "alphanumeric characters or '-', start and end with an alphanumeric character, "
                    "and be at most 63 characters",
                )
            ]
        return []
    if len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
        return [
            Cause(
                path,
                f'Invalid value: "{name}": a lowercase RFC 1123 subdomain must consist of lower case '
                "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric "
                "character (at most 253 characters)",
            )
        ]
    return []


def validate_qualified_key(key: Any, path: str) -> list[Cause]:
    if not isinstance(key, str) or not key:
        return [Cause(path, "Invalid value: name part must be non-empty")]
    prefix, _, name = key.rpartition("/")
    causes: list[Cause] = []
    if prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
        causes.append(Cause(path, f'Invalid value: "{key}": prefix part must be a DNS-1123 subdomain'))
    if len(name) > 63 or not _QUALIFIED_NAME.match(name):
        causes.append(
            Cause(
                path,
                f'Invalid value: "{key}": name part must consist of alphanumeric characters, '
                "'-', '_' or '.', start and end with an alphanumeric character, and be at most 63 characters",
            )
        )
    return causes


def validate_labels(labels: Any, path: str) -> list[Cause]:
    if labels is None:
        return []
    if not isinstance(labels, dict):
        return [Cause(path, "Invalid value: must be a map of strings", "FieldValueTypeInvalid")]
    causes: list[Cause] = []
    for key, value in labels.items():
        causes += validate_qualified_key(key, path)
        if not isinstance(value, str):
            causes.append(
                Cause(f"{path}.{key}", "Invalid value: label values must be strings", "FieldValueTypeInvalid")
            )
        elif len(value) > 63 or not _LABEL_VALUE.match(value):
            causes.append(
                Cause(
                    path,
                    f'Invalid value: "{value}": a valid label must be an empty string or consist of '
                    "alphanumeric characters, '-', '_' or '.', and must start and end with an "
                    "alphanumeric character (at most 63 characters)",
                )
            )
    return causes


def validate_annotations(annotations: Any, path: str) -> list[Cause]:
    if annotations is None:
        return []
    if not isinstance(annotations, dict):
        return [Cause(path, "Invalid value: must be a map of strings", "FieldValueTypeInvalid")]
    causes: list[Cause] = []
    total = 0
    for key, value in annotations.items():
        causes += validate_qualified_key(key, path)
        if not isinstance(value, str):
            causes.append(Cause(f"{path}.{key}", "Invalid value: annotation values must be strings"))
        else:
            total += len(key) + len(value)
    if total > 256 * 1024:
        causes.append(
            Cause(path, f"Too long: must have at most 262144 bytes (got {total})", "FieldValueTooLong")
        )
    return causes


def validate_owner_references(refs: Any) -> list[Cause]:
    if refs is None:
        return []
    if not isinstance(refs, list):
        return [Cause("metadata.ownerReferences", "Invalid value: must be a list", "FieldValueTypeInvalid")]
    causes: list[Cause] = []
    controllers = 0
    for index, ref in enumerate(refs):
        path = f"metadata.ownerReferences[{index}]"
        if not isinstance(ref, dict):
            causes.append(Cause(path, "Invalid value: must be an object", "FieldValueTypeInvalid"))
            continue
        for key in ("apiVersion", "kind", "name", "uid"):
            if not ref.get(key):
                causes.append(Cause(f"{path}.{key}", "Required value", "FieldValueRequired"))
        controllers += bool(ref.get("controller"))
    if controllers > 1:
        causes.append(
            Cause(
                "metadata.ownerReferences",
                "Invalid value: Only one reference can have Controller set to true",
            )
        )
    return causes


def validate_metadata(
    meta: dict[str, Any], label_only_name: bool, old_meta: dict[str, Any] | None
) -> list[Cause]:
    """All metadata checks for one write; ``old_meta`` is None on create."""
    causes = validate_name(meta.get("name"), label_only_name)
    causes += validate_labels(meta.get("labels"), "metadata.labels")
    causes += validate_annotations(meta.get("annotations"), "metadata.annotations")
    causes += validate_owner_references(meta.get("ownerReferences"))
    finalizers = meta.get("finalizers") or []
    if not isinstance(finalizers, list) or not all(isinstance(item, str) for item in finalizers):
        causes.append(
            Cause("metadata.finalizers", "Invalid value: must be a list of strings", "FieldValueTypeInvalid")
        )
    else:
        for index, finalizer in enumerate(finalizers):
            causes += validate_qualified_key(finalizer, f"metadata.finalizers[{index}]")
        if old_meta is not None and old_meta.get("deletionTimestamp"):
            added = set(finalizers) - set(old_meta.get("finalizers") or [])
            if added:
                causes.append(
                    Cause(
                        "metadata.finalizers",
                        f"Forbidden: no new finalizers can be added if the object is being deleted, "
                        f"found new finalizers {sorted(added)}",
                        "FieldValueForbidden",
                    )
                )
    return causes


def template_label_causes(obj: dict[str, Any]) -> list[Cause]:
    """Labels of an embedded pod template (Jobs, PyTorchJob replicas) are validated too."""
    causes: list[Cause] = []
    spec = obj.get("spec") or {}
    template = spec.get("template")
    if isinstance(template, dict):
        causes += validate_labels(
            (template.get("metadata") or {}).get("labels"), "spec.template.metadata.labels"
        )
    for replica, replica_spec in (spec.get("pytorchReplicaSpecs") or {}).items():
        if isinstance(replica_spec, dict) and isinstance(replica_spec.get("template"), dict):
            labels = (replica_spec["template"].get("metadata") or {}).get("labels")
            causes += validate_labels(labels, f"spec.pytorchReplicaSpecs.{replica}.template.metadata.labels")
    return causes
