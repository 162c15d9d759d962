"""What Trainer builds from a TrainJob and its runtime (the JobSet), and its TrainJob webhooks.

The facts and their sources are listed in :mod:`kubeemu.trainer` (the controller).
"""

from __future__ import annotations

import contextlib
import copy
import math
import re
from typing import Any

from .controllers import ControllerBase
from .errors import ApiError
from .patching import strategic_merge_patch
from .store import Json, Store, now_iso
from .trainer_api import (
    ANCESTOR_LABEL,
    ANCESTOR_TRAINER,
    CLUSTER_RUNTIME_KEY,
    COMPLETION_INDEX_PATH,
    GROUP,
    NODE,
    PATCHES,
    RUNTIME_KEY,
    TORCH_ENV,
    TRAINER_PORT,
    TRAINJOB_KEY,
    VALIDATOR,
)

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
