"""Kubeflow Trainer v2 (``trainer.kubeflow.org/v1alpha1``) served and played by the emulator.

Facts checked against kubeflow/trainer v2.3.0: ``pkg/apis/trainer/v1alpha1/*_types.go`` (fields,
``runtimePatches``; ``podTemplateOverrides`` is gone since 2.2), ``pkg/constants/constants.go``
(``PET_NNODES``/``PET_NPROC_PER_NODE``/``PET_NODE_RANK``/``PET_MASTER_ADDR``/``PET_MASTER_PORT``,
port 29500, container and replicated Job ``node``, label ``trainer.kubeflow.org/trainjob-ancestor-step``),
``pkg/runtime/framework/plugins/torch/torch.go`` (values: master ``<trainjob>-node-0-0.<trainjob>``,
rank from the completion-index annotation, nproc ``auto`` with GPUs else the CPU count),
``pkg/runtime/core/trainingruntime.go`` and ``plugins/jobset`` (the JobSet built, status mirrored),
``pkg/controller/trainjob_controller.go`` (Suspended/Resumed, DeadlineExceeded) and
``pkg/webhooks/trainjob_webhook.go``. The runtime below is hand-written in the shape of the chart's
``torch-distributed`` runtime plus what an operator adds (restartPolicy Never, backoffLimit 0,
failurePolicy), not copied.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from kubeemu import ApiError, KubeEmulator, PodRunner

# Reads only what Trainer injects; pod 0 serves, the others connect to PET_MASTER_ADDR:PET_MASTER_PORT.
NODE_SCRIPT = r"""
import os, socket, sys, time
rank = int(os.environ["PET_NODE_RANK"]); nodes = int(os.environ["PET_NNODES"])
addr, port = os.environ["PET_MASTER_ADDR"], int(os.environ["PET_MASTER_PORT"])
attempt = os.environ["ATTEMPT"]
print("rank", rank, "of", nodes, "nproc", os.environ["PET_NPROC_PER_NODE"], "attempt", attempt, flush=True)
if os.environ.get("MODE") == "hold" and attempt == "0":
    time.sleep(120)
if os.environ.get("MODE") == "fail":
    sys.exit(5)
if rank == 0:
    server = socket.create_server(("0.0.0.0", port))
    server.settimeout(60)
    for _ in range(nodes - 1):
        conn, _ = server.accept()
        print("peer", conn.recv(100).decode(), flush=True)
else:
    deadline = time.time() + 60
    while True:
        try:
            socket.create_connection((addr, port), timeout=5).sendall(f"rank{rank}".encode())
            break
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.1)
"""

TORCH_SCRIPT = r"""
import os, torch, torch.distributed as dist
dist.init_process_group("gloo")
value = torch.tensor([float(dist.get_rank() + 1)])
dist.all_reduce(value)
print("world", dist.get_world_size(), "rank", dist.get_rank(), "sum", value.item(), flush=True)
dist.destroy_process_group()
"""


def runtime(
    name: str = "torch-distributed", kind: str = "ClusterTrainingRuntime", **jobset_spec: Any
) -> dict:
    body: dict[str, Any] = {
        "apiVersion": "trainer.kubeflow.org/v1alpha1",
        "kind": kind,
        "metadata": {"name": name, "labels": {"trainer.kubeflow.org/framework": "torch"}},
        "spec": {
            "mlPolicy": {"numNodes": 1, "torch": {}},
            "template": {
                "metadata": {"labels": {"from-runtime": "yes"}},
                "spec": {
                    "replicatedJobs": [
                        {
                            "name": "node",
                            "template": {
                                "metadata": {
                                    "labels": {"trainer.kubeflow.org/trainjob-ancestor-step": "trainer"}
                                },
                                "spec": {
                                    "backoffLimit": 0,
                                    "template": {
                                        "spec": {
                                            "restartPolicy": "Never",
                                            "containers": [
                                                {
                                                    "name": "node",
                                                    "image": "pytorch/pytorch:2.13.0",
                                                    "env": [{"name": "FROM_RUNTIME", "value": "1"}],
                                                    "resources": {"limits": {"memory": "1Gi"}},
                                                }
                                            ],
                                        }
                                    },
                                },
                            },
                        }
                    ],
                    **jobset_spec,
                },
            },
        },
    }
    if kind == "TrainingRuntime":
        body["metadata"]["namespace"] = "default"
    return body


def trainjob(
    name: str, mode: str = "", nodes: int = 2, runtime_name: str = "torch-distributed", **spec: Any
) -> dict:
    trainer = {
        "image": "local/sft-train:1",
        "command": [sys.executable, "-c", NODE_SCRIPT],
        "numNodes": nodes,
        "resourcesPerNode": {"limits": {"cpu": "1"}},
        "env": [
            {"name": "MODE", "value": mode},
            {
                "name": "ATTEMPT",
                "valueFrom": {
                    "fieldRef": {"fieldPath": "metadata.labels['jobset.sigs.k8s.io/restart-attempt']"}
                },
            },
        ],
    }
    trainer.update(spec.pop("trainer", {}))
    return {
        "apiVersion": "trainer.kubeflow.org/v1alpha1",
        "kind": "TrainJob",
        "metadata": {"name": name},
        "spec": {"runtimeRef": {"name": runtime_name}, "trainer": trainer, **spec},
    }


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next(
        (
            c
            for c in (obj.get("status") or {}).get("conditions") or []
            if c["type"] == type_ and c["status"] == "True"
        ),
        None,
    )


def pods_of(kube: KubeEmulator, name: str, attempt: int | None = None) -> list[dict[str, Any]]:
    selector = f"jobset.sigs.k8s.io/jobset-name={name}"
    if attempt is not None:
        selector += f",jobset.sigs.k8s.io/restart-attempt={attempt}"
    return kube.list("pods", "default", label_selector=selector)


@pytest.fixture
def trainer(kube: KubeEmulator) -> KubeEmulator:
    kube.install_trainer_crds()
    return kube


def test_crds_defaults_and_removed_fields(trainer: KubeEmulator) -> None:
    trainer.create(runtime())
    body = trainjob("tj", suspend=True)
    body["spec"]["podTemplateOverrides"] = [{"targetJobs": [{"name": "node"}]}]  # removed in Trainer 2.2
    body["spec"]["runtimePatches"] = [{"manager": "sft.dev/operator"}]
    created = trainer.create(body)
    spec = created["spec"]
    assert spec["runtimeRef"] == {
        "name": "torch-distributed",
        "apiGroup": "trainer.kubeflow.org",
        "kind": "ClusterTrainingRuntime",
    }
    assert spec["managedBy"] == "trainer.kubeflow.org/trainjob-controller"
    assert "podTemplateOverrides" not in spec  # pruned: unknown to the v2.2+ schema
    assert spec["runtimePatches"][0]["time"]  # stamped by the defaulting webhook

    dotted = trainjob("bad")
    dotted["metadata"]["name"] = "dotted.name"
    zero_procs = trainjob("bad", trainer={"numProcPerNode": 0})
    other_manager = trainjob("bad", managedBy="example.com/other")
    empty_ref = trainjob("bad", runtime_name="")
    for wrong, needle in [
        (dotted, "RFC 1035"),
        (zero_procs, "numProcPerNode must be greater than or equal to 1"),
        (other_manager, "ManagedBy must be"),
        (empty_ref, "runtimeRef.name"),
    ]:
        with pytest.raises(ApiError) as error:
            trainer.create(wrong)
        assert error.value.code == 422 and needle in error.value.message, error.value.message

    with pytest.raises(ApiError) as runtime_type:
        trainer.create({**runtime("typed"), "spec": {"mlPolicy": {"numNodes": "two", "torch": {}}}})
    assert runtime_type.value.code == 422
    with pytest.raises(ApiError) as two_policies:
        trainer.create({**runtime("two"), "spec": {"mlPolicy": {"torch": {}, "mpi": {}}}})
    assert "Only one of the policy can be configured" in two_policies.value.message


def test_webhook_denies_what_trainer_denies(trainer: KubeEmulator) -> None:
    with pytest.raises(ApiError) as missing:
        trainer.create(trainjob("tj"))
    assert missing.value.code == 403
    assert (
        "specified clusterTrainingRuntime must be created before the TrainJob is created"
        in missing.value.message
    )

    trainer.create(runtime())
    reserved = trainjob("tj", trainer={"env": [{"name": "PET_NNODES", "value": "4"}]})
    with pytest.raises(ApiError) as env:
        trainer.create(reserved)
    assert "must not have reserved envs, invalid envs configured: ['PET_NNODES']" in env.value.message

    patch = {
        "manager": "sft.dev/operator",
        "trainingRuntimeSpec": {
            "template": {
                "spec": {
                    "replicatedJobs": [
                        {
                            "name": "node",
                            "template": {"spec": {"template": {"spec": {"containers": [{"name": "x"}]}}}},
                        }
                    ]
                }
            }
        },
    }
    with pytest.raises(ApiError) as container:
        trainer.create(trainjob("tj", runtimePatches=[patch]))
    assert "must not have container that doesn't exist in the runtime job node" in container.value.message

    trainer.create(trainjob("ok"))
    with pytest.raises(ApiError) as running:
        trainer.patch("trainjobs", "ok", {"spec": {"runtimePatches": [{"manager": "x.dev/y"}]}})
    assert "RuntimePatches can only be modified when the TrainJob is suspended" in running.value.message


def test_trainjob_builds_the_jobset_trainer_builds(trainer: KubeEmulator, pod_runner: PodRunner) -> None:
    trainer.create(runtime(failurePolicy={"maxRestarts": 2}))
    patch = {
        "manager": "sft.dev/operator",
        "trainingRuntimeSpec": {
            "template": {
                "metadata": {"labels": {"kueue.x-k8s.io/queue-name": "gpu"}},
                "spec": {
                    "replicatedJobs": [
                        {
                            "name": "node",
                            "template": {
                                "spec": {
                                    "template": {
                                        "metadata": {"labels": {"sft.dev/run": "tj"}},
                                        "spec": {
                                            "nodeSelector": {"pool": "h100"},
                                            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}],
                                            "volumes": [{"name": "shm", "emptyDir": {"medium": "Memory"}}],
                                            "containers": [
                                                {
                                                    "name": "node",
                                                    "volumeMounts": [
                                                        {"name": "shm", "mountPath": "/dev/shm"}
                                                    ],
                                                }
                                            ],
                                        },
                                    }
                                }
                            },
                        }
                    ]
                },
            }
        },
    }
    trainer.create(trainjob("tj", runtimePatches=[patch]))
    jobset = trainer.wait_for_object("jobsets", "tj", timeout=20)
    assert jobset["metadata"]["ownerReferences"][0]["kind"] == "TrainJob"
    assert jobset["metadata"]["labels"] == {"from-runtime": "yes", "kueue.x-k8s.io/queue-name": "gpu"}
    assert jobset["spec"]["failurePolicy"]["maxRestarts"] == 2
    assert jobset["spec"]["suspend"] is False
    (rjob,) = jobset["spec"]["replicatedJobs"]
    job_spec = rjob["template"]["spec"]
    assert (rjob["replicas"], job_spec["parallelism"], job_spec["completions"]) == (1, 2, 2)
    pod = job_spec["template"]
    assert pod["metadata"]["labels"] == {"sft.dev/run": "tj"}
    assert pod["spec"]["nodeSelector"] == {"pool": "h100"}
    assert pod["spec"]["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists"}]
    (node,) = pod["spec"]["containers"]
    assert node["image"] == "local/sft-train:1" and node["command"][0] == sys.executable
    assert node["resources"] == {"limits": {"memory": "1Gi", "cpu": "1"}}
    assert node["volumeMounts"] == [{"name": "shm", "mountPath": "/dev/shm"}]
    assert node["ports"] == [{"containerPort": 29500}]
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in node["env"]}
    assert [e["name"] for e in node["env"]][:3] == ["FROM_RUNTIME", "MODE", "ATTEMPT"]
    assert env["PET_NNODES"] == "2" and env["PET_NPROC_PER_NODE"] == "1"
    assert env["PET_MASTER_ADDR"] == "tj-node-0-0.tj" and env["PET_MASTER_PORT"] == "29500"
    assert env["PET_NODE_RANK"] == {
        "fieldRef": {"fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}
    }

    done = trainer.wait_for_object("trainjobs", "tj", lambda o: condition(o, "Complete"), timeout=60)
    complete = condition(done, "Complete")
    assert complete is not None
    assert (complete["reason"], complete["message"]) == ("AllJobsCompleted", "jobset completed successfully")
    assert done["status"]["jobsStatus"] == [
        {"name": "node", "ready": 0, "succeeded": 1, "failed": 0, "active": 0, "suspended": 0}
    ]
    pods = sorted(pods_of(trainer, "tj"), key=lambda p: p["spec"]["hostname"])
    assert [p["spec"]["hostname"] for p in pods] == ["tj-node-0-0", "tj-node-0-1"]
    assert pods[0]["metadata"]["labels"]["sft.dev/run"] == "tj"
    assert "peer rank1" in trainer.pod_log(pods[0]["metadata"]["name"])


def test_namespaced_training_runtime(trainer: KubeEmulator, pod_runner: PodRunner) -> None:
    trainer.create(runtime("ns-runtime", kind="TrainingRuntime"))
    body = trainjob("tj", nodes=1)
    body["spec"]["runtimeRef"] = {"name": "ns-runtime", "kind": "TrainingRuntime"}
    trainer.create(body)
    trainer.wait_for_object("trainjobs", "tj", lambda o: condition(o, "Complete"), timeout=60)


def test_torchrun_rendezvous_from_injected_env(
    trainer: KubeEmulator, pod_runner: PodRunner, tmp_path: Path
) -> None:
    pytest.importorskip("torch")
    pod_runner.executables["torchrun"] = [sys.executable, "-m", "torch.distributed.run"]
    script = tmp_path / "allreduce.py"
    script.write_text(TORCH_SCRIPT)
    trainer.create(runtime())
    # torchrun takes nnodes, nproc-per-node, node-rank, master addr/port from the PET_* env alone.
    trainer.create(trainjob("tj", trainer={"command": ["torchrun", str(script)]}))
    done = trainer.wait_for_object(
        "trainjobs", "tj", lambda o: condition(o, "Complete") or condition(o, "Failed"), timeout=120
    )
    logs = "\n".join(trainer.pod_log(p["metadata"]["name"]) for p in pods_of(trainer, "tj"))
    assert condition(done, "Complete"), logs
    assert "world 2 rank 0 sum 3.0" in logs and "world 2 rank 1 sum 3.0" in logs


def test_killed_node_restarts_the_group_and_trainjob_completes(
    trainer: KubeEmulator, pod_runner: PodRunner
) -> None:
    trainer.create(runtime(failurePolicy={"maxRestarts": 1}))
    trainer.create(trainjob("tj", mode="hold"))

    def running() -> list[dict[str, Any]] | None:
        pods = pods_of(trainer, "tj", attempt=0)
        return pods if len(pods) == 2 and all(p["status"].get("phase") == "Running" for p in pods) else None

    first = trainer.wait_for(running, timeout=30)
    assert first is not None
    pod_runner.kill_pod(next(p for p in first if p["spec"]["hostname"] == "tj-node-0-1")["metadata"]["name"])
    done = trainer.wait_for_object("trainjobs", "tj", lambda o: condition(o, "Complete"), timeout=60)
    assert "restarts" not in done["status"]  # Trainer's TrainJob status has no restart count ...
    assert trainer.get("jobsets", "tj")["status"]["restarts"] == 1  # ... its JobSet has
    assert len(pods_of(trainer, "tj", attempt=1)) == 2 and not pods_of(trainer, "tj", attempt=0)


def test_failure_is_mirrored_from_the_jobset(trainer: KubeEmulator, pod_runner: PodRunner) -> None:
    trainer.create(runtime(failurePolicy={"maxRestarts": 0}))
    trainer.create(trainjob("tj", mode="fail"))
    failed = trainer.wait_for_object("trainjobs", "tj", lambda o: condition(o, "Failed"), timeout=60)
    cond = condition(failed, "Failed")
    assert cond is not None and cond["reason"] == "ReachedMaxRestarts"
    assert cond["message"].startswith(
        "jobset failed due to reaching max number of restarts (first failed job: tj-node-0"
    )
    assert failed["status"]["jobsStatus"][0]["failed"] == 1


def test_suspend_resume(trainer: KubeEmulator, pod_runner: PodRunner) -> None:
    trainer.create(runtime())
    trainer.create(trainjob("tj", suspend=True))
    suspended = trainer.wait_for_object("trainjobs", "tj", lambda o: condition(o, "Suspended"), timeout=20)
    cond = condition(suspended, "Suspended")
    assert cond is not None and (cond["reason"], cond["message"]) == ("Suspended", "TrainJob is suspended")
    assert trainer.get("jobsets", "tj")["spec"]["suspend"] is True
    assert pods_of(trainer, "tj") == []
    trainer.patch("trainjobs", "tj", {"spec": {"suspend": False}})
    done = trainer.wait_for_object("trainjobs", "tj", lambda o: condition(o, "Complete"), timeout=60)
    resumed = next(c for c in done["status"]["conditions"] if c["type"] == "Suspended")
    assert (resumed["status"], resumed["reason"], resumed["message"]) == (
        "False",
        "Resumed",
        "TrainJob is resumed",
    )


def test_active_deadline(trainer: KubeEmulator, pod_runner: PodRunner) -> None:
    trainer.create(runtime())
    trainer.create(trainjob("tj", mode="hold", activeDeadlineSeconds=2))
    failed = trainer.wait_for_object("trainjobs", "tj", lambda o: condition(o, "Failed"), timeout=30)
    cond = condition(failed, "Failed")
    assert cond is not None
    assert (cond["reason"], cond["message"]) == ("DeadlineExceeded", "TrainJob exceeded its active deadline")
    trainer.wait_for_deletion("jobsets", "tj", timeout=20)


def test_runtime_patches_changed_while_suspended_reach_the_pods(
    trainer: KubeEmulator, pod_runner: PodRunner
) -> None:
    # What Kueue does: the TrainJob waits suspended, a manager patches placement, then it is resumed.
    trainer.create(runtime())
    trainer.create(trainjob("tj", nodes=1, suspend=True))
    trainer.wait_for_object("jobs", "tj-node-0", timeout=20)  # JobSet made its Job, suspended
    placement = {
        "manager": "kueue.x-k8s.io/manager",
        "trainingRuntimeSpec": {
            "template": {
                "spec": {
                    "replicatedJobs": [
                        {
                            "name": "node",
                            "template": {"spec": {"template": {"spec": {"nodeSelector": {"pool": "a100"}}}}},
                        }
                    ]
                }
            }
        },
    }
    trainer.patch("trainjobs", "tj", {"spec": {"runtimePatches": [placement]}})
    trainer.wait_for_object(
        "jobsets",
        "tj",
        lambda o: o["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"].get("nodeSelector"),
        timeout=20,
    )
    trainer.patch("trainjobs", "tj", {"spec": {"suspend": False}})
    trainer.wait_for_object("trainjobs", "tj", lambda o: condition(o, "Complete"), timeout=60)
    (pod,) = pods_of(trainer, "tj")
    assert pod["spec"]["nodeSelector"] == {"pool": "a100"}


@pytest.mark.parametrize(
    ("trainer_spec", "nproc"),
    [
        ({"resourcesPerNode": {"limits": {"nvidia.com/gpu": "8"}}}, "auto"),  # torchrun counts the GPUs
        ({"resourcesPerNode": {"limits": {"nvidia.com/gpu": "8"}}, "numProcPerNode": 4}, "4"),
        (
            {"resourcesPerNode": {"requests": {"cpu": "500m"}, "limits": {"cpu": "3"}}},
            "1",
        ),  # request, rounded up
        ({"resourcesPerNode": {"limits": {"cpu": "3"}}}, "3"),
        ({}, "1"),
    ],
)
def test_nproc_per_node_as_the_torch_plugin_computes_it(trainer_spec: dict[str, Any], nproc: str) -> None:
    from kubeemu.trainer import build_jobset

    body = trainjob("tj", trainer={"resourcesPerNode": None, **trainer_spec})
    body["spec"]["trainer"] = {k: v for k, v in body["spec"]["trainer"].items() if v is not None}
    body["metadata"].update(namespace="default", uid="u1")
    body["apiVersion"], body["kind"] = "trainer.kubeflow.org/v1alpha1", "TrainJob"
    jobset = build_jobset(body, runtime())
    node = jobset["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]["containers"][0]
    assert {e["name"]: e.get("value") for e in node["env"]}["PET_NPROC_PER_NODE"] == nproc


def test_env_injection_targets_and_a_trainjob_without_trainer() -> None:
    from kubeemu.trainer import build_jobset

    rt = runtime()
    rt["spec"]["mlPolicy"]["torch"] = {
        "envInjection": {"targets": [{"jobName": "node", "containerNames": ["preflight"]}]}
    }
    pod_spec = rt["spec"]["template"]["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]
    pod_spec["initContainers"] = [{"name": "preflight", "image": "busybox"}]
    body = trainjob("tj", nodes=3)
    body["metadata"].update(namespace="default", uid="u1")
    jobset = build_jobset(body, rt)
    built = jobset["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]
    preflight = {e["name"]: e.get("value") for e in built["initContainers"][0]["env"]}
    assert preflight["PET_NNODES"] == "3" and preflight["PET_MASTER_ADDR"] == "tj-node-0-0.tj"

    # No spec.trainer: the runtime's node count and container as they are, no PET_* env (torch.go).
    bare = trainjob("tj")
    del bare["spec"]["trainer"]
    bare["metadata"].update(namespace="default", uid="u2")
    job_spec = build_jobset(bare, runtime())["spec"]["replicatedJobs"][0]["template"]["spec"]
    assert (job_spec["parallelism"], job_spec["completions"]) == (1, 1)
    assert job_spec["template"]["spec"]["containers"][0]["env"] == [{"name": "FROM_RUNTIME", "value": "1"}]
