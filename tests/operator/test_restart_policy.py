"""The restart policy each backend renders: preemption (exit 143) and pod disruptions retried without
using up maxRestarts/backoffLimit, exit 2 failing at once, and a termination grace period long enough
for a checkpoint save; and what each backend deletes to restart its group (spec.restartOnHang).

Peers as they are: Kubernetes pkg/controller/job/pod_failure_policy.go (first matching rule wins;
FailJob → Job reason PodFailurePolicy with "Container %s for pod %s/%s failed with exit code %v
matching %v rule at index %d"); JobSet api/jobset/v1alpha2/jobset_types.go FailurePolicyRule
(onJobFailureReasons, onJobFailureMessagePatterns, RestartJobSetAndIgnoreMaxRestarts); Kubeflow
training-operator pkg/util/train/train_util.go ``IsRetryableExitCode: return exitCode >= 128`` with
replica ``restartPolicy: ExitCode``, and pkg/core/job.go PastBackoffLimit, which skips ExitCode
replicas. The emulator plays all three (tests/emulator/test_emu_restart_policy.py).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from sftrun_objects import DATA, DEFAULTS, cr

from sft_common.result import EXIT_CONFIG, EXIT_PREEMPTED
from sft_operator.api.sftrun import SFTRunSpec, parse_duration
from sft_operator.backends.base import CONFIG_ERROR_PATTERN, failure_rules, group_failure_rules
from sft_operator.backends.jobset import BACKEND as jobset
from sft_operator.backends.pytorchjob import BACKEND as pytorchjob
from sft_operator.backends.trainjob import BACKEND as trainjob
from sft_operator.kube.client import PODS
from sft_operator.render import sftrun as render

REPO = Path(__file__).resolve().parents[2]
RUNTIMES = (
    REPO / "manifests/trainer/sft-torch-distributed.yaml",
    REPO / "charts/sft-operator/files/training-runtime.yaml",
)


def rendered(backend: Any, **spec: Any) -> dict[str, Any]:
    return render.render(cr(**spec), DATA, DEFAULTS, backend).job


def test_jobset_job_fails_by_policy_and_the_jobset_restarts_without_counting() -> None:
    js = rendered(jobset, maxRestarts=2)
    job = js["spec"]["replicatedJobs"][0]["template"]["spec"]
    rules = job["podFailurePolicy"]["rules"]
    assert rules[0] == {
        "action": "FailJob",
        "onExitCodes": {"containerName": jobset.container, "operator": "In", "values": [EXIT_CONFIG]},
    }
    assert rules[1] == {
        "action": "FailJob",
        "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
    }
    assert rules[2]["onExitCodes"]["values"] == [EXIT_PREEMPTED]
    policy = js["spec"]["failurePolicy"]
    assert policy["maxRestarts"] == 2
    config, disrupted = policy["rules"]
    assert (config["action"], config["onJobFailureReasons"]) == ("FailJobSet", ["PodFailurePolicy"])
    assert (disrupted["action"], disrupted["onJobFailureReasons"]) == (
        "RestartJobSetAndIgnoreMaxRestarts",
        ["PodFailurePolicy"],
    )
    # The pattern matches the Job controller's FailJob message for exit 2, and not for 143 or a condition.
    message = (
        "Container {} for pod ml/run-train-node-0-1-x failed with exit code {} "
        "matching FailJob rule at index {}"
    )
    assert re.search(CONFIG_ERROR_PATTERN, message.format("trainer", 2, 0))
    assert not re.search(CONFIG_ERROR_PATTERN, message.format("trainer", 143, 2))
    assert not re.search(
        CONFIG_ERROR_PATTERN, "Pod ml/x has condition DisruptionTarget matching FailJob rule at index 1"
    )


@pytest.mark.parametrize("path", RUNTIMES, ids=["manifest", "chart"])
def test_the_shipped_trainjob_runtime_carries_the_same_rules(path: Path) -> None:
    runtime = yaml.safe_load(path.read_text())
    js = runtime["spec"]["template"]["spec"]
    (rjob,) = js["replicatedJobs"]
    assert rjob["template"]["spec"]["podFailurePolicy"]["rules"] == failure_rules(trainjob.container)
    assert js["failurePolicy"]["rules"] == group_failure_rules()


def test_pytorchjob_replicas_use_the_exit_code_policy() -> None:
    job = rendered(pytorchjob)
    for replica in job["spec"]["pytorchReplicaSpecs"].values():
        assert replica["restartPolicy"] == "ExitCode"
    # training-operator IsRetryableExitCode (exitCode >= 128): preemption retried, config error not.
    assert EXIT_PREEMPTED >= 128 > EXIT_CONFIG


def _grace(job: dict[str, Any], backend: Any) -> Any:
    if backend is pytorchjob:
        return {
            r["template"]["spec"]["terminationGracePeriodSeconds"]
            for r in job["spec"]["pytorchReplicaSpecs"].values()
        }
    if backend is jobset:
        return {
            job["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"][
                "terminationGracePeriodSeconds"
            ]
        }
    patch = job["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][0]
    return {patch["template"]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]}


@pytest.mark.parametrize("backend", [pytorchjob, jobset, trainjob], ids=lambda b: b.name)
def test_every_backend_gives_the_pods_the_grace_period(backend: Any) -> None:
    # Full megatron run, 8 GPUs per node: 60 s for the step + 8 × 80 GiB at 1 GiB/s.
    assert _grace(rendered(backend), backend) == {700}
    assert _grace(rendered(backend, terminationGracePeriodSeconds=1800), backend) == {1800}
    lora = rendered(backend, peft="lora")
    assert _grace(lora, backend) == {120}


def test_grace_default_follows_the_model_and_the_hang_timeout_parses() -> None:
    def spec(**kw: Any) -> SFTRunSpec:
        return render.parse_spec(cr(**kw))

    assert spec().grace_seconds() == 700
    assert (
        spec(
            gpusPerNode=4,
            parallelism={"expertParallelSize": 4},
            train={"trainIters": 100, "globalBatchSize": 16},
        ).grace_seconds()
        == 380
    )
    assert (
        spec(
            engine="hf",
            precision="fp32",
            gpusPerNode=0,
            nodes=1,
            parallelism={},
            train={"trainIters": 10, "globalBatchSize": 4},
        ).grace_seconds()
        == 120
    )
    assert spec().hang_seconds() == 1800  # default 30m
    assert [parse_duration(t) for t in ("0", "90s", "1h30m", "2m5s")] == [0, 90, 5400, 125]
    with pytest.raises(ValueError, match="hangTimeout"):
        SFTRunSpec.model_validate({**cr()["spec"], "hangTimeout": "30 minutes"})


def test_restart_group_names_what_each_controller_recreates() -> None:
    three = {"nodes": 3, "train": {"trainIters": 100, "globalBatchSize": 24}}
    ptj = rendered(pytorchjob, **three)
    ptj["metadata"]["name"] = "run-train"
    assert [(m.resource, m.name) for m in pytorchjob.restart_group(ptj)] == [
        (PODS, "run-train-master-0"),
        (PODS, "run-train-worker-0"),
        (PODS, "run-train-worker-1"),
    ]
    assert all(m.status_patch is None for m in pytorchjob.restart_group(ptj))  # deleted
    # JobSet, and Trainer's JobSet (the TrainJob's name): the next restart attempt, pinned to the
    # JobSet as read; restartsCountTowardsMax is left alone (kubeemu's JobSet controller, as the
    # real one, then recreates every Job without counting: tests/e2e/test_sftrun_hang_e2e.py)
    js = rendered(jobset)
    (member,) = jobset.restart_group(js)
    assert (member.resource, member.name) == (jobset.resource, js["metadata"]["name"])
    seen = {"metadata": {"resourceVersion": "41"}, "status": {"restarts": 2, "restartsCountTowardsMax": 1}}
    assert member.status_patch is not None
    assert member.status_patch(seen) == {"metadata": {"resourceVersion": "41"}, "status": {"restarts": 3}}
    tj = rendered(trainjob)
    assert [(m.resource, m.name) for m in trainjob.restart_group(tj)] == [
        (jobset.resource, tj["metadata"]["name"])
    ]
