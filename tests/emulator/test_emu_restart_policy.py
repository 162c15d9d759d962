"""The restart policies the operator renders, honoured by the emulator as Kubernetes, JobSet and the
training-operator do: a disrupted or SIGTERMed (exit 143) training pod is retried without using up
backoffLimit/maxRestarts, exit 2 fails at once.

Facts: Kubernetes pkg/controller/job/pod_failure_policy.go (rules in order, first match wins; Ignore
does not count; FailJob fails the Job with reason PodFailurePolicy and "Container %s for pod %s/%s
failed with exit code %v matching %v rule at index %d" / "Pod %s/%s has condition %v matching %v rule
at index %d"); JobSet pkg/controllers/failure_policy.go (onJobFailureReasons,
onJobFailureMessagePatterns, RestartJobSetAndIgnoreMaxRestarts); training-operator
pkg/util/train/train_util.go (IsRetryableExitCode: exitCode >= 128) and pkg/core/job.go
(PastBackoffLimit skips replicas whose restartPolicy is not OnFailure/Always: ExitCode retries are
never counted against backoffLimit).
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Any

import pytest
from tests.emulator.test_emu_jobset import condition, jobset, pods_of

from kubeemu import KubeEmulator, PodRunner
from sft_operator.backends import pytorchjob
from sft_operator.backends.base import failure_rules, group_failure_rules

# The first pod holds (so it can be disrupted), its replacement finishes (the marker is in a directory
# both share).
HOLD_ONCE = r"""
import os, sys, time
marker = os.path.join(sys.argv[1], "started-" + os.environ.get("JOB_COMPLETION_INDEX", "0"))
if not os.path.exists(marker):
    open(marker, "w").close()
    print("hold" + "ing", flush=True)  # not the echoed source line
    time.sleep(120)
"""


def held_job(name: str, workdir: Path, **spec: Any) -> dict[str, Any]:
    container = {"name": "main", "image": "local", "command": [sys.executable, "-c", HOLD_ONCE, str(workdir)]}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "completionMode": "Indexed",
            "completions": 1,
            "parallelism": 1,
            "backoffLimit": 0,
            "podFailurePolicy": {"rules": failure_rules("main")},
            "template": {"spec": {"restartPolicy": "Never", "containers": [container]}},
            **spec,
        },
    }


def running_pod(kube: KubeEmulator, selector: str) -> dict[str, Any]:
    """The first pod once its process holds (SIGTERM before that would kill the interpreter's start)."""
    pods = kube.wait_for(
        lambda: [
            p
            for p in kube.list("pods", "default", label_selector=selector)
            if (p.get("status") or {}).get("phase") == "Running"
            and "holding" in (kube.pod_log(p["metadata"]["name"]) or "")
        ],
        timeout=30,
    )
    assert pods
    return pods[0]


@pytest.mark.parametrize("reason", ["PreemptionByScheduler", "EvictionByEvictionAPI", "TerminationByKubelet"])
def test_a_disrupted_pod_does_not_consume_backoff_limit_of_a_job(
    kube: KubeEmulator, pod_runner: PodRunner, tmp_path: Path, reason: str
) -> None:
    # The rules fail the Job on DisruptionTarget (for the JobSet to restart the group); with an Ignore
    # rule instead (the prep's Job), the disrupted pod is replaced and the Job completes.
    body = held_job("prep", tmp_path)
    body["spec"]["podFailurePolicy"]["rules"][1]["action"] = "Ignore"
    kube.create(body)
    victim = running_pod(kube, "batch.kubernetes.io/job-name=prep")
    pod_runner.disrupt_pod(victim["metadata"]["name"], reason=reason)
    done = kube.wait_for_object("jobs", "prep", lambda o: condition(o, "Complete"), timeout=30)
    assert done["status"]["failed"] == 0 and done["status"]["succeeded"] == 1  # backoffLimit 0 was not used
    evicted = kube.get("pods", victim["metadata"]["name"])
    disruption = next(c for c in evicted["status"]["conditions"] if c["type"] == "DisruptionTarget")
    assert disruption["reason"] == reason and evicted["status"]["phase"] == "Failed"


def test_exit_2_fails_the_job_by_pod_failure_policy(kube: KubeEmulator, pod_runner: PodRunner) -> None:
    container = {"name": "main", "image": "local", "command": [sys.executable, "-c", "raise SystemExit(2)"]}
    body = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "bad"},
        "spec": {
            "backoffLimit": 5,
            "podFailurePolicy": {"rules": failure_rules("main")},
            "template": {"spec": {"restartPolicy": "Never", "containers": [container]}},
        },
    }
    kube.create(body)
    failed = kube.wait_for_object("jobs", "bad", lambda o: condition(o, "Failed"), timeout=30)
    cond = condition(failed, "Failed")
    assert cond is not None and cond["reason"] == "PodFailurePolicy"
    assert cond["message"].startswith("Container main for pod default/bad-")
    assert cond["message"].endswith("failed with exit code 2 matching FailJob rule at index 0")
    assert len(kube.list("pods", "default")) == 1  # not retried although backoffLimit is 5


def _rendered_policy(body: dict[str, Any], max_restarts: int) -> dict[str, Any]:
    """The test JobSet with the failure policies the operator renders (backends.jobset)."""
    body["spec"]["failurePolicy"] = {"maxRestarts": max_restarts, "rules": group_failure_rules()}
    job = body["spec"]["replicatedJobs"][0]["template"]["spec"]
    job["podFailurePolicy"] = {"rules": failure_rules("node")}
    return body


@pytest.fixture
def jobsets(kube: KubeEmulator) -> KubeEmulator:
    kube.install_jobset_crd()
    return kube


def _attempt0_running(kube: KubeEmulator) -> list[dict[str, Any]]:
    pods = kube.wait_for(
        lambda: (
            (found := pods_of(kube, "js", attempt=0))
            and len(found) == 2
            and all(p["status"].get("phase") == "Running" for p in found)
            and all("attempt 0" in kube.pod_log(p["metadata"]["name"]) for p in found)  # holding
            and found
        ),
        timeout=30,
    )
    assert pods
    return pods


@pytest.mark.parametrize("how", ["disruption", "sigterm"])
def test_a_disrupted_or_preempted_node_restarts_the_jobset_without_counting(
    jobsets: KubeEmulator, pod_runner: PodRunner, how: str
) -> None:
    jobsets.create(_rendered_policy(jobset("js", mode="hold"), max_restarts=0))
    victim = _attempt0_running(jobsets)[1]["metadata"]["name"]
    if how == "disruption":
        pod_runner.disrupt_pod(victim, reason="PreemptionByScheduler", message="Kubelet: preempting")
    else:
        pod_runner.kill_pod(victim, sig=signal.SIGTERM)  # the trainer saved and exited 143
    done = jobsets.wait_for_object("jobsets", "js", lambda o: condition(o, "Completed"), timeout=60)
    # maxRestarts 0 and still restarted once: RestartJobSetAndIgnoreMaxRestarts.
    assert done["status"]["restarts"] == 1 and int(done["status"].get("restartsCountTowardsMax", 0)) == 0
    events = {e["reason"] for e in jobsets.events("default", involved_name="js")}
    assert "RestartJobSetAndIgnoreMaxRestartsFailurePolicyAction" in events


def test_exit_2_fails_the_jobset_without_restarts(jobsets: KubeEmulator, pod_runner: PodRunner) -> None:
    body = _rendered_policy(jobset("js"), max_restarts=3)
    container = body["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]["containers"][0]
    container["command"] = [sys.executable, "-c", "raise SystemExit(2)"]
    jobsets.create(body)
    failed = jobsets.wait_for_object("jobsets", "js", lambda o: condition(o, "Failed"), timeout=60)
    cond = condition(failed, "Failed")
    assert cond is not None and cond["reason"] == "FailJobSetFailurePolicyAction"
    assert int(failed["status"].get("restarts", 0)) == 0


def test_a_crash_still_counts_against_max_restarts(jobsets: KubeEmulator, pod_runner: PodRunner) -> None:
    jobsets.create(_rendered_policy(jobset("js", mode="fail_first"), max_restarts=0))  # exit 3
    failed = jobsets.wait_for_object("jobsets", "js", lambda o: condition(o, "Failed"), timeout=60)
    cond = condition(failed, "Failed")
    assert cond is not None and cond["reason"] == "ReachedMaxRestarts"


def exit_code_job(command: list[str]) -> dict[str, Any]:
    """A one-Master PyTorchJob running ``command`` under ``restartPolicy: ExitCode``, no backoff."""
    container = {"name": "pytorch", "image": "local", "command": command}
    replica = {"replicas": 1, "restartPolicy": "ExitCode", "template": {"spec": {"containers": [container]}}}
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": {"name": "train"},
        "spec": {"runPolicy": {"backoffLimit": 0}, "pytorchReplicaSpecs": {"Master": replica}},
    }


def test_pytorchjob_exit_code_policy_retries_143_without_using_backoff_limit(
    kube: KubeEmulator, pod_runner: PodRunner, tmp_path: Path
) -> None:
    kube.install_pytorchjob_crd()
    kube.create(exit_code_job([sys.executable, "-c", HOLD_ONCE, str(tmp_path)]))
    master = running_pod(kube, "training.kubeflow.org/job-name=train")
    pod_runner.kill_pod(master["metadata"]["name"], sig=signal.SIGTERM)  # 143: retryable
    done = kube.wait_for_object("pytorchjobs", "train", lambda o: condition(o, "Succeeded"), timeout=30)
    assert not condition(done, "Failed")


# A worker that exits as sft-train does (sft_common.result.run_main: a StorageFault is exit 1,
# retryable; a ConfigError exit 2): it fails on its first attempt only (attempts counted in a shared
# directory), so a retried run succeeds.
FAIL_FIRST_AS_THE_TRAINER = r"""
import os, sys
from sft_common.config import ConfigError
from sft_common.result import run_main
from sft_common.storage import StorageFault

def main(argv):
    folder, kind = argv
    attempt = len(os.listdir(folder))
    open(os.path.join(folder, f"attempt-{attempt}"), "w").close()
    if attempt == 0 and kind == "config":
        raise ConfigError("train.lr must be positive")
    if attempt == 0:
        raise StorageFault("s3://bucket/run/iter_0000010: the endpoint stopped answering")
    return 0

sys.exit(run_main(main))
"""


@pytest.mark.parametrize(
    ("kind", "outcome", "attempts"), [("storage", "Succeeded", 2), ("config", "Failed", 1)]
)
def test_pytorchjob_retries_the_trainers_retryable_exit_and_fails_fast_on_a_config_error(
    kube: KubeEmulator, pod_runner: PodRunner, tmp_path: Path, kind: str, outcome: str, attempts: int
) -> None:
    """The PyTorchJob backend's pod command (sft-torchrun --retryable-exit-code=200 around a real
    torchrun and a worker exiting as the trainer does) under ExitCode: torchrun alone exits 1 for
    either failure, which ExitCode never retries; 200 is retried, the worker's exit 2 kept."""
    kube.install_pytorchjob_crd()
    script = tmp_path / "worker.py"
    script.write_text(FAIL_FIRST_AS_THE_TRAINER)
    runs = tmp_path / "attempts"
    runs.mkdir()
    torchrun = ["sft-torchrun", "--standalone", "--nproc-per-node=1", str(script), str(runs), kind]
    kube.create(exit_code_job(pytorchjob.retry_above_128(torchrun)))
    done = kube.wait_for_object(
        "pytorchjobs", "train", lambda o: condition(o, "Succeeded") or condition(o, "Failed"), timeout=120
    )
    assert condition(done, outcome), done["status"]
    assert len(list(runs.iterdir())) == attempts
    if kind == "config":  # the pod reports the worker's own code, not torchrun's 1
        pod = kube.get("pods", "train-master-0")
        assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 2
