"""Child names, labels, annotations and ownerReferences: the metadata that ties children to a CR.

Names are deterministic (a restart re-renders the same names, so a 409 means "already there") and
fit Kubernetes limits: a Job's name ends up in the ``job-name`` pod label and, for Indexed Jobs, in
pod hostnames ``<job>-<index>``, so child names stay within :data:`MAX_CHILD_NAME` characters,
shortened with a hash of the full name when needed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from sft_operator.api.meta import GROUP, MANAGED_BY, KindInfo

MAX_CHILD_NAME = 52
"""63 (label value / hostname limit) minus room for "-<index>" of an Indexed Job's pods."""
MAX_LABEL_VALUE = 63
OWNER_NAME_ANNOTATION = f"{GROUP}/owner-name"
OWNER_KIND_ANNOTATION = f"{GROUP}/owner-kind"
SPEC_HASH_ANNOTATION = f"{GROUP}/spec-hash"
SUSPEND_ANNOTATION = f"{GROUP}/suspend"
"""Job annotation: the ``spec.suspend`` value the operator last wrote to the Job (see render.suspend)."""
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"


def short_hash(text: str, length: int = 5) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def child_name(owner: str, suffix: str, limit: int = MAX_CHILD_NAME) -> str:
    """``<owner>-<suffix>``, or ``<owner prefix>-<hash>-<suffix>`` when that would exceed ``limit``."""
    name = f"{owner}-{suffix}"
    if len(name) <= limit:
        return name
    keep = limit - len(suffix) - 7  # "-" + 5 hash chars + "-"
    prefix = owner[:keep].rstrip("-.")
    return f"{prefix}-{short_hash(owner)}-{suffix}"


def label_value(value: str) -> str:
    """A label-safe form of a (possibly long) object name: truncated with a hash suffix."""
    if len(value) <= MAX_LABEL_VALUE:
        return value
    return f"{value[: MAX_LABEL_VALUE - 6].rstrip('-.')}-{short_hash(value)}"


def child_labels(info: KindInfo, owner_name: str, app: str) -> dict[str, str]:
    """Explicit labels for children (never a copy of the CR's labels, which may be anything)."""
    return {
        "app.kubernetes.io/name": app,
        "app.kubernetes.io/instance": label_value(owner_name),
        "app.kubernetes.io/component": info.component,
        "app.kubernetes.io/part-of": "sft-operator",
        MANAGED_BY_LABEL: MANAGED_BY,
        info.label_key: label_value(owner_name),
    }


def owner_annotations(info: KindInfo, owner_name: str) -> dict[str, str]:
    """The owner's exact kind and name (labels may be shortened; pods are owned by the Job, not the CR)."""
    return {OWNER_KIND_ANNOTATION: info.kind, OWNER_NAME_ANNOTATION: owner_name}


def owner_reference(info: KindInfo, cr: Mapping[str, Any]) -> dict[str, Any]:
    """Controller reference to the CR: deleting the CR garbage-collects its children (no finalizer)."""
    meta = cr["metadata"]
    return {
        "apiVersion": info.api_version,
        "kind": info.kind,
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def spec_hash(data: Mapping[str, Any]) -> str:
    """Hash of the data-defining spec, stamped on children to detect a spec changed after creation."""
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def is_controlled_by(child: Mapping[str, Any], uid: str) -> bool:
    """Whether the CR with ``uid`` controls ``child`` (a same-named object of an earlier CR does not)."""
    for ref in child.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("controller") and ref.get("uid") == uid:
            return True
    return False
