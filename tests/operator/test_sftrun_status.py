"""SFTRun status derivation: the data source, every PyTorchJob condition and every replica state."""

from __future__ import annotations

from typing import Any

import pytest
from sftrun_objects import (
    JOB_UID,
    PREP_UID,
    T0,
    T1,
    T2,
    cr,
    failure_message,
    pod,
    prep,
    ptj,
    success_message,
)

from sft_operator.backends.pytorchjob import BACKEND as pytorchjob
from sft_operator.status.pods import PodState, pod_state
from status_json import sftrun as status

NOW = "2026-11-25T11:00:00Z"
READY = status.DataState(True, "DataReady", "ready", uri="s3://bucket/prep/out", pack_size=4096)


def states(*pods: dict[str, Any]) -> list[PodState]:
    return [pod_state(p, pytorchjob.container, pytorchjob.role) for p in pods]


def cond(st: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(c for c in st["conditions"] if c["type"] == type_)


def kstatus(st: dict[str, Any]) -> tuple[str, str, str]:
    return tuple(cond(st, t)["status"] for t in ("Ready", "Reconciling", "Stalled"))  # type: ignore[return-value]


# ----------------------------------------------------------------------------- the data source


def test_uri_data_is_ready_at_once() -> None:
    owner = cr(data={"uri": "s3://bucket/d", "packSize": 1024})
    data = status.resolve_data(owner, None)
    assert (data.ready, data.uri, data.pack_size, data.failed) == (True, "s3://bucket/d", 1024, False)


@pytest.mark.parametrize(
    ("prep_obj", "reason", "words"),
    [
        (None, "DataPrepNotFound", ["SFTDataPrep prep", "does not exist", "ml"]),
        (prep(None), "WaitingForDataPrep", ["SFTDataPrep prep", "phase unknown"]),
        (
            prep("Pending", message="creating the prep Job"),
            "WaitingForDataPrep",
            ["phase Pending", "creating"],
        ),
        (prep("Running"), "WaitingForDataPrep", ["SFTDataPrep prep", "phase Running"]),
        (prep("Suspended"), "WaitingForDataPrep", ["phase Suspended"]),
    ],
)
def test_waiting_names_the_prep_and_its_phase(prep_obj: Any, reason: str, words: list[str]) -> None:
    data = status.resolve_data(cr(), prep_obj)
    assert not data.ready and not data.failed and data.reason == reason
    for word in words:
        assert word in data.message
    st = status.derive(cr(), None, [], now=NOW, data=data)
    assert st["phase"] == "Waiting" and kstatus(st) == ("False", "True", "False")
    assert cond(st, "DataReady")["status"] == "False" and cond(st, "DataReady")["reason"] == reason
    assert "SFTDataPrep prep" in cond(st, "DataReady")["message"]


def test_failed_prep_fails_the_run_with_its_reason() -> None:
    failed = prep("Failed", failure={"reason": "OOMKilled", "message": "pod prep-0 was killed"})
    data = status.resolve_data(cr(), failed)
    assert data.failed and data.reason == "DataPrepFailed"
    st = status.derive(cr(), None, [], now=NOW, data=data)
    assert st["phase"] == "Failed" and kstatus(st) == ("False", "False", "True")
    assert st["failure"]["reason"] == "DataPrepFailed"
    assert "OOMKilled" in st["failure"]["message"] and "pod prep-0 was killed" in st["failure"]["message"]
    assert st["completionTime"] == NOW


def test_prep_that_succeeded_without_data_fails_the_run() -> None:
    bad = prep(
        "Succeeded",
        conditions=[
            {"type": "DataReady", "status": "False", "reason": "MetadataMissing", "message": "no metadata"}
        ],
    )
    data = status.resolve_data(cr(), bad)
    assert data.failed and data.reason == "DataPrepIncomplete" and "no metadata" in data.message


def test_ready_prep_gives_uri_and_pack_size() -> None:
    data = status.resolve_data(cr(), prep("Succeeded"))
    assert (data.ready, data.uri, data.pack_size) == (True, "s3://bucket/prep/out", 4096)
    assert data.prep_ref == {
        "apiVersion": "sft.dev/v1alpha1",
        "kind": "SFTDataPrep",
        "name": "prep",
        "uid": PREP_UID,
    }
    st = status.derive(cr(), None, [], now=NOW, data=data)
    assert st["phase"] == "Pending" and cond(st, "DataReady")["status"] == "True"
    assert st["dataPrepRef"]["uid"] == PREP_UID
    assert st["outputs"] == {"data": "s3://bucket/prep/out", "packSize": 4096}


# ----------------------------------------------------------------------------- PyTorchJob conditions

CREATED = ("Created", "True", "PyTorchJobCreated")
RUNNING = ("Running", "True", "PyTorchJobRunning")


@pytest.mark.parametrize(
    ("conditions", "pods", "phase", "reason"),
    [
        ([], [], "Pending", "PodsPending"),
        ([CREATED], [], "Pending", "PodsPending"),
        ([CREATED], [pod("Master", 0, "Pending")], "Pending", "PodsPending"),
        ([CREATED], [pod("Master", 0, "Running"), pod("Worker", 0, "Pending")], "Pending", "PodsStarting"),
        (
            [CREATED],
            [pod("Master", 0, "Pending", waiting=("ImagePullBackOff", "pull failed"))],
            "Pending",
            "ImagePullBackOff",
        ),
        (
            [CREATED],
            [pod("Worker", 1, "Pending", waiting=("CreateContainerConfigError", 'secret "s3" not found'))],
            "Pending",
            "CreateContainerConfigError",
        ),
        (
            [CREATED],
            [pod("Worker", 2, "Pending", unschedulable="0/8 nodes: Insufficient nvidia.com/gpu")],
            "Pending",
            "Unschedulable",
        ),
        ([CREATED, RUNNING], [pod("Master", 0, "Running")], "Running", "Running"),
        (
            [
                CREATED,
                ("Running", "False", "PyTorchJobRestarting"),
                ("Restarting", "True", "PyTorchJobRestarting"),
            ],
            [pod("Worker", 0, "Failed", exit_code=137, reason="OOMKilled")],
            "Running",
            "Restarting",
        ),
        ([CREATED, ("Suspended", "True", "PyTorchJobSuspended")], [], "Pending", "Resuming"),
        ([CREATED, RUNNING, ("Succeeded", "True", "PyTorchJobSucceeded")], [], "Succeeded", "Succeeded"),
        ([CREATED, ("Failed", "True", "PyTorchJobFailed")], [], "Failed", "PyTorchJobFailed"),
        ([CREATED, ("Failed", "True", "BackoffLimitExceeded")], [], "Failed", "BackoffLimitExceeded"),
        ([CREATED, ("Failed", "True", "DeadlineExceeded")], [], "Failed", "DeadlineExceeded"),
    ],
)
def test_every_condition_and_replica_state_maps(
    conditions: list[tuple[str, str, str]], pods: list[dict[str, Any]], phase: str, reason: str
) -> None:
    st = status.derive(cr(), ptj(conditions=conditions), states(*pods), now=NOW)
    assert (st["phase"], cond(st, "Ready")["reason"]) == (phase, reason), st["message"]
    assert cond(st, "JobCreated")["status"] == "True"
    assert st["jobRef"] == {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "name": "run-train",
        "uid": JOB_UID,
    }
    expected = {
        "Pending": ("False", "True", "False"),
        "Running": ("False", "True", "False"),
        "Succeeded": ("True", "False", "False"),
        "Failed": ("False", "False", "True"),
    }[phase]
    assert kstatus(st) == expected


def test_pending_problem_names_the_replica_pod() -> None:
    owner_pod = pod(
        "Worker", 2, "Pending", unschedulable="0/8 nodes are available: Insufficient nvidia.com/gpu"
    )
    st = status.derive(cr(), ptj(conditions=[CREATED]), states(owner_pod), now=NOW)
    assert "run-train-worker-2 (worker 2)" in st["message"] and "Insufficient nvidia.com/gpu" in st["message"]


def test_running_reports_pods_and_a_stuck_replica() -> None:
    pods = states(
        pod("Master", 0, "Running"), pod("Worker", 0, "Pending", waiting=("ErrImagePull", "no such image"))
    )
    st = status.derive(cr(nodes=2), ptj(cr(nodes=2), conditions=[CREATED, RUNNING]), pods, now=NOW)
    assert (
        st["phase"] == "Running"
        and "1 of 2 pods running" in st["message"]
        and "ErrImagePull" in st["message"]
    )


def test_suspended_by_the_user_and_queued_by_kueue() -> None:
    suspended = ("Suspended", "True", "PyTorchJobSuspended")
    user = cr(suspend=True)
    st = status.derive(user, ptj(user, conditions=[CREATED, suspended]), [], now=NOW)
    assert st["phase"] == "Suspended" and kstatus(st) == ("False", "False", "False")
    queued = cr(queueName="gpu-team")
    job = ptj(queued, conditions=[CREATED, suspended])
    job["spec"]["runPolicy"]["suspend"] = True  # Kueue's webhook suspended it
    st = status.derive(queued, job, [], now=NOW)
    assert (st["phase"], cond(st, "Ready")["reason"]) == ("Pending", "Queued") and "gpu-team" in st["message"]


def test_success_takes_outputs_from_rank_zero() -> None:
    conditions = [CREATED, ("Succeeded", "True", "PyTorchJobSucceeded")]
    pods = states(
        pod("Master", 0, "Succeeded", exit_code=0, message=success_message(hfExport="s3://bucket/hf")),
        pod("Worker", 0, "Succeeded", exit_code=0),
    )
    old = {
        "outputs": {"data": "s3://bucket/prep/out", "packSize": 4096},
        "progress": {"completed": 90, "total": 100},
    }
    st = status.derive(
        cr(status=old), ptj(conditions=conditions, completionTime=T2, startTime=T0), pods, now=NOW
    )
    assert st["outputs"] == {
        "data": "s3://bucket/prep/out",
        "packSize": 4096,
        "checkpoint": "s3://bucket/ckpt/run",
        "lastIteration": 100,
        "finalLoss": 0.42,
        "hfExport": "s3://bucket/hf",
    }
    assert (st["startTime"], st["completionTime"]) == (T0, T2)
    assert st["progress"] == {"iterations": "100/100"}
    assert cond(st, "Ready")["status"] == "True"


def test_failure_names_replica_exit_code_and_log_lines() -> None:
    conditions = [CREATED, ("Failed", "True", "PyTorchJobFailed")]
    crashed = pod("Worker", 2, "Failed", exit_code=1, message="Traceback...\nRuntimeError: NCCL timeout\n")
    st = status.derive(
        cr(), ptj(conditions=conditions), states(pod("Master", 0, "Running"), crashed), now=NOW
    )
    failure = st["failure"]
    assert (
        failure["replica"] == "Worker 2"
        and failure["pod"] == "run-train-worker-2"
        and failure["exitCode"] == 1
    )
    assert "NCCL timeout" in failure["logTail"]
    assert "Worker 2 (pod run-train-worker-2) failed with exit code 1" in failure["message"]
    assert st["message"] == failure["message"] and st["completionTime"] == T1


def test_failure_with_the_trainers_own_reason_and_fetched_log() -> None:
    conditions = [CREATED, ("Failed", "True", "PyTorchJobFailed")]
    bad = pod("Master", 0, "Failed", exit_code=2, message=failure_message())
    st = status.derive(
        cr(),
        ptj(conditions=conditions),
        states(bad),
        now=NOW,
        log_tails={"run-train-master-0": "last\nlines"},
    )
    assert st["failure"]["reason"] == "DataError" and st["failure"]["replica"] == "Master 0"
    assert "splits/train is empty" in st["failure"]["message"] and st["failure"]["logTail"] == "last\nlines"


def test_backoff_limit_exceeded_keeps_the_jobs_reason_and_the_replica() -> None:
    conditions = [CREATED, ("Failed", "True", "BackoffLimitExceeded")]
    killed = pod("Worker", 0, "Failed", exit_code=137, reason="OOMKilled")
    st = status.derive(cr(), ptj(conditions=conditions), states(killed), now=NOW)
    assert st["failure"]["reason"] == "BackoffLimitExceeded" and st["failure"]["replica"] == "Worker 0"
    assert "OOMKilled" in st["failure"]["message"] and "exit code 137" in st["failure"]["message"]


def test_deadline_without_a_failed_pod() -> None:
    conditions = [CREATED, ("Failed", "True", "DeadlineExceeded")]
    st = status.derive(cr(), ptj(conditions=conditions), states(pod("Master", 0, "Running")), now=NOW)
    assert st["failure"]["reason"] == "DeadlineExceeded" and "DeadlineExceeded" in st["failure"]["message"]


def test_restarts_are_counted_once_per_transition() -> None:
    restarting = [CREATED, ("Restarting", "True", "PyTorchJobRestarting")]
    st = status.derive(cr(), ptj(conditions=restarting), [], now=NOW)
    assert st["restartCount"] == 1 and st["lastRestartTime"] == T1
    again = status.derive(cr(status=st), ptj(conditions=restarting), [], now=NOW)
    assert again["restartCount"] == 1
    later = ptj(conditions=restarting)
    later["status"]["conditions"][1]["lastTransitionTime"] = T2
    assert status.derive(cr(status=again), later, [], now=NOW)["restartCount"] == 2
    in_place = states(pod("Master", 0, "Running", restarts=3))
    assert status.derive(cr(), ptj(conditions=[CREATED, RUNNING]), in_place, now=NOW)["restartCount"] == 3


def test_restart_message_names_the_last_failure() -> None:
    restarting = [CREATED, ("Restarting", "True", "PyTorchJobRestarting")]
    pods = states(pod("Worker", 1, "Failed", exit_code=143, reason="Error"))
    st = status.derive(cr(backoffLimit=4), ptj(cr(backoffLimit=4), conditions=restarting), pods, now=NOW)
    assert "backoffLimit 4" in st["message"] and "run-train-worker-1" in st["message"]


def test_terminal_status_survives_the_pytorchjob_ttl() -> None:
    done = status.derive(
        cr(),
        ptj(conditions=[CREATED, ("Succeeded", "True", "PyTorchJobSucceeded")]),
        states(pod("Master", 0, "Succeeded", exit_code=0, message=success_message())),
        now=NOW,
    )
    after = status.derive(cr(status=done), None, [], now="2026-11-26T00:00:00Z")
    assert after["phase"] == "Succeeded" and after["outputs"]["checkpoint"] == "s3://bucket/ckpt/run"
    assert status.status_patch(cr(status=done), after) == {}


def test_errors_stall_without_losing_the_phase() -> None:
    running = status.derive(
        cr(), ptj(conditions=[CREATED, RUNNING]), states(pod("Master", 0, "Running")), now=NOW
    )
    st = status.derive(
        cr(status=running),
        ptj(conditions=[CREATED, RUNNING]),
        [],
        now=NOW,
        error=("SpecChangedAfterStart", "revert"),
    )
    assert st["phase"] == "Running" and kstatus(st) == ("False", "False", "True")
    missing = status.derive(cr(), None, [], now=NOW, data=READY, error=("PyTorchJobCRDMissing", "install it"))
    assert missing["phase"] == "Pending" and cond(missing, "Stalled")["reason"] == "PyTorchJobCRDMissing"


# ----------------------------------------------------------------------------- progress ownership


def test_status_patch_never_touches_the_trainers_progress() -> None:
    trainer = {
        "completed": 40,
        "total": 100,
        "loss": 1.5,
        "learningRate": 1e-5,
        "tokensPerSecond": 900.0,
        "etaSeconds": 60,
        "updatedAt": T1,
    }
    owner = cr(status={"phase": "Running", "progress": dict(trainer)})
    new = status.derive(
        owner, ptj(conditions=[CREATED, RUNNING]), states(pod("Master", 0, "Running")), now=NOW
    )
    patch = status.status_patch(owner, new)
    assert patch["progress"] == {"iterations": "40/100", "etaText": "60s"}
    owner["status"]["progress"].update(patch["progress"])
    gone = status.status_patch(owner, {k: v for k, v in new.items() if k != "progress"})
    assert gone["progress"] == {"iterations": None, "etaText": None}


def test_printer_column_texts_from_the_trainers_numbers() -> None:
    """kubectl get shows "1.18G" tokens and a kubectl-style ETA; the ETA goes once the run ends."""
    trainer = {"completed": 40, "total": 100, "tokens": 1_180_000_000, "etaSeconds": 7500, "updatedAt": T1}
    owner = cr(status={"phase": "Running", "progress": dict(trainer)})
    running = status.derive(
        owner, ptj(conditions=[CREATED, RUNNING]), states(pod("Master", 0, "Running")), now=NOW
    )
    assert running["progress"] == {"iterations": "40/100", "tokensText": "1.18G", "etaText": "125m"}
    owner["status"]["progress"].update(running["progress"])
    owner["status"]["progress"]["etaSeconds"] = 200
    later = status.derive(owner, ptj(conditions=[CREATED, RUNNING]), [], now=NOW)
    assert later["progress"]["etaText"] == "3m20s"
    user = cr(status=owner["status"], suspend=True)
    suspended = status.derive(
        user, ptj(user, conditions=[CREATED, ("Suspended", "True", "PyTorchJobSuspended")]), [], now=NOW
    )
    assert suspended["phase"] == "Suspended" and "etaText" not in suspended["progress"]
    patch = status.status_patch(user, suspended)
    assert patch["progress"]["etaText"] is None and "tokens" not in patch["progress"]  # trainer's key kept


def test_iterations_before_any_report() -> None:
    st = status.derive(cr(), ptj(conditions=[CREATED]), [], now=NOW)
    assert st["progress"] == {"iterations": "0/100"}
    assert "progress" not in status.derive(cr(), None, [], now=NOW, data=READY)


def test_transition_times_are_stable() -> None:
    first = status.derive(cr(), ptj(conditions=[CREATED, RUNNING]), [], now=NOW)
    second = status.derive(
        cr(status=first), ptj(conditions=[CREATED, RUNNING]), [], now="2026-11-25T12:00:00Z"
    )
    assert status.status_patch(cr(status=first), second) == {}
