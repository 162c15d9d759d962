"""What pods say about a run: termination messages, exit codes, pull/scheduling problems.

Shared by both kinds: the prep workers of a Job and the replicas of a PyTorchJob look the same here.
A container's termination message is either the workload's JSON result (``sft_common.result``) or,
thanks to ``FallbackToLogsOnError``, the tail of its log when it died before writing one.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

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


def parse_termination_message(text: str | None) -> dict[str, Any] | None:
    """The workload's JSON result, or None when the message is absent or is a log tail."""
    if not text:
        return None
    text = text.strip()
    if not text.startswith("{"):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) and "status" in value else None


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
    """Job completion index (prep worker) or replica index."""
    replica_type: str | None = None
    """PyTorchJob replica type (Master/Worker)."""
    waiting_reason: str | None = None
    waiting_message: str | None = None
    exit_code: int | None = None
    terminated_reason: str | None = None
    termination_message: str | None = None
    finished_at: str | None = None
    restart_count: int = 0
    unschedulable: str | None = None
    deleted: bool = False

    @property
    def result(self) -> dict[str, Any] | None:
        return parse_termination_message(self.termination_message)

    @property
    def label(self) -> str:
        """How a person should read this pod's role: "pod x (worker 3)"."""
        if self.index is not None and self.replica_type:
            return f"pod {self.name} ({self.replica_type.lower()} {self.index})"
        if self.index is not None:
            return f"pod {self.name} (worker {self.index})"
        return f"pod {self.name}"


def pod_state(pod: Mapping[str, Any], container: str) -> PodState:
    """Reduce a Pod object to :class:`PodState`, looking at container ``container``."""
    meta = pod.get("metadata") or {}
    status = pod.get("status") or {}
    annotations = meta.get("annotations") or {}
    labels = meta.get("labels") or {}
    index: int | None = None
    raw_index = annotations.get(JOB_INDEX_ANNOTATION) or labels.get(JOB_INDEX_ANNOTATION)
    raw_index = raw_index or labels.get("training.kubeflow.org/replica-index")
    if raw_index is not None and str(raw_index).isdigit():
        index = int(raw_index)
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
    unschedulable = None
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            unschedulable = cond.get("message") or cond.get("reason") or "Unschedulable"
    return PodState(
        name=meta.get("name", "?"),
        uid=meta.get("uid", ""),
        phase=status.get("phase") or "Pending",
        owner_uid=owner_uid,
        index=index,
        replica_type=labels.get("training.kubeflow.org/replica-type"),
        waiting_reason=waiting_reason,
        waiting_message=waiting_message,
        exit_code=exit_code,
        terminated_reason=terminated_reason,
        termination_message=message,
        finished_at=finished,
        restart_count=restarts,
        unschedulable=unschedulable,
        deleted=bool(meta.get("deletionTimestamp")),
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
    result = pod.result
    failure: dict[str, Any] = {"pod": pod.name}
    if pod.exit_code is not None:
        failure["exitCode"] = pod.exit_code
    if result and result.get("status") == "failed":
        failure["reason"] = str(result.get("reason") or "Failed")
        detail = str(result.get("message") or "")
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
    tail = log_tail or (None if result else tail_lines(pod.termination_message))
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
    with_result = [p for p in failed if (p.result or {}).get("status") == "failed"]
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
