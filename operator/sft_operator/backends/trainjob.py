"""Kubeflow Trainer v2 ``trainer.kubeflow.org/v1alpha1`` TrainJob (facts from kubeflow/trainer v2.3:
pkg/apis/trainer/v1alpha1, pkg/runtime/framework/plugins/torch, pkg/constants; the field names are
checked against the published ``kubeflow-trainer-api`` models, see :mod:`.models`).

The TrainJob references a runtime (``runtimeRef``; default the chart's ClusterTrainingRuntime
``sft-torch-distributed``, which carries our /dev/shm volume, the restricted security context, the
termination-message policy and the group restart policy) and sets ``trainer.image/command/env/
numNodes/numProcPerNode/resourcesPerNode``. Everything else of our pod template goes through
``runtimePatches`` (manager ``sft.dev/operator``; Trainer >= 2.2 removed ``podTemplateOverrides``,
which is never emitted): pod labels/annotations, nodeSelector, tolerations, affinity, volumes,
imagePullSecrets, serviceAccountName, the pod security context and the ``node`` container's
volumeMounts and security context, on the runtime's replicated Job ``node``.

torchrun takes node rank, master address and port from what Trainer's torch plugin injects into the
``node`` container: ``PET_NODE_RANK`` (the Job completion index), ``PET_MASTER_ADDR``
(``<trainjob>-node-0-0.<trainjob>``), ``PET_MASTER_PORT`` (29500); also ``PET_NNODES`` and
``PET_NPROC_PER_NODE`` (reserved: a TrainJob may not set any of these in trainer.env).

What runtimePatches cannot express is refused with what to do instead: per-run hostNetwork,
schedulerName, priorityClassName, imagePullPolicy other than IfNotPresent, envFrom,
ttlSecondsAfterFinished and maxRestarts belong to the runtime (Helm values under ``trainJob.runtime``)
or another runtime named in spec.trainingRuntime.

Status: conditions ``Complete``, ``Failed`` (e.g. DeadlineExceeded), ``Suspended``;
``jobsStatus[].{name,active,ready,succeeded,failed,suspended}``; the restart count from the pods'
JobSet restart attempt; the alpha ``trainerStatus`` (progressPercentage, estimatedRemainingSeconds)
is mirrored into status.trainerStatus when present and never relied on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sft_operator.backends import jobset
from sft_operator.backends.base import Backend, GroupMember, Observed, Rendezvous, RunPods
from sft_operator.backends.models import checked, m, quantities_as_strings
from sft_operator.errors import InvalidSpec
from sft_operator.kube.client import Resource
from sft_operator.render import children as common
from sft_operator.render.suspend import suspend_patch as _suspend_patch
from sft_operator.status.conditions import is_true
from sft_operator.status.pods import PodRole, PodState

REPLICATED_JOB = "node"
DEFAULT_RUNTIME = "sft-torch-distributed"
MANAGER = "sft.dev/operator"
RUNTIME_KIND = "ClusterTrainingRuntime"
RESOURCE = Resource("trainer.kubeflow.org", "v1alpha1", "trainjobs")


class TrainJob(Backend):
    name = "trainjob"
    preference = 1
    summary = "Kubeflow Trainer v2 TrainJob"
    kind = "TrainJob"
    api_version = "trainer.kubeflow.org/v1alpha1"
    resource = RESOURCE
    crd = "trainjobs.trainer.kubeflow.org"
    install = "Kubeflow Trainer v2 (>= 2.2, with the sft-operator chart's runtime: trainJob.runtime.create)"
    container = "node"
    """The trainer container of Trainer's torch runtimes (constants.Node): trainer.* lands in it."""
    name_limit = jobset.BACKEND.name_limit
    """The TrainJob's JobSet has the TrainJob's name: same pod-name limit."""
    group_restarts = True
    rbac = jobset.BACKEND.rbac
    """:meth:`restart_group` starts the JobSet's next restart attempt, as JobSet's does."""

    def rendezvous(self, child_name: str) -> Rendezvous:
        return Rendezvous(
            node_rank="$(PET_NODE_RANK)", master_addr="$(PET_MASTER_ADDR)", master_port="$(PET_MASTER_PORT)"
        )

    def render(self, run: RunPods) -> dict[str, Any]:
        spec = run.spec
        _refuse(spec)
        pod = run.template["spec"]
        main = pod["containers"][0]
        trainer: dict[str, Any] = {
            "image": main["image"],
            "command": main["command"],
            "env": main["env"],
            "numNodes": spec.nodes,
            "numProcPerNode": run.nproc_per_node,
        }
        if main.get("resources"):
            trainer["resourcesPerNode"] = quantities_as_strings(main["resources"])
        volumes = []
        for volume in pod["volumes"]:
            volume = dict(volume)
            if "emptyDir" in volume and "sizeLimit" in volume["emptyDir"]:
                volume["emptyDir"] = {**volume["emptyDir"], "sizeLimit": str(volume["emptyDir"]["sizeLimit"])}
            volumes.append(volume)
        pod_patch: dict[str, Any] = {
            "securityContext": pod["securityContext"],
            "volumes": volumes,
            "containers": [
                {
                    "name": self.container,
                    "volumeMounts": main["volumeMounts"],
                    "securityContext": main["securityContext"],
                }
            ],
        }
        for key in (
            "nodeSelector",
            "tolerations",
            "affinity",
            "imagePullSecrets",
            "serviceAccountName",
            "terminationGracePeriodSeconds",
        ):
            if key in pod:
                pod_patch[key] = pod[key]
        patch = {
            "manager": MANAGER,
            "trainingRuntimeSpec": {
                "template": {
                    "spec": {
                        "replicatedJobs": [
                            {
                                "name": REPLICATED_JOB,
                                "template": {
                                    "spec": {
                                        "template": {"metadata": run.template["metadata"], "spec": pod_patch}
                                    }
                                },
                            }
                        ]
                    }
                }
            },
        }
        tj_spec: dict[str, Any] = {
            "runtimeRef": {
                "apiGroup": RESOURCE.group,
                "kind": RUNTIME_KIND,
                "name": spec.training_runtime or run.defaults.training_runtime or DEFAULT_RUNTIME,
            },
            "trainer": trainer,
            "runtimePatches": [patch],
            "suspend": spec.suspend,
        }
        if spec.active_deadline_seconds is not None:
            tj_spec["activeDeadlineSeconds"] = spec.active_deadline_seconds
        manifest = {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "metadata": common.runner_metadata(run.child, run.name, spec),
            "spec": tj_spec,
        }
        return checked(m.TrainerV1alpha1TrainJob, manifest, self.kind)

    def suspend_patch(self, child: Mapping[str, Any], desired: bool) -> dict[str, Any] | None:
        return _suspend_patch(child, desired)

    def restart_group(self, child: Mapping[str, Any]) -> list[GroupMember]:
        """The TrainJob's JobSet has its name: start that JobSet's next restart attempt, as
        :meth:`.JobSet.restart_group` does (the Trainer controller writes the JobSet's spec, never its
        status)."""
        return jobset.BACKEND.restart_group(child)

    def role(self, pod_meta: Mapping[str, Any]) -> PodRole:
        return jobset.BACKEND.role(pod_meta)

    def pods_of(self, child: Mapping[str, Any], pods: list[PodState]) -> list[PodState]:
        """The TrainJob's pods: those of its JobSet, which has the TrainJob's name."""
        return jobset.BACKEND.pods_of(child, pods)

    def observe(self, spec: Mapping[str, Any], tj: Mapping[str, Any], pods: list[PodState]) -> Observed:
        status = tj.get("status") or {}
        tj_spec = tj.get("spec") or {}
        seen = jobset.observe_jobset_like(
            spec,
            tj,
            pods,
            restarts=0,
            max_restarts=None,
            complete="Complete",
            suspended=bool(tj_spec.get("suspend")) or is_true(status, "Suspended"),
            expected=int((tj_spec.get("trainer") or {}).get("numNodes") or 1),
        )
        trainer_status = status.get("trainerStatus")
        if isinstance(trainer_status, Mapping) and trainer_status:
            keep = ("progressPercentage", "estimatedRemainingSeconds", "lastUpdatedTime")
            mirrored = {k: trainer_status[k] for k in keep if trainer_status.get(k) is not None}
            if mirrored:
                seen.extra["trainerStatus"] = mirrored
        return seen


BACKEND = TrainJob()


def _refuse(spec: Any) -> None:
    problems = []
    if spec.host_network is not None:
        problems.append("hostNetwork")
    if spec.scheduler_name:
        problems.append("schedulerName")
    if spec.priority_class_name:
        problems.append("priorityClassName")
    if spec.image_pull_policy != "IfNotPresent":
        problems.append("imagePullPolicy")
    if spec.env_from:
        problems.append("envFrom (use env with valueFrom.secretKeyRef)")
    if spec.ttl_seconds_after_finished is not None:
        problems.append("ttlSecondsAfterFinished")
    if spec.max_restarts:
        problems.append("maxRestarts (the runtime's failurePolicy.maxRestarts restarts the group)")
    if problems:
        raise InvalidSpec(
            f"backend trainjob: {', '.join(problems)} cannot be set per run (Kubeflow Trainer's "
            "runtimePatches do not allow it): set it on the ClusterTrainingRuntime (the chart's "
            "trainJob.runtime values, or your own runtime in spec.trainingRuntime), or use backend jobset",
            reason="UnsupportedOnBackend",
        )
