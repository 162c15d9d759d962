"""Status derivation for SFTDataPrep: one test per Job/Pod state the status must reflect."""

from __future__ import annotations

from typing import Any

import pytest
from prep_objects import T0, T1, cond, cr, failed_pod, failure_message, job, pod, success_message

from sft_common.result import FailureResult, PrepResult, parse_result
from sft_operator.status.pods import parse_indexes, pod_state
from status_json.dataprep import derive, status_patch

NOW = "2026-11-25T12:00:00Z"


def states(*pods: dict[str, Any]) -> list[Any]:
    return [pod_state(p, "prep") for p in pods]


def conditions(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in status["conditions"]}


def kstatus(status: dict[str, Any]) -> tuple[str, str, str]:
    c = conditions(status)
    return c["Ready"]["status"], c["Reconciling"]["status"], c["Stalled"]["status"]


def test_no_job_yet_is_pending_and_reconciling() -> None:
    st = derive(cr(), None, [], now=NOW)
    assert st["phase"] == "Pending"
    assert kstatus(st) == ("False", "True", "False")
    assert conditions(st)["JobCreated"]["status"] == "False"
    assert st["observedGeneration"] == 1
    assert all(c["observedGeneration"] == 1 for c in st["conditions"])


def test_invalid_spec_is_stalled_with_the_message() -> None:
    st = derive(cr(), None, [], now=NOW, error=("InvalidSpec", "parallelism (9) exceeds numShards (8)"))
    assert st["phase"] == "Pending"
    assert kstatus(st) == ("False", "False", "True")
    stalled = conditions(st)["Stalled"]
    assert stalled["reason"] == "InvalidSpec"
    assert "parallelism (9) exceeds numShards (8)" in stalled["message"]


def test_job_created_pods_pending() -> None:
    owner = cr()
    st = derive(owner, job(owner, {"active": 4, "startTime": T0}), states(pod(0, "Pending")), now=NOW)
    assert st["phase"] == "Pending"
    assert st["jobRef"] == {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "name": "demo-prep",
        "uid": job()["metadata"]["uid"],
    }
    assert st["startTime"] == T0
    assert conditions(st)["JobCreated"]["status"] == "True"


@pytest.mark.parametrize(
    ("reason", "detail"),
    [
        ("ImagePullBackOff", 'Back-off pulling image "registry.example/sft-prep:0.1.0"'),
        ("ErrImagePull", "manifest unknown"),
        ("InvalidImageName", "couldn't parse image reference"),
        ("CreateContainerConfigError", 'secret "s3-creds" not found'),
    ],
)
def test_image_and_config_problems_name_the_pod(reason: str, detail: str) -> None:
    owner = cr()
    st = derive(
        owner, job(owner, {"active": 1}), states(pod(1, "Pending", waiting=(reason, detail))), now=NOW
    )
    assert st["phase"] == "Pending"
    ready = conditions(st)["Ready"]
    assert ready["reason"] == reason
    assert "demo-prep-1-abcde" in st["message"] and "worker 1" in st["message"] and detail in st["message"]


def test_unschedulable_pod() -> None:
    owner = cr()
    p = pod(0, "Pending", unschedulable="0/3 nodes are available: 3 Insufficient memory.")
    st = derive(owner, job(owner, {"active": 1}), states(p), now=NOW)
    assert conditions(st)["Ready"]["reason"] == "Unschedulable"
    assert "Insufficient memory" in st["message"]


def test_running_with_worker_progress_aggregated() -> None:
    workers = {
        "0": {
            "task": "sft-prep",
            "unit": "shards",
            "completed": 1,
            "total": 2,
            "tokens": 1000,
            "tokensPerSecond": 50.0,
            "etaSeconds": 200,
            "updatedAt": T0,
        },
        "1": {
            "task": "sft-prep",
            "unit": "shards",
            "completed": 2,
            "total": 2,
            "tokens": 3000,
            "tokensPerSecond": 70.0,
            "etaSeconds": 9000,
            "updatedAt": T1,
        },
        "2": {
            "task": "sft-prep",
            "unit": "shards",
            "completed": 0,
            "total": 2,
            "tokens": 0,
            "tokensPerSecond": 0.0,
        },
    }
    owner = cr(status={"progress": {"workers": workers}})
    j = job(owner, {"active": 3, "completedIndexes": "1", "succeeded": 1, "startTime": T0})
    st = derive(owner, j, states(pod(0, "Running"), pod(2, "Running")), now=NOW)
    assert st["phase"] == "Running"
    assert kstatus(st) == ("False", "True", "False")
    progress = st["progress"]
    assert progress["shardsDone"] == 3 and progress["shardsTotal"] == 8
    assert progress["shards"] == "3/8" and progress["percent"] == 37.5 and progress["percentText"] == "37.5%"
    assert progress["tokens"] == 4000
    assert progress["tokensPerSecond"] == 50.0  # worker 1 finished: its rate no longer counts
    assert progress["workersDone"] == 1 and progress["workersTotal"] == 4
    assert progress["updatedAt"] == T1
    assert "workers" not in progress  # the workers' own key is never written by the operator
    # printer columns: tokens with a unit; the ETA of the slowest unfinished worker (1 is done)
    assert progress["tokensText"] == "4.00k"
    assert progress["etaSeconds"] == 200 and progress["etaText"] == "3m20s"
    paused = cr(status={"progress": {"workers": workers}}, suspend=True)
    paused_job = job(paused, {"conditions": [cond("Suspended", reason="JobSuspended")]}, suspend=True)
    suspended = derive(paused, paused_job, [], now=NOW)
    assert suspended["phase"] == "Suspended" and "etaText" not in suspended["progress"]
    assert suspended["progress"]["tokensText"] == "4.00k"


def test_user_suspended() -> None:
    owner = cr(suspend=True)
    j = job(owner, {"conditions": [cond("Suspended", reason="JobSuspended")]}, suspend=True)
    st = derive(owner, j, [], now=NOW)
    assert st["phase"] == "Suspended"
    assert kstatus(st) == ("False", "False", "False")
    assert conditions(st)["Ready"]["reason"] == "Suspended"


def test_kueue_suspended_job_is_queued_not_suspended() -> None:
    owner = cr(queueName="team-a")
    j = job(owner, {"conditions": [cond("Suspended", reason="JobSuspended")]}, suspend=True)
    st = derive(owner, j, [], now=NOW)
    assert st["phase"] == "Pending"
    assert conditions(st)["Ready"]["reason"] == "Queued"
    assert "team-a" in st["message"]
    assert kstatus(st) == ("False", "True", "False")


def test_some_indexes_failed_but_retrying() -> None:
    owner = cr()
    failed = failed_pod(2, "ShardReadError", "s3 timeout", name="demo-prep-2-old")
    j = job(owner, {"active": 4, "failed": 1, "startTime": T0})
    st = derive(owner, j, states(failed, pod(0, "Running"), pod(2, "Running")), now=NOW)
    assert st["phase"] == "Running"
    assert "1 pod failure(s) so far (backoffLimit 2), retrying" in st["message"]
    assert "ShardReadError" in st["message"] and "demo-prep-2-old" in st["message"]
    assert "failure" not in st


def test_backoff_limit_exceeded_names_pod_exit_code_and_reason() -> None:
    owner = cr()
    failed = failed_pod(3, "TemplateMismatch", "Template mismatch at message 3")
    j = job(
        owner,
        {
            "failed": 3,
            "conditions": [
                cond("FailureTarget", reason="BackoffLimitExceeded"),
                cond(
                    "Failed",
                    reason="BackoffLimitExceeded",
                    message="Job has reached the specified backoff limit",
                ),
            ],
        },
    )
    st = derive(owner, j, states(failed), now=NOW, log_tails={failed["metadata"]["name"]: "line a\nline b"})
    assert st["phase"] == "Failed"
    assert kstatus(st) == ("False", "False", "True")
    f = st["failure"]
    assert f["reason"] == "TemplateMismatch"
    assert f["pod"] == "demo-prep-3-abcde" and f["exitCode"] == 1
    assert f["logTail"] == "line a\nline b"
    assert (
        "worker 3" in f["message"]
        and "exit code 1" in f["message"]
        and "BackoffLimitExceeded" in f["message"]
    )
    assert conditions(st)["Stalled"]["reason"] == "TemplateMismatch"
    assert st["completionTime"] == T1


def test_config_error_exit_2_fails_through_pod_failure_policy() -> None:
    owner = cr()
    failed = failed_pod(0, "InvalidConfig", "tokenizer.model: not found", exit_code=2)
    j = job(
        owner,
        {
            "failed": 1,
            "conditions": [
                cond(
                    "Failed",
                    reason="PodFailurePolicy",
                    message="Container prep for pod ml/demo-prep-0 failed with exit code 2",
                )
            ],
        },
    )
    st = derive(owner, j, states(failed), now=NOW)
    assert st["failure"]["reason"] == "InvalidConfig"
    assert "tokenizer.model: not found" in st["failure"]["message"]


def test_oom_killed_exit_137() -> None:
    owner = cr()
    failed = pod(1, "Failed", terminated={"exitCode": 137, "reason": "OOMKilled"})
    j = job(owner, {"failed": 3, "conditions": [cond("Failed", reason="BackoffLimitExceeded")]})
    st = derive(owner, j, states(failed), now=NOW)
    assert st["failure"]["reason"] == "OOMKilled"
    assert st["failure"]["exitCode"] == 137
    assert "resources.limits.memory" in st["failure"]["message"]


def test_crash_without_result_uses_log_tail_from_termination_message() -> None:
    owner = cr()
    logs = "\n".join(f"log line {i}" for i in range(40)) + "\nTraceback: ZeroDivisionError"
    failed = pod(0, "Failed", terminated={"exitCode": 1, "reason": "Error", "message": logs})
    j = job(owner, {"failed": 3, "conditions": [cond("Failed", reason="BackoffLimitExceeded")]})
    st = derive(owner, j, states(failed), now=NOW)
    assert st["failure"]["reason"] == "Error"
    assert st["failure"]["logTail"].endswith("Traceback: ZeroDivisionError")
    assert "log line 5\n" not in st["failure"]["logTail"]  # only the last lines


def test_deadline_exceeded_without_failed_pods() -> None:
    owner = cr(activeDeadlineSeconds=60)
    j = job(
        owner,
        {
            "conditions": [
                cond(
                    "Failed",
                    reason="DeadlineExceeded",
                    message="Job was active longer than specified deadline",
                )
            ]
        },
    )
    st = derive(owner, j, states(pod(0, "Running")), now=NOW)
    assert st["phase"] == "Failed"
    assert st["failure"]["reason"] == "DeadlineExceeded"
    assert "longer than specified deadline" in st["failure"]["message"]


def test_deadline_exceeded_with_killed_pod_keeps_deadline_reason() -> None:
    owner = cr(activeDeadlineSeconds=60)
    killed = pod(0, "Failed", terminated={"exitCode": 143, "reason": "Error", "message": "terminated"})
    j = job(
        owner, {"failed": 1, "conditions": [cond("Failed", reason="DeadlineExceeded", message="too long")]}
    )
    st = derive(owner, j, states(killed), now=NOW)
    assert st["failure"]["reason"] == "DeadlineExceeded"
    assert "demo-prep-0-abcde" in st["failure"]["message"] and "143" in st["failure"]["message"]


def test_succeeded_outputs_from_the_worker_that_wrote_metadata() -> None:
    owner = cr(
        status={"progress": {"workers": {"0": {"unit": "shards", "completed": 2, "total": 2, "tokens": 10}}}}
    )
    pods = [
        pod(
            0,
            "Succeeded",
            terminated={"exitCode": 0, "reason": "Completed", "message": success_message(0, False)},
        ),
        pod(
            1,
            "Succeeded",
            terminated={"exitCode": 0, "reason": "Completed", "message": success_message(1, True)},
        ),
    ]
    j = job(
        owner,
        {
            "succeeded": 4,
            "completedIndexes": "0-3",
            "completionTime": T1,
            "startTime": T0,
            "conditions": [cond("SuccessCriteriaMet"), cond("Complete")],
        },
    )
    st = derive(owner, j, states(*pods), now=NOW)
    assert st["phase"] == "Succeeded"
    assert kstatus(st) == ("True", "False", "False")
    assert st["outputs"] == {
        "outputDir": "s3://bucket/prep/out",
        "blend": "s3://bucket/prep/out/blend.json",
        "metadata": "s3://bucket/prep/out/metadata.json",
        "packSize": 4096,
        "padSeqToMult": 1,
        "totals": {
            "rows": 1000,
            "sequences": 1200,
            "tokens": 3_500_000,
            "trainableTokens": 2_000_000,
            "bins": 880,
        },
        "packingEfficiency": 0.9731,
    }
    assert conditions(st)["DataReady"]["status"] == "True"
    assert st["progress"]["tokens"] == 3_500_000 and st["progress"]["shards"] == "8/8"
    assert st["progress"]["tokensPerSecond"] == 0
    assert st["completionTime"] == T1 and st["startTime"] == T0


def test_succeeded_without_metadata_report_is_flagged() -> None:
    owner = cr()
    pods = [pod(0, "Succeeded", terminated={"exitCode": 0, "message": success_message(0, False)})]
    j = job(owner, {"conditions": [cond("Complete")]})
    st = derive(owner, j, states(*pods), now=NOW)
    assert st["phase"] == "Succeeded"
    assert conditions(st)["DataReady"]["status"] == "False"
    assert conditions(st)["DataReady"]["reason"] == "MetadataMissing"


def test_terminal_status_survives_job_ttl_deletion() -> None:
    owner = cr()
    j = job(owner, {"conditions": [cond("Complete")], "completionTime": T1})
    pods = [pod(1, "Succeeded", terminated={"exitCode": 0, "message": success_message(1, True)})]
    first = derive(owner, j, states(*pods), now=NOW)
    owner["status"] = first
    again = derive(owner, None, [], now="2026-11-25T13:00:00Z")  # Job and pods gone, operator restarted
    assert again["phase"] == "Succeeded"
    assert again["outputs"] == first["outputs"]
    assert again["progress"] == first["progress"]
    assert status_patch(owner, again) == {}


def test_rederiving_the_same_state_is_a_no_op_patch() -> None:
    owner = cr()
    j = job(owner, {"active": 4, "startTime": T0})
    first = derive(owner, j, states(pod(0, "Running")), now=NOW)
    owner["status"] = first
    second = derive(owner, j, states(pod(0, "Running")), now="2026-11-25T12:30:00Z")
    assert status_patch(owner, second) == {}
    # a transition moves lastTransitionTime of the changed conditions only
    j2 = job(owner, {"conditions": [cond("Complete")]})
    third = derive(owner, j2, [], now="2026-11-25T13:00:00Z")
    times = {c["type"]: c["lastTransitionTime"] for c in third["conditions"]}
    assert times["Ready"] == "2026-11-25T13:00:00Z"
    assert times["JobCreated"] == NOW


def test_status_patch_never_touches_worker_progress() -> None:
    owner = cr(status={"phase": "Running", "progress": {"workers": {"0": {"completed": 1}}, "tokens": 1}})
    patch = status_patch(owner, {"phase": "Running", "progress": {"tokens": 5}})
    assert patch == {"progress": {"tokens": 5}}
    patch = status_patch(owner, {"phase": "Failed"})
    assert patch == {"phase": "Failed", "progress": {"tokens": None}}


def test_pods_of_an_older_job_are_ignored() -> None:
    owner = cr()
    stale = pod(0, "Failed", terminated={"exitCode": 1, "message": failure_message("Old", "old job")})
    stale["metadata"]["ownerReferences"][0]["uid"] = "another-job"
    st = derive(owner, job(owner, {"active": 1}), states(stale), now=NOW)
    assert "Old" not in st["message"]


def test_helpers() -> None:
    assert parse_indexes("0-2,5,7-8") == {0, 1, 2, 5, 7, 8}
    assert parse_indexes("") == set()
    assert parse_result('{"status": "succeeded"}', PrepResult) == PrepResult()
    assert parse_result('{"status": "failed", "reason": "X"}', PrepResult) == FailureResult(reason="X")
    assert parse_result("Traceback ...", PrepResult) is None
    assert parse_result("{not json", PrepResult) is None
    assert parse_result('{"status": "other"}', PrepResult) is None


def test_spec_error_with_a_running_job_keeps_the_jobs_phase() -> None:
    owner = cr()
    error = ("SpecChangedAfterStart", "Job demo-prep was created from an earlier spec")
    st = derive(owner, job(owner, {"active": 2}), states(pod(0, "Running")), now=NOW, error=error)
    assert st["phase"] == "Running"
    assert kstatus(st) == ("False", "False", "True")
    assert conditions(st)["Stalled"]["reason"] == "SpecChangedAfterStart"


def test_derived_statuses_fit_the_status_model_and_thus_the_crd() -> None:
    """extra=forbid: a key the CRD's status schema lacks would be pruned by the apiserver; catch it here."""
    from sft_operator.api.dataprep import SFTDataPrepStatus

    owner = cr(status={"progress": {"workers": {"0": {"unit": "shards", "completed": 1, "tokens": 5}}}})
    ok = pod(1, "Succeeded", terminated={"exitCode": 0, "message": success_message(1, True)})
    bad = pod(0, "Failed", terminated={"exitCode": 137, "reason": "OOMKilled"})
    cases = [
        derive(owner, None, [], now=NOW),
        derive(owner, None, [], now=NOW, error=("InvalidSpec", "x")),
        derive(owner, job(owner, {"active": 1}), states(pod(0, "Running")), now=NOW),
        derive(owner, job(owner, {"conditions": [cond("Complete")]}), states(ok), now=NOW),
        derive(
            owner,
            job(owner, {"conditions": [cond("Failed", reason="BackoffLimitExceeded")]}),
            states(bad),
            now=NOW,
        ),
    ]
    for st in cases:
        model = SFTDataPrepStatus.model_validate(st)
        assert model.model_dump(mode="json", by_alias=True, exclude_none=True) == st


def test_sigkill_without_oom_reason_and_crash_loop() -> None:
    from sft_operator.status.pods import describe_failure, pending_problem

    killed = pod_state(pod(0, "Failed", terminated={"exitCode": 137, "reason": "Error"}), "prep")
    failure = describe_failure(killed)
    assert failure["reason"] == "Killed" and "SIGKILL" in failure["message"]
    looping = pod_state(pod(1, "Running", waiting=("CrashLoopBackOff", "back-off 10s")), "prep")
    assert pending_problem([looping]) == (
        "CrashLoopBackOff",
        "pod demo-prep-1-abcde (worker 1) is waiting with CrashLoopBackOff: back-off 10s",
    )
    assert pending_problem([pod_state(pod(2, "Running"), "prep")]) is None


def test_outputs_of_a_job_from_an_earlier_spec_are_not_ready() -> None:
    owner = cr()
    ok = pod(1, "Succeeded", terminated={"exitCode": 0, "message": success_message(1, True)})
    error = ("SpecChangedAfterStart", "the Job was created from an earlier spec")
    st = derive(owner, job(owner, {"conditions": [cond("Complete")]}), states(ok), now=NOW, error=error)
    assert st["phase"] == "Succeeded"
    assert kstatus(st) == ("False", "False", "True")
    assert conditions(st)["DataReady"]["status"] == "False"


def test_a_worker_waiting_for_another_runs_lease_is_the_message_while_running() -> None:
    """A worker waiting out another run's output lease says so in its progress entry (the contract
    sft_common.progress.LeaseWait, sent by sft-prep's lease); the CR's message names the holder, since
    when, the expiry and what to do, while Reconciling; a wait that ended long ago is not shown."""
    from sft_common.progress import LeaseWait

    wait = LeaseWait(
        output_dir="/mnt/as/the/worker/sees/it",
        run="3f2a9c",
        holder="worker 1 on demo-prep-1-x7k2p pid 7",
        renewed_at="2026-11-25T11:59:30Z",
        expires_at="2026-11-25T12:01:30Z",
        since="2026-11-25T11:59:50Z",
    ).model_dump(mode="json", by_alias=True)
    owner = cr(status={"progress": {"workers": {"0": {"completed": 0}, "1": {"leaseWait": wait}}}})
    st = derive(
        owner,
        job(owner, {"active": 2, "startTime": T0}),
        states(pod(0, "Running"), pod(1, "Running")),
        now=NOW,
    )
    assert st["phase"] == "Running"
    assert kstatus(st) == ("False", "True", "False")
    assert conditions(st)["Reconciling"]["reason"] == "WaitingForOutputLease"
    expected = (  # the lease on spec.outputDir, as the user wrote it
        "worker 1 waits (since 2026-11-25T11:59:50Z) for the lease on s3://bucket/prep/out, "
        "held by run 3f2a9c (worker 1 on demo-prep-1-x7k2p pid 7, last renewed 2026-11-25T11:59:30Z) "
        "until 2026-11-25T12:01:30Z, when it takes it over unless renewed: nothing to do if that run's "
        "prep was deleted; if it is still running, delete one of the two or give this prep another outputDir"
    )
    assert st["message"] == expected
    later = derive(
        owner,
        job(owner, {"active": 2, "startTime": T0}),
        states(pod(0, "Running"), pod(1, "Running")),
        now="2026-11-25T12:05:00Z",
    )
    assert later["message"].startswith("2 of 4 workers running")
