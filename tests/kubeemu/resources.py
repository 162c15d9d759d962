"""What the emulated apiserver serves: built-in resources plus those defined by installed CRDs.

A :class:`ResourceDef` is one plural of one API group. Objects are stored per ``(group, plural)``
and served under every version the group declares, without conversion (multi-version CRDs get the
same object under each version with ``apiVersion`` rewritten), which is enough for single-version
CRDs like ours.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# kopf's peering CRDs as the project ships them (manifests/crds/kopf-peering.yaml): the emulator serves
# exactly what the chart installs rather than a second definition of its own.
from sft_operator.crdgen import kopf_peering_crds as kopf_peering_crds

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class ResourceDef:
    """One served resource (a plural within a group)."""

    group: str
    versions: tuple[str, ...]
    plural: str
    kind: str
    namespaced: bool
    singular: str = ""
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()
    #: The CRD's openAPIV3Schema per version (None for built-ins: only metadata is validated).
    schemas: dict[str, dict[str, Any]] = field(default_factory=dict, compare=False, hash=False)
    #: The CRD that defines this resource (None for built-ins).
    crd_name: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.group, self.plural)

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources

    @property
    def preferred_version(self) -> str:
        return self.versions[0]

    def api_version(self, version: str | None = None) -> str:
        version = version or self.preferred_version
        return f"{self.group}/{version}" if self.group else version

    def schema(self, version: str | None = None) -> dict[str, Any] | None:
        return self.schemas.get(version or self.preferred_version)


def _builtin(
    group: str,
    version: str,
    plural: str,
    kind: str,
    namespaced: bool = True,
    short: tuple[str, ...] = (),
    sub: tuple[str, ...] = (),
) -> ResourceDef:
    return ResourceDef(
        group=group,
        versions=(version,),
        plural=plural,
        kind=kind,
        namespaced=namespaced,
        singular=kind.lower(),
        short_names=short,
        subresources=sub,
    )


BUILTINS: tuple[ResourceDef, ...] = (
    _builtin(
        "", "v1", "namespaces", "Namespace", namespaced=False, short=("ns",), sub=("status", "finalize")
    ),
    _builtin("", "v1", "configmaps", "ConfigMap", short=("cm",)),
    _builtin("", "v1", "secrets", "Secret"),
    _builtin("", "v1", "serviceaccounts", "ServiceAccount", short=("sa",)),
    _builtin("", "v1", "pods", "Pod", short=("po",), sub=("status", "log")),
    _builtin("", "v1", "events", "Event", short=("ev",)),
    _builtin("", "v1", "services", "Service", short=("svc",), sub=("status",)),
    _builtin("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", short=("pvc",), sub=("status",)),
    _builtin("events.k8s.io", "v1", "events", "Event", short=("ev",)),
    _builtin("batch", "v1", "jobs", "Job", sub=("status",)),
    _builtin("coordination.k8s.io", "v1", "leases", "Lease"),
    _builtin("apps", "v1", "deployments", "Deployment", short=("deploy",), sub=("status",)),
    _builtin("rbac.authorization.k8s.io", "v1", "roles", "Role"),
    _builtin("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding"),
    _builtin("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", namespaced=False),
    _builtin(
        "rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", namespaced=False
    ),
    _builtin(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        namespaced=False,
        short=("crd", "crds"),
        sub=("status",),
    ),
)


def resources_from_crd(crd: dict[str, Any]) -> ResourceDef:
    """Turn an ``apiextensions.k8s.io/v1`` CRD into the resource it serves."""
    spec = crd.get("spec", {})
    names = spec.get("names", {})
    served = [version for version in spec.get("versions", []) if version.get("served", True)]
    # The storage version first: it is the "preferred" version in discovery.
    served.sort(key=lambda version: not version.get("storage", False))
    subresources: set[str] = set()
    schemas: dict[str, dict[str, Any]] = {}
    for version in served:
        subresources.update((version.get("subresources") or {}).keys())
        schema = (version.get("schema") or {}).get("openAPIV3Schema")
        if schema:
            schemas[version["name"]] = schema
    return ResourceDef(
        group=spec.get("group", ""),
        versions=tuple(version["name"] for version in served),
        plural=names.get("plural", ""),
        kind=names.get("kind", ""),
        namespaced=spec.get("scope", "Namespaced") == "Namespaced",
        singular=names.get("singular") or names.get("kind", "").lower(),
        short_names=tuple(names.get("shortNames") or ()),
        categories=tuple(names.get("categories") or ()),
        subresources=tuple(sorted(subresources)),
        schemas=schemas,
        crd_name=crd.get("metadata", {}).get("name"),
    )


def pytorchjob_crd() -> dict[str, Any]:
    """A minimal ``kubeflow.org/v1`` PyTorchJob CRD (open schema, status subresource).

    Enough for an operator to create PyTorchJobs and for :class:`~kubeemu.podrunner.PodRunner` to
    play the training-operator; tests of "CRD missing, then installed" install it mid-test.
    """
    open_object = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "pytorchjobs.kubeflow.org"},
        "spec": {
            "group": "kubeflow.org",
            "scope": "Namespaced",
            "names": {"plural": "pytorchjobs", "singular": "pytorchjob", "kind": "PyTorchJob"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {"spec": open_object, "status": open_object},
                        }
                    },
                }
            ],
        },
    }
