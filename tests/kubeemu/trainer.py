"""Kubeflow Trainer v2 (``trainer.kubeflow.org/v1alpha1``): CRDs, webhooks and the TrainJob controller.

Facts from kubeflow/trainer at the v2.3.0 tag (Aug 2026): ``pkg/apis/trainer/v1alpha1/trainjob_types.go``
and ``trainingruntime_types.go`` (fields, ``runtimePatches`` since 2.2 with ``podTemplateOverrides``
gone, condition types and reasons), ``pkg/constants/constants.go`` (``PET_*`` names, port 29500,
the ``trainer.kubeflow.org/trainjob-ancestor-step`` label, container ``node``),
``pkg/runtime/core/trainingruntime.go`` (pod counts, ``resourcesPerNode`` merged into the ``node``
container, ``runtimePatches`` applied as strategic merge patches of the JobSet spec, labels and
annotations propagated), ``pkg/runtime/framework/plugins/torch/torch.go`` (the env injected),
``plugins/plainml/plainml.go``, ``plugins/jobset/{jobset,builder}.go`` (the JobSet built, its
status mirrored), ``pkg/controller/trainjob_controller.go`` (Suspended/Failed conditions, deadline)
and ``pkg/webhooks/trainjob_webhook.go`` (runtime must exist, reserved env names, patch checks).

What the controller does for a TrainJob whose ``runtimeRef`` names a ``ClusterTrainingRuntime``
(default) or a ``TrainingRuntime`` in its namespace:

- builds the JobSet ``<trainjob>`` in the same namespace, owned by the TrainJob: the runtime's
  ``spec.template`` with every ``runtimePatches[].trainingRuntimeSpec.template.spec`` merged in
  (strategic merge, lists merged by ``name``) and their metadata labels/annotations added to the
  JobSet's; for the replicated Job labelled ``trainjob-ancestor-step: trainer``: ``replicas: 1``,
  ``parallelism = completions = trainer.numNodes`` (else ``mlPolicy.numNodes``, else 1),
  ``trainer.image``/``command``/``args`` on its container ``node``, ``trainer.resourcesPerNode``
  merged over that container's resources, ``trainer.env`` upserted; with ``mlPolicy.torch`` the env
  ``PET_NNODES``, ``PET_NPROC_PER_NODE`` (``trainer.numProcPerNode``, else ``auto`` with GPUs, else the
  CPU count, at least 1), ``PET_NODE_RANK`` (fieldRef to the Job completion index annotation),
  ``PET_MASTER_ADDR=<trainjob>-node-0-0.<trainjob>``, ``PET_MASTER_PORT=29500`` and container port
  29500 (also into the ``envInjection`` targets); ``spec.suspend`` copied. An existing JobSet is
  rebuilt only while the TrainJob or the JobSet is suspended (as Trainer does);
- status: ``Complete``/``Failed`` copied from the JobSet's ``Completed``/``Failed`` conditions (same
  reason and message), ``jobsStatus`` from its ``replicatedJobsStatus``; ``Suspended`` True
  (``Suspended``, "TrainJob is suspended") / False (``Resumed``, "TrainJob is resumed");
  ``activeDeadlineSeconds`` from creation (or the last resume) -> ``Failed`` (``DeadlineExceeded``,
  "TrainJob exceeded its active deadline") and the JobSet deleted. A runtimeRef of another kind or
  group -> ``Failed`` (``TrainingRuntimeNotSupported``). Trainer's TrainJob status has no restart
  count: read ``status.restarts`` of the JobSet (or the pods' ``restart-attempt`` label).

Webhooks: creating a TrainJob whose runtime does not exist, that sets a reserved ``PET_*`` env in
``trainer.env``, or whose runtime patches name replicated Jobs/containers the runtime lacks (or set
env of the ``node`` container) is denied (403 from ``validator.trainjob.trainer.kubeflow.org``);
``runtimePatches`` may change only while the TrainJob is suspended; ``runtimePatches[].time`` is
stamped on create.
"""

from __future__ import annotations

import contextlib
import copy
import math
import re
import time
from typing import Any

from .controllers import ControllerBase, parse_time
from .errors import ApiError
from .jobset import JOBSET_KEY, jobset_spec_schema
from .openapi_schema import (
    EMBEDDED_OBJECT_META,
    condition_schema,
    int_schema,
    k8s_schema,
    obj_schema,
    str_schema,
)
from .patching import strategic_merge_patch
from .store import Json, Store, now_iso

GROUP = "trainer.kubeflow.org"
VERSION = "v1alpha1"
TRAINJOB_KEY = (GROUP, "trainjobs")
CLUSTER_RUNTIME_KEY = (GROUP, "clustertrainingruntimes")
RUNTIME_KEY = (GROUP, "trainingruntimes")
CONTROLLER_NAME = "trainer.kubeflow.org/trainjob-controller"
ANCESTOR_LABEL = "trainer.kubeflow.org/trainjob-ancestor-step"
ANCESTOR_TRAINER = "trainer"
NODE = "node"
TRAINER_PORT = 29500
COMPLETION_INDEX_PATH = "metadata.annotations['batch.kubernetes.io/job-completion-index']"
TORCH_ENV = ("PET_NNODES", "PET_NPROC_PER_NODE", "PET_NODE_RANK", "PET_MASTER_ADDR", "PET_MASTER_PORT")
VALIDATOR = "validator.trainjob.trainer.kubeflow.org"
PATCHES = "spec.runtimePatches"
_IMMUTABLE = [{"rule": "self == oldSelf", "message": "field is immutable"}]


# ------------------------------------------------------------------------------------------ CRDs


def _env_list(max_items: int = 128) -> Json:
    return {
        "type": "array",
        "items": k8s_schema("core.v1.EnvVar"),
        "maxItems": max_items,
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["name"],
    }


def _named_list(items: Json, max_items: int, key: str = "name", *, rules: list[Json] | None = None) -> Json:
    schema: Json = {
        "type": "array",
        "items": items,
        "maxItems": max_items,
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": [key],
    }
    if rules:
        schema["x-kubernetes-validations"] = rules
    return schema


def _initializer() -> Json:
    uri_rule = {
        "rule": "self == '' || self.matches('^[A-Za-z][A-Za-z0-9+.-]*://.+$')",
        "message": "storageUri may be empty, or it must be a valid URI (scheme://...)",
    }
    return obj_schema(
        {
            "storageUri": str_schema(maxLength=2048, rules=[uri_rule]),
            "env": _env_list(),
            "secretRef": obj_schema({"name": str_schema()}),
        }
    )


def _pod_spec_patch() -> Json:
    container_patch = obj_schema(
        {
            "name": str_schema(minLength=1, maxLength=253),
            "env": _env_list(),
            "volumeMounts": _named_list(k8s_schema("core.v1.VolumeMount"), 128),
            "securityContext": k8s_schema("core.v1.SecurityContext"),
        },
        ["name"],
    )
    return obj_schema(
        {
            "serviceAccountName": str_schema(maxLength=253, rules=_IMMUTABLE),
            "volumes": _named_list(k8s_schema("core.v1.Volume"), 128, rules=_IMMUTABLE),
            "initContainers": _named_list(container_patch, 64, rules=_IMMUTABLE),
            "containers": _named_list(container_patch, 64, rules=_IMMUTABLE),
            "imagePullSecrets": _named_list(obj_schema({"name": str_schema()}), 64, rules=_IMMUTABLE),
            "securityContext": k8s_schema("core.v1.PodSecurityContext")
            | {"x-kubernetes-validations": _IMMUTABLE},
            "nodeSelector": {"type": "object", "additionalProperties": {"type": "string"}},
            "affinity": k8s_schema("core.v1.Affinity"),
            "tolerations": {
                "type": "array",
                "items": k8s_schema("core.v1.Toleration"),
                "maxItems": 128,
                "x-kubernetes-list-type": "atomic",
            },
            "schedulingGates": _named_list(obj_schema({"name": str_schema()}, ["name"]), 16),
            "terminationGracePeriodSeconds": int_schema(0, "int64")
            | {"x-kubernetes-validations": _IMMUTABLE},
        }
    )


def _runtime_patch() -> Json:
    meta = copy.deepcopy(EMBEDDED_OBJECT_META)
    pod_template = obj_schema({"metadata": meta, "spec": _pod_spec_patch()})
    job_template = obj_schema({"metadata": meta, "spec": obj_schema({"template": pod_template})})
    replicated_job = obj_schema(
        {"name": str_schema(minLength=1, maxLength=253), "template": job_template}, ["name"]
    )
    template = obj_schema(
        {"metadata": meta, "spec": obj_schema({"replicatedJobs": _named_list(replicated_job, 100)})}
    )
    return obj_schema(
        {
            "manager": str_schema(minLength=1, maxLength=253, rules=_IMMUTABLE),
            "time": str_schema(format="date-time"),
            "trainingRuntimeSpec": obj_schema({"template": template}),
        },
        ["manager"],
    )


def trainjob_spec_schema() -> Json:
    trainer = obj_schema(
        {
            "image": str_schema(maxLength=500),
            "command": {"type": "array", "items": str_schema(maxLength=1048576), "maxItems": 128},
            "args": {"type": "array", "items": str_schema(maxLength=1048576), "maxItems": 128},
            "env": _env_list(),
            "numNodes": int_schema(0),
            "resourcesPerNode": k8s_schema("core.v1.ResourceRequirements"),
            "numProcPerNode": int_schema()
            | {
                "x-kubernetes-validations": [
                    {"rule": "self >= 1", "message": "numProcPerNode must be greater than or equal to 1"}
                ]
            },
        }
    )
    return obj_schema(
        {
            "runtimeRef": obj_schema(
                {
                    "name": str_schema(minLength=1, maxLength=253),
                    "apiGroup": str_schema(maxLength=253, default=GROUP),
                    "kind": str_schema(maxLength=253, default="ClusterTrainingRuntime"),
                },
                ["name"],
                rules=_IMMUTABLE,
            ),
            "initializer": obj_schema(
                {"dataset": _initializer(), "model": _initializer()},
                rules=_IMMUTABLE,
            ),
            "trainer": trainer | {"x-kubernetes-validations": _IMMUTABLE},
            "runtimePatches": _named_list(_runtime_patch(), 16, "manager"),
            "suspend": {"type": "boolean", "default": False},
            "activeDeadlineSeconds": int_schema(1, "int64") | {"x-kubernetes-validations": _IMMUTABLE},
            "managedBy": str_schema(
                maxLength=253,
                default=CONTROLLER_NAME,
                rules=[
                    {
                        "rule": f"self in ['{CONTROLLER_NAME}', 'kueue.x-k8s.io/multikueue']",
                        "message": "ManagedBy must be trainer.kubeflow.org/trainjob-controller or "
                        "kueue.x-k8s.io/multikueue if set",
                    },
                    {"rule": "self == oldSelf", "message": "field is immutable"},
                ],
            ),
        },
        ["runtimeRef"],
    )


def trainjob_status_schema() -> Json:
    count = int_schema(0)
    return obj_schema(
        {
            "conditions": _named_list(condition_schema(), 8, "type"),
            "jobsStatus": _named_list(
                obj_schema(
                    {
                        "name": str_schema(minLength=1, maxLength=253),
                        "ready": count,
                        "succeeded": count,
                        "failed": count,
                        "active": count,
                        "suspended": count,
                    },
                    ["active", "failed", "name", "ready", "succeeded", "suspended"],
                ),
                100,
            ),
            "trainerStatus": obj_schema(
                {
                    "progressPercentage": int_schema(0) | {"maximum": 100},
                    "estimatedRemainingSeconds": int_schema(0),
                    "metrics": {
                        "type": "array",
                        "maxItems": 256,
                        "items": obj_schema(
                            {
                                "name": str_schema(minLength=1, maxLength=64),
                                "value": str_schema(minLength=1, maxLength=64),
                            },
                            ["name", "value"],
                        ),
                        "x-kubernetes-list-type": "atomic",
                    },
                    "lastUpdatedTime": str_schema(format="date-time"),
                },
                rules=[
                    {
                        "rule": "has(self.lastUpdatedTime)",
                        "message": "lastUpdatedTime is required when trainerStatus is present",
                    }
                ],
            ),
        },
        minProperties=1,
    )


def training_runtime_spec_schema() -> Json:
    one_of = (
        "[has(self.torch), has(self.mpi), has(self.jax), has(self.xgboost),has(self.flux)]"
        ".filter(x, x).size() <= 1"
    )
    torch = obj_schema(
        {
            "envInjection": obj_schema(
                {
                    "targets": _named_list(
                        obj_schema(
                            {
                                "jobName": str_schema(minLength=1, maxLength=253),
                                "containerNames": {
                                    "type": "array",
                                    "items": str_schema(maxLength=63),
                                    "minItems": 1,
                                    "maxItems": 8,
                                    "x-kubernetes-list-type": "set",
                                },
                            },
                            ["containerNames", "jobName"],
                        ),
                        16,
                        "jobName",
                    )
                }
            )
        }
    )
    mpi = obj_schema(
        {
            "numProcPerNode": int_schema() | {"default": 1},
            "mpiImplementation": str_schema(enum=["OpenMPI", ""], default="OpenMPI"),
            "sshAuthMountPath": str_schema(maxLength=4096, default="/root/.ssh"),
            "runLauncherAsNode": {"type": "boolean", "default": False},
        }
    )
    return obj_schema(
        {
            "mlPolicy": obj_schema(
                {
                    "numNodes": int_schema(),
                    "torch": torch,
                    "mpi": mpi,
                    "flux": obj_schema({"numProcPerNode": int_schema() | {"default": 1}}),
                    "jax": {"type": "object"},
                    "xgboost": {"type": "object"},
                },
                rules=[{"rule": one_of, "message": "Only one of the policy can be configured"}],
            ),
            "podGroupPolicy": obj_schema(
                {
                    "coscheduling": obj_schema({"scheduleTimeoutSeconds": int_schema() | {"default": 60}}),
                    "volcano": obj_schema(
                        {"networkTopology": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}
                    ),
                }
            ),
            "template": obj_schema(
                {"metadata": copy.deepcopy(EMBEDDED_OBJECT_META), "spec": jobset_spec_schema()},
                minProperties=1,
            ),
        },
        minProperties=1,
    )


def _crd(plural: str, kind: str, scope: str, spec: Json, status: Json | None, root_rules: list[Json]) -> Json:
    properties: Json = {
        "apiVersion": str_schema(),
        "kind": str_schema(),
        "metadata": {"type": "object"},
        "spec": spec,
    }
    version: Json = {"name": VERSION, "served": True, "storage": True}
    if status is not None:
        properties["status"] = status
        version["subresources"] = {"status": {}}
    root = obj_schema(properties)
    if root_rules:
        root["x-kubernetes-validations"] = root_rules
    version["schema"] = {"openAPIV3Schema": root}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": scope,
            "names": {"plural": plural, "singular": kind.lower(), "kind": kind, "listKind": f"{kind}List"},
            "versions": [version],
        },
    }


def trainjob_crd() -> Json:
    rules = [
        {
            "rule": "self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')",
            "message": "metadata.name must match RFC 1035 DNS label format",
        },
        {
            "rule": "size(self.metadata.name) <= 63",
            "message": "metadata.name must be no more than 63 characters",
        },
    ]
    return _crd(
        "trainjobs", "TrainJob", "Namespaced", trainjob_spec_schema(), trainjob_status_schema(), rules
    )


def cluster_training_runtime_crd() -> Json:
    return _crd(
        "clustertrainingruntimes",
        "ClusterTrainingRuntime",
        "Cluster",
        training_runtime_spec_schema(),
        None,
        [],
    )


def training_runtime_crd() -> Json:
    return _crd("trainingruntimes", "TrainingRuntime", "Namespaced", training_runtime_spec_schema(), None, [])


def trainer_crds() -> list[Json]:
    """The three Trainer CRDs (what the Trainer install adds; JobSet's CRD is separate)."""
    return [trainjob_crd(), cluster_training_runtime_crd(), training_runtime_crd()]


# ---------------------------------------------------------------------------------------- build


def upsert_env(env: list[Json], items: list[Json]) -> list[Json]:
    """Trainer's ``apply.UpsertEnvVars``: same name replaced in place, new names appended."""
    result = [copy.deepcopy(item) for item in env]
    for item in items:
        for index, existing in enumerate(result):
            if existing.get("name") == item.get("name"):
                result[index] = copy.deepcopy(item)
                break
        else:
            result.append(copy.deepcopy(item))
    return result


def _quantity_value(value: Any) -> int:
    """``resource.Quantity.Value()``: the value rounded up to an integer (``500m`` -> 1)."""
    text = str(value)
    match = re.fullmatch(r"([0-9.]+)([a-zA-Z]*)", text)
    if not match:
        return 0
    number, suffix = float(match.group(1)), match.group(2)
    factors = {"m": 1e-3, "": 1, "k": 1e3, "M": 1e6, "G": 1e9, "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3}
    return math.ceil(number * factors.get(suffix, 1))


def _gpus(resources: Json) -> int:
    for section in ("requests", "limits"):
        for name, value in (resources.get(section) or {}).items():
            if "gpu" in name.lower():
                count = _quantity_value(value)
                if count:
                    return count
    return 0


def _cpus(resources: Json) -> int:
    request = (resources.get("requests") or {}).get("cpu")
    if request is not None and _quantity_value(request):
        return _quantity_value(request)
    limit = (resources.get("limits") or {}).get("cpu")
    return _quantity_value(limit) if limit is not None else 0


def runtime_ref(trainjob: Json) -> tuple[str, str, str]:
    ref = (trainjob.get("spec") or {}).get("runtimeRef") or {}
    return ref.get("apiGroup") or GROUP, ref.get("kind") or "ClusterTrainingRuntime", ref.get("name", "")


def merged_template(trainjob: Json, runtime: Json) -> tuple[Json, dict[str, str], dict[str, str]]:
    """The runtime's JobSet template with the TrainJob's runtime patches merged in, and the labels and
    annotations the JobSet gets (trainingruntime.go ``newRuntimeInfo``/``mergeRuntimePatches``)."""
    template = copy.deepcopy((runtime.get("spec") or {}).get("template") or {})
    meta = template.get("metadata") or {}
    labels, annotations = dict(meta.get("labels") or {}), dict(meta.get("annotations") or {})
    spec = template.get("spec") or {}
    order = [rjob.get("name") for rjob in spec.get("replicatedJobs") or []]
    for patch in (trainjob.get("spec") or {}).get("runtimePatches") or []:
        patch_template = (patch.get("trainingRuntimeSpec") or {}).get("template") or {}
        patch_meta = patch_template.get("metadata") or {}
        labels.update(patch_meta.get("labels") or {})
        annotations.update(patch_meta.get("annotations") or {})
        if patch_template.get("spec"):
            spec = strategic_merge_patch(spec, copy.deepcopy(patch_template["spec"]))
    spec["replicatedJobs"] = sorted(
        spec.get("replicatedJobs") or [],
        key=lambda rjob: order.index(rjob.get("name")) if rjob.get("name") in order else len(order),
    )
    return spec, labels, annotations


def build_jobset(trainjob: Json, runtime: Json) -> Json:
    """The JobSet Trainer creates for ``trainjob`` from ``runtime`` (see the module docstring)."""
    name, namespace = trainjob["metadata"]["name"], trainjob["metadata"]["namespace"]
    tj_spec = trainjob.get("spec") or {}
    trainer = tj_spec.get("trainer")
    ml_policy = (runtime.get("spec") or {}).get("mlPolicy")
    spec, labels, annotations = merged_template(trainjob, runtime)
    torch = (ml_policy or {}).get("torch")

    for rjob in spec.get("replicatedJobs") or []:
        job_template = rjob.setdefault("template", {})
        job_spec = job_template.setdefault("spec", {})
        ancestor = ((job_template.get("metadata") or {}).get("labels") or {}).get(ANCESTOR_LABEL)
        count = int(job_spec.get("parallelism", 1))
        pod_spec = job_spec.setdefault("template", {}).setdefault("spec", {})
        containers = pod_spec.get("containers") or []
        node = next((c for c in containers if c.get("name") == NODE), None)
        if ancestor != ANCESTOR_TRAINER:
            continue
        if ml_policy is not None:
            count = int(ml_policy.get("numNodes", 1))
        rjob["replicas"] = 1
        if trainer is not None and trainer.get("numNodes") is not None:
            count = int(trainer["numNodes"])
        job_spec["parallelism"] = job_spec["completions"] = count
        if node is None or trainer is None:
            continue
        if trainer.get("resourcesPerNode") is not None:
            node["resources"] = strategic_merge_patch(
                node.get("resources") or {}, copy.deepcopy(trainer["resourcesPerNode"])
            )
        for key in ("image", "command", "args"):
            if trainer.get(key) is not None:
                node[key] = copy.deepcopy(trainer[key])
        node["env"] = upsert_env(node.get("env") or [], trainer.get("env") or [])
        if torch is not None:
            node["env"] = upsert_env(
                node["env"], torch_env(name, count, trainer, node.get("resources") or {})
            )
            ports = [p for p in node.get("ports") or [] if p.get("containerPort") != TRAINER_PORT]
            node["ports"] = [*ports, {"containerPort": TRAINER_PORT}]
        if not node["env"]:
            node.pop("env")
    if torch is not None and trainer is not None:
        count = next(
            (
                int(r["template"]["spec"]["completions"])
                for r in spec.get("replicatedJobs") or []
                if ((r["template"].get("metadata") or {}).get("labels") or {}).get(ANCESTOR_LABEL)
                == ANCESTOR_TRAINER
            ),
            1,
        )
        for target in (torch.get("envInjection") or {}).get("targets") or []:
            for rjob in spec.get("replicatedJobs") or []:
                if rjob.get("name") != target.get("jobName"):
                    continue
                pod_spec = rjob["template"]["spec"]["template"]["spec"]
                for container in (pod_spec.get("containers") or []) + (pod_spec.get("initContainers") or []):
                    if container.get("name") in (target.get("containerNames") or []):
                        container["env"] = upsert_env(
                            container.get("env") or [], torch_env(name, count, trainer, {})
                        )

    if tj_spec.get("suspend") is not None:
        spec["suspend"] = bool(tj_spec["suspend"])
    metadata: Json = {
        "name": name,
        "namespace": namespace,
        "ownerReferences": [ControllerBase.owner_ref(trainjob)],
    }
    if labels:
        metadata["labels"] = labels
    if annotations:
        metadata["annotations"] = annotations
    return {"apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet", "metadata": metadata, "spec": spec}


def torch_env(name: str, nodes: int, trainer: Json, resources: Json) -> list[Json]:
    """The ``PET_*`` env of the torch plugin (torch.go ``EnforceMLPolicy``)."""
    resources = trainer.get("resourcesPerNode") or resources
    if trainer.get("numProcPerNode") is not None:
        nproc = str(int(trainer["numProcPerNode"]))
    elif _gpus(resources):
        nproc = "auto"
    else:
        nproc = str(max(1, _cpus(resources)))
    return [
        {"name": "PET_NNODES", "value": str(nodes)},
        {"name": "PET_NPROC_PER_NODE", "value": nproc},
        {"name": "PET_NODE_RANK", "valueFrom": {"fieldRef": {"fieldPath": COMPLETION_INDEX_PATH}}},
        {"name": "PET_MASTER_ADDR", "value": f"{name}-{NODE}-0-0.{name}"},
        {"name": "PET_MASTER_PORT", "value": str(TRAINER_PORT)},
    ]


# -------------------------------------------------------------------------------------- webhooks


def _denied(message: str) -> ApiError:
    return ApiError(403, "Forbidden", f'admission webhook "{VALIDATOR}" denied the request: {message}')


class TrainJobWebhooks:
    """``defaulter.trainjob`` and ``validator.trainjob`` (the checks users trip over)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def default(self, obj: Json, old: Json | None) -> None:
        with contextlib.suppress(AttributeError, TypeError):
            old_patches = {
                p.get("manager"): p for p in ((old or {}).get("spec") or {}).get("runtimePatches") or []
            }
            for patch in (obj.get("spec") or {}).get("runtimePatches") or []:
                previous = old_patches.get(patch.get("manager"))
                if previous is not None and {**previous, "time": None} == {**patch, "time": None}:
                    patch["time"] = previous.get("time")
                elif previous is not None or not patch.get("time"):
                    patch["time"] = now_iso()

    def _runtime(self, trainjob: Json) -> Json | None:
        group, kind, name = runtime_ref(trainjob)
        key = {"ClusterTrainingRuntime": CLUSTER_RUNTIME_KEY, "TrainingRuntime": RUNTIME_KEY}.get(kind)
        if group != GROUP or key is None or key not in self.store.resources:
            return None
        namespace = trainjob["metadata"]["namespace"] if key == RUNTIME_KEY else None
        try:
            return self.store.get(self.store.resources[key], namespace, name)
        except ApiError:
            return None

    def validate(self, obj: Json, old: Json | None) -> None:
        spec = obj.get("spec") or {}
        group, kind, name = runtime_ref(obj)
        if (group, kind) not in ((GROUP, "ClusterTrainingRuntime"), (GROUP, "TrainingRuntime")):
            raise _denied(f"unsupported runtime: {kind}.{group}")
        runtime = self._runtime(obj)
        if runtime is None:
            resource = kind[0].lower() + kind[1:]
            raise _denied(
                f'spec.runtimeRef: Invalid value: {{"name":"{name}"}}: {kind.lower()}s.{GROUP} "{name}" '
                f"not found: specified {resource} must be created before the TrainJob is created"
            )
        problems: list[str] = []
        reserved = sorted(
            {e.get("name") for e in (spec.get("trainer") or {}).get("env") or []} & set(TORCH_ENV)
        )
        if reserved and ((runtime.get("spec") or {}).get("mlPolicy") or {}).get("torch") is not None:
            problems.append(
                "spec.trainer.env: Invalid value: must not have reserved envs, "
                f"invalid envs configured: {reserved}"
            )
        containers = {
            rjob.get("name"): {
                c.get("name")
                for c in (rjob["template"]["spec"]["template"]["spec"].get("containers") or [])
                + (rjob["template"]["spec"]["template"]["spec"].get("initContainers") or [])
            }
            for rjob in (((runtime.get("spec") or {}).get("template") or {}).get("spec") or {}).get(
                "replicatedJobs"
            )
            or []
        }
        for patch in spec.get("runtimePatches") or []:
            patch_spec = (((patch.get("trainingRuntimeSpec") or {}).get("template") or {}).get("spec")) or {}
            for rjob in patch_spec.get("replicatedJobs") or []:
                known = containers.get(rjob.get("name"))
                if known is None:
                    problems.append(
                        "spec.runtimePatches: Invalid value: must not have replicated job that doesn't exist "
                        "in the runtime job template"
                    )
                    continue
                pod_patch = (
                    (((rjob.get("template") or {}).get("spec") or {}).get("template") or {}).get("spec")
                ) or {}
                for container in (pod_patch.get("containers") or []) + (
                    pod_patch.get("initContainers") or []
                ):
                    if container.get("name") not in known:
                        problems.append(
                            f"{PATCHES}: Invalid value: must not have container that doesn't exist in "
                            f"the runtime job {rjob.get('name')}"
                        )
                    elif container.get("env") and container.get("name") in (
                        NODE,
                        "dataset-initializer",
                        "model-initializer",
                    ):
                        problems.append(
                            f"{PATCHES}: Invalid value: must not have envs for the dataset-initializer, "
                            "model-initializer, node containers"
                        )
        if old is not None:
            old_spec = old.get("spec") or {}
            if old_spec.get("runtimePatches") != spec.get("runtimePatches") and not (
                old_spec.get("suspend") or spec.get("suspend")
            ):
                problems.append(
                    f"{PATCHES}: Forbidden: RuntimePatches can only be modified when the TrainJob "
                    "is suspended before or after the update"
                )
        if problems:
            raise _denied(", ".join(problems) if len(problems) == 1 else f"[{', '.join(problems)}]")


def register_webhooks(store: Store) -> None:
    hooks = store.validating_hooks[TRAINJOB_KEY]
    if any(getattr(hook, "__func__", None) is TrainJobWebhooks.validate for hook in hooks):
        return
    webhooks = TrainJobWebhooks(store)
    store.mutating_hooks[TRAINJOB_KEY].append(webhooks.default)
    hooks.append(webhooks.validate)


# ------------------------------------------------------------------------------------ controller


def set_status_condition(conditions: list[Json], type_: str, status: str, reason: str, message: str) -> None:
    """``meta.SetStatusCondition``: add or update; ``lastTransitionTime`` moves on a status change."""
    for condition in conditions:
        if condition["type"] == type_:
            if condition["status"] != status:
                condition["lastTransitionTime"] = now_iso()
            condition.update(status=status, reason=reason, message=message)
            return
    conditions.append(
        {
            "type": type_,
            "status": status,
            "reason": reason,
            "message": message,
            "lastTransitionTime": now_iso(),
        }
    )


def _true(conditions: list[Json], type_: str) -> Json | None:
    return next((c for c in conditions if c["type"] == type_ and c["status"] == "True"), None)


class TrainJobController(ControllerBase):
    """Plays Trainer's TrainJob controller (see the module docstring)."""

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        register_webhooks(store)
        self.webhooks = TrainJobWebhooks(store)

    def reconcile(self, namespace: str, name: str) -> None:
        resource = self.store.resources.get(TRAINJOB_KEY)
        if resource is None:
            return
        try:
            trainjob = self.store.get(resource, namespace, name)
        except ApiError:
            return
        spec = trainjob.get("spec") or {}
        if trainjob["metadata"].get("deletionTimestamp") or spec.get("managedBy") not in (
            None,
            CONTROLLER_NAME,
        ):
            return
        status = copy.deepcopy(trainjob.get("status") or {})
        conditions: list[Json] = status.setdefault("conditions", [])
        failed = _true(conditions, "Failed")
        if failed is not None and failed.get("reason") != "DeadlineExceeded":
            conditions.remove(failed)

        group, kind, _ = runtime_ref(trainjob)
        supported = (group, kind) in ((GROUP, "ClusterTrainingRuntime"), (GROUP, "TrainingRuntime"))
        finished = _true(conditions, "Complete") or _true(conditions, "Failed")
        if not supported:
            message = f"unsupported runtime: {kind}.{group}"
            set_status_condition(conditions, "Failed", "True", "TrainingRuntimeNotSupported", message)
        elif not finished:
            self._apply_jobset(trainjob)

        if spec.get("suspend"):
            set_status_condition(conditions, "Suspended", "True", "Suspended", "TrainJob is suspended")
        elif _true(conditions, "Suspended"):
            set_status_condition(conditions, "Suspended", "False", "Resumed", "TrainJob is resumed")

        self._mirror_jobset(trainjob, status)
        self._deadline(trainjob, status)
        if not status.get("conditions"):
            status.pop("conditions", None)
        if status or trainjob.get("status"):  # the status schema has minProperties: 1
            self.write_status(TRAINJOB_KEY, trainjob, status)

    def _apply_jobset(self, trainjob: Json) -> None:
        meta = trainjob["metadata"]
        if JOBSET_KEY not in self.store.resources:
            self.event(
                trainjob,
                "Warning",
                "TrainJobResourcesCreationFailed",
                'TrainJob resources reconciliation failed: no matches for kind "JobSet" in version '
                '"jobset.x-k8s.io/v1alpha2"',
                "trainer",
            )
            return
        jobsets = self.store.resources[JOBSET_KEY]
        existing = None
        with contextlib.suppress(ApiError):
            existing = self.store.get(jobsets, meta["namespace"], meta["name"])
        if existing is not None and not (trainjob["spec"].get("suspend") or existing["spec"].get("suspend")):
            return
        runtime = self.webhooks._runtime(trainjob)
        if runtime is None:
            _, kind, name = runtime_ref(trainjob)
            self.event(
                trainjob,
                "Warning",
                "TrainJobResourcesCreationFailed",
                f'TrainJob resources reconciliation failed: {kind.lower()}s.{GROUP} "{name}" not found',
                "trainer",
            )
            return
        desired = build_jobset(trainjob, runtime)
        try:
            if existing is None:
                self.store.create(jobsets, meta["namespace"], desired)
            else:
                body = copy.deepcopy(existing)
                body["spec"] = strategic_merge_patch(existing["spec"], desired["spec"])
                body["metadata"]["labels"] = {
                    **(existing["metadata"].get("labels") or {}),
                    **desired["metadata"].get("labels", {}),
                }
                if body != existing:
                    self.store.replace(jobsets, meta["namespace"], meta["name"], body)
        except ApiError as error:
            message = f"TrainJob resources reconciliation failed: {error.message[:950]}"
            self.event(trainjob, "Warning", "TrainJobResourcesCreationFailed", message, "trainer")

    def _mirror_jobset(self, trainjob: Json, status: Json) -> None:
        if JOBSET_KEY not in self.store.resources:
            return
        meta = trainjob["metadata"]
        try:
            jobset = self.store.get(self.store.resources[JOBSET_KEY], meta["namespace"], meta["name"])
        except ApiError:
            return
        js_status = jobset.get("status") or {}
        js_conditions = js_status.get("conditions") or []
        for js_type, tj_type in (("Completed", "Complete"), ("Failed", "Failed")):
            condition = _true(js_conditions, js_type)
            if condition is not None:
                set_status_condition(
                    status["conditions"],
                    tj_type,
                    "True",
                    condition.get("reason", ""),
                    condition.get("message", ""),
                )
        jobs = [
            {key: int(entry.get(key, 0)) for key in ("ready", "succeeded", "failed", "active", "suspended")}
            | {"name": entry["name"]}
            for entry in js_status.get("replicatedJobsStatus") or []
        ]
        if jobs:
            status["jobsStatus"] = jobs

    def _deadline(self, trainjob: Json, status: Json) -> None:
        spec = trainjob.get("spec") or {}
        deadline = spec.get("activeDeadlineSeconds")
        conditions = status["conditions"]
        if (
            not deadline
            or spec.get("suspend")
            or _true(conditions, "Complete")
            or _true(conditions, "Failed")
        ):
            return
        started = parse_time(trainjob["metadata"].get("creationTimestamp"))
        resumed = next((c for c in conditions if c["type"] == "Suspended" and c["status"] == "False"), None)
        if resumed is not None:
            started = parse_time(resumed.get("lastTransitionTime")) or started
        if started is None or time.time() < started + float(deadline):
            return
        set_status_condition(
            conditions, "Failed", "True", "DeadlineExceeded", "TrainJob exceeded its active deadline"
        )
        meta = trainjob["metadata"]
        with contextlib.suppress(ApiError, KeyError):
            self.store.delete(self.store.resources[JOBSET_KEY], meta["namespace"], meta["name"])
