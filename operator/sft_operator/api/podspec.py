"""The Kubernetes part of a spec, shared by every kind that runs pods (``SFTDataPrep``, ``SFTRun``).

These are typed subsets of the core/v1 types, small enough to keep the CRD schema readable and
``kubectl explain`` useful. ``affinity`` and ``volumes`` are passed through as-is (their upstream
schemas are huge); the apiserver validates them when the operator creates the child.

Secrets never belong in a spec: an ``env`` entry whose name looks like a credential must use
``valueFrom.secretKeyRef`` (enforced by a CEL rule in the CRD and again by the operator).
"""

from __future__ import annotations

import re
from typing import Any, Literal
from urllib.parse import urlparse

from pydantic import ConfigDict, Field, field_validator, model_validator

from sft_common.config import ConfigModel

QUANTITY_RE = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+|[numkMGTPE]|[KMGTPE]i)?$")
DNS_LABEL_RE = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
ENV_NAME_RE = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"
LABEL_KEY_RE = re.compile(
    r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
LABEL_VALUE_RE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$")
CREDENTIAL_NAME_RE = r"(?i)(token|secret|password|passwd|api_?key|access_?key|credential)"
"""Env names that hold credentials; such variables must come from a Secret (valueFrom/envFrom)."""
RESERVED_ENV_PREFIX = "SFT_OWNER_"
# Set per run by the operator: every worker of one Job must share it (see sft_prep.identity).
RESERVED_ENV_NAMES = frozenset({"SFT_RUN_ID"})

# Names and paths the operator itself uses in every pod (see sft_operator.render.pods).
CONFIG_VOLUME = "sft-config"
SCRATCH_VOLUME = "sft-scratch"
CONFIG_DIR = "/etc/sft"
SCRATCH_DIR = "/tmp"
RESERVED_VOLUMES = frozenset({CONFIG_VOLUME, SCRATCH_VOLUME})
RESERVED_MOUNT_PATHS = frozenset({CONFIG_DIR, SCRATCH_DIR})

Quantity = int | str


def _check_quantities(values: dict[str, Quantity] | None, where: str) -> dict[str, Quantity] | None:
    for key, value in (values or {}).items():
        if isinstance(value, str) and not QUANTITY_RE.match(value):
            raise ValueError(
                f"{where}.{key}: '{value}' is not a Kubernetes quantity (examples: 500m, 2, 16Gi, 1.5)"
            )
    return values


def check_uri(key: str, value: str, *, allow_hf: bool) -> None:
    """Reject URIs the workload cannot read, with a message that says what a valid one looks like."""
    if "://" not in value:
        if not value.startswith("/"):
            raise ValueError(
                f"{key}: '{value}' is a relative path; pods have no meaningful working directory, so use "
                "an absolute path on a mounted volume or an s3:// URI"
            )
        return
    parsed = urlparse(value)
    schemes = {"s3", "file"} | ({"hf"} if allow_hf else set())
    if parsed.scheme not in schemes:
        raise ValueError(
            f"{key}: scheme '{parsed.scheme}://' is not supported; use "
            + ", ".join(f"{s}://" for s in sorted(schemes))
            + " or an absolute path"
        )
    if parsed.scheme in ("s3", "hf") and not parsed.netloc:
        what = "bucket" if parsed.scheme == "s3" else "organisation"
        raise ValueError(f"{key}: '{value}' has no {what}; expected {parsed.scheme}://<{what}>/<path>")
    if parsed.scheme == "file" and not parsed.path.startswith("/"):
        raise ValueError(f"{key}: '{value}' must be file:///absolute/path")


class ResourceRequirements(ConfigModel):
    """CPU, memory, GPU and ephemeral-storage requests and limits of the main container."""

    requests: dict[str, Quantity] | None = None
    """Minimum resources, e.g. {cpu: "4", memory: 16Gi}."""
    limits: dict[str, Quantity] | None = None
    """Maximum resources, e.g. {memory: 32Gi, nvidia.com/gpu: 8}."""

    @field_validator("requests", "limits")
    @classmethod
    def _quantities(cls, value: dict[str, Quantity] | None, info: Any) -> dict[str, Quantity] | None:
        return _check_quantities(value, f"resources.{info.field_name}")


class Toleration(ConfigModel):
    """Lets pods schedule onto nodes with a matching taint (e.g. a GPU or spot node pool)."""

    key: str | None = None
    """Taint key; empty with operator Exists matches every taint."""
    operator: Literal["Exists", "Equal"] | None = None
    """Exists or Equal (default Equal)."""
    value: str | None = None
    """Taint value to match (operator Equal)."""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    """Taint effect to match; empty matches all effects."""
    toleration_seconds: int | None = Field(default=None, ge=0)
    """How long a NoExecute taint is tolerated before eviction."""


class SecretKeySelector(ConfigModel):
    """One key of a Secret in the CR's namespace."""

    name: str = Field(min_length=1, max_length=253)
    """Name of the Secret."""
    key: str = Field(min_length=1, max_length=253)
    """Key inside the Secret."""
    optional: bool | None = None
    """Start the pod even when the Secret or key is missing."""


class ConfigMapKeySelector(ConfigModel):
    """One key of a ConfigMap in the CR's namespace."""

    name: str = Field(min_length=1, max_length=253)
    """Name of the ConfigMap."""
    key: str = Field(min_length=1, max_length=253)
    """Key inside the ConfigMap."""
    optional: bool | None = None
    """Start the pod even when the ConfigMap or key is missing."""


class ObjectFieldSelector(ConfigModel):
    """A field of the pod itself (downward API), e.g. metadata.name."""

    field_path: str = Field(min_length=1, max_length=256)
    """Path of the field, e.g. metadata.namespace or status.podIP."""
    api_version: str | None = None
    """Schema version of field_path (default v1)."""


class EnvVarSource(ConfigModel):
    """Where a variable's value comes from; exactly one source must be set."""

    secret_key_ref: SecretKeySelector | None = None
    """A key of a Secret: the way to pass S3, Hugging Face and W&B credentials."""
    config_map_key_ref: ConfigMapKeySelector | None = None
    """A key of a ConfigMap."""
    field_ref: ObjectFieldSelector | None = None
    """A field of the pod (downward API)."""

    @model_validator(mode="after")
    def _one_source(self) -> EnvVarSource:
        count = sum(x is not None for x in (self.secret_key_ref, self.config_map_key_ref, self.field_ref))
        if count != 1:
            raise ValueError("valueFrom needs exactly one of secretKeyRef, configMapKeyRef, fieldRef")
        return self


class EnvVar(ConfigModel):
    """One environment variable of the main container."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": f"!has(self.value) || !self.name.matches('{CREDENTIAL_NAME_RE}')",
                    "message": "variables that hold credentials (token, secret, password, api key, access "
                    "key) must come from a Secret: use valueFrom.secretKeyRef or envFrom, not value",
                },
                {
                    "rule": "!(has(self.value) && has(self.valueFrom))",
                    "message": "set value or valueFrom, not both",
                },
            ]
        }
    )

    name: str = Field(min_length=1, max_length=256, pattern=ENV_NAME_RE)
    """Variable name."""
    value: str | None = Field(default=None, max_length=32768)
    """Literal value (never a credential: use valueFrom.secretKeyRef)."""
    value_from: EnvVarSource | None = None
    """Take the value from a Secret, ConfigMap or pod field."""

    @model_validator(mode="after")
    def _no_literal_secrets(self) -> EnvVar:
        if self.value is not None and self.value_from is not None:
            raise ValueError(f"env {self.name}: set value or valueFrom, not both")
        if self.value is not None and re.search(CREDENTIAL_NAME_RE, self.name):
            raise ValueError(
                f"env {self.name} looks like a credential: put it in a Secret and use "
                "valueFrom.secretKeyRef (or envFrom.secretRef) instead of a literal value"
            )
        if self.name.startswith(RESERVED_ENV_PREFIX):
            raise ValueError(f"env {self.name}: the {RESERVED_ENV_PREFIX}* variables are set by the operator")
        if self.name in RESERVED_ENV_NAMES:
            raise ValueError(f"env {self.name}: set by the operator (one value for all workers of a run)")
        return self


class LocalObjectReference(ConfigModel):
    """A reference to a Secret or ConfigMap by name, in the CR's namespace."""

    name: str = Field(min_length=1, max_length=253)
    """Name of the object."""
    optional: bool | None = None
    """Start the pod even when the object is missing."""


class EnvFromSource(ConfigModel):
    """Every key of a Secret or ConfigMap as environment variables."""

    prefix: str | None = Field(default=None, max_length=256)
    """Prepended to each key."""
    secret_ref: LocalObjectReference | None = None
    """A Secret, e.g. one holding AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, HF_TOKEN or WANDB_API_KEY."""
    config_map_ref: LocalObjectReference | None = None
    """A ConfigMap."""

    @model_validator(mode="after")
    def _one_source(self) -> EnvFromSource:
        if (self.secret_ref is None) == (self.config_map_ref is None):
            raise ValueError("envFrom entries need exactly one of secretRef or configMapRef")
        return self


class PullSecret(ConfigModel):
    """A docker-registry Secret used to pull the image."""

    name: str = Field(min_length=1, max_length=253)
    """Name of the Secret."""


class Volume(ConfigModel):
    """A pod volume (any core/v1 Volume source: persistentVolumeClaim, emptyDir, csi, ...)."""

    model_config = ConfigDict(extra="allow")

    name: str = Field(min_length=1, max_length=63, pattern=DNS_LABEL_RE)
    """Volume name, referenced by volumeMounts."""


class VolumeMount(ConfigModel):
    """Where a volume appears in the main container."""

    name: str = Field(min_length=1, max_length=63)
    """Name of a volume in volumes."""
    mount_path: str = Field(min_length=1, max_length=4096, pattern=r"^/")
    """Absolute path in the container."""
    read_only: bool | None = None
    """Mount read-only."""
    sub_path: str | None = Field(default=None, max_length=4096)
    """Mount only this sub-path of the volume."""


Capability = Literal["IPC_LOCK", "SYS_NICE", "SYS_RESOURCE"]
"""Capabilities a workload may add back (RDMA needs IPC_LOCK to pin memory; NCCL/NUMA tuning may want
SYS_NICE/SYS_RESOURCE); every other one stays dropped."""


class PodPlacement(ConfigModel):
    """Where and how the pods run on a GPU node pool: per CR, and as the operator's chart-wide
    defaults (Helm value workloadPods) that a CR's values add to or override."""

    node_selector: dict[str, str] | None = None
    """Schedule only onto nodes with these labels (merged over the chart default, the CR's keys win)."""
    tolerations: list[Toleration] = Field(default_factory=list, max_length=64)
    """Taints the pods tolerate (added to the chart default's)."""
    affinity: dict[str, Any] | None = None
    """core/v1 Affinity (node/pod affinity and anti-affinity), passed through unchanged; replaces the
    chart default's."""
    pod_labels: dict[str, str] | None = None
    """Extra pod labels (merged over the chart default's; the operator's own labels win)."""
    pod_annotations: dict[str, str] | None = None
    """Extra pod annotations, e.g. k8s.v1.cni.cncf.io/networks for a Multus RDMA network (merged over
    the chart default's; the operator's own annotations win)."""
    host_network: bool | None = None
    """Run the pods in the node's network namespace (some RDMA/RoCE setups); also sets dnsPolicy
    ClusterFirstWithHostNet. Default: the chart default, else false."""
    scheduler_name: str | None = Field(default=None, max_length=253, pattern=DNS_LABEL_RE)
    """A gang scheduler for the pods (e.g. volcano, scheduler-plugins-scheduler); default: the chart
    default, else the cluster's default scheduler."""
    added_capabilities: list[Capability] = Field(default_factory=list, max_length=3)
    """Linux capabilities added back to the otherwise fully dropped set (explicit opt-in; the rest of
    the restricted security context stays). Pod Security "restricted" forbids any: label the
    namespace baseline when you add one."""

    @field_validator("pod_labels", "pod_annotations")
    @classmethod
    def _keys(cls, value: dict[str, str] | None, info: Any) -> dict[str, str] | None:
        for key, item in (value or {}).items():
            if not LABEL_KEY_RE.match(key) or len(key) > 316:
                raise ValueError(f"{info.field_name}: '{key}' is not a valid key ([prefix/]name, name ≤ 63)")
            if info.field_name == "pod_labels" and not LABEL_VALUE_RE.match(item):
                raise ValueError(
                    f"podLabels.{key}: '{item}' is not a valid label value (≤ 63 of A-Z a-z 0-9 - _ .)"
                )
        return value


class PodFields(PodPlacement):
    """Pod template settings shared by every kind that runs pods."""

    image: str | None = Field(default=None, min_length=1, max_length=1024)
    """Container image that holds the workload (e.g. ghcr.io/sft-operator/sft-prep:0.1.0); default: the
    image the operator was installed with (SFT_DEFAULT_PREP_IMAGE / SFT_DEFAULT_TRAINER_IMAGE), else
    the release's own (ghcr.io/sft-operator/sft-prep or sft-trainer at the operator's version)."""
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    """When the kubelet pulls the image."""
    image_pull_secrets: list[PullSecret] = Field(default_factory=list, max_length=16)
    """Secrets for a private registry."""
    resources: ResourceRequirements = Field(default_factory=ResourceRequirements)
    """Requests and limits of the main container."""
    priority_class_name: str | None = Field(default=None, max_length=253)
    """PriorityClass of the pods."""
    service_account_name: str | None = Field(default=None, max_length=253, pattern=DNS_LABEL_RE)
    """ServiceAccount of the pods (it must exist); default: one the operator creates for this resource.
    Either way the operator binds it to a Role that may patch only this resource's status, so the
    workload can report progress."""
    env: list[EnvVar] = Field(default_factory=list, max_length=256)
    """Extra environment variables; credentials only via valueFrom.secretKeyRef."""
    env_from: list[EnvFromSource] = Field(default_factory=list, max_length=32)
    """Secrets/ConfigMaps whose keys become environment variables (S3, HF, W&B credentials)."""
    volumes: list[Volume] = Field(default_factory=list, max_length=64)
    """Extra pod volumes, e.g. a PersistentVolumeClaim for the output."""
    volume_mounts: list[VolumeMount] = Field(default_factory=list, max_length=64)
    """Where the extra volumes are mounted in the main container."""

    @model_validator(mode="after")
    def _check_volumes(self) -> PodFields:
        names = [v.name for v in self.volumes]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"volumes: names must be unique; repeated: {', '.join(dupes)}")
        reserved = sorted(set(names) & RESERVED_VOLUMES)
        if reserved:
            raise ValueError(f"volumes: {', '.join(reserved)} is reserved for the operator; rename it")
        for mount in self.volume_mounts:
            if mount.name not in names:
                raise ValueError(
                    f"volumeMounts: '{mount.name}' is not a volume; add it to volumes or fix the name "
                    f"(volumes: {', '.join(names) or 'none'})"
                )
            if mount.mount_path.rstrip("/") in RESERVED_MOUNT_PATHS:
                raise ValueError(f"volumeMounts: {mount.mount_path} is used by the operator; mount elsewhere")
        return self

    def check_location(self, key: str, value: str) -> None:
        """A location the pods read or write: a valid URI, and a local path (or file://) only on a
        mounted volume, else the pods cannot see it and what they write there vanishes with them."""
        check_uri(key, value, allow_hf=False)
        local = value.removeprefix("file://")
        if "://" not in local and self.mounted_volume_for(local) is None:
            raise ValueError(
                f"{key} {value} is a local path but no volumeMount holds it, so the pods cannot see it "
                "(and what they write there vanishes with them): mount a volume (e.g. a "
                "PersistentVolumeClaim) at or above it, or use an s3:// URI"
            )

    def mounted_volume_for(self, path: str) -> VolumeMount | None:
        """The mount that holds local ``path``, if any (the longest matching mountPath)."""
        best: VolumeMount | None = None
        for mount in self.volume_mounts:
            root = mount.mount_path.rstrip("/") or "/"
            if (path == root or path.startswith(root.rstrip("/") + "/")) and (
                best is None or len(root) > len(best.mount_path)
            ):
                best = mount
        return best


class BatchFields(ConfigModel):
    """Run-to-completion settings shared by both kinds (Job / PyTorchJob runPolicy)."""

    backoff_limit: int = Field(default=2, ge=0, le=100)
    """Pod failures tolerated before the run fails (bad config, exit code 2, fails at once)."""
    active_deadline_seconds: int | None = Field(default=None, ge=1)
    """Fail the run when it has been active this long."""
    ttl_seconds_after_finished: int | None = Field(default=None, ge=0)
    """Delete the child Job (and its pods) this long after it finished; the CR status keeps the result."""
    suspend: bool = False
    """Suspend the run (running pods are stopped; resuming restarts unfinished work). Stays mutable."""
    queue_name: str | None = Field(default=None, min_length=1, max_length=63, pattern=DNS_LABEL_RE)
    """Kueue LocalQueue: sets the kueue.x-k8s.io/queue-name label so Kueue admits the run."""
