"""The real operator (kopf) against the emulated API server: the lifecycle of an SFTRun.

No pod runner: the tests play the Job controller (for the SFTDataPrep), the training-operator (the
PyTorchJob's status and pods) and the trainer's progress hook by writing those objects themselves,
which makes every state reachable and keeps the tests fast. The emulator enforces the generated CRDs
(schema, defaults, CEL immutability), status-subresource isolation and ownerReference GC.
"""

from __future__ import annotations

import json
import time
from typing import Any

import operator_harness as harness
import pytest
from operator_harness import NAMESPACE, TEST_IMAGE
from operator_harness import condition as cond
from test_operator_dataprep import prep as dataprep

from inprocess_operator import run_operator
from kubeemu import ApiError, KubeEmulator
from sft_common.result import TrainResult
from sft_operator.render.pods import WorkloadDefaults

TIMEOUT = harness.WAIT
TRAINER_IMAGE = "ghcr.io/sft-operator/sft-train:test"
DEFAULTS = WorkloadDefaults(prep_image=TEST_IMAGE, trainer_image=TRAINER_IMAGE)
T0 = "2026-11-25T10:00:00Z"
T1 = "2026-11-25T10:30:00Z"


def operator(**overrides: Any) -> Any:
    """The operator with trainer defaults; the data fallback re-check is long so that only watch events
    can explain a quick reaction to an SFTDataPrep."""
    settings: dict[str, Any] = {"defaults": DEFAULTS, "recheck_base": 0.3, "recheck_max": 60.0}
    settings.update(overrides)
    return run_operator(NAMESPACE, **settings)


def run(name: str = "run", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "engine": "hf",
        "precision": "fp32",
        "gpusPerNode": 0,
        "nodes": 2,
        "data": {"dataPrepRef": {"name": "prep"}},
        "model": {"pretrainedCheckpoint": "s3://bucket/base"},
        "checkpoint": {"save": "s3://bucket/ckpt"},
        "train": {"trainIters": 50},
    }
    body.update(spec)
    return {
        "apiVersion": "sft.dev/v1alpha1",
        "kind": "SFTRun",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": body,
    }


def prep(name: str = "prep") -> dict[str, Any]:
    """A one-worker SFTDataPrep whose data the runs wait for."""
    return dataprep(name, outputDir="s3://bucket/prep", numShards=1, parallelism=1, packSize=1024)


def status_of(kube: KubeEmulator, name: str = "run", kind: str = "SFTRun") -> dict[str, Any]:
    return harness.status_of(kube, kind, name)


def wait_status(
    kube: KubeEmulator, predicate: Any, name: str = "run", what: str = "status", timeout: float = TIMEOUT
) -> dict[str, Any]:
    return harness.wait_status(kube, "SFTRun", name, predicate, what, timeout)


def finish_prep(kube: KubeEmulator, ok: bool, name: str = "prep") -> None:
    """Play the Job controller and kubelet: worker 0 ends with the prep's termination message."""
    job = kube.wait_for_object("Job", f"{name}-prep", timeout=TIMEOUT)
    if ok:
        message = {
            "status": "succeeded",
            "outputDir": "s3://bucket/prep",
            "blend": "s3://bucket/prep/blend.json",
            "metadata": "s3://bucket/prep/metadata.json",
            "packSize": 1024,
            "shardsDone": 1,
            "shardsTotal": 1,
            "worker": 0,
        }
        terminated = {"exitCode": 0, "reason": "Completed", "message": json.dumps(message)}
        job_status = {
            "succeeded": 1,
            "completedIndexes": "0",
            "conditions": [{"type": "Complete", "status": "True"}],
        }
    else:
        message = {
            "status": "failed",
            "reason": "TokenizerNotFound",
            "message": "no tokenizer at s3://bucket/tokenizer",
        }
        terminated = {"exitCode": 2, "reason": "Error", "message": json.dumps(message)}
        job_status = {
            "failed": 1,
            "conditions": [{"type": "Failed", "status": "True", "reason": "PodFailurePolicy"}],
        }
    make_pod(
        kube,
        job,
        f"{name}-prep-0-abcde",
        "prep",
        "Succeeded" if ok else "Failed",
        terminated,
        {"batch.kubernetes.io/job-completion-index": "0"},
        "Job",
    )
    kube.patch_status("Job", job["metadata"]["name"], {"startTime": T0, "completionTime": T1, **job_status})


def make_pod(
    kube: KubeEmulator,
    owner: dict[str, Any],
    name: str,
    container: str,
    phase: str,
    terminated: dict[str, Any] | None = None,
    extra_annotations: dict[str, str] | None = None,
    owner_kind: str = "PyTorchJob",
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    if owner_kind == "Job":
        template = owner["spec"]["template"]
    else:
        template = owner["spec"]["pytorchReplicaSpecs"]["Master"]["template"]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "labels": {**template["metadata"]["labels"], **(labels or {})},
            "annotations": {**template["metadata"]["annotations"], **(extra_annotations or {})},
            "ownerReferences": [
                {
                    "apiVersion": owner["apiVersion"],
                    "kind": owner["kind"],
                    "name": owner["metadata"]["name"],
                    "uid": owner["metadata"]["uid"],
                    "controller": True,
                }
            ],
        },
        "spec": template["spec"],
    }
    kube.create(pod)
    state = (
        {"terminated": {"startedAt": T0, "finishedAt": T1, **terminated}}
        if terminated
        else {"running": {"startedAt": T0}}
    )
    kube.patch_status(
        "Pod",
        name,
        {
            "phase": phase,
            "containerStatuses": [
                {
                    "name": container,
                    "restartCount": 0,
                    "ready": phase == "Running",
                    "image": "x",
                    "imageID": "",
                    "state": state,
                }
            ],
        },
    )
    return pod


def master_pod(
    kube: KubeEmulator, job: dict[str, Any], phase: str, terminated: dict[str, Any] | None = None
) -> None:
    labels = {"training.kubeflow.org/replica-type": "master", "training.kubeflow.org/replica-index": "0"}
    make_pod(kube, job, f"{job['metadata']['name']}-master-0", "pytorch", phase, terminated, labels=labels)


def ptj_conditions(*types: str, reason: str = "") -> list[dict[str, Any]]:
    return [
        {
            "type": t,
            "status": "True",
            "reason": reason or f"PyTorchJob{t}",
            "lastUpdateTime": T0,
            "lastTransitionTime": T0,
        }
        for t in types
    ]


def posts(kube: KubeEmulator, path_end: str) -> int:
    return sum(
        1 for r in kube.requests if str(r.method).upper().endswith("POST") and r.url.path.endswith(path_end)
    )


# ----------------------------------------------------------------------------- waiting for data


@pytest.mark.parametrize("ok", [True, False], ids=["prep-succeeds", "prep-fails"])
def test_run_waits_for_its_prep(cluster: KubeEmulator, ok: bool) -> None:
    kube = cluster
    kube.install_pytorchjob_crd()
    with operator():
        kube.create(run())
        st = wait_status(kube, lambda s: s.get("phase") == "Waiting", what="Waiting (no prep)")
        assert cond(st, "DataReady")["reason"] == "DataPrepNotFound"
        kube.create(prep())
        st = wait_status(
            kube, lambda s: cond(s, "DataReady").get("reason") == "WaitingForDataPrep", what="waiting on prep"
        )
        assert (
            "SFTDataPrep prep" in cond(st, "DataReady")["message"]
            and "phase" in cond(st, "DataReady")["message"]
        )
        assert kube.get_or_none("PyTorchJob", "run-train") is None
        finish_prep(kube, ok)
        if ok:
            job = kube.wait_for_object("PyTorchJob", "run-train", timeout=TIMEOUT)
            cm = kube.get("ConfigMap", "run-train-config")
            assert "path: s3://bucket/prep" in cm["data"]["config.yaml"]
            assert "seq_length: 1024" in cm["data"]["config.yaml"]
            assert job["spec"]["pytorchReplicaSpecs"]["Worker"]["replicas"] == 1
            st = wait_status(kube, lambda s: s.get("jobRef"), what="jobRef")
            assert st["outputs"]["data"] == "s3://bucket/prep" and st["dataPrepRef"]["name"] == "prep"
        else:
            st = wait_status(kube, lambda s: s.get("phase") == "Failed", what="Failed")
            assert st["failure"]["reason"] == "DataPrepFailed"
            assert "TokenizerNotFound" in st["failure"]["message"]
            assert cond(st, "Stalled")["status"] == "True"
            assert kube.get_or_none("PyTorchJob", "run-train") is None


# ----------------------------------------------------------------------------- the PyTorchJob CRD


def test_no_backend_crd_runs_a_plain_job(cluster: KubeEmulator) -> None:
    """auto with none of the three CRDs: the run never stalls, it starts on the ``job`` backend (an
    Indexed Job and its headless Service, both owned by the run) and status.backend says so. (An
    explicit backend whose CRD is missing still stalls: test_sftrun_backend_choice.)"""
    kube = cluster
    with operator(recheck_max=1.0) as runner:
        kube.create(run(data={"uri": "s3://bucket/prep"}))
        service = kube.wait_for_object("Service", "run-train", timeout=TIMEOUT)
        job = kube.wait_for_object("Job", "run-train", timeout=TIMEOUT)
        assert service["spec"]["clusterIP"] == "None"
        assert job["spec"]["completionMode"] == "Indexed" and job["spec"]["completions"] == 2
        assert job["spec"]["template"]["spec"]["subdomain"] == "run-train"
        for child in (service, job):
            (owner,) = child["metadata"]["ownerReferences"]
            assert owner["kind"] == "SFTRun" and owner["name"] == "run" and owner["controller"]
        st = wait_status(kube, lambda s: s.get("backend"), what="status.backend")
        assert st["backend"] == "job" and st["jobRef"]["kind"] == "Job"
        assert cond(st, "Stalled")["status"] == "False" and cond(st, "JobCreated")["status"] == "True"
    assert "Traceback" not in runner.output


# ----------------------------------------------------------------------------- restart, progress, success


def test_operator_restart_mid_run_creates_nothing_twice_and_keeps_progress(cluster: KubeEmulator) -> None:
    kube = cluster
    kube.install_pytorchjob_crd()
    with operator():
        kube.create(run(data={"uri": "s3://bucket/prep"}))
        job = kube.wait_for_object("PyTorchJob", "run-train", timeout=TIMEOUT)
        wait_status(kube, lambda s: s.get("jobRef"), what="jobRef")
    # while no operator runs: the training-operator starts the job, rank 0 reports progress
    kube.patch_status(
        "PyTorchJob", "run-train", {"startTime": T0, "conditions": ptj_conditions("Created", "Running")}
    )
    master_pod(kube, job, "Running")
    progress = {
        "task": "train",
        "unit": "iterations",
        "completed": 20,
        "total": 50,
        "loss": 2.5,
        "learningRate": 3e-3,
        "tokens": 1_180_000_000,
        "tokensPerSecond": 1200.5,
        "etaSeconds": 30,
        "updatedAt": T0,
    }
    kube.patch_status("SFTRun", "run", {"progress": progress})
    with operator():
        st = wait_status(
            kube,
            lambda s: s.get("phase") == "Running" and (s.get("progress") or {}).get("iterations") == "20/50",
        )
        assert st["progress"]["loss"] == 2.5 and st["progress"]["tokensPerSecond"] == 1200.5
        # the printer columns' human strings, next to the trainer's numbers
        assert st["progress"]["tokensText"] == "1.18G" and st["progress"]["etaText"] == "30s"
        assert st["startTime"] == T0
        # the trainer keeps reporting; the operator follows without touching the trainer's keys
        kube.patch_status("SFTRun", "run", {"progress": {"completed": 45, "loss": 1.25}})
        st = wait_status(kube, lambda s: (s.get("progress") or {}).get("iterations") == "45/50")
        assert st["progress"]["learningRate"] == 3e-3 and st["progress"]["loss"] == 1.25
        # success: rank 0's termination message carries the outputs
        result = TrainResult(checkpoint="s3://bucket/ckpt", last_iteration=50, final_loss=1.1).payload()
        kube.delete("Pod", "run-train-master-0")
        kube.wait_for_deletion("Pod", "run-train-master-0")
        master_pod(
            kube, job, "Succeeded", {"exitCode": 0, "reason": "Completed", "message": json.dumps(result)}
        )
        kube.patch_status(
            "PyTorchJob",
            "run-train",
            {"completionTime": T1, "conditions": ptj_conditions("Created", "Succeeded")},
        )
        st = wait_status(kube, lambda s: s.get("phase") == "Succeeded")
        assert st["outputs"]["checkpoint"] == "s3://bucket/ckpt" and st["outputs"]["lastIteration"] == 50
        assert st["progress"]["iterations"] == "50/50" and st["completionTime"] == T1
        assert "etaText" not in st["progress"] and st["progress"]["tokensText"] == "1.18G"
        assert cond(st, "Ready")["status"] == "True"
        kube.wait_for(
            lambda: {"JobCreated", "Succeeded"} <= {e["reason"] for e in kube.events(NAMESPACE, "run")},
            TIMEOUT,
        )
        # ttlSecondsAfterFinished deletes the PyTorchJob: the run keeps its result and never runs again
        kube.delete("PyTorchJob", "run-train")
        kube.wait_for_deletion("PyTorchJob", "run-train", timeout=TIMEOUT)
        kube.patch("SFTRun", "run", {"metadata": {"labels": {"touched": "yes"}}})  # another reconcile
        time.sleep(1.0)
        assert kube.get_or_none("PyTorchJob", "run-train") is None
        assert status_of(kube)["phase"] == "Succeeded"
    assert posts(kube, "/pytorchjobs") == 1 and posts(kube, "/configmaps") == 1


def test_failed_replica_is_reported(cluster: KubeEmulator) -> None:
    kube = cluster
    kube.install_pytorchjob_crd()
    with operator():
        kube.create(run(data={"uri": "s3://bucket/prep"}))
        job = kube.wait_for_object("PyTorchJob", "run-train", timeout=TIMEOUT)
        master_pod(
            kube,
            job,
            "Failed",
            {"exitCode": 1, "reason": "Error", "message": "Traceback\nValueError: boom\n"},
        )
        kube.patch_status(
            "PyTorchJob",
            "run-train",
            {"conditions": ptj_conditions("Created", "Failed", reason="PyTorchJobFailed")},
        )
        st = wait_status(kube, lambda s: s.get("phase") == "Failed")
        assert st["failure"]["replica"] == "Master 0" and st["failure"]["exitCode"] == 1
        assert "ValueError: boom" in st["failure"]["logTail"]
        kube.wait_for(lambda: any(e["type"] == "Warning" for e in kube.events(NAMESPACE, "run")), TIMEOUT)


# ----------------------------------------------------------------------------- suspend, Kueue, immutability


def test_suspend_resume_and_kueue(cluster: KubeEmulator) -> None:
    kube = cluster
    kube.install_pytorchjob_crd()
    with operator():
        kube.create(run(data={"uri": "s3://bucket/prep"}, queueName="team-a"))
        job = kube.wait_for_object("PyTorchJob", "run-train", timeout=TIMEOUT)
        assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
        # Kueue holds it: the operator must not force suspend back to false
        kube.patch("PyTorchJob", "run-train", {"spec": {"runPolicy": {"suspend": True}}})
        kube.patch_status("PyTorchJob", "run-train", {"conditions": ptj_conditions("Created", "Suspended")})
        st = wait_status(
            kube, lambda s: cond(s, "Ready").get("reason") == "Queued" if s.get("conditions") else False
        )
        assert "team-a" in st["message"]
        assert kube.get("PyTorchJob", "run-train")["spec"]["runPolicy"]["suspend"] is True
        # the user suspends: phase Suspended; the user resumes: the operator clears runPolicy.suspend
        kube.patch("SFTRun", "run", {"spec": {"suspend": True}})
        st = wait_status(kube, lambda s: s.get("phase") == "Suspended")
        kube.patch("SFTRun", "run", {"spec": {"suspend": False}})
        kube.wait_for_object(
            "PyTorchJob", "run-train", lambda o: o["spec"]["runPolicy"]["suspend"] is False, timeout=TIMEOUT
        )
        assert st["observedGeneration"] == 2


def test_training_spec_is_immutable_once_started(cluster: KubeEmulator) -> None:
    kube = cluster
    kube.install_pytorchjob_crd()
    with operator():
        kube.create(run(data={"uri": "s3://bucket/prep"}))
        wait_status(kube, lambda s: s.get("jobRef"), what="jobRef")
        with pytest.raises(ApiError) as info:
            kube.patch("SFTRun", "run", {"spec": {"train": {"trainIters": 5}}})
        assert info.value.code == 422 and "immutable" in str(info.value)
        kube.patch("SFTRun", "run", {"spec": {"suspend": True, "queueName": "other"}})


def test_invalid_spec_stalls_with_the_fix(cluster: KubeEmulator) -> None:
    kube = cluster
    kube.install_pytorchjob_crd()
    with operator():
        kube.create(run(data={"uri": "s3://bucket/prep"}, engine="megatron", precision="bf16"))
        st = wait_status(
            kube, lambda s: cond(s, "Stalled").get("status") == "True" if s.get("conditions") else False
        )
        assert "gpusPerNode is 0" in st["message"]
        assert kube.get_or_none("PyTorchJob", "run-train") is None


def test_deleting_the_run_deletes_its_children(cluster: KubeEmulator) -> None:
    kube = cluster
    kube.install_pytorchjob_crd()
    with operator():
        kube.create(run(data={"uri": "s3://bucket/prep"}))
        job = kube.wait_for_object("PyTorchJob", "run-train", timeout=TIMEOUT)
        master_pod(kube, job, "Running")
        kube.delete("SFTRun", "run")
        kube.wait_for_deletion("PyTorchJob", "run-train", timeout=TIMEOUT)
        kube.wait_for_deletion("ConfigMap", "run-train-config", timeout=TIMEOUT)
        kube.wait_for_deletion("Pod", "run-train-master-0", timeout=TIMEOUT)


def test_crd_recheck_backs_off_with_the_time_blocked() -> None:
    """First re-check after recheck_base; then about as long as the run has been blocked, capped."""
    from sft_operator.backends import CRD_MISSING
    from sft_operator.context import Context
    from sft_operator.kube.client import KubeClient
    from sft_operator.reconcile_sftrun import _recheck_delay

    now = {"t": "2026-11-25T10:00:00Z"}
    ctx = Context(
        client=KubeClient("http://127.0.0.1:1"), clock=lambda: now["t"], recheck_base=5, recheck_max=300
    )
    stalled = {
        "conditions": [{"type": "Stalled", "status": "True", "reason": CRD_MISSING, "lastTransitionTime": T0}]
    }
    assert _recheck_delay(ctx, None) == 5
    assert _recheck_delay(ctx, stalled) == 5
    now["t"] = "2026-11-25T10:01:00Z"
    assert _recheck_delay(ctx, stalled) == 60
    now["t"] = "2026-11-25T12:00:00Z"
    assert _recheck_delay(ctx, stalled) == 300
    other = {"conditions": [{**stalled["conditions"][0], "reason": "InvalidSpec"}]}
    assert _recheck_delay(ctx, other) == 5
