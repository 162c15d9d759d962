"""The ``job`` backend (an Indexed batch/v1 Job and a headless Service, no CRD): what it renders,
validated against the real Job and Service schemas (kubernetes-validate's strict OpenAPI schemas, as
kubeemu's store checks every built-in object) and admitted by kubeemu; how a failed Job is restarted
by replacing it and counted against spec.maxRestarts; how its status reads. Facts from kubernetes
pkg/controller/job/job_controller.go (manageJob: an Indexed Job's pod gets the hostname
``<job>-<index>`` and the ``batch.kubernetes.io/job-completion-index`` annotation) and
pod_failure_policy.go (the FailJob message the config-error rule is told apart by)."""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import kopf
import pytest
from sftrun_objects import DATA, DEFAULTS, cr
from test_operator_dataprep import make_pod, post_count
from test_sftrun_operator import TIMEOUT, operator, run, wait_status

from kubeemu import KubeEmulator
from kubeemu.builtin_schema import validate_builtin
from sft_operator import backends
from sft_operator.backends.base import CONFIG_ERROR_PATTERN, failure_rules
from sft_operator.backends.job import BACKEND as job
from sft_operator.context import Context
from sft_operator.kube.client import KubeClient
from sft_operator.reconcile_sftrun import RunActed, RunKind
from sft_operator.render import sftrun as render
from sft_operator.status.pods import pod_state
from status_json import sftrun as status

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


def test_auto_ends_with_the_job_which_needs_no_crd() -> None:
    """auto never stalls: its last choice is always served (the choice itself: test_backends)."""
    assert backends.PREFERENCE[-1] is job and job.crd is None


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


# ----------------------------------------------------------------------------- through the real operator


def failed_status(reason: str, message: str) -> dict[str, Any]:
    """What the Job controller writes when a Job fails (FailureTarget, then Failed)."""
    conds = [cond(t, reason, message) for t in ("FailureTarget", "Failed")]
    return {"failed": 1, "conditions": conds}


def test_the_operator_replaces_a_failed_job_once_per_failure_until_the_budget_is_spent(
    cluster: KubeEmulator,
) -> None:
    """No pod runner: the test plays the Job controller. Each counted failure gets exactly one new
    Job (never a second replacement of the same failure, never the new Job deleted by a reconcile
    that still saw the old one in its cache), the run reads Restarting → restartCount 1, and the
    failure after spec.maxRestarts fails the run for its restart budget."""
    kube = cluster
    with operator() as runner:
        kube.create(run(data={"uri": "s3://bucket/prep"}, maxRestarts=1))
        first = kube.wait_for_object("Job", "run-train", timeout=TIMEOUT)
        wait_status(kube, lambda s: s.get("backend") == "job", what="backend job")
        kube.patch_status("Job", "run-train", failed_status("BackoffLimitExceeded", "backoff limit"))
        second = kube.wait_for_object(
            "Job", "run-train", lambda j: j["metadata"]["uid"] != first["metadata"]["uid"], timeout=TIMEOUT
        )
        annotations = second["metadata"]["annotations"]
        assert (
            annotations["sft.dev/restart-attempt"] == "1" and annotations["sft.dev/counted-restarts"] == "1"
        )
        st = wait_status(kube, lambda s: s.get("restartCount") == 1, what="restartCount 1")
        assert st["phase"] in ("Pending", "Running") and st["jobRef"]["name"] == "run-train"
        time.sleep(1.0)  # the watch events of the replacement arrive; nothing replaces the new Job
        assert kube.get("Job", "run-train")["metadata"]["uid"] == second["metadata"]["uid"]
        assert post_count(kube, "/jobs") == 2
        kube.patch_status("Job", "run-train", failed_status("BackoffLimitExceeded", "backoff limit"))
        st = wait_status(kube, lambda s: s.get("phase") == "Failed", what="Failed")
        assert st["failure"]["reason"] == "ReachedMaxRestarts"
        assert "spec.maxRestarts 1" in st["message"]
        time.sleep(0.5)
        assert post_count(kube, "/jobs") == 2
    assert "Traceback" not in runner.output


def test_the_operator_fails_a_config_error_without_restarting(cluster: KubeEmulator) -> None:
    kube = cluster
    with operator() as runner:
        kube.create(run(data={"uri": "s3://bucket/prep"}, maxRestarts=3))
        kube.wait_for_object("Job", "run-train", timeout=TIMEOUT)
        message = f"Container trainer for pod default/run-train-0-x failed {CONFIG_ERROR_PATTERN} at index 0"
        kube.patch_status("Job", "run-train", failed_status("PodFailurePolicy", message))
        st = wait_status(kube, lambda s: s.get("phase") == "Failed", what="Failed")
        assert st["failure"]["reason"] == "PodFailurePolicy" and not st.get("restartCount")
        assert post_count(kube, "/jobs") == 1
    assert "Traceback" not in runner.output


async def test_a_stale_cache_never_replaces_the_successor(
    kube: KubeEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Right after a replacement the watch cache can still hold the failed Job, under the same name
    as its successor: the replacement reads the Job first and leaves one with another uid alone
    (deleting it would throw away the restarted group)."""
    monkeypatch.setenv("KUBECONFIG", str(kube.write_kubeconfig(tmp_path / "kubeconfig")))
    client = KubeClient.from_connection_info(kopf.login_with_kubeconfig(settings=kopf.OperatorSettings()))
    kube.create_namespace("ml")
    successor = copy.deepcopy(children().job)
    successor["metadata"].pop("ownerReferences")
    live = kube.create(successor)
    stale = failed(children(maxRestarts=2).job, "BackoffLimitExceeded", "backoff limit")
    assert job.replaces(stale) and stale["metadata"]["uid"] != live["metadata"]["uid"]
    owner = cr(maxRestarts=2, status={"outputs": {"data": DATA.uri, "packSize": DATA.pack_size}})
    acted = RunActed(child=stale)
    try:
        await RunKind()._replace(
            Context(client=client, defaults=DEFAULTS), owner, job, "uid", "SFTRun run", acted
        )
    finally:
        await client.close()
    assert acted.child is not None and acted.child["metadata"]["uid"] == live["metadata"]["uid"]
    assert kube.get("Job", "run-train", namespace="ml")["metadata"]["uid"] == live["metadata"]["uid"]


def test_restart_on_hang_replaces_the_job_and_counts_a_restart(cluster: KubeEmulator) -> None:
    """spec.restartOnHang on the job backend: the hung group's Job is deleted (its pods go with it)
    and created again as the next attempt, counted in status.restartCount."""
    kube = cluster
    with operator() as runner:
        kube.create(run(data={"uri": "s3://bucket/prep"}, hangTimeout="2s", restartOnHang=True))
        first = kube.wait_for_object("Job", "run-train", timeout=TIMEOUT)
        kube.patch_status("Job", "run-train", {"active": 2, "startTime": T0})
        for index in range(2):
            make_pod(kube, first, index, "Running")
        # rank 0 reported iteration 12, then stopped (a rank stuck in a collective)
        progress = {"iteration": 12, "completed": 12, "total": 50, "updatedAt": T0}
        kube.patch_status("SFTRun", "run", {"progress": progress})
        second = kube.wait_for_object(
            "Job", "run-train", lambda j: j["metadata"]["uid"] != first["metadata"]["uid"], timeout=TIMEOUT
        )
        kube.patch("SFTRun", "run", {"spec": {"restartOnHang": False}})  # no progress ever comes here
        st = wait_status(kube, lambda s: (s.get("restartCount") or 0) >= 1, what="a restart counted")
        assert second["metadata"]["annotations"]["sft.dev/restart-attempt"] == "1"
        assert second["spec"]["template"]["metadata"]["labels"]["sft.dev/restart-attempt"] == "1"
        assert st["jobRef"]["name"] == "run-train"
    assert "Traceback" not in runner.output
