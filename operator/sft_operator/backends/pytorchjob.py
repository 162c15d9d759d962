"""Kubeflow training-operator v1 ``kubeflow.org/v1`` PyTorchJob (maintenance-only upstream; kept).

A Master and ``nodes - 1`` Workers; each pod runs one container named ``pytorch`` (the name the
training-operator looks for to default the rendezvous port and inject env). Why the torchrun command
spells ``$(RANK)``/``$(MASTER_ADDR)``/``$(MASTER_PORT)`` instead of relying on ``PET_*``: v1 injects
those three in every release, but ``PET_*`` only since v1.8; the kubelet expands ``$(VAR)`` from the
container env, which includes what the controller injected.

``restartPolicy: ExitCode``: exit codes 1-127 fail the job at once; 128+ are retried
(training-operator pkg/util/train/train_util.go IsRetryableExitCode: ``exitCode >= 128``). So the pod
command reports the trainer's retryable failure (exit 1: storage unavailable, NCCL, a crash) as
``EXIT_RETRY`` (200, ``sft-torchrun --retryable-exit-code=200``), while a config/data error stays 2
and fails at once; 143 (SIGTERM after a checkpoint save on preemption or eviction) and 137 (SIGKILL)
are retried as they are. Retries are never counted against ``runPolicy.backoffLimit``
(pkg/core/job.go PastBackoffLimit counts only OnFailure/Always replicas). A hang restart
(spec.restartOnHang) deletes every replica's pod.

Status: Created → JobCreated; Running → Running; Restarting → Running with reason Restarting (each
new Restarting transition is a restart); Suspended → Suspended (or Pending/Queued under Kueue);
Succeeded / Failed → terminal.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, TypedDict

from sft_common.result import EXIT_RETRY, RETRYABLE_OPTION
from sft_operator.backends.base import (
    FINISHED,
    Backend,
    GroupMember,
    Observed,
    Rendezvous,
    Rule,
    RunPods,
    failed_observed,
    pods_pending,
)
from sft_operator.kube.client import PODS, Resource
from sft_operator.render import children as common
from sft_operator.render import meta
from sft_operator.render.suspend import suspend_patch as _suspend_patch
from sft_operator.status.common import suspended_state
from sft_operator.status.conditions import get_condition, is_true
from sft_operator.status.pods import (
    PodRole,
    PodState,
    as_index,
    describe_failure,
    latest_failed,
    pending_problem,
)

MASTER = "Master"
WORKER = "Worker"
MASTER_PORT = 23456
"""The training-operator's default rendezvous port, declared so the port is explicit."""
RESTART_POLICY = "ExitCode"
REPLICA_TYPE_LABEL = "training.kubeflow.org/replica-type"
REPLICA_INDEX_LABEL = "training.kubeflow.org/replica-index"
KIND = "PyTorchJob"


class PyTorchJob(Backend):
    name = "pytorchjob"
    preference = 3
    summary = "Kubeflow training-operator v1 PyTorchJob"
    kind = KIND
    api_version = "kubeflow.org/v1"
    resource = Resource("kubeflow.org", "v1", "pytorchjobs")
    crd = "pytorchjobs.kubeflow.org"
    install = "the Kubeflow training-operator v1 (maintenance-only; prefer Kubeflow Trainer v2)"
    container = "pytorch"
    """The training-operator's default container name: it defaults the port and injects env into it."""
    name_limit = meta.MAX_CHILD_NAME
    group_restarts = False
    """Failed replicas are retried one by one (backoffLimit); torchrun may restart in the pod."""
    rbac = (
        Rule(
            PODS.group,
            (PODS.plural,),
            ("delete",),
            "only a hung run's replica pods (spec.restartOnHang: the training-operator recreates them)",
        ),
    )

    def rendezvous(self, child_name: str) -> Rendezvous:
        return Rendezvous(node_rank="$(RANK)", master_addr="$(MASTER_ADDR)", master_port="$(MASTER_PORT)")

    def render(self, run: RunPods) -> dict[str, Any]:
        spec = run.spec
        template = copy.deepcopy(run.template)
        main = template["spec"]["containers"][0]
        main["command"] = retry_above_128(main["command"])
        main["ports"] = [{"name": "pytorchjob-port", "containerPort": MASTER_PORT, "protocol": "TCP"}]
        replica_specs: dict[str, Any] = {
            MASTER: {"replicas": 1, "restartPolicy": RESTART_POLICY, "template": template}
        }
        if spec.nodes > 1:
            replica_specs[WORKER] = {
                "replicas": spec.nodes - 1,
                "restartPolicy": RESTART_POLICY,
                "template": copy.deepcopy(template),
            }
        # cleanPodPolicy None: keep finished pods, their termination messages and logs are the result
        run_policy: dict[str, Any] = {
            "cleanPodPolicy": "None",
            **common.run_policy(spec),
        }
        if spec.priority_class_name:
            # Read by gang schedulers (Volcano, scheduler-plugins) for the PodGroup; pods carry it too.
            run_policy["schedulingPolicy"] = {
                "minAvailable": spec.nodes,
                "priorityClass": spec.priority_class_name,
            }
        return {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "metadata": common.runner_metadata(run.child, run.name, spec),
            "spec": {
                "nprocPerNode": str(run.nproc_per_node),
                "runPolicy": run_policy,
                "pytorchReplicaSpecs": replica_specs,
            },
        }

    def suspend_patch(self, child: Mapping[str, Any], desired: bool) -> dict[str, Any] | None:
        return _suspend_patch(child, desired, field=("spec", "runPolicy"))

    def restart_group(self, child: Mapping[str, Any]) -> list[GroupMember]:
        """Delete every replica's pod: the training-operator recreates a missing pod of a running job
        (``<job>-<replica type>-<index>``, its GenGeneralName), and a deleted pod is no failure counted
        against backoffLimit."""
        job_name = (child.get("metadata") or {})["name"]
        specs = (child.get("spec") or {}).get("pytorchReplicaSpecs") or {}
        return [
            GroupMember(PODS, f"{job_name}-{rtype.lower()}-{index}")
            for rtype, rspec in specs.items()
            for index in range(int((rspec or {}).get("replicas", 1)))
        ]

    def role(self, pod_meta: Mapping[str, Any]) -> PodRole:
        labels = pod_meta.get("labels") or {}
        replica = labels.get(REPLICA_TYPE_LABEL)
        index = as_index(labels.get(REPLICA_INDEX_LABEL))
        return PodRole(replica_type=replica, index=index, rank0=(replica or "").lower() == "master")

    def pods_of(self, child: Mapping[str, Any], pods: list[PodState]) -> list[PodState]:
        """The PyTorchJob owns its pods (pods of a deleted, same-named child do not count)."""
        uid = (child.get("metadata") or {}).get("uid")
        return [p for p in pods if uid is None or p.owner_uid in (None, uid)]

    def observe(self, spec: Mapping[str, Any], job: Mapping[str, Any], pods: list[PodState]) -> Observed:
        status = job.get("status") or {}
        base: _Times = {
            "completion_time": status.get("completionTime"),
            "start_time": status.get("startTime"),
        }
        restarting = get_condition(status, "Restarting") or {}
        if restarting.get("status") == "True":
            base["restart_marker"] = restarting.get("lastTransitionTime") or restarting.get("lastUpdateTime")
        expected, active = _replica_counts(job)
        if is_true(status, "Succeeded"):
            return Observed("Succeeded", "Succeeded", FINISHED, **base)
        if is_true(status, "Failed"):
            failed = failed_observed(
                get_condition(status, "Failed"),
                "PyTorchJobFailed",
                ("BackoffLimitExceeded", "DeadlineExceeded"),
            )
            return replace(failed, **base)
        run_policy = (job.get("spec") or {}).get("runPolicy") or {}
        job_suspended = bool(run_policy.get("suspend")) or is_true(status, "Suspended")
        suspended = suspended_state(spec, job, job_suspended, self.kind)
        if suspended is not None:
            return Observed(*suspended, **base)
        live = [p for p in pods if not p.deleted]
        problem = pending_problem(live)
        if is_true(status, "Restarting"):
            blamed = latest_failed(pods)
            what = f"; last failure: {describe_failure(blamed)['message']}" if blamed else ""
            limit = run_policy.get("backoffLimit")
            return Observed(
                "Running", "Restarting", f"restarting failed replicas (backoffLimit {limit}){what}", **base
            )
        if is_true(status, "Running"):
            running = sum(1 for p in live if p.phase == "Running")
            message = f"{running or active} of {expected} pods running"
            if problem:
                message += f"; {problem[1]}"
            return Observed("Running", "Running", message, **base)
        return Observed(*pods_pending(live, expected, problem), **base)

    def node_rank(self, pod: PodState) -> int | None:
        """The Master is node 0 and Worker replica i node i+1 (the training-operator's ``RANK``, which
        the operator passes to torchrun as ``--node-rank``)."""
        if pod.replica_type is None or pod.index is None:
            return pod.index
        return pod.index if pod.replica_type.lower() == "master" else pod.index + 1


BACKEND = PyTorchJob()


def retry_above_128(command: list[str]) -> list[str]:
    """``sft-torchrun --retryable-exit-code=200 …``: ExitCode retries only exit codes >= 128
    (training-operator pkg/util/train/train_util.go IsRetryableExitCode), and the trainer's
    retryable failures exit 1 (:data:`sft_common.result.EXIT_RETRY`)."""
    launcher, *rest = command
    return [launcher, f"{RETRYABLE_OPTION}{EXIT_RETRY}", *rest]


def _replica_counts(job: Mapping[str, Any]) -> tuple[int, int]:
    specs = (job.get("spec") or {}).get("pytorchReplicaSpecs") or {}
    expected = sum(int((r or {}).get("replicas", 1)) for r in specs.values())
    statuses = (job.get("status") or {}).get("replicaStatuses") or {}
    active = sum(int((s or {}).get("active") or 0) for s in statuses.values())
    return expected, active


class _Times(TypedDict, total=False):
    """The :class:`Observed` fields every outcome of :func:`observe` carries."""

    completion_time: str | None
    start_time: str | None
    restart_marker: str | None
