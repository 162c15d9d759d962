"""The pod template every workload pod gets: hardened, labelled, wired to its owner's status.

Security: non-root (uid/gid 1000, the images' user), no privilege escalation, all capabilities
dropped, seccomp RuntimeDefault, read-only root filesystem with an emptyDir at /tmp for scratch and
caches (HOME points there). ``FallbackToLogsOnError`` makes the last log lines the termination
message when the workload crashed before writing its JSON result.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sft_operator import __version__
from sft_operator.api.meta import GROUP, VERSION, KindInfo
from sft_operator.api.podspec import (
    CONFIG_DIR,
    CONFIG_VOLUME,
    SCRATCH_DIR,
    SCRATCH_VOLUME,
    PodFields,
    PodPlacement,
)
from sft_operator.errors import InvalidSpec

RUN_AS = 1000
IMAGE_REGISTRY = "ghcr.io/sft-operator"
"""Where the project's images are published (the Makefile's IMAGE_REGISTRY, the chart's repositories)."""
BUILTIN_PREP_IMAGE = f"{IMAGE_REGISTRY}/sft-prep:{__version__}"
BUILTIN_TRAINER_IMAGE = f"{IMAGE_REGISTRY}/sft-trainer:{__version__}"
"""The workload images of this release: the chart's image names at the package version, so an
operator started without the chart (``python -m sft_operator``) runs the images it was released with."""


def _env_image(env: Mapping[str, str], name: str, builtin: str) -> str | None:
    """Unset: the release's image; set empty: no default (every CR must name spec.image)."""
    value = env.get(name)
    if value is None:
        return builtin
    return value.strip() or None


RESTRICTED_VOLUME_TYPES = frozenset(
    {
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    }
)
"""The volume sources the ``restricted`` Pod Security Standard allows (kubernetes
pod-security-admission, policy/check_restrictedVolumes.go). Every other source is node-level
(hostPath, flexVolume, local disks) or bypasses PersistentVolume access control (nfs, iscsi, rbd, ...)."""
ANY = "*"


def _env_set(env: Mapping[str, str], name: str) -> frozenset[str]:
    return frozenset(item.strip() for item in (env.get(name) or "").split(",") if item.strip())


@dataclass(frozen=True)
class WorkloadPolicy:
    """What a CR may ask of its pods beyond the hardened template (the chart's ``workloads.policy``)."""

    extra_volume_types: frozenset[str] = frozenset()
    """Volume sources allowed besides RESTRICTED_VOLUME_TYPES, e.g. {"nfs"}; "*" allows every one."""
    service_accounts: frozenset[str] = frozenset()
    """ServiceAccounts a CR may name in spec.serviceAccountName besides the operator's workload one;
    "*" allows any (a CR could then run as any ServiceAccount of its namespace)."""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> WorkloadPolicy:
        return cls(
            extra_volume_types=_env_set(env, "SFT_ALLOWED_EXTRA_VOLUME_TYPES"),
            service_accounts=_env_set(env, "SFT_ALLOWED_SERVICE_ACCOUNTS"),
        )

    def check(self, spec: PodFields, workload_account: str | None) -> None:
        """Raise :class:`InvalidSpec` for a volume type or ServiceAccount the policy does not allow."""
        allowed = RESTRICTED_VOLUME_TYPES | self.extra_volume_types
        for volume in spec.volumes:
            for source in sorted(set(volume.model_extra or {}) - allowed):
                if ANY in self.extra_volume_types:
                    break
                raise InvalidSpec(
                    f"spec.volumes '{volume.name}': {source} volumes are not allowed (only "
                    f"{', '.join(sorted(allowed))}): use a persistentVolumeClaim, or ask the cluster "
                    f"admin to add {source} to the operator's workloads.policy.extraVolumeTypes",
                    reason="VolumeNotAllowed",
                )
        account = spec.service_account_name
        if account is None or account == workload_account or ANY in self.service_accounts:
            return
        if account not in self.service_accounts:
            others = ", ".join(sorted(self.service_accounts)) or "none"
            raise InvalidSpec(
                f"spec.serviceAccountName '{account}' is not allowed: pods run as the operator's workload "
                f"ServiceAccount ({workload_account or 'none'}) or one of workloads.policy.serviceAccounts "
                f"({others}); remove the field, or ask the cluster admin to allow '{account}'",
                reason="ServiceAccountNotAllowed",
            )


@dataclass(frozen=True)
class WorkloadDefaults:
    """What the operator applies to every CR's pods: the defaults it fills in when the CR leaves them
    unset, and the policy it enforces (from its own environment, see from_env)."""

    prep_image: str | None = None
    trainer_image: str | None = None
    service_account: str | None = None
    training_runtime: str | None = None
    """ClusterTrainingRuntime of TrainJobs whose SFTRun names none (the chart's shipped runtime)."""
    placement: PodPlacement = field(default_factory=PodPlacement)
    """Chart-wide pod placement (Helm value workloadPods, env SFT_WORKLOAD_POD_DEFAULTS as JSON)."""
    policy: WorkloadPolicy = WorkloadPolicy()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> WorkloadDefaults:
        """Raises ValueError (the operator does not start) when SFT_WORKLOAD_POD_DEFAULTS is invalid."""
        env = os.environ if env is None else env
        raw = env.get("SFT_WORKLOAD_POD_DEFAULTS") or "{}"
        try:
            placement = PodPlacement.model_validate(json.loads(raw))
        except ValueError as exc:
            raise ValueError(
                f"SFT_WORKLOAD_POD_DEFAULTS (Helm value workloadPods) is invalid: {exc}"
            ) from None
        return cls(
            prep_image=_env_image(env, "SFT_DEFAULT_PREP_IMAGE", BUILTIN_PREP_IMAGE),
            trainer_image=_env_image(env, "SFT_DEFAULT_TRAINER_IMAGE", BUILTIN_TRAINER_IMAGE),
            service_account=env.get("SFT_WORKLOAD_SERVICE_ACCOUNT") or None,
            training_runtime=env.get("SFT_TRAINING_RUNTIME") or None,
            placement=placement,
            policy=WorkloadPolicy.from_env(env),
        )


def placement(spec: PodPlacement, defaults: PodPlacement) -> PodPlacement:
    """The CR's placement over the chart-wide default: maps merged (the CR's keys win), tolerations
    and capabilities added, affinity/hostNetwork/schedulerName the CR's when set."""
    tolerations = list(spec.tolerations) + [t for t in defaults.tolerations if t not in spec.tolerations]
    return PodPlacement(
        node_selector={**(defaults.node_selector or {}), **(spec.node_selector or {})} or None,
        tolerations=tolerations,
        affinity=spec.affinity if spec.affinity is not None else defaults.affinity,
        pod_labels={**(defaults.pod_labels or {}), **(spec.pod_labels or {})} or None,
        pod_annotations={**(defaults.pod_annotations or {}), **(spec.pod_annotations or {})} or None,
        host_network=spec.host_network if spec.host_network is not None else defaults.host_network,
        scheduler_name=spec.scheduler_name or defaults.scheduler_name,
        added_capabilities=sorted({*defaults.added_capabilities, *spec.added_capabilities}),
    )


CONFIG_KEY = "config.yaml"
CONFIG_PATH = f"{CONFIG_DIR}/{CONFIG_KEY}"


def owner_env(info: KindInfo, namespace: str, name: str) -> list[dict[str, Any]]:
    """SFT_OWNER_*: lets the workload merge-patch ``status.progress`` of its CR (cross-team contract)."""
    return [
        {"name": "SFT_OWNER_GROUP", "value": GROUP},
        {"name": "SFT_OWNER_VERSION", "value": VERSION},
        {"name": "SFT_OWNER_PLURAL", "value": info.plural},
        {"name": "SFT_OWNER_NAMESPACE", "value": namespace},
        {"name": "SFT_OWNER_NAME", "value": name},
    ]


def container_security_context(added: Sequence[str] = ()) -> dict[str, Any]:
    """Restricted: no escalation, read-only root, non-root, every capability dropped except the ones
    explicitly ``added`` (e.g. IPC_LOCK for RDMA), RuntimeDefault seccomp."""
    capabilities: dict[str, Any] = {"drop": ["ALL"]}
    if added:
        capabilities["add"] = list(added)
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": capabilities,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def pod_security_context() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS,
        "runAsGroup": RUN_AS,
        "fsGroup": RUN_AS,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _dump_list(items: Sequence[Any]) -> list[dict[str, Any]]:
    return [item.model_dump(mode="json", by_alias=True, exclude_none=True) for item in items]


def container(
    spec: PodFields,
    *,
    name: str,
    image: str,
    command: list[str],
    env: list[dict[str, Any]],
    extra_mounts: Sequence[Mapping[str, Any]] = (),
    added_capabilities: Sequence[str] = (),
) -> dict[str, Any]:
    """The main container: operator env first, then the user's (users cannot override SFT_OWNER_*)."""
    resources = spec.resources.model_dump(mode="json", by_alias=True, exclude_none=True)
    out: dict[str, Any] = {
        "name": name,
        "image": image,
        "imagePullPolicy": spec.image_pull_policy,
        "command": command,
        "env": [*env, {"name": "HOME", "value": SCRATCH_DIR}, *_dump_list(spec.env)],
        "volumeMounts": [
            {"name": CONFIG_VOLUME, "mountPath": CONFIG_DIR, "readOnly": True},
            {"name": SCRATCH_VOLUME, "mountPath": SCRATCH_DIR},
            *[dict(m) for m in extra_mounts],
            *_dump_list(spec.volume_mounts),
        ],
        "securityContext": container_security_context(added_capabilities),
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if spec.env_from:
        out["envFrom"] = _dump_list(spec.env_from)
    if resources:
        out["resources"] = resources
    return out


def pod_spec(
    spec: PodFields,
    *,
    config_map: str,
    containers: list[dict[str, Any]],
    service_account: str,
    extra_volumes: Sequence[Mapping[str, Any]] = (),
    where: PodPlacement | None = None,
) -> dict[str, Any]:
    """The pod spec; ``service_account`` from :func:`sft_operator.render.identity.pod_service_account`
    (its token lets the workload patch its CR's status, the only right it has); ``where`` the merged
    placement (see :func:`placement`; default: the spec's own)."""
    where = where or spec
    out: dict[str, Any] = {
        "restartPolicy": "Never",
        "securityContext": pod_security_context(),
        "containers": containers,
        "volumes": [
            {
                "name": CONFIG_VOLUME,
                "configMap": {"name": config_map, "items": [{"key": CONFIG_KEY, "path": CONFIG_KEY}]},
            },
            {"name": SCRATCH_VOLUME, "emptyDir": {}},
            *[dict(v) for v in extra_volumes],
            *_dump_list(spec.volumes),
        ],
    }
    out["serviceAccountName"] = service_account
    if spec.image_pull_secrets:
        out["imagePullSecrets"] = _dump_list(spec.image_pull_secrets)
    if where.node_selector:
        out["nodeSelector"] = dict(where.node_selector)
    if where.tolerations:
        out["tolerations"] = _dump_list(where.tolerations)
    if where.affinity:
        out["affinity"] = where.affinity
    if where.host_network:
        out["hostNetwork"] = True
        out["dnsPolicy"] = "ClusterFirstWithHostNet"  # keep cluster DNS (Service names) with hostNetwork
    if where.scheduler_name:
        out["schedulerName"] = where.scheduler_name
    if spec.priority_class_name:
        out["priorityClassName"] = spec.priority_class_name
    return out
