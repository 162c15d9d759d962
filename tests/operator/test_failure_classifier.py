"""status.failure.category: the classifier on recorded pod statuses, termination messages and log tails
of each category, and through the SFTRun status derivation.

Pod fixtures are shaped as the kubelet and controllers write them: the ``DisruptionTarget`` condition
and its reasons from k8s.io/api/core/v1 types.go (PodReasonPreemptionByScheduler,
PodReasonTerminationByKubelet, EvictionByEvictionAPI from pkg/registry/core/pod/storage/eviction.go,
DeletionByTaintManager from pkg/controller/tainteviction, DeletionByPodGC from pkg/controller/podgc);
``status.reason: Evicted`` with the eviction manager's message (pkg/kubelet/eviction/helpers.go
"The node was low on resource: %v. "); the container's ``OOMKilled``; image-pull waiting reasons
(pkg/kubelet/images/types.go). Log lines are what PyTorch prints (c10 CUDACachingAllocator's OOM
message, ProcessGroupNCCL's watchdog timeout, NCCLUtils' "NCCL error in:", torchrun's
ChildFailedError root-cause block).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from sftrun_objects import T2, cr, pod, ptj

from sft_common.result import CheckpointInfo, FailureResult, Reason
from sft_operator.backends.pytorchjob import BACKEND as pytorchjob
from sft_operator.status.failure import CATEGORIES, RETRYABLE, classify
from sft_operator.status.pods import PodState, pod_state
from status_json import sftrun as status

CUDA_OOM_LOG = """\
[rank0]: Traceback (most recent call last):
[rank0]:   File "/opt/sft/sft_train/engines/hf_engine.py", line 412, in train_step
[rank0]: torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total \
capacity of 79.10 GiB of which 1.12 GiB is free. Including non-PyTorch memory, this process has 77.97 GiB \
memory in use. Of the allocated memory 75.20 GiB is allocated by PyTorch, and 1.51 GiB is reserved by \
PyTorch but unallocated. If reserved but unallocated memory is large try setting \
PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True to avoid fragmentation.
"""
NCCL_TIMEOUT_LOG = """\
[rank3]:[E1218 20:27:21.426415540 ProcessGroupNCCL.cpp:629] [Rank 3] Watchdog caught collective operation \
timeout: WorkNCCL(SeqNum=1841, OpType=ALLREDUCE, NumelIn=131072000, NumelOut=131072000, Timeout(ms)=600000) \
ran for 600081 milliseconds before timing out.
torch.distributed.elastic.multiprocessing.errors.ChildFailedError:
============================================================
sft-train FAILED
------------------------------------------------------------
Failures:
  <NO_OTHER_FAILURES>
------------------------------------------------------------
Root Cause (first observed failure):
[0]:
  time      : 2026-12-07_10:13:24
  host      : run-train-node-0-1.run-train
  rank      : 11 (local_rank: 3)
  exitcode  : -6 (pid: 1886)
  error_file: <N/A>
  traceback : Signal 6 (SIGABRT) received by PID 1886
============================================================
"""
NCCL_ERROR_LOG = (
    "[rank5]: torch.distributed.DistBackendError: NCCL error in: "
    "../torch/csrc/distributed/c10d/ProcessGroupNCCL.cpp:1970, unhandled system error "
    "(run with NCCL_DEBUG=INFO for details), NCCL version 2.21.5\n"
    "[rank5]: ncclSystemError: System call (e.g. socket, malloc) or external library call failed or "
    "device error.\n"
)
ENOSPC_LOG = """\
Traceback (most recent call last):
OSError: [Errno 28] No space left on device: '/ckpt/run/iter_0000015/__0_0.distcp'
"""


def _pod(
    *,
    phase: str = "Failed",
    exit_code: int | None = None,
    reason: str | None = None,
    message: str | None = None,
    waiting: tuple[str, str] | None = None,
    disruption: tuple[str, str] | None = None,
    pod_reason: tuple[str, str] | None = None,
    node: str | None = "gpu-node-7",
) -> PodState:
    obj = pod("Master", 0, phase, exit_code=exit_code, reason=reason, message=message, waiting=waiting)
    st: dict[str, Any] = obj["status"]
    if disruption is not None:
        st["conditions"].append(
            {
                "type": "DisruptionTarget",
                "status": "True",
                "reason": disruption[0],
                "message": disruption[1],
                "lastTransitionTime": T2,
            }
        )
    if pod_reason is not None:
        st["reason"], st["message"] = pod_reason
    if node:
        obj["spec"] = {"nodeName": node}
    return pod_state(obj, pytorchjob.container, pytorchjob.role)


def _result(reason: str, **fields: Any) -> str:
    return json.dumps(FailureResult(reason=reason, message=f"{reason} happened", **fields).payload())


CASES: list[tuple[str, PodState, str | None, str, list[str]]] = [
    # (name, pod, log tail, category, words the advice must hold)
    (
        "scheduler-preemption",
        _pod(exit_code=143, disruption=("PreemptionByScheduler", "Kubelet: preempting to accommodate a pod")),
        None,
        "Preempted",
        ["higher-priority", "checkpoint"],
    ),
    (
        "eviction-api-drain",
        _pod(exit_code=143, disruption=("EvictionByEvictionAPI", "Eviction API: evicting")),
        None,
        "Preempted",
        ["drain"],
    ),
    (
        "graceful-node-shutdown",
        _pod(
            exit_code=143,
            disruption=("TerminationByKubelet", "Pod was terminated in response to imminent node shutdown."),
            pod_reason=("Terminated", "Pod was terminated in response to imminent node shutdown."),
        ),
        None,
        "Preempted",
        ["node shutdown"],
    ),
    (
        "trainer-preempted-result",
        _pod(exit_code=143, message=_result(Reason.PREEMPTED, iteration=15)),
        None,
        "Preempted",
        ["iteration 15"],
    ),
    (
        "taint-manager",
        _pod(
            exit_code=137,
            disruption=("DeletionByTaintManager", "Taint manager: deleting due to NoExecute taint"),
        ),
        None,
        "NodeLost",
        ["gpu-node-7", "unreachable"],
    ),
    (
        "pod-gc-orphan",
        _pod(phase="Failed", disruption=("DeletionByPodGC", "PodGC: node no longer exists")),
        None,
        "NodeLost",
        ["gpu-node-7"],
    ),
    (
        "node-lost-reason",
        _pod(
            phase="Running",
            pod_reason=("NodeLost", "Node gpu-node-7 which was running pod x is unresponsive"),
        ),
        None,
        "NodeLost",
        ["gpu-node-7"],
    ),
    (
        "oom-killed",
        _pod(exit_code=137, reason="OOMKilled"),
        None,
        "OOMKilled",
        ["resources.limits.memory"],
    ),
    (
        "evicted-node-memory-pressure",
        _pod(
            pod_reason=(
                "Evicted",
                "The node was low on resource: memory. Threshold quantity: 100Mi, available: 51200Ki. ",
            ),
            disruption=("TerminationByKubelet", "The node was low on resource: memory."),
        ),
        None,
        "Preempted",
        ["memory pressure", "requests"],
    ),
    (
        "evicted-ephemeral-storage",
        _pod(pod_reason=("Evicted", "The node was low on resource: ephemeral-storage. ")),
        None,
        "NoSpace",
        ["ephemeral storage", "gpu-node-7"],
    ),
    (
        "cuda-oom-log",
        _pod(exit_code=1, message=CUDA_OOM_LOG),
        None,
        "CUDAOutOfMemory",
        ["microBatchSize", "tensorParallelSize"],
    ),
    (
        "cuda-oom-result",
        _pod(exit_code=1, message=_result(Reason.CUDA_OUT_OF_MEMORY)),
        None,
        "CUDAOutOfMemory",
        [],
    ),
    (
        "nccl-timeout-log",
        _pod(exit_code=1),
        NCCL_TIMEOUT_LOG,
        "NCCLTimeout",
        ["rank 11", "run-train-node-0-1.run-train", "first"],
    ),
    (
        "nccl-timeout-watchdog-only",
        _pod(exit_code=1, message=NCCL_TIMEOUT_LOG.split("torch.distributed")[0]),
        None,
        "NCCLTimeout",
        ["rank 3", "ALLREDUCE #1841"],
    ),
    ("nccl-error-log", _pod(exit_code=1), NCCL_ERROR_LOG, "NCCLError", ["NCCL_DEBUG"]),
    (
        "no-space-result",
        _pod(exit_code=1, message=_result(Reason.NO_SPACE, path="/ckpt/run/iter_0000015")),
        None,
        "NoSpace",
        ["/ckpt/run/iter_0000015"],
    ),
    (
        "no-space-log",
        _pod(exit_code=1, message=ENOSPC_LOG),
        None,
        "NoSpace",
        ["/ckpt/run/iter_0000015/__0_0.distcp"],
    ),
    (
        "storage-unavailable",
        _pod(exit_code=1, message=_result(Reason.STORAGE_UNAVAILABLE, path="s3://bucket/ckpt/run")),
        None,
        "StorageUnavailable",
        ["s3://bucket/ckpt/run", "maxRestarts"],
    ),
    (
        "data-error",
        _pod(exit_code=2, message=_result(Reason.DATA_ERROR, path="s3://bucket/prep/out/splits/valid")),
        None,
        "DataError",
        ["s3://bucket/prep/out/splits/valid"],
    ),
    (
        "checkpoint-mismatch",
        _pod(exit_code=2, message=_result(Reason.CHECKPOINT_MISMATCH)),
        None,
        "ConfigError",
        ["checkpoint.resume"],
    ),
    ("invalid-config", _pod(exit_code=2, message=_result("InvalidConfig")), None, "ConfigError", ["exit 2"]),
    (
        "image-pull",
        _pod(
            phase="Pending",
            waiting=("ImagePullBackOff", 'Back-off pulling image "registry.example/sft:nope"'),
        ),
        None,
        "ImagePull",
        ["registry.example/sft:nope", "imagePullSecrets"],
    ),
    (
        "plain-crash",
        _pod(exit_code=1, message="Segmentation fault (core dumped)"),
        None,
        "Unknown",
        ["logTail"],
    ),
]


@pytest.mark.parametrize(
    ("pod_state_", "tail", "category", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_each_category_from_recorded_pod_states(
    pod_state_: PodState, tail: str | None, category: str, words: list[str]
) -> None:
    found = classify(pod_state_, tail)
    assert found.category == category, found
    for word in words:
        assert word in found.advice, (word, found.advice)
    assert found.retryable == (category in RETRYABLE)
    assert "\n" not in found.advice  # one line


def test_every_category_is_covered_by_a_recorded_case() -> None:
    assert {c[3] for c in CASES} == set(CATEGORIES)


def test_the_disruption_wins_over_the_exit_code_and_the_log() -> None:
    # A preempted pod's trainer may die of an NCCL error as its peers vanish: the cluster's reason first.
    evicted = _pod(exit_code=1, disruption=("PreemptionByScheduler", "Kubelet: preempting"))
    assert classify(evicted, NCCL_ERROR_LOG).category == "Preempted"


def test_a_deadline_without_a_pod() -> None:
    assert "activeDeadlineSeconds" in classify(None, job_reason="DeadlineExceeded").advice


def test_the_run_status_carries_category_and_advice() -> None:
    run = cr(nodes=2)
    job = ptj(run, [("Created", "True", "PyTorchJobCreated"), ("Failed", "True", "PyTorchJobFailed")])
    failed = pod("Master", 0, "Failed", exit_code=1, message=CUDA_OOM_LOG)
    running = pod("Worker", 0, "Running")
    states = [pod_state(p, pytorchjob.container, pytorchjob.role) for p in (failed, running)]
    out = status.derive(run, job, states, now=T2)
    failure = out["failure"]
    assert failure["category"] == "CUDAOutOfMemory" and failure["retryable"] is False
    assert "microBatchSize" in failure["advice"]
    assert failure["exitCode"] == 1 and failure["replica"] == "Master 0"  # the existing fields stay


def test_checkpoints_from_progress_while_running_and_from_the_result_when_ended() -> None:
    saved = CheckpointInfo(
        latest_iteration=20, uri="s3://bucket/ckpt/run/iter_0000020", time=T2, resumed_from=10
    )
    progress = {"completed": 23, "checkpoint": saved.model_dump(mode="json", by_alias=True)}
    run = cr(status={"phase": "Running", "progress": progress})
    job = ptj(run, [("Created", "True", "PyTorchJobCreated"), ("Running", "True", "PyTorchJobRunning")])
    running = [pod_state(pod("Master", 0, "Running"), pytorchjob.container, pytorchjob.role)]
    out = status.derive(run, job, running, now=T2)
    assert out["checkpoints"] == {
        "latestIteration": 20,
        "uri": "s3://bucket/ckpt/run/iter_0000020",
        "time": T2,
        "resumedFrom": 10,
    }

    final = CheckpointInfo(
        latest_iteration=25, uri="s3://bucket/ckpt/run/iter_0000025", time=T2, resumed_from=10
    )
    message = json.dumps(
        FailureResult(reason=Reason.PREEMPTED, message="SIGTERM", iteration=25, checkpoints=final).payload()
    )
    ended = ptj(run, [("Created", "True", "PyTorchJobCreated"), ("Failed", "True", "PyTorchJobFailed")])
    dead = [
        pod_state(
            pod("Master", 0, "Failed", exit_code=143, message=message), pytorchjob.container, pytorchjob.role
        )
    ]
    out = status.derive(cr(status={**out, "progress": progress}), ended, dead, now=T2)
    assert out["checkpoints"]["latestIteration"] == 25 and out["failure"]["category"] == "Preempted"
