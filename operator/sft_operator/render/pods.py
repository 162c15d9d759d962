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

from sft_operator.api.meta import GROUP, VERSION, KindInfo
from sft_operator.api.podspec import (
    CONFIG_DIR,
    CONFIG_VOLUME,
    SCRATCH_DIR,
    SCRATCH_VOLUME,
    PodFields,
    PodPlacement,
)

RUN_AS = 1000


@dataclass(frozen=True)
class WorkloadDefaults:
    """What the operator fills in when a CR leaves it unset (from its own environment, see from_env)."""

    prep_image: str | None = None
    trainer_image: str | None = None
    service_account: str | None = None
    training_runtime: str | None = None
    """ClusterTrainingRuntime of TrainJobs whose SFTRun names none (the chart's shipped runtime)."""
    placement: PodPlacement = field(default_factory=PodPlacement)
    """Chart-wide pod placement (Helm value workloadPods, env SFT_WORKLOAD_POD_DEFAULTS as JSON)."""

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
            prep_image=env.get("SFT_DEFAULT_PREP_IMAGE") or None,
            trainer_image=env.get("SFT_DEFAULT_TRAINER_IMAGE") or None,
            service_account=env.get("SFT_WORKLOAD_SERVICE_ACCOUNT") or None,
            training_runtime=env.get("SFT_TRAINING_RUNTIME") or None,
            placement=placement,
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
    service_account: str | None = None,
    extra_volumes: Sequence[Mapping[str, Any]] = (),
    where: PodPlacement | None = None,
) -> dict[str, Any]:
    """The pod spec; ``service_account`` is the default used when the CR names none, ``where`` the
    merged placement (see :func:`placement`; default: the spec's own)."""
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
    account = spec.service_account_name or service_account
    if account:
        out["serviceAccountName"] = account
    else:
        # No ServiceAccount chosen: the default one has no rights on our CRs, so do not mount a token.
        out["automountServiceAccountToken"] = False
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
