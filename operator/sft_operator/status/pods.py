"""What pods say about a run: termination messages, exit codes, pull/scheduling problems.

Shared by both kinds: the prep workers of a Job and the replicas of a PyTorchJob look the same here.
A container's termination message is either the workload's JSON result (the typed contract in
``sft_common.result``) or, thanks to ``FallbackToLogsOnError``, the tail of its log when it died
before writing one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sft_common.result import FailureResult, SuccessT, TrainResult, parse_result

JOB_INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
#: Waiting reasons that will not go away without a change (bad image name, missing Secret, ...).
WAITING_PROBLEMS = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "ErrImageNeverPull",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
        "CrashLoopBackOff",
    }
)
LOG_TAIL_LINES = 20
DISRUPTION_TARGET = "DisruptionTarget"
"""The pod condition Kubernetes (>= 1.26) sets before it terminates a pod on purpose (preemption,
eviction, taint manager, pod GC, kubelet shutdown): k8s.io/api/core/v1 ``DisruptionTarget``."""


def tail_lines(text: str | None, lines: int = LOG_TAIL_LINES, limit: int = 4000) -> str | None:
    if not text:
        return None
    out = "\n".join(text.rstrip("\n").splitlines()[-lines:])
    return out[-limit:]


@dataclass(frozen=True)
class PodState:
    """The facts about one pod the status derivation needs (small: kept in the operator's index)."""

    name: str
    phase: str
    uid: str = ""
    owner_uid: str | None = None
    index: int | None = None
    """Job completion index (prep worker, node rank) or replica index."""
    replica_type: str | None = None
    """The role its controller gave it (PyTorchJob Master/Worker, the JobSet's replicated Job)."""
    attempt: int = 0
    """Which restart of the whole group the pod belongs to (JobSet restart attempt; 0 otherwise)."""
    group: str | None = None
    """See :attr:`PodRole.group`."""
    rank0: bool = False
    waiting_reason: str | None = None
    waiting_message: str | None = None
    exit_code: int | None = None
    terminated_reason: str | None = None
    termination_message: str | None = None
    finished_at: str | None = None
    restart_count: int = 0
    unschedulable: str | None = None
    deleted: bool = False
    disruption: str | None = None
    """Reason of the pod's ``DisruptionTarget`` condition when True (who terminated it on purpose)."""
    disruption_message: str | None = None
    pod_reason: str | None = None
    """The pod's ``status.reason`` (Evicted, NodeLost, Terminated, ...)."""
    pod_message: str | None = None
    node_name: str | None = None

    def success(self, model: type[SuccessT]) -> SuccessT | None:
        """The workload's success result, when the pod succeeded and wrote one."""
        result = parse_result(self.termination_message, model)
        return result if isinstance(result, model) and self.phase == "Succeeded" else None

    @property
    def failure(self) -> FailureResult | None:
        """The workload's own failure result (reason and message), when it wrote one."""
        result = parse_result(self.termination_message, TrainResult)
        return result if isinstance(result, FailureResult) else None

    @property
    def wrote_result(self) -> bool:
        """The termination message is a result of ours (not a log tail)."""
        return parse_result(self.termination_message, TrainResult) is not None

    @property
    def label(self) -> str:
        """How a person should read this pod's role: "pod x (worker 3)"."""
        if self.index is not None and self.replica_type:
            return f"pod {self.name} ({self.replica_type.lower()} {self.index})"
        if self.index is not None:
            return f"pod {self.name} (worker {self.index})"
        return f"pod {self.name}"


@dataclass(frozen=True)
class PodRole:
    """Where a pod stands in its group, as its controller labelled it (see sft_operator.backends)."""

    replica_type: str | None = None
    index: int | None = None
    attempt: int = 0
    group: str | None = None
    """What ties the pod to its child when the child does not own it directly (JobSet uid/name)."""
    rank0: bool = False
    """The pod is node rank 0 (runs global rank 0, which writes the run's result)."""


RoleReader = Callable[[Mapping[str, Any]], PodRole]
"""Reads a pod's role from its metadata; each backend knows its controller's labels."""


def job_role(meta: Mapping[str, Any]) -> PodRole:
    """An Indexed Job's pod: its completion index."""
    annotations = meta.get("annotations") or {}
    labels = meta.get("labels") or {}
    return PodRole(index=as_index(annotations.get(JOB_INDEX_ANNOTATION) or labels.get(JOB_INDEX_ANNOTATION)))


def as_index(raw: Any) -> int | None:
    return int(raw) if raw is not None and str(raw).isdigit() else None


def pod_state(pod: Mapping[str, Any], container: str, role: RoleReader = job_role) -> PodState:
    """Reduce a Pod object to :class:`PodState`, looking at container ``container``."""
    meta = pod.get("metadata") or {}
    status = pod.get("status") or {}
    where = role(meta)
    owner_uid = next((r.get("uid") for r in meta.get("ownerReferences") or [] if r.get("controller")), None)
    cstatus = next((c for c in status.get("containerStatuses") or [] if c.get("name") == container), None)
    waiting_reason = waiting_message = terminated_reason = message = finished = None
    exit_code: int | None = None
    restarts = 0
    if cstatus:
        restarts = int(cstatus.get("restartCount") or 0)
        state = cstatus.get("state") or {}
        if "waiting" in state:
            waiting_reason = state["waiting"].get("reason")
            waiting_message = state["waiting"].get("message")
        terminated = state.get("terminated") or (cstatus.get("lastState") or {}).get("terminated")
        if terminated:
            exit_code = terminated.get("exitCode")
            terminated_reason = terminated.get("reason")
            message = terminated.get("message")
            finished = terminated.get("finishedAt")
    unschedulable = disruption = disruption_message = None
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            unschedulable = cond.get("message") or cond.get("reason") or "Unschedulable"
        if cond.get("type") == DISRUPTION_TARGET and cond.get("status") == "True":
            disruption = cond.get("reason") or DISRUPTION_TARGET
            disruption_message = cond.get("message")
    return PodState(
        name=meta.get("name", "?"),
        uid=meta.get("uid", ""),
        phase=status.get("phase") or "Pending",
        owner_uid=owner_uid,
        index=where.index,
        replica_type=where.replica_type,
        attempt=where.attempt,
        group=where.group,
        rank0=where.rank0,
        waiting_reason=waiting_reason,
        waiting_message=waiting_message,
        exit_code=exit_code,
        terminated_reason=terminated_reason,
        termination_message=message,
        finished_at=finished,
        restart_count=restarts,
        unschedulable=unschedulable,
        deleted=bool(meta.get("deletionTimestamp")),
        disruption=disruption,
        disruption_message=disruption_message,
        pod_reason=status.get("reason"),
        pod_message=status.get("message"),
        node_name=(pod.get("spec") or {}).get("nodeName"),
    )


def pending_problem(pods: Iterable[PodState]) -> tuple[str, str] | None:
    """(reason, message) for the first pod stuck on its image, config or scheduling; else None."""
    for pod in sorted(pods, key=lambda p: p.name):
        if pod.phase in ("Succeeded", "Failed"):
            continue
        if pod.waiting_reason in WAITING_PROBLEMS:
            detail = f": {pod.waiting_message}" if pod.waiting_message else ""
            return pod.waiting_reason, f"{pod.label} is waiting with {pod.waiting_reason}{detail}"
        if pod.unschedulable:
            return "Unschedulable", f"{pod.label} cannot be scheduled: {pod.unschedulable}"
    return None


def describe_failure(pod: PodState, log_tail: str | None = None) -> dict[str, Any]:
    """A ``status.failure`` for a failed pod: reason, pod, exit code and the last lines it wrote."""
    result = pod.failure
    failure: dict[str, Any] = {"pod": pod.name}
    if pod.exit_code is not None:
        failure["exitCode"] = pod.exit_code
    if result is not None:
        failure["reason"] = result.reason
        detail = result.message
    elif pod.terminated_reason == "OOMKilled" or pod.exit_code == 137:
        failure["reason"] = "OOMKilled" if pod.terminated_reason == "OOMKilled" else "Killed"
        detail = (
            "the container was killed for exceeding its memory limit; raise resources.limits.memory or "
            "use more workers/shards"
            if pod.terminated_reason == "OOMKilled"
            else "the container was killed (SIGKILL), usually for memory"
        )
    else:
        failure["reason"] = pod.terminated_reason or "Error"
        detail = ""
    tail = log_tail or (None if pod.wrote_result else tail_lines(pod.termination_message))
    if tail:
        failure["logTail"] = tail
    code = f" with exit code {pod.exit_code}" if pod.exit_code is not None else ""
    failure["message"] = f"{pod.label} failed{code}: {failure['reason']}" + (f": {detail}" if detail else "")
    return failure


def latest_failed(pods: Iterable[PodState]) -> PodState | None:
    """The failed pod to blame: one with the workload's own failure result first, then the latest."""
    failed = [p for p in pods if p.phase == "Failed" or (p.exit_code not in (None, 0))]
    if not failed:
        return None
    with_result = [p for p in failed if p.failure is not None]
    pool = with_result or failed
    return max(pool, key=lambda p: (p.finished_at or "", p.name))


def parse_indexes(text: str | None) -> set[int]:
    """Job ``completedIndexes``/``failedIndexes`` ("0-2,5") as a set."""
    out: set[int] = set()
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            lo, hi = part.split("-", 1)
            out.update(range(int(lo), int(hi) + 1))
        else:
            out.add(int(part))
    return out
