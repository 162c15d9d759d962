"""Kubeflow Trainer v2's API as the emulator serves it: names and the CRD schemas.

The facts and their sources are listed in :mod:`kubeemu.trainer` (the controller).
"""

from __future__ import annotations

import copy

from .jobset_api import jobset_spec_schema
from .openapi_schema import (
    EMBEDDED_OBJECT_META,
    condition_schema,
    int_schema,
    k8s_schema,
    obj_schema,
    str_schema,
)
from .store import Json

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
