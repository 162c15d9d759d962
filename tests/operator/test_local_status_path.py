"""One status path for a cluster run and ``sftctl run --local`` (issue 20 point 3): the same events fed
to both give the same status.

Cluster path: the operator's derivation with the ``job`` backend's child (the Job rendered by the
backend, its status as the Job controller writes it: pkg/controller/job/job_controller.go sets
``startTime`` when the Job starts, ``SuccessCriteriaMet`` then ``Complete`` with ``completionTime``
when every index succeeded, ``FailureTarget`` then ``Failed``/``BackoffLimitExceeded`` once
``backoffLimit`` (0 here) is exceeded; the pod named ``<job>-<index>-<suffix>`` from generateName), the
pods read by ``pod_state`` from Pod objects as the kubelet writes them, the trainer's progress merged
into ``status.progress`` and the operator's patch applied as the API server applies a merge patch
(kubeemu's RFC 7386 implementation). Local path: :func:`sft_operator.ctl.processes.run_status` on a
:class:`~sft_operator.ctl.processes.LocalProcesses` snapshot of the same process.

What differs by design and is left out of the comparison: ``status.backend`` and ``status.jobRef``
(a Job vs the local processes), the JobCreated condition's message that names that child, and the
pod's name (a Job's pod has a generated suffix)."""

from __future__ import annotations

import copy
import json
from typing import Any

import prep_objects
import pytest
from sftrun_objects import DEFAULTS, cr, failure_message, success_message

from kubeemu.patching import MERGE_PATCH, apply_patch
from sft_operator.backends.job import BACKEND as job_backend
from sft_operator.ctl.processes import LocalProcesses, ProcessState, prep_status, run_status
from sft_operator.render import sftrun as render
from sft_operator.status import dataprep as status_dataprep
from sft_operator.status import sftrun as status_sftrun
from sft_operator.status.pods import pod_state
from sft_operator.status.rundata import DataState

T0, T1, T2 = "2026-11-25T10:00:00Z", "2026-11-25T10:05:00Z", "2026-11-25T10:09:00Z"
NOW = "2026-11-25T10:09:30Z"
"""When the status is derived (after the pod finished: a completion time must come from the child)."""
JOB_UID = "job-uid"
POD = "run-train-0-x7k2p"
PROCESS = "run-train-0"
PROGRESS = {
    "task": "train",
    "unit": "iterations",
    "completed": 30,
    "total": 60,
    "loss": 2.5,
    "tokens": 120000,
    "tokensPerSecond": 900.0,
    "etaSeconds": 40,
    "updatedAt": T1,
}
DATA_URI = "s3://bucket/prep/out"


def run_cr() -> dict[str, Any]:
    return cr(
        engine="hf",
        precision="fp32",
        nodes=1,
        gpusPerNode=0,
        parallelism={},
        data={"uri": DATA_URI, "packSize": 512},
        maxRestarts=0,
        status={},
    )


def the_job() -> dict[str, Any]:
    rendered = render.render(run_cr(), render.ResolvedData(DATA_URI, 512), DEFAULTS, job_backend).job
    rendered["metadata"]["uid"] = JOB_UID
    rendered["status"] = {}
    return rendered


def kube_pod(
    job: dict[str, Any], phase: str, exit_code: int | None = None, message: str | None = None
) -> Any:
    """The Job's pod 0 as the Job controller creates it and the kubelet reports it."""
    template = job["spec"]["template"]
    if exit_code is not None:
        terminated = {
            "exitCode": exit_code,
            "reason": "Completed" if exit_code == 0 else "Error",
            "startedAt": T0,
            "finishedAt": T2,
            **({"message": message} if message is not None else {}),
        }
        state: dict[str, Any] = {"terminated": terminated}
    elif phase == "Running":
        state = {"running": {"startedAt": T0}}
    else:
        state = {"waiting": {"reason": "ContainerCreating"}}
    pod = {
        "metadata": {
            "name": POD,
            "uid": "pod-uid",
            "labels": dict(template["metadata"]["labels"]),
            "annotations": {"batch.kubernetes.io/job-completion-index": "0"},
            "ownerReferences": [
                {"apiVersion": "batch/v1", "kind": "Job", "uid": JOB_UID, "controller": True}
            ],
        },
        "status": {"phase": phase, "containerStatuses": [{"name": job_backend.container, "state": state}]},
    }
    return pod_state(pod, job_backend.container, job_backend.role)


def cond(type_: str, reason: str, message: str = "") -> dict[str, Any]:
    return {"type": type_, "status": "True", "reason": reason, "message": message, "lastTransitionTime": T2}


# (Job status, pod phase, exit code, termination message, trainer progress) per event
Event = tuple[dict[str, Any], str, int | None, str | None, dict[str, Any] | None]
PENDING: Event = ({"startTime": T0, "active": 1}, "Pending", None, None, None)
RUNNING: Event = ({"startTime": T0, "active": 1, "ready": 1}, "Running", None, None, PROGRESS)
SUCCEEDED: Event = (
    {
        "startTime": T0,
        "succeeded": 1,
        "completedIndexes": "0",
        "completionTime": T2,
        "conditions": [
            cond("SuccessCriteriaMet", "CompletionsReached"),
            cond("Complete", "CompletionsReached"),
        ],
    },
    "Succeeded",
    0,
    success_message(checkpoint="s3://bucket/ckpt/run", last_iteration=60, final_loss=1.9),
    {**PROGRESS, "completed": 60, "etaSeconds": 0},
)
FAILED: Event = (
    {
        "startTime": T0,
        "failed": 1,
        "conditions": [
            cond("FailureTarget", "BackoffLimitExceeded", "Job has reached the specified backoff limit"),
            cond("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit"),
        ],
    },
    "Failed",
    1,
    failure_message("DataError", "splits/train is empty"),
    None,
)


def cluster_path(events: list[Event]) -> list[dict[str, Any]]:
    obj = run_cr()
    data = DataState(ready=True, uri=DATA_URI, pack_size=512, reason="DataReady", message="training data")
    out = []
    for job_status, phase, code, message, progress in events:
        job = {**the_job(), "status": job_status}
        if progress:  # the trainer's own merge patch of status.progress
            obj["status"] = apply_patch(MERGE_PATCH, obj["status"], {"progress": progress})
        pods = [kube_pod(job, phase, code, message)]
        new = status_sftrun.derive(obj, job, pods, now=NOW, data=data if not obj["status"] else None)
        patch = status_sftrun.status_patch(obj, new)
        obj["status"] = apply_patch(MERGE_PATCH, obj["status"], patch)
        out.append(copy.deepcopy(obj["status"]))
    return out


def local_path(events: list[Event]) -> list[dict[str, Any]]:
    obj = run_cr()
    data = DataState(ready=True, uri=DATA_URI, pack_size=512, reason="DataReady", message="training data")
    out = []
    for _, phase, code, message, progress in events:
        process = ProcessState(
            PROCESS, 0, code, message, finished_at=T2 if code is not None else None, progress=progress
        )
        seen = LocalProcesses("run-train", "local-uid", T0, (process,) if phase != "Pending" else ())
        obj["status"] = run_status(obj, seen, now=NOW, data=data if not obj["status"] else None)
        out.append(copy.deepcopy(obj["status"]))
    return out


def comparable(status: dict[str, Any]) -> dict[str, Any]:
    """The status without what names the child (see the module docstring)."""
    out = copy.deepcopy(status)
    out.pop("backend", None)
    out.pop("jobRef", None)
    for c in out.get("conditions") or []:
        if c["type"] == "JobCreated":
            c.pop("message", None)
    return eval_names(out)


def eval_names(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace(POD, PROCESS)
    if isinstance(value, dict):
        return {k: eval_names(v) for k, v in value.items()}
    if isinstance(value, list):
        return [eval_names(v) for v in value]
    return value


@pytest.mark.parametrize(
    "events",
    [[PENDING, RUNNING, SUCCEEDED], [PENDING, RUNNING, FAILED]],
    ids=["succeeded", "failed-with-a-termination-message"],
)
def test_the_local_processes_and_a_job_give_the_same_status(events: list[Event]) -> None:
    cluster, local = cluster_path(events), local_path(events)
    for event, (c, loc) in enumerate(zip(cluster, local, strict=True)):
        assert comparable(loc) == comparable(c), f"event {event}"
    # the events read as the operator reads them
    assert [s["phase"] for s in local] == ["Pending", "Running", events[-1][1]]
    assert local[1]["progress"]["iterations"] == "30/60" and local[1]["progress"]["loss"] == 2.5
    assert cluster[0]["jobRef"]["kind"] == "Job" and local[0]["jobRef"]["kind"] == "LocalProcesses"
    if events[-1] is SUCCEEDED:
        assert local[-1]["outputs"]["checkpoint"] == "s3://bucket/ckpt/run"
        assert local[-1]["outputs"]["lastIteration"] == 60
    else:
        assert local[-1]["failure"]["reason"] == "DataError"
        assert "splits/train is empty" in local[-1]["message"]
        assert local[-1]["failure"]["exitCode"] == 1


# -- SFTDataPrep: two workers, the Job (prep_objects.job: the operator's rendering) vs two processes


def prep_cluster(
    events: list[list[tuple[str, int | None, str | None]]], statuses: list[dict[str, Any]]
) -> Any:
    obj = prep_objects.cr(parallelism=2, backoffLimit=0)
    out = []
    for workers, job_status in zip(events, statuses, strict=True):
        the_prep_job = prep_objects.job(obj, status=job_status)
        pods = []
        for index, (phase, code, message) in enumerate(workers):
            terminated = None
            if code is not None:
                terminated = {
                    "exitCode": code,
                    "reason": "Completed" if code == 0 else "Error",
                    "finishedAt": T2,
                }
                if message is not None:
                    terminated["message"] = message
            pods.append(pod_state(prep_objects.pod(index, phase, terminated=terminated), "prep"))
        for index, (phase, _, _) in enumerate(workers):
            if phase == "Running":  # each worker's own merge patch of progress.workers.<i>
                patch = {"progress": {"workers": {str(index): PREP_PROGRESS}}}
                obj["status"] = apply_patch(MERGE_PATCH, obj.get("status") or {}, patch)
        new = status_dataprep.derive(obj, the_prep_job, pods, now=NOW)
        obj["status"] = apply_patch(
            MERGE_PATCH, obj.get("status") or {}, status_dataprep.status_patch(obj, new)
        )
        out.append(copy.deepcopy(obj["status"]))
    return out


def prep_local(events: list[list[tuple[str, int | None, str | None]]]) -> Any:
    obj = prep_objects.cr(parallelism=2, backoffLimit=0, status={})
    out = []
    for workers in events:
        processes = tuple(
            ProcessState(
                f"demo-prep-{index}",
                index,
                code,
                message,
                finished_at=T2 if code is not None else None,
                progress=PREP_PROGRESS if phase == "Running" else None,
            )
            for index, (phase, code, message) in enumerate(workers)
            if phase != "Pending"
        )
        obj["status"] = prep_status(obj, LocalProcesses("demo-prep", "local-uid", T0, processes), now=NOW)
        out.append(copy.deepcopy(obj["status"]))
    return out


PREP_PROGRESS = {
    "task": "prep",
    "unit": "shards",
    "completed": 1,
    "total": 4,
    "tokens": 5000,
    "updatedAt": T1,
}
PREP_PENDING = [("Pending", None, None), ("Pending", None, None)]
PREP_RUNNING = [("Running", None, None), ("Running", None, None)]
PREP_DONE = [
    ("Succeeded", 0, prep_objects.success_message(0, True)),
    ("Succeeded", 0, prep_objects.success_message(1, False)),
]
PREP_FAILED = [
    ("Succeeded", 0, prep_objects.success_message(0, True)),
    ("Failed", 1, prep_objects.failure_message("DataError", "chats.jsonl line 3 is no JSON")),
]
JOB_PENDING = {"startTime": T0, "active": 2}
JOB_RUNNING = {"startTime": T0, "active": 2, "ready": 2}
JOB_DONE = {
    "startTime": T0,
    "succeeded": 2,
    "completedIndexes": "0,1",
    "completionTime": T2,
    "conditions": [prep_objects.cond("SuccessCriteriaMet", at=T2), prep_objects.cond("Complete", at=T2)],
}
LIMIT = "Job has reached the specified backoff limit"
JOB_FAILED = {
    "startTime": T0,
    "succeeded": 1,
    "failed": 1,
    "completedIndexes": "0",
    "conditions": [
        prep_objects.cond("FailureTarget", reason="BackoffLimitExceeded", message=LIMIT, at=T2),
        prep_objects.cond("Failed", reason="BackoffLimitExceeded", message=LIMIT, at=T2),
    ],
}


def prep_comparable(status: dict[str, Any]) -> dict[str, Any]:
    out = comparable(status)
    text = json.dumps(out)
    for index in (0, 1):
        text = text.replace(f"demo-prep-{index}-abcde", f"demo-prep-{index}")
    # a Job's failure is prefixed with its own reason; local workers are never retried: no Job reason
    text = text.replace(f"BackoffLimitExceeded ({LIMIT}); ", "")
    return dict(json.loads(text))


@pytest.mark.parametrize(
    ("last", "job_last"), [(PREP_DONE, JOB_DONE), (PREP_FAILED, JOB_FAILED)], ids=["succeeded", "failed"]
)
def test_local_prep_workers_and_the_prep_job_give_the_same_status(last: Any, job_last: Any) -> None:
    events = [PREP_PENDING, PREP_RUNNING, last]
    cluster = prep_cluster(events, [JOB_PENDING, JOB_RUNNING, job_last])
    local = prep_local(events)
    for event, (c, loc) in enumerate(zip(cluster, local, strict=True)):
        assert prep_comparable(loc) == prep_comparable(c), f"event {event}"
    assert [s["phase"] for s in local] == [
        "Pending",
        "Running",
        "Succeeded" if last is PREP_DONE else "Failed",
    ]
    assert local[1]["progress"]["shardsDone"] == 2 and local[1]["progress"]["workers"]["1"] == PREP_PROGRESS
    if last is PREP_DONE:
        assert local[-1]["outputs"]["metadata"] == "s3://bucket/prep/out/metadata.json"
    else:
        assert local[-1]["failure"]["reason"] == "DataError"
