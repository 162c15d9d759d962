"""The chart's parts for the SFTRun backends: the shipped Kubeflow Trainer runtime (rendered only
where Trainer's API is served, with the trainJob.runtime values applied, and accepted by the Trainer
CRD schema kubeemu serves from the v2.3 types), the backend default and the chart-wide pod placement
the operator reads back, and RBAC for the new kinds with only the verbs the operator uses."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from deploytools import KubeTools, render_chart

from kubeemu import KubeEmulator
from sft_operator.render.pods import WorkloadDefaults

TRAINER_API = "trainer.kubeflow.org/v1alpha1/ClusterTrainingRuntime"
VALUES = {
    "sftRun": {"backend": "trainjob"},
    "workloadPods": {
        "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "podAnnotations": {"k8s.v1.cni.cncf.io/networks": "rdma-net"},
        "addedCapabilities": ["IPC_LOCK"],
        "schedulerName": "",
    },
    "trainJob": {
        "runtime": {
            "maxRestarts": 5,
            "hostNetwork": True,
            "schedulerName": "volcano",
            "podGroupPolicy": {"volcano": {}},
        }
    },
}


def render(
    kube_tools: KubeTools, helm_env: dict[str, str], tmp_path: Path, *extra: str
) -> list[dict[str, Any]]:
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(VALUES))
    return render_chart(kube_tools, helm_env, values, *extra)


def test_runtime_is_rendered_only_where_trainer_is_served(
    kube_tools: KubeTools, helm_env: dict[str, str], tmp_path: Path
) -> None:
    assert not [d for d in render(kube_tools, helm_env, tmp_path) if d["kind"] == "ClusterTrainingRuntime"]
    docs = render(kube_tools, helm_env, tmp_path, "--api-versions", TRAINER_API)
    (runtime,) = [d for d in docs if d["kind"] == "ClusterTrainingRuntime"]
    assert runtime["metadata"]["name"] == "sft-torch-distributed"
    js = runtime["spec"]["template"]["spec"]
    assert js["failurePolicy"]["maxRestarts"] == 5 and runtime["spec"]["podGroupPolicy"] == {"volcano": {}}
    pod = js["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True and pod["schedulerName"] == "volcano"
    (node,) = pod["containers"]
    # what a TrainJob's runtimePatches cannot set is carried by the runtime (Trainer v2.3
    # ContainerPatch has env/name/securityContext/volumeMounts only)
    assert node["name"] == "node" and node["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert node["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert {"name": "sft-shm", "mountPath": "/dev/shm"} in node["volumeMounts"]
    assert node["image"].startswith("ghcr.io/sft-operator/sft-trainer:")
    # the Trainer CRDs (kubeemu, written from Trainer's v2.3 types) admit it unchanged
    kube = KubeEmulator()
    with kube:
        kube.install_trainer_crds()
        created = kube.create(runtime)
        assert created["spec"]["template"]["spec"]["failurePolicy"]["maxRestarts"] == 5


def test_backend_default_and_pod_placement_reach_the_operator(
    kube_tools: KubeTools, helm_env: dict[str, str], tmp_path: Path
) -> None:
    docs = render(kube_tools, helm_env, tmp_path)
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["SFT_DEFAULT_BACKEND"] == "trainjob" and env["SFT_TRAINING_RUNTIME"] == "sft-torch-distributed"
    placement = json.loads(env["SFT_WORKLOAD_POD_DEFAULTS"])
    assert "schedulerName" not in placement and "hostNetwork" not in placement  # empty values left out
    defaults = WorkloadDefaults.from_env(env)  # what the operator does at start
    assert defaults.placement.added_capabilities == ["IPC_LOCK"]
    assert defaults.placement.pod_annotations == {"k8s.v1.cni.cncf.io/networks": "rdma-net"}
    assert defaults.training_runtime == "sft-torch-distributed"


def test_rbac_for_the_backends_has_only_the_verbs_used(
    kube_tools: KubeTools, helm_env: dict[str, str], tmp_path: Path
) -> None:
    docs = render(kube_tools, helm_env, tmp_path)
    rules = [r for d in docs if d["kind"] == "ClusterRole" for r in d.get("rules") or []]
    for group, plural in (("trainer.kubeflow.org", "trainjobs"), ("jobset.x-k8s.io", "jobsets")):
        (rule,) = [r for r in rules if group in r["apiGroups"] and plural in r["resources"]]
        # watch cache (list/watch), create, get after a 409, patch of the suspend field; no delete/update
        assert sorted(rule["verbs"]) == ["create", "get", "list", "patch", "watch"]
    assert not [
        r
        for r in rules
        if "trainer.kubeflow.org" in r["apiGroups"] and "clustertrainingruntimes" in r["resources"]
    ]
