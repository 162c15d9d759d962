"""The ``job`` backend (an Indexed batch/v1 Job and a headless Service, no CRD): what it renders,
validated against the real Job and Service schemas (kubernetes-validate's strict OpenAPI schemas, as
kubeemu's store checks every built-in object) and admitted by kubeemu; how a failed Job is restarted
by replacing it and counted against spec.maxRestarts; how its status reads. Facts from kubernetes
pkg/controller/job/job_controller.go (manageJob: an Indexed Job's pod gets the hostname
``<job>-<index>`` and the ``batch.kubernetes.io/job-completion-index`` annotation) and
pod_failure_policy.go (the FailJob message the config-error rule is told apart by)."""

from __future__ import annotations

import copy
from typing import Any

from sftrun_objects import DATA, DEFAULTS, cr

from kubeemu import KubeEmulator
from kubeemu.builtin_schema import validate_builtin
from sft_operator import backends
from sft_operator.backends.base import CONFIG_ERROR_PATTERN, failure_rules
from sft_operator.backends.job import BACKEND as job
from sft_operator.render import sftrun as render
from sft_operator.status import sftrun as status
from sft_operator.status.pods import pod_state

NOW = "2026-11-25T11:00:00Z"
T0 = "2026-11-25T10:00:00Z"


def children(previous: dict[str, Any] | None = None, **spec: Any) -> render.RunChildren:
    return render.render(cr(**spec), DATA, DEFAULTS, job, previous=previous)


def failed(child: dict[str, Any], reason: str, message: str = "") -> dict[str, Any]:
    out = copy.deepcopy(child)
    out["metadata"]["uid"] = "job-uid"
    out["status"] = {"conditions": [cond("Failed", reason, message)]}
    return out


def cond(type_: str, reason: str = "", message: str = "") -> dict[str, Any]:
    return {"type": type_, "status": "True", "reason": reason, "message": message, "lastTransitionTime": T0}


def test_auto_takes_the_job_when_no_crd_is_served() -> None:
    assert backends.PREFERENCE[-1] is job and job.crd is None
    served = {b.name: b.crd is None for b in backends.PREFERENCE}
    assert backends.choose(backends.AUTO, served) is job


def test_renders_an_indexed_job_and_its_headless_service() -> None:
    out = children(maxRestarts=2, activeDeadlineSeconds=3600, ttlSecondsAfterFinished=600)
    manifest = out.job
    assert manifest["apiVersion"] == "batch/v1" and manifest["kind"] == "Job"
    spec = manifest["spec"]
    assert spec["completionMode"] == "Indexed" and spec["completions"] == spec["parallelism"] == 4
    assert spec["backoffLimit"] == 0 and spec["podFailurePolicy"]["rules"] == failure_rules("trainer")
    assert spec["activeDeadlineSeconds"] == 3600 and spec["ttlSecondsAfterFinished"] == 600
    pod = spec["template"]["spec"]
    assert pod["subdomain"] == "run-train" and pod["restartPolicy"] == "Never"
    (main,) = pod["containers"]
    # pod 0 answers as <job>-0.<service>: the Job controller's hostname under the Service's subdomain
    assert "--master-addr=run-train-0.run-train" in main["command"]
    assert "--node-rank=$(SFT_NODE_RANK)" in main["command"] and "--max-restarts=0" in main["command"]
    assert "--master-port=$(MASTER_PORT)" in main["command"]
    env = {e["name"]: e for e in main["env"]}
    path = env["SFT_NODE_RANK"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert path == "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    assert env["MASTER_PORT"]["value"] == "29500"
    assert spec["template"]["metadata"]["labels"]["sft.dev/restart-attempt"] == "0"
    annotations = manifest["metadata"]["annotations"]
    assert annotations["sft.dev/restart-attempt"] == "0" and annotations["sft.dev/max-restarts"] == "2"
    (service,) = [c.manifest for c in out.companions]
    assert service["kind"] == "Service" and service["metadata"]["name"] == "run-train"
    assert service["spec"]["clusterIP"] == "None" and service["spec"]["publishNotReadyAddresses"] is True
    assert service["spec"]["selector"] == {"batch.kubernetes.io/job-name": "run-train"}
    # owned by the SFTRun like every child (deleting the run collects it)
    (owner,) = service["metadata"]["ownerReferences"]
    assert owner["kind"] == "SFTRun" and owner["controller"] is True
    assert manifest["metadata"]["ownerReferences"] == service["metadata"]["ownerReferences"]
    assert validate_builtin(manifest) == [] and validate_builtin(service) == []


def test_rendered_children_are_admitted(kube: KubeEmulator) -> None:
    out = children()
    kube.create_namespace(cr()["metadata"]["namespace"])
    kube.create(
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "sft-workload", "namespace": "ml"},
        }
    )
    for manifest in (*(c.manifest for c in out.companions), out.job):
        manifest = copy.deepcopy(manifest)
        manifest["metadata"].pop("ownerReferences")
        assert kube.create(manifest)["metadata"]["uid"]


def test_long_names_keep_the_hostname_a_dns_label() -> None:
    owner = cr()
    owner["metadata"]["name"] = "a" * 60
    name = render.render(owner, DATA, DEFAULTS, job).job["metadata"]["name"]
    assert len(f"{name}-1023") <= 63, name


def test_a_crash_is_restarted_by_replacing_the_job_and_counted() -> None:
    first = children(maxRestarts=2).job
    crashed = failed(first, "BackoffLimitExceeded", "Job has reached the specified backoff limit")
    assert job.replaces(crashed)
    second = children(previous=crashed, maxRestarts=2).job
    annotations = second["metadata"]["annotations"]
    assert annotations["sft.dev/restart-attempt"] == "1" and annotations["sft.dev/counted-restarts"] == "1"
    assert second["spec"]["template"]["metadata"]["labels"]["sft.dev/restart-attempt"] == "1"
    third = children(previous=failed(second, "BackoffLimitExceeded"), maxRestarts=2).job
    assert third["metadata"]["annotations"]["sft.dev/counted-restarts"] == "2"
    # the budget is spent: the next crash fails the run, saying why
    spent = failed(third, "BackoffLimitExceeded", "Job has reached the specified backoff limit")
    assert not job.replaces(spent)
    seen = job.observe({}, spent, [])
    assert seen.phase == "Failed" and seen.reason == "ReachedMaxRestarts" and seen.child_reason_wins
    assert seen.restarts == 2


def test_a_disruption_or_preemption_restarts_without_counting() -> None:
    first = children(maxRestarts=0).job
    message = "Pod ml/run-train-1-x has condition DisruptionTarget matching FailJob rule at index 1"
    disrupted = failed(first, "PodFailurePolicy", message)
    assert job.replaces(disrupted)
    second = children(previous=disrupted, maxRestarts=0).job
    annotations = second["metadata"]["annotations"]
    assert annotations["sft.dev/restart-attempt"] == "1" and annotations["sft.dev/counted-restarts"] == "0"
    seen = job.observe({}, disrupted, [])
    assert seen.phase == "Running" and seen.reason == "Restarting"


def test_a_config_error_or_deadline_fails_at_once() -> None:
    first = children(maxRestarts=5).job
    message = f"Container trainer for pod ml/run-train-0-x failed {CONFIG_ERROR_PATTERN} at index 0"
    for reason, text in (("PodFailurePolicy", message), ("DeadlineExceeded", "Job was active too long")):
        child = failed(first, reason, text)
        assert not job.replaces(child)
        seen = job.observe({}, child, [])
        assert seen.phase == "Failed" and seen.failed_reason == reason


def test_maxrestarts_zero_fails_with_the_jobs_own_reason() -> None:
    child = failed(children().job, "BackoffLimitExceeded", "Job has reached the specified backoff limit")
    assert not job.replaces(child)
    seen = job.observe({}, child, [])
    assert (
        seen.phase == "Failed" and seen.failed_reason == "BackoffLimitExceeded" and not seen.child_reason_wins
    )


def job_pod(index: int, phase: str, attempt: int = 0, owner: str = "job-uid") -> dict[str, Any]:
    cstate: dict[str, Any] = {"running": {}} if phase == "Running" else {}
    return {
        "metadata": {
            "name": f"run-train-{index}-x{attempt}",
            "labels": {"sft.dev/restart-attempt": str(attempt), "batch.kubernetes.io/job-name": "run-train"},
            "annotations": {"batch.kubernetes.io/job-completion-index": str(index)},
            "ownerReferences": [{"kind": "Job", "name": "run-train", "uid": owner, "controller": True}],
        },
        "status": {"phase": phase, "containerStatuses": [{"name": "trainer", "state": cstate}]},
    }


def derive(child: dict[str, Any], pods: list[dict[str, Any]]) -> dict[str, Any]:
    states = [pod_state(p, job.container, job.role) for p in pods]
    return status.derive(cr(), child, states, now=NOW)


def test_status_reads_the_job() -> None:
    child = copy.deepcopy(children().job)
    child["metadata"]["uid"] = "job-uid"
    child["status"] = {"active": 4, "startTime": T0}
    st = derive(child, [job_pod(i, "Running") for i in range(4)])
    assert st["phase"] == "Running" and st["backend"] == "job" and st["jobRef"]["kind"] == "Job"
    # pods of a replaced Job (another owner uid) do not count
    st = derive(child, [job_pod(0, "Running"), job_pod(1, "Running", owner="old-uid")])
    assert st["phase"] == "Pending"
    child["status"] = {"conditions": [cond("Complete", "CompletionsReached")], "completionTime": T0}
    st = derive(child, [job_pod(i, "Succeeded") for i in range(4)])
    assert st["phase"] == "Succeeded"


def test_the_second_attempt_reads_as_a_restart() -> None:
    crashed = failed(children(maxRestarts=2).job, "BackoffLimitExceeded")
    second = copy.deepcopy(children(previous=crashed, maxRestarts=2).job)
    second["metadata"]["uid"] = "job-uid"
    second["status"] = {"active": 4}
    st = derive(second, [job_pod(i, "Running", attempt=1) for i in range(4)])
    assert st["phase"] == "Running" and st["restartCount"] == 1
    st = derive(second, [job_pod(0, "Running", attempt=1)])
    assert st["phase"] == "Running" and st["message"].startswith("restarting the whole group")
