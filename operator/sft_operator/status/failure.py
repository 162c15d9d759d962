"""One classifier for why a training pod died: ``status.failure.category`` and its one-line advice.

Pure. It reads what Kubernetes and the workload leave behind, most specific first:

1. the pod's ``DisruptionTarget`` condition (Kubernetes >= 1.26 sets it before it terminates a pod on
   purpose; reasons from k8s.io/api/core/v1 types.go: ``PreemptionByScheduler``,
   ``TerminationByKubelet``, ``EvictionByEvictionAPI``, ``DeletionByTaintManager``, ``DeletionByPodGC``)
   and the pod's own ``status.reason`` (``Evicted`` from the kubelet's eviction manager, ``NodeLost``,
   ``Terminated``/``Shutdown`` from graceful node shutdown);
2. the workload's termination message (:class:`sft_common.result.FailureResult`: its ``reason`` is one of
   :class:`sft_common.result.Reason` or a config reason, ``path`` names the file for NoSpace);
3. the container's ``OOMKilled`` and image-pull waiting reasons;
4. the log tail (or the ``FallbackToLogsOnError`` termination message): the texts PyTorch and NCCL
   print for a CUDA OOM, a collective timeout and an NCCL error, and ``[Errno 28]``;
5. the exit code: 2 is the workloads' config/data error (fail fast), 143 a SIGTERM.

``retryable`` says whether running the same spec again can pass (a preemption, a lost node, a
flaky network or object store); the rest need a change by a person and fail fast (the backends'
restart policies retry exit codes 1 and 143 and pod disruptions, and fail at once on exit 2).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, get_args

from sft_common.result import EXIT_CONFIG, EXIT_PREEMPTED, FailureResult, Reason
from sft_operator.api.status import FailureCategory as Category
from sft_operator.status.pods import PodState

CATEGORIES: tuple[str, ...] = get_args(Category)
RETRYABLE: frozenset[str] = frozenset(
    {"Preempted", "NodeLost", "NCCLTimeout", "NCCLError", "StorageUnavailable"}
)
"""Categories a retry of the same spec can get past (the rest need a change)."""

#: DisruptionTarget reasons (k8s.io/api/core/v1/types.go PodReason* and
#: pkg/controller/podgc, pkg/controller/tainteviction): who terminated the pod on purpose.
PREEMPTED_DISRUPTIONS = frozenset({"PreemptionByScheduler", "EvictionByEvictionAPI", "TerminationByKubelet"})
NODE_LOST_DISRUPTIONS = frozenset({"DeletionByTaintManager", "DeletionByPodGC"})
#: Pod status.reason values: the kubelet's eviction manager ("Evicted", pkg/kubelet/eviction), the
#: node lifecycle controller ("NodeLost", pkg/util/node NodeUnreachablePodReason) and graceful node
#: shutdown ("Terminated", pkg/kubelet/nodeshutdown).
EVICTED = "Evicted"
NODE_LOST_REASONS = frozenset({"NodeLost"})
SHUTDOWN_REASONS = frozenset({"Terminated", "Shutdown"})
IMAGE_PULL_REASONS = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"})

# What PyTorch prints: c10/cuda/CUDACachingAllocator.cpp ("CUDA out of memory. Tried to allocate ...",
# raised as torch.OutOfMemoryError / torch.cuda.OutOfMemoryError) and a kernel's cudaErrorMemoryAllocation
# ("CUDA error: out of memory").
CUDA_OOM = re.compile(r"CUDA out of memory|OutOfMemoryError|CUDA error: out of memory")
# torch/csrc/distributed/c10d/ProcessGroupNCCL.cpp: "[Rank 3] Watchdog caught collective operation
# timeout: WorkNCCL(SeqNum=.., OpType=ALLREDUCE, ...) ran for 600081 milliseconds before timing out."
NCCL_TIMEOUT = re.compile(
    r"Watchdog caught collective operation timeout|NCCL timeout|Timeout\(ms\)=\d+\) ran for"
)
WATCHDOG_RANK = re.compile(
    r"\[Rank (\d+)\] Watchdog caught collective operation timeout(?:: WorkNCCL\(SeqNum=(\d+), OpType=(\w+))?"
)
# ProcessGroupNCCL / NCCLUtils: "NCCL error in: .../ProcessGroupNCCL.cpp:1970, unhandled system error",
# "ncclRemoteError", "ncclSystemError", "DistBackendError", NCCL's own "NCCL WARN" lines.
NCCL_ERROR = re.compile(
    r"NCCL error|nccl(?:Remote|System|Internal|Unhandled[A-Za-z]*)Error|DistBackendError|NCCL WARN"
)
# torchrun's ChildFailedError summary (torch/distributed/elastic/multiprocessing/errors):
# "Root Cause (first observed failure):\n[0]:\n  time : ..\n  host : node-1\n  rank : 3 (local_rank: 3)".
ROOT_CAUSE = re.compile(
    r"Root Cause \(first observed failure\):\s*\[\d+\]:\s*time\s*:\s*\S+\s*"
    r"host\s*:\s*(\S+)\s*rank\s*:\s*(\d+)"
)
NO_SPACE = re.compile(r"No space left on device|Disk quota exceeded|\[Errno 28\]|\[Errno 122\]")
NO_SPACE_PATH = re.compile(r"\[Errno (?:28|122)\][^:\n]*: '([^'\n]+)'")
NODE_PRESSURE = re.compile(r"low on resource: (\S+?)[.,\s]")
EMPTYDIR_LIMIT = re.compile(r"Usage of EmptyDir volume \"([^\"]+)\" exceeds the limit")

STORAGE_REASON = Reason.STORAGE_UNAVAILABLE
CONFIG_REASONS = frozenset({Reason.CHECKPOINT_MISMATCH})


@dataclass(frozen=True)
class Classified:
    """A failure's category, what to do about it, and whether a retry can pass."""

    category: Category
    advice: str

    @property
    def retryable(self) -> bool:
        return self.category in RETRYABLE

    def fields(self) -> dict[str, Any]:
        """The ``status.failure`` keys this adds (camelCase)."""
        return {"category": self.category, "advice": self.advice, "retryable": self.retryable}


def classify(pod: PodState | None, log_tail: str | None = None, job_reason: str | None = None) -> Classified:
    """The category of ``pod``'s failure (None: the child failed with no pod to blame, e.g. its
    deadline; ``job_reason`` is then its reason)."""
    if pod is None:
        if job_reason == "DeadlineExceeded":
            return Classified("Unknown", "the run hit spec.activeDeadlineSeconds; raise it or remove it")
        return Classified("Unknown", _UNKNOWN)
    return (
        _by_disruption(pod)
        or _by_result(pod.failure)
        or _by_container(pod)
        or _by_text(_text(pod, log_tail))
        or _by_exit_code(pod.exit_code)
        or Classified("Unknown", _UNKNOWN)
    )


_UNKNOWN = "read status.failure.logTail and the pod's log (sftctl logs); the run retries exit code 1"
_PREEMPTED = (
    "the pod was terminated by the cluster ({why}); the run restarts from its newest checkpoint without "
    "using up maxRestarts/backoffLimit — give it a PriorityClass or a Kueue queue that is not preempted "
    "if this repeats"
)
_NODE_LOST = (
    "the node {node}became unreachable or was drained (NoExecute taint); the run restarts on another node "
    "from its newest checkpoint — check the node (kubectl describe node)"
)


def _node(pod: PodState) -> str:
    return f"{pod.node_name} " if pod.node_name else ""


def _by_disruption(pod: PodState) -> Classified | None:
    reason = pod.disruption
    message = pod.pod_message or pod.disruption_message or ""
    if reason in NODE_LOST_DISRUPTIONS or pod.pod_reason in NODE_LOST_REASONS:
        return Classified("NodeLost", _NODE_LOST.format(node=_node(pod)))
    if pod.pod_reason == EVICTED or reason == "TerminationByKubelet":
        full = EMPTYDIR_LIMIT.search(message)
        if full:
            return Classified(
                "NoSpace",
                f"volume {full.group(1)} exceeded its sizeLimit ({message.strip()}); raise the limit "
                "(shmSize for /dev/shm) or write less there",
            )
        pressure = NODE_PRESSURE.search(message + " ")
        if pressure and pressure.group(1) == "ephemeral-storage":
            return Classified(
                "NoSpace",
                f"the node {_node(pod)}ran out of ephemeral storage (the pods' emptyDir volumes and "
                "container layers); put checkpoints and caches on a volume or s3://, not the node's disk",
            )
        if pressure:
            why = f"node {pressure.group(1)} pressure on {pod.node_name or 'its node'}"
            return Classified(
                "Preempted",
                _PREEMPTED.format(why=why)
                + "; set resources.requests equal to limits so the kubelet evicts training pods last",
            )
    if reason in PREEMPTED_DISRUPTIONS or pod.pod_reason in SHUTDOWN_REASONS:
        why = {
            "PreemptionByScheduler": "preempted by a higher-priority pod",
            "EvictionByEvictionAPI": "evicted, e.g. by a node drain",
            "TerminationByKubelet": "the kubelet stopped it, e.g. graceful node shutdown",
        }.get(reason or "", "graceful node shutdown")
        return Classified("Preempted", _PREEMPTED.format(why=why))
    return None


def _by_result(result: FailureResult | None) -> Classified | None:
    if result is None:
        return None
    reason = result.reason
    if reason == Reason.PREEMPTED:
        at = f" at iteration {result.iteration}" if result.iteration is not None else ""
        return Classified("Preempted", _PREEMPTED.format(why=f"SIGTERM; the trainer saved a checkpoint{at}"))
    if reason == Reason.NO_SPACE:
        return _no_space(result.path)
    if reason == STORAGE_REASON:
        where = f" ({result.path})" if result.path else ""
        return Classified(
            "StorageUnavailable",
            f"the storage{where} answered before and then stopped answering; a retry (maxRestarts) resumes — "
            "check the endpoint or volume if it keeps failing",
        )
    if reason == Reason.CUDA_OUT_OF_MEMORY:
        return _cuda_oom()
    if reason == Reason.NCCL_TIMEOUT:
        return _nccl_timeout(result.message)
    if reason == Reason.NCCL_ERROR:
        return _nccl_error()
    if reason == Reason.DATA_ERROR:
        where = f" ({result.path})" if result.path else ""
        return Classified(
            "DataError",
            f"the data{where} cannot train this model: fix it or prepare it again (status.failure.message "
            "says what); retrying the same data fails the same way",
        )
    if reason in CONFIG_REASONS:
        return Classified(
            "ConfigError",
            "checkpoint.save holds another run's checkpoint: use a new checkpoint.save, or set "
            "checkpoint.resume (never: start fresh, force: resume anyway)",
        )
    return None


def _by_container(pod: PodState) -> Classified | None:
    if pod.terminated_reason == "OOMKilled":
        return Classified(
            "OOMKilled",
            "the container exceeded its memory limit (host RAM, not GPU): raise resources.limits.memory "
            "(mind shmSize, it counts against it) or lower data-loader workers",
        )
    if pod.waiting_reason in IMAGE_PULL_REASONS:
        detail = f" ({pod.waiting_message})" if pod.waiting_message else ""
        return Classified(
            "ImagePull",
            f"the image cannot be pulled{detail}: check spec.image and imagePullSecrets",
        )
    return None


def _text(pod: PodState, log_tail: str | None) -> str:
    own = "" if pod.wrote_result else (pod.termination_message or "")
    return f"{own}\n{log_tail or ''}"


def _by_text(text: str) -> Classified | None:
    if CUDA_OOM.search(text):
        return _cuda_oom()
    if NCCL_TIMEOUT.search(text):
        return _nccl_timeout(text)
    if NCCL_ERROR.search(text):
        return _nccl_error()
    if NO_SPACE.search(text):
        path = NO_SPACE_PATH.search(text)
        return _no_space(path.group(1) if path else None)
    return None


def _by_exit_code(code: int | None) -> Classified | None:
    if code == EXIT_CONFIG:
        return Classified(
            "ConfigError",
            "the workload refused its config or data (exit 2, not retried): fix what status.failure.message "
            "names and apply the spec again",
        )
    if code == EXIT_PREEMPTED:
        return Classified("Preempted", _PREEMPTED.format(why="SIGTERM"))
    if code == 137:
        return Classified(
            "Unknown",
            "the container was killed (SIGKILL) without OOMKilled: the termination grace period ran out or "
            "the node killed it; raise spec.terminationGracePeriodSeconds if a checkpoint save was cut",
        )
    return None


def _cuda_oom() -> Classified:
    return Classified(
        "CUDAOutOfMemory",
        "a GPU ran out of memory: lower train.microBatchSize, or raise parallelism.tensorParallelSize / "
        "pipelineParallelSize (or enable activation recompute)",
    )


def _nccl_timeout(text: str) -> Classified:
    root = ROOT_CAUSE.search(text)
    watchdog = WATCHDOG_RANK.search(text)
    if root:
        first = f"rank {root.group(2)} on host {root.group(1)} failed first (torchrun's root cause)"
    elif watchdog:
        op = f" in {watchdog.group(3)} #{watchdog.group(2)}" if watchdog.group(2) else ""
        first = f"rank {watchdog.group(1)} timed out waiting{op}: a peer of it stopped first"
    else:
        first = "the log does not say which rank stopped first"
    return Classified(
        "NCCLTimeout",
        f"a collective timed out — {first}; check that node's GPUs and network (dmesg Xid, ibstat), set "
        "TORCH_NCCL_DESYNC_DEBUG=1 to name the missing rank; a retry (maxRestarts) resumes from the "
        "newest checkpoint",
    )


def _nccl_error() -> Classified:
    return Classified(
        "NCCLError",
        "NCCL failed (network or a peer process died): a retry (maxRestarts) resumes from the newest "
        "checkpoint; set NCCL_DEBUG=INFO in spec.env and check the nodes' network (IB/RoCE) if it repeats",
    )


def _no_space(path: str | None) -> Classified:
    where = path or "the volume it was writing"
    return Classified(
        "NoSpace",
        f"no space left on {where}: free space or enlarge that volume (or lower checkpoint.keep / save less "
        "often); a retry fails the same way until then",
    )
