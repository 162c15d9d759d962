"""The workload identity of one CR: what its pods run as and the one thing they may do.

Workload pods (prep workers, trainer rank 0) merge-patch ``status.progress`` of their own CR. The
operator gives every CR, in the CR's namespace and owned by the CR (garbage-collected with it):

- a ``Role`` allowing ``patch`` on ``<plural>/status`` with ``resourceNames: [<the CR>]``: a pod's
  token can patch its own CR's status and nothing else (not another run's, not any spec);
- a ``RoleBinding`` of that Role to the ServiceAccount the pods run as;
- that ServiceAccount itself, ``<name>-<prep|train>-workload``, unless the CR names one
  (``spec.serviceAccountName``, e.g. for cloud credentials) or the operator was given a shared
  default (``SFT_WORKLOAD_SERVICE_ACCOUNT``); those belong to whoever made them and only get bound.

So applying a sample in any namespace just works, with no per-namespace setup. The operator may
create this Role because it holds the same permission itself (Kubernetes RBAC lets a subject grant
only what it holds; no ``escalate`` or ``bind`` needed). A shared ServiceAccount collects the
bindings of every CR that uses it: per-CR accounts are the narrow default.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sft_operator.api.meta import DATAPREP, GROUP, RUN, KindInfo
from sft_operator.render import meta
from sft_operator.render.pods import WorkloadDefaults

APP = "sft-workload"
SUFFIX = {DATAPREP.kind: "prep-workload", RUN.kind: "train-workload"}
"""Name suffix of each kind's identity objects (next to its ``-prep`` Job / ``-train`` PyTorchJob)."""
RBAC_API = "rbac.authorization.k8s.io/v1"


def identity_name(info: KindInfo, cr_name: str) -> str:
    """Name of the CR's ServiceAccount, Role and RoleBinding."""
    return meta.child_name(cr_name, SUFFIX[info.kind])


def pod_service_account(info: KindInfo, cr: Mapping[str, Any], defaults: WorkloadDefaults) -> str:
    """The ServiceAccount the CR's pods run as: the spec's, else the operator's default, else the
    CR's own."""
    spec_account = (cr.get("spec") or {}).get("serviceAccountName")
    return spec_account or defaults.service_account or identity_name(info, cr["metadata"]["name"])


@dataclass(frozen=True)
class Identity:
    service_account: dict[str, Any] | None
    """None when the pods run as an account the operator does not own."""
    role: dict[str, Any]
    role_binding: dict[str, Any]


def status_rule(info: KindInfo, cr_name: str) -> dict[str, Any]:
    """The one permission a workload gets: patch its own CR's status."""
    return {
        "apiGroups": [GROUP],
        "resources": [f"{info.plural}/status"],
        "resourceNames": [cr_name],
        "verbs": ["patch"],
    }


def render_identity(info: KindInfo, cr: Mapping[str, Any], defaults: WorkloadDefaults) -> Identity:
    name, namespace = cr["metadata"]["name"], cr["metadata"]["namespace"]
    own = identity_name(info, name)
    account = pod_service_account(info, cr, defaults)

    def metadata() -> dict[str, Any]:
        return {
            "name": own,
            "namespace": namespace,
            "labels": meta.child_labels(info, name, APP),
            "annotations": meta.owner_annotations(info, name),
            "ownerReferences": [meta.owner_reference(info, cr)],
        }

    service_account = None
    if account == own:
        # No API token is needed by anything but the workload's own status patch, which it uses.
        service_account = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": metadata()}
    role = {
        "apiVersion": RBAC_API,
        "kind": "Role",
        "metadata": metadata(),
        "rules": [status_rule(info, name)],
    }
    role_binding = {
        "apiVersion": RBAC_API,
        "kind": "RoleBinding",
        "metadata": metadata(),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": own},
        "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}],
    }
    return Identity(service_account, role, role_binding)
