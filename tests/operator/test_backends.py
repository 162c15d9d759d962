"""The TrainJob and JobSet backends: what they render and how they read their child, against the
peers as they are (facts from kubeflow/trainer v2.3: pkg/apis/trainer/v1alpha1/trainjob_types.go,
pkg/runtime/framework/plugins/torch/torch.go, pkg/constants/constants.go; kubernetes-sigs/jobset:
api/jobset/v1alpha2/jobset_types.go, pkg/constants/constants.go, pkg/util/placement/placement.go).
Rendered children are admitted by kubeemu's Trainer/JobSet CRDs (written from those types)."""

from __future__ import annotations

import copy
from types import SimpleNamespace
from typing import Any, cast

import pytest
from sftrun_objects import DATA, DEFAULTS, cr

from kubeemu import KubeEmulator
from sft_operator.backends.base import Backend
from sft_operator.backends.job import BACKEND as job
from sft_operator.backends.jobset import BACKEND as jobset
from sft_operator.backends.pytorchjob import BACKEND as pytorchjob
from sft_operator.backends.trainjob import BACKEND as trainjob
from sft_operator.context import Context
from sft_operator.errors import InvalidSpec
from sft_operator.kube.client import Resource
from sft_operator.reconcile_sftrun import CrdMissing, RunKind
from sft_operator.render import sftrun as render
from sft_operator.status.pods import pod_state
from status_json import sftrun as status

NOW = "2026-11-25T11:00:00Z"
T0 = "2026-11-25T10:00:00Z"


def rendered(backend: Any, **spec: Any) -> dict[str, Any]:
    return render.render(cr(**spec), DATA, DEFAULTS, backend).job


class Discovery:
    """What ``RunKind._choose`` asks the API client: whether a resource is served (API discovery);
    records what it probed."""

    def __init__(self, *served: str) -> None:
        self.served = set(served)
        self.probed: list[str] = []

    async def serves(self, resource: Resource) -> bool:
        self.probed.append(resource.plural)
        return resource.plural in self.served


async def choose(wanted: str, discovery: Discovery) -> Backend:
    return await RunKind._choose(cast("Context", SimpleNamespace(client=discovery)), wanted)


async def test_choice_prefers_trainjob_then_jobset_then_pytorchjob_then_job() -> None:
    everything = Discovery("trainjobs", "jobsets", "pytorchjobs")
    assert await choose("auto", everything) is trainjob
    assert everything.probed == ["trainjobs"]  # probed in order, no further than the first served
    assert await choose("auto", Discovery("jobsets", "pytorchjobs")) is jobset
    assert await choose("auto", Discovery("pytorchjobs")) is pytorchjob
    assert await choose("auto", Discovery()) is job  # no CRD needed: a run never stalls for want of one
    with pytest.raises(CrdMissing) as missing:
        await choose("jobset", Discovery("trainjobs"))
    reason, message = missing.value.args
    assert reason == "BackendCRDMissing" and "jobsets.jobset.x-k8s.io" in message and "auto" in message


def test_trainjob_uses_runtime_ref_trainer_fields_and_runtime_patches() -> None:
    job = rendered(trainjob, queueName="gpu-queue", activeDeadlineSeconds=3600, suspend=True)
    assert job["apiVersion"] == "trainer.kubeflow.org/v1alpha1" and job["kind"] == "TrainJob"
    spec = job["spec"]
    assert spec["runtimeRef"] == {
        "apiGroup": "trainer.kubeflow.org",
        "kind": "ClusterTrainingRuntime",
        "name": "sft-torch-distributed",
    }
    assert "podTemplateOverrides" not in spec  # removed in Trainer 2.2: runtimePatches instead
    trainer = spec["trainer"]
    assert trainer["numNodes"] == 4 and trainer["numProcPerNode"] == 8
    assert trainer["resourcesPerNode"]["limits"]["nvidia.com/gpu"] == "8"
    # torchrun reads what Trainer's torch plugin injects (constants.TorchEnv*)
    cmd = trainer["command"]
    assert "--node-rank=$(PET_NODE_RANK)" in cmd and "--master-addr=$(PET_MASTER_ADDR)" in cmd
    assert "--master-port=$(PET_MASTER_PORT)" in cmd and "--max-restarts=0" in cmd
    assert not any(e["name"].startswith("PET_") for e in trainer["env"])  # reserved by Trainer's webhook
    (patch,) = spec["runtimePatches"]
    assert patch["manager"] == "sft.dev/operator"
    (rjob,) = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    assert rjob["name"] == "node"
    pod = rjob["template"]["spec"]["template"]
    assert pod["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "sft-operator"
    assert pod["metadata"]["annotations"]["sft.dev/owner-kind"] == "SFTRun"
    assert {v["name"] for v in pod["spec"]["volumes"]} >= {"sft-config", "sft-scratch", "sft-shm"}
    (node,) = pod["spec"]["containers"]
    assert node["name"] == "node" and set(node) == {"name", "volumeMounts", "securityContext"}
    assert spec["suspend"] is True and spec["activeDeadlineSeconds"] == 3600
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "gpu-queue"


def test_trainjob_refuses_what_runtime_patches_cannot_express() -> None:
    for field, value in (
        ("hostNetwork", True),
        ("schedulerName", "volcano"),
        ("priorityClassName", "high"),
        ("ttlSecondsAfterFinished", 60),
        ("maxRestarts", 2),
        ("envFrom", [{"secretRef": {"name": "s3"}}]),
    ):
        with pytest.raises(InvalidSpec) as err:
            rendered(trainjob, **{field: value})
        assert err.value.reason == "UnsupportedOnBackend" and field in err.value.message
        assert "ClusterTrainingRuntime" in err.value.message


def test_jobset_is_one_indexed_job_of_nodes_pods_with_dns_rendezvous() -> None:
    js = rendered(jobset, maxRestarts=3, ttlSecondsAfterFinished=600)
    assert js["apiVersion"] == "jobset.x-k8s.io/v1alpha2" and js["kind"] == "JobSet"
    spec = js["spec"]
    (rjob,) = spec["replicatedJobs"]
    job = rjob["template"]["spec"]
    assert rjob["name"] == "node" and rjob["replicas"] == 1
    assert job["completionMode"] == "Indexed" and job["completions"] == job["parallelism"] == 4
    assert job["backoffLimit"] == 0
    assert spec["network"]["enableDNSHostnames"] is True and spec["successPolicy"] == {"operator": "All"}
    assert spec["failurePolicy"]["maxRestarts"] == 3 and spec["ttlSecondsAfterFinished"] == 600
    (main,) = job["template"]["spec"]["containers"]
    # master: pod 0 of job 0, <jobset>-<rjob>-<job index>-<pod index>.<subdomain = jobset name>
    assert "--master-addr=run-train-node-0-0.run-train" in main["command"]
    assert "--node-rank=$(SFT_NODE_RANK)" in main["command"] and "--max-restarts=0" in main["command"]
    rank = next(e for e in main["env"] if e["name"] == "SFT_NODE_RANK")
    path = rank["valueFrom"]["fieldRef"]["fieldPath"]
    assert path == "metadata.annotations['batch.kubernetes.io/job-completion-index']"


def test_long_names_keep_jobset_pod_names_within_63() -> None:
    owner = cr()
    owner["metadata"]["name"] = "a" * 60
    for backend in (jobset, trainjob):
        name = render.render(owner, DATA, DEFAULTS, backend).job["metadata"]["name"]
        assert len(f"{name}-node-0-1023-abcde") <= 63, name  # JobSet webhook's longest pod name


def test_rendered_children_are_admitted(kube: KubeEmulator) -> None:
    kube.install_trainer_crds()
    kube.create_namespace(cr()["metadata"]["namespace"])
    for backend in (jobset, trainjob):
        child = copy.deepcopy(rendered(backend))
        child["metadata"].pop("ownerReferences")
        child["metadata"]["name"] = f"adm-{backend.name}"
        if backend is trainjob:
            kube.apply(
                {
                    "apiVersion": "trainer.kubeflow.org/v1alpha1",
                    "kind": "ClusterTrainingRuntime",
                    "metadata": {"name": "sft-torch-distributed"},
                    "spec": {
                        "mlPolicy": {"numNodes": 1, "torch": {}},
                        "template": {
                            "spec": {
                                "replicatedJobs": [
                                    {
                                        "name": "node",
                                        "template": {
                                            "metadata": {
                                                "labels": {
                                                    "trainer.kubeflow.org/trainjob-ancestor-step": "trainer"
                                                }
                                            },
                                            "spec": {
                                                "template": {
                                                    "spec": {"containers": [{"name": "node", "image": "x"}]}
                                                }
                                            },
                                        },
                                    }
                                ]
                            }
                        },
                    },
                }
            )
        created = kube.create(child)
        assert created["spec"]


def pod(index: int, phase: str, attempt: int = 0, **state: Any) -> dict[str, Any]:
    cstate: dict[str, Any] = {"running": {}} if phase == "Running" else {}
    if "terminated" in state:
        cstate = {"terminated": state["terminated"]}
    return {
        "metadata": {
            "name": f"run-train-node-0-{index}-x{attempt}",
            "labels": {
                "jobset.sigs.k8s.io/jobset-name": "run-train",
                "jobset.sigs.k8s.io/replicatedjob-name": "node",
                "jobset.sigs.k8s.io/restart-attempt": str(attempt),
            },
            "annotations": {"batch.kubernetes.io/job-completion-index": str(index)},
        },
        "status": {"phase": phase, "containerStatuses": [{"name": "trainer", "state": cstate}]},
    }


def child_with(backend: Any, **status_: Any) -> dict[str, Any]:
    child = copy.deepcopy(rendered(backend))
    child["metadata"]["uid"] = "child-uid"
    child["status"] = status_
    return child


def derive(
    backend: Any, child: dict[str, Any], pods: list[dict[str, Any]], owner: Any = None
) -> dict[str, Any]:
    states = [pod_state(p, backend.container, backend.role) for p in pods]
    return status.derive(owner or cr(), child, states, now=NOW, backend=backend)


def cond(type_: str, reason: str = "", message: str = "") -> dict[str, Any]:
    return {"type": type_, "status": "True", "reason": reason, "message": message, "lastTransitionTime": T0}


def test_jobset_status_maps_onto_ours() -> None:
    running = [pod(i, "Running") for i in range(4)]
    st = derive(jobset, child_with(jobset, restarts=0), running)
    assert st["phase"] == "Running" and st["message"] == "4 of 4 pods running" and st["backend"] == "jobset"
    # a restart: status.restarts 1, the new attempt's pods starting
    restarting = [pod(0, "Running", 1), pod(1, "Pending", 1)]
    st = derive(jobset, child_with(jobset, restarts=1), restarting)
    assert st["phase"] == "Running" and st["restartCount"] == 1
    assert (
        st["message"].startswith("restarting the whole group") and "resumes from its newest" in st["message"]
    )
    assert st["lastRestartTime"] == NOW
    failed = child_with(
        jobset,
        restarts=3,
        conditions=[
            cond("Failed", "ReachedMaxRestarts", "jobset failed due to reaching max number of restarts")
        ],
    )
    killed = pod(1, "Failed", 3, terminated={"exitCode": 137, "reason": "Error", "finishedAt": T0})
    st = derive(jobset, failed, [killed])
    assert st["phase"] == "Failed" and st["failure"]["reason"] == "ReachedMaxRestarts"
    assert st["failure"]["replica"] == "Node 1" and st["failure"]["exitCode"] == 137
    assert "ReachedMaxRestarts" in st["message"] and "Node 1 (pod run-train-node-0-1-x3)" in st["message"]
    done = child_with(jobset, restarts=0, conditions=[cond("Completed", "AllJobsCompleted")])
    result = '{"status": "succeeded", "checkpoint": "s3://bucket/ckpt/run", "lastIteration": 100}'
    rank0 = pod(0, "Succeeded", terminated={"exitCode": 0, "message": result})
    st = derive(jobset, done, [rank0, pod(1, "Succeeded", terminated={"exitCode": 0})])
    assert st["phase"] == "Succeeded" and st["outputs"]["checkpoint"] == "s3://bucket/ckpt/run"
    assert st["completionTime"] == T0


def test_trainjob_status_maps_onto_ours_and_mirrors_trainer_status() -> None:
    jobs = [{"name": "node", "active": 1, "ready": 1, "succeeded": 0, "failed": 0, "suspended": 0}]
    tj = child_with(
        trainjob,
        jobsStatus=jobs,
        trainerStatus={"progressPercentage": 40, "estimatedRemainingSeconds": 120},
    )
    st = derive(trainjob, tj, [pod(i, "Running") for i in range(4)])
    assert st["phase"] == "Running" and st["backend"] == "trainjob"
    assert st["trainerStatus"] == {"progressPercentage": 40, "estimatedRemainingSeconds": 120}
    suspended = child_with(trainjob, conditions=[cond("Suspended", "Suspended")])
    suspended["spec"]["suspend"] = True
    st = derive(trainjob, suspended, [], owner=cr(suspend=True))
    assert st["phase"] == "Suspended"
    deadline = child_with(
        trainjob, conditions=[cond("Failed", "DeadlineExceeded", "TrainJob exceeded its deadline")]
    )
    st = derive(trainjob, deadline, [pod(0, "Failed", terminated={"exitCode": 143, "reason": "Error"})])
    assert st["phase"] == "Failed" and st["failure"]["reason"] == "DeadlineExceeded"
    complete = child_with(trainjob, conditions=[cond("Complete", "JobsCompleted")])
    assert derive(trainjob, complete, [])["phase"] == "Succeeded"
    # the restart count comes from the pods' JobSet restart attempt (a TrainJob reports none)
    assert derive(trainjob, child_with(trainjob), [pod(0, "Running", 2)])["restartCount"] == 2
