"""The real operator (kopf) against the emulated API server: lifecycle of an SFTDataPrep.

The emulator enforces the generated CRD (schema, defaults, CEL), status-subresource isolation,
ownerReference garbage collection and resourceVersions. No pod runner here: tests play the Job
controller by writing Job/Pod status themselves, which makes every state reachable and fast.
"""

from __future__ import annotations

import copy
import json
import time
from typing import Any

import operator_harness as harness
import pytest
from operator_harness import NAMESPACE, TEST_IMAGE, OperatorFactory, condition

from kubeemu import ApiError, KubeEmulator
from sft_common.result import PrepResult, PrepTotals

TIMEOUT = harness.WAIT


def prep(name: str = "demo", **spec: Any) -> dict[str, Any]:
    body = {
        "datasets": [{"name": "chats", "path": "s3://bucket/chats.jsonl"}],
        "tokenizer": {"model": "s3://bucket/tokenizer"},
        "outputDir": "s3://bucket/out",
        "numShards": 4,
        "parallelism": 2,
    }
    body.update(spec)
    return {
        "apiVersion": "sft.dev/v1alpha1",
        "kind": "SFTDataPrep",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": body,
    }


def status_of(kube: KubeEmulator, name: str = "demo") -> dict[str, Any]:
    return harness.status_of(kube, "SFTDataPrep", name)


def wait_status(
    kube: KubeEmulator, predicate: Any, name: str = "demo", what: str = "status"
) -> dict[str, Any]:
    return harness.wait_status(kube, "SFTDataPrep", name, predicate, what)


def make_pod(
    kube: KubeEmulator, job: dict[str, Any], index: int, phase: str, terminated: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A pod as the Job controller would create it, then its status as the kubelet would write it."""
    template = job["spec"]["template"]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{job['metadata']['name']}-{index}-x{index}",
            "namespace": NAMESPACE,
            "labels": dict(template["metadata"]["labels"]),
            "annotations": {
                **template["metadata"]["annotations"],
                "batch.kubernetes.io/job-completion-index": str(index),
            },
            "ownerReferences": [
                {
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "name": job["metadata"]["name"],
                    "uid": job["metadata"]["uid"],
                    "controller": True,
                }
            ],
        },
        "spec": copy.deepcopy(template["spec"]),
    }
    created = kube.create(pod)
    state: dict[str, Any] = {"running": {"startedAt": "2026-11-25T10:00:00Z"}}
    if terminated is not None:
        state = {
            "terminated": {
                "startedAt": "2026-11-25T10:00:00Z",
                "finishedAt": "2026-11-25T10:05:00Z",
                **terminated,
            }
        }
    kube.patch_status(
        "Pod",
        created["metadata"]["name"],
        {
            "phase": phase,
            "containerStatuses": [
                {
                    "name": "prep",
                    "restartCount": 0,
                    "ready": phase == "Running",
                    "image": "x",
                    "imageID": "",
                    "state": state,
                }
            ],
        },
    )
    return created


def backoff_limit_exceeded(kube: KubeEmulator, at: str, name: str = "demo-prep") -> None:
    """Play the Job controller: 3 pod failures and the Job Failed with BackoffLimitExceeded."""
    failed = {
        "type": "Failed",
        "status": "True",
        "reason": "BackoffLimitExceeded",
        "message": "Job has reached the specified backoff limit",
        "lastTransitionTime": at,
    }
    kube.patch_status("Job", name, {"failed": 3, "conditions": [failed]})


def post_count(kube: KubeEmulator, path_part: str) -> int:
    return sum(1 for r in kube.requests if str(r.method).upper().endswith("POST") and path_part in r.url.path)


def test_create_renders_children_and_reaches_succeeded(
    cluster: KubeEmulator, operator: OperatorFactory
) -> None:
    kube = cluster
    with operator():
        kube.create(prep())
        job = kube.wait_for_object("Job", "demo-prep", timeout=TIMEOUT)
        cm = kube.get("ConfigMap", "demo-prep-config")
        owner_uid = kube.get("SFTDataPrep", "demo")["metadata"]["uid"]
        for child in (job, cm):
            (ref,) = child["metadata"]["ownerReferences"]
            assert ref["uid"] == owner_uid and ref["controller"] is True
        assert "pack_size: 4096" in cm["data"]["config.yaml"]  # CRD default applied, then rendered
        assert job["spec"]["template"]["spec"]["containers"][0]["image"] == TEST_IMAGE
        st = wait_status(kube, lambda s: s.get("jobRef"), what="jobRef")
        assert st["phase"] == "Pending" and condition(st, "JobCreated")["status"] == "True"
        assert st["observedGeneration"] == 1

        # running: the Job has active pods; worker 0 reports progress itself
        kube.patch_status("Job", "demo-prep", {"active": 2, "startTime": "2026-11-25T10:00:00Z"})
        make_pod(kube, job, 0, "Running")
        kube.patch_status(
            "SFTDataPrep",
            "demo",
            {
                "progress": {
                    "workers": {
                        "0": {
                            "unit": "shards",
                            "completed": 1,
                            "total": 2,
                            "tokens": 500,
                            "tokensPerSecond": 25.0,
                        }
                    }
                }
            },
        )
        st = wait_status(
            kube, lambda s: s.get("phase") == "Running" and (s.get("progress") or {}).get("tokens") == 500
        )
        assert st["progress"]["shards"] == "1/4" and st["progress"]["workers"]["0"]["completed"] == 1
        assert condition(st, "Reconciling")["status"] == "True"

        # succeeded: worker 1 wrote metadata.json and says so in its termination message
        message = PrepResult(
            output_dir="s3://bucket/out",
            blend="s3://bucket/out/blend.json",
            metadata="s3://bucket/out/metadata.json",
            pack_size=4096,
            shards_done=2,
            shards_total=4,
            worker=1,
            totals=PrepTotals(rows=10, sequences=12, tokens=900, trainable_tokens=600, bins=1),
            packing_efficiency=0.22,
        ).payload()
        make_pod(
            kube, job, 1, "Succeeded", {"exitCode": 0, "reason": "Completed", "message": json.dumps(message)}
        )
        kube.patch_status(
            "Job",
            "demo-prep",
            {
                "active": 0,
                "succeeded": 2,
                "completedIndexes": "0-1",
                "completionTime": "2026-11-25T10:06:00Z",
                "conditions": [
                    {"type": "Complete", "status": "True", "lastTransitionTime": "2026-11-25T10:06:00Z"}
                ],
            },
        )
        st = wait_status(kube, lambda s: s.get("phase") == "Succeeded")
        assert st["outputs"]["metadata"] == "s3://bucket/out/metadata.json"
        assert st["outputs"]["totals"]["tokens"] == 900 and st["progress"]["tokens"] == 900
        assert condition(st, "Ready")["status"] == "True" and condition(st, "DataReady")["status"] == "True"
        assert st["completionTime"] == "2026-11-25T10:06:00Z"
        reasons = kube.wait_for(
            lambda: (
                {e["reason"] for e in kube.events(NAMESPACE, "demo")}
                >= {"JobCreated", "Running", "Succeeded"}
                and {e["reason"] for e in kube.events(NAMESPACE, "demo")}
            ),
            TIMEOUT,
            message="events",
        )
        assert "Pending" in reasons
    assert post_count(kube, "/jobs") == 1


def test_restart_mid_run_creates_nothing_twice_and_keeps_status(
    cluster: KubeEmulator, operator: OperatorFactory
) -> None:
    kube = cluster
    with operator():
        kube.create(prep())
        job = kube.wait_for_object("Job", "demo-prep", timeout=TIMEOUT)
        kube.patch_status("Job", "demo-prep", {"active": 2, "startTime": "2026-11-25T10:00:00Z"})
        make_pod(kube, job, 0, "Running")
        before = wait_status(kube, lambda s: s.get("phase") == "Running")
    job_rv = kube.get("Job", "demo-prep")["metadata"]["resourceVersion"]
    with operator():
        # a restarted operator re-lists everything; then the run finishes while it is up
        kube.patch_status(
            "Job",
            "demo-prep",
            {
                "failed": 0,
                "conditions": [
                    {"type": "Complete", "status": "True", "lastTransitionTime": "2026-11-25T10:09:00Z"}
                ],
            },
        )
        after = wait_status(kube, lambda s: s.get("phase") == "Succeeded")
    assert post_count(kube, "/jobs") == 1 and post_count(kube, "/configmaps") == 1
    assert (
        kube.get("Job", "demo-prep")["metadata"]["resourceVersion"] != job_rv
    )  # only our status patch moved it
    assert len(kube.list("Job", NAMESPACE)) == 1
    times = {c["type"]: c["lastTransitionTime"] for c in before["conditions"]}
    assert condition(after, "JobCreated")["lastTransitionTime"] == times["JobCreated"]
    assert after["jobRef"] == before["jobRef"]


def test_adopts_a_job_created_before_a_crash(cluster: KubeEmulator, operator: OperatorFactory) -> None:
    """The operator died after creating the Job but before recording it: the 409 path adopts it."""
    from sft_operator.render.dataprep import render
    from sft_operator.render.pods import WorkloadDefaults

    kube = cluster
    created = kube.create(prep())
    children = render(created, WorkloadDefaults(prep_image=TEST_IMAGE))
    kube.create(children.config_map)
    job = kube.create(children.job)
    with operator():
        st = wait_status(kube, lambda s: s.get("jobRef"))
    assert st["jobRef"]["uid"] == job["metadata"]["uid"]
    assert len(kube.list("Job", NAMESPACE)) == 1


def test_suspend_and_resume(cluster: KubeEmulator, operator: OperatorFactory) -> None:
    kube = cluster
    with operator():
        kube.create(prep())
        kube.wait_for_object("Job", "demo-prep", timeout=TIMEOUT)
        kube.patch("SFTDataPrep", "demo", {"spec": {"suspend": True}})
        job = kube.wait_for_object(
            "Job", "demo-prep", lambda j: j["spec"].get("suspend") is True, timeout=TIMEOUT
        )
        assert job["metadata"]["annotations"]["sft.dev/suspend"] == "true"
        st = wait_status(kube, lambda s: s.get("phase") == "Suspended")
        assert st["observedGeneration"] == 2
        kube.patch("SFTDataPrep", "demo", {"spec": {"suspend": False}})
        kube.wait_for_object("Job", "demo-prep", lambda j: j["spec"].get("suspend") is False, timeout=TIMEOUT)
        wait_status(kube, lambda s: s.get("phase") == "Pending" and s.get("observedGeneration") == 3)


def test_never_force_resumes_a_kueue_suspended_job(cluster: KubeEmulator, operator: OperatorFactory) -> None:
    kube = cluster
    with operator():
        kube.create(prep(queueName="team-a"))
        job = kube.wait_for_object("Job", "demo-prep", timeout=TIMEOUT)
        assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
        kube.patch("Job", "demo-prep", {"spec": {"suspend": True}})  # Kueue holds it until admission
        kube.patch_status(
            "Job",
            "demo-prep",
            {
                "conditions": [
                    {
                        "type": "Suspended",
                        "status": "True",
                        "reason": "JobSuspended",
                        "lastTransitionTime": "2026-11-25T10:00:00Z",
                    }
                ]
            },
        )
        st = wait_status(
            kube, lambda s: condition(s, "Ready")["reason"] == "Queued" if s.get("conditions") else False
        )
        assert st["phase"] == "Pending" and "team-a" in st["message"]
        kube.patch("SFTDataPrep", "demo", {"metadata": {"labels": {"touch": "1"}}})  # any later reconcile
        wait_status(kube, lambda s: s.get("observedGeneration") == 1 and s.get("phase") == "Pending")
        assert kube.get("Job", "demo-prep")["spec"]["suspend"] is True
    patches = [
        r
        for r in kube.requests
        if str(r.method).upper().endswith("PATCH") and r.url.path.endswith("/jobs/demo-prep")
    ]
    assert patches == []  # the operator never wrote the Job (the test's Kueue patch bypasses HTTP)


def test_invalid_spec_is_stalled_then_recovers(cluster: KubeEmulator, operator: OperatorFactory) -> None:
    kube = cluster
    with operator():
        kube.create(prep(parallelism=8))  # 8 workers for 4 shards: the schema cannot see it
        st = wait_status(kube, lambda s: s.get("conditions") and condition(s, "Stalled")["status"] == "True")
        assert "parallelism (8) exceeds numShards (4)" in condition(st, "Stalled")["message"]
        assert condition(st, "Stalled")["reason"] == "InvalidSpec"
        assert kube.get_or_none("Job", "demo-prep") is None
        warnings = kube.wait_for(
            lambda: [e for e in kube.events(NAMESPACE, "demo") if e["type"] == "Warning"], TIMEOUT
        )
        assert warnings[0]["reason"] == "InvalidSpec"
        kube.patch("SFTDataPrep", "demo", {"spec": {"numShards": 8}})
        kube.wait_for_object("Job", "demo-prep", timeout=TIMEOUT)
        st = wait_status(
            kube, lambda s: s.get("observedGeneration") == 2 and condition(s, "Stalled")["status"] == "False"
        )
        assert st["phase"] == "Pending"


def test_schema_rejects_what_it_can(cluster: KubeEmulator) -> None:
    with pytest.raises(ApiError) as info:
        cluster.create(prep(packSize=8))  # below the minimum of 16
    assert info.value.code == 422 and "packSize" in str(info.value)
    with pytest.raises(ApiError) as info:
        cluster.create(prep(env=[{"name": "HF_TOKEN", "value": "hf_x"}]))
    assert info.value.code == 422 and "Secret" in str(info.value)


def test_data_spec_is_immutable_once_the_job_exists(cluster: KubeEmulator, operator: OperatorFactory) -> None:
    kube = cluster
    kube.create(prep())
    kube.patch("SFTDataPrep", "demo", {"spec": {"packSize": 2048}})  # fine before the Job exists
    with operator():
        wait_status(kube, lambda s: s.get("jobRef"))
    with pytest.raises(ApiError) as info:
        kube.patch("SFTDataPrep", "demo", {"spec": {"packSize": 4096}})
    assert info.value.code == 422 and "immutable once the job exists" in str(info.value)
    kube.patch("SFTDataPrep", "demo", {"spec": {"suspend": True, "resources": {"limits": {"memory": "2Gi"}}}})


def test_foreign_job_with_the_same_name_is_reported(cluster: KubeEmulator, operator: OperatorFactory) -> None:
    kube = cluster
    kube.create(
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "demo-prep", "namespace": NAMESPACE},
            "spec": {
                "template": {
                    "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}
                }
            },
        }
    )
    with operator(recheck_base=0.2):
        kube.create(prep())
        st = wait_status(kube, lambda s: s.get("conditions") and condition(s, "Stalled")["status"] == "True")
        assert condition(st, "Stalled")["reason"] == "ChildConflict"
        assert "not controlled by SFTDataPrep demo" in st["message"]
        kube.delete("Job", "demo-prep")  # its owner cleans up: no event of ours, the re-check notices
        mine = kube.wait_for_object(
            "Job", "demo-prep", lambda j: j["metadata"].get("ownerReferences"), timeout=TIMEOUT
        )
        assert mine["metadata"]["ownerReferences"][0]["kind"] == "SFTDataPrep"
        wait_status(kube, lambda s: condition(s, "Stalled")["status"] == "False")


def test_failure_names_pod_exit_code_and_reason(cluster: KubeEmulator, operator: OperatorFactory) -> None:
    kube = cluster
    with operator():
        kube.create(prep())
        job = kube.wait_for_object("Job", "demo-prep", timeout=TIMEOUT)
        message = json.dumps(
            {"status": "failed", "reason": "TemplateMismatch", "message": "Template mismatch at message 2"}
        )
        make_pod(kube, job, 1, "Failed", {"exitCode": 1, "reason": "Error", "message": message})
        backoff_limit_exceeded(kube, at="2026-11-25T10:07:00Z")
        st = wait_status(kube, lambda s: s.get("phase") == "Failed")
    assert st["failure"]["reason"] == "TemplateMismatch" and st["failure"]["exitCode"] == 1
    assert st["failure"]["pod"] == "demo-prep-1-x1"
    assert condition(st, "Stalled")["status"] == "True"
    assert any(
        e["type"] == "Warning" and e["reason"] == "TemplateMismatch" for e in kube.events(NAMESPACE, "demo")
    )


def test_credentials_in_a_failure_never_reach_status_or_events(
    cluster: KubeEmulator, operator: OperatorFactory
) -> None:
    """A URL with user:password in the termination message (JSON, or the log tail FallbackToLogsOnError
    puts there) is redacted in status.failure, the conditions, the message and the Events."""
    kube = cluster
    password = "pw-" + "notreal" * 2  # fake, built at run time
    token = "hf_" + "fakeToken" * 4
    with operator():
        kube.create(prep())
        job = kube.wait_for_object("Job", "demo-prep", timeout=TIMEOUT)
        message = json.dumps(
            {
                "status": "failed",
                "reason": "StorageError",
                "message": f"could not write s3://bucket/out via http://alice:{password}@minio:9000",
            }
        )
        make_pod(kube, job, 1, "Failed", {"exitCode": 1, "reason": "Error", "message": message})
        make_pod(kube, job, 2, "Failed", {"exitCode": 1, "reason": "Error", "message": f"HF_TOKEN={token}"})
        backoff_limit_exceeded(kube, at="2026-11-25T10:07:00Z")
        st = wait_status(kube, lambda s: s.get("phase") == "Failed")
        time.sleep(0.5)  # any further reconcile would rewrite the status: it must not
        events = kube.events(NAMESPACE, "demo")
        final = status_of(kube)
    written = json.dumps([st, final, events])
    assert password not in written and token not in written
    assert "http://[REDACTED]@minio:9000" in st["failure"]["message"]
    assert final == st, "the redacted status is stable (no reconcile patches it again)"


def test_delete_cascades_to_children(cluster: KubeEmulator, operator: OperatorFactory) -> None:
    kube = cluster
    with operator():
        kube.create(prep())
        kube.wait_for_object("Job", "demo-prep", timeout=TIMEOUT)
        kube.delete("SFTDataPrep", "demo")
        kube.wait_for_deletion("SFTDataPrep", "demo", timeout=TIMEOUT)  # no finalizer holds it
        kube.wait_for_deletion("Job", "demo-prep", timeout=TIMEOUT)
        kube.wait_for_deletion("ConfigMap", "demo-prep-config", timeout=TIMEOUT)


def test_finished_prep_is_not_rerun_after_its_job_is_cleaned_up(
    cluster: KubeEmulator, operator: OperatorFactory
) -> None:
    """ttlSecondsAfterFinished deletes the Job; a restarted operator must keep the result, not re-run."""
    kube = cluster
    with operator():
        kube.create(prep(ttlSecondsAfterFinished=0))
        kube.wait_for_object("Job", "demo-prep", timeout=TIMEOUT)
        done = {"type": "Complete", "status": "True", "lastTransitionTime": "2026-11-25T10:06:00Z"}
        kube.patch_status(
            "Job", "demo-prep", {"completionTime": "2026-11-25T10:06:00Z", "conditions": [done]}
        )
        before = wait_status(kube, lambda s: s.get("phase") == "Succeeded")
        kube.delete("Job", "demo-prep")  # what the TTL controller does
        kube.wait_for_deletion("Job", "demo-prep", timeout=TIMEOUT)
        kube.patch("SFTDataPrep", "demo", {"metadata": {"labels": {"poke": "1"}}})  # force a reconcile
    with operator():  # and a restart
        kube.patch("SFTDataPrep", "demo", {"metadata": {"labels": {"poke": "2"}}})
        time.sleep(1.0)
    assert kube.get_or_none("Job", "demo-prep") is None
    after = status_of(kube)
    assert after["phase"] == "Succeeded" and after["completionTime"] == before["completionTime"]
    assert post_count(kube, "/jobs") == 1


def test_job_from_an_earlier_spec_is_reported_not_reused(
    cluster: KubeEmulator, operator: OperatorFactory
) -> None:
    """The spec changed between the Job's creation and status.jobRef (the CEL rule's blind window)."""
    from sft_operator.render.dataprep import render
    from sft_operator.render.pods import WorkloadDefaults

    kube = cluster
    created = kube.create(prep())
    earlier = copy.deepcopy(created)
    earlier["spec"]["packSize"] = 2048
    children = render(earlier, WorkloadDefaults(prep_image=TEST_IMAGE))
    kube.create(children.job)
    with operator():
        st = wait_status(kube, lambda s: s.get("conditions") and condition(s, "Stalled")["status"] == "True")
    assert condition(st, "Stalled")["reason"] == "SpecChangedAfterStart"
    assert "revert the change, or delete and recreate" in st["message"]
    assert kube.get("Job", "demo-prep")["metadata"]["annotations"]["sft.dev/spec-hash"] == children.spec_hash


def test_config_map_from_an_earlier_spec_is_updated_before_the_job_exists(
    cluster: KubeEmulator, operator: OperatorFactory
) -> None:
    """The spec changed after the ConfigMap but before the Job was created (e.g. an invalid spec was
    fixed): the ConfigMap is brought up to date, then the Job is created from it."""
    from sft_operator.render.dataprep import render
    from sft_operator.render.pods import WorkloadDefaults

    kube = cluster
    created = kube.create(prep())
    earlier = copy.deepcopy(created)
    earlier["spec"]["packSize"] = 2048
    kube.create(render(earlier, WorkloadDefaults(prep_image=TEST_IMAGE)).config_map)
    with operator():
        kube.wait_for_object("Job", "demo-prep", timeout=TIMEOUT)
        wait_status(kube, lambda s: s.get("jobRef"))
    data = kube.get("ConfigMap", "demo-prep-config")["data"]["config.yaml"]
    assert "pack_size: 4096" in data and "pack_size: 2048" not in data
