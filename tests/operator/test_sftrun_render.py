"""Rendering an SFTRun: the ConfigMap and the PyTorchJob, checked field by field, against the upstream
PyTorchJob CRD schema (training-operator v1.9.0, vendored in fixtures/), and the pod template against
the core/v1 schema (kubernetes-validate)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from prep_objects import k8s_versions
from sftrun_objects import DATA, DEFAULTS, cpu_spec, cr, render_run

from kubeemu.schema import admit
from sft_common.config import load_yaml
from sft_operator.errors import InvalidSpec
from sft_operator.render import sftrun as render
from sft_operator.render.meta import KUEUE_QUEUE_LABEL, SPEC_HASH_ANNOTATION, SUSPEND_ANNOTATION
from sft_train.config import TrainConfig

FIXTURES = Path(__file__).parent / "fixtures"
PTJ_CRD = FIXTURES / "kubeflow.org_pytorchjobs.v1.9.0.yaml"


def ptj_schema() -> dict[str, Any]:
    crd = yaml.safe_load(PTJ_CRD.read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    return version["schema"]["openAPIV3Schema"]


def the_container(job: dict[str, Any], replica: str = "Master") -> dict[str, Any]:
    (container,) = job["spec"]["pytorchReplicaSpecs"][replica]["template"]["spec"]["containers"]
    return container


def test_pytorchjob_has_master_and_workers_with_gpus_and_shm() -> None:
    job = render_run(cr(shmSize="32Gi"), DATA, DEFAULTS).job
    replicas = job["spec"]["pytorchReplicaSpecs"]
    assert (job["apiVersion"], job["kind"], job["metadata"]["name"]) == (
        "kubeflow.org/v1",
        "PyTorchJob",
        "run-train",
    )
    assert replicas["Master"]["replicas"] == 1 and replicas["Worker"]["replicas"] == 3
    assert {r["restartPolicy"] for r in replicas.values()} == {"ExitCode"}
    assert job["spec"]["nprocPerNode"] == "8"
    for replica in ("Master", "Worker"):
        container = the_container(job, replica)
        assert container["name"] == "pytorch"
        assert container["resources"]["limits"]["nvidia.com/gpu"] == 8
        assert {"name": "sft-shm", "mountPath": "/dev/shm"} in container["volumeMounts"]
        pod = replicas[replica]["template"]["spec"]
        (shm,) = [v for v in pod["volumes"] if v["name"] == "sft-shm"]
        assert shm["emptyDir"] == {"medium": "Memory", "sizeLimit": "32Gi"}


def test_torchrun_command_and_rendezvous() -> None:
    container = the_container(render_run(cr(maxRestarts=3), DATA, DEFAULTS).job)
    assert container["command"] == [
        "sft-torchrun",
        "--retryable-exit-code=200",  # PyTorchJob's ExitCode retries >= 128 only (backends.pytorchjob)
        "--nnodes=4",
        "--nproc-per-node=8",
        "--node-rank=$(RANK)",
        "--master-addr=$(MASTER_ADDR)",
        "--master-port=$(MASTER_PORT)",
        "--max-restarts=3",
        "--no-python",
        "sft-train",
        "--config",
        "/etc/sft/config.yaml",
    ]
    assert container["ports"] == [{"name": "pytorchjob-port", "containerPort": 23456, "protocol": "TCP"}]


def test_torchrun_accepts_the_command_as_the_training_operator_expands_it() -> None:
    """torchrun's own parser reads the command with $(VAR)s expanded the way the kubelet does."""
    from torch.distributed.run import get_args_parser

    from sft_train.launch import split_options

    env = {"RANK": "2", "MASTER_ADDR": "run-train-master-0", "MASTER_PORT": "23456"}
    argv = the_container(render_run(cr(), DATA, DEFAULTS).job, "Worker")["command"]
    expanded = [
        part.replace("$(RANK)", env["RANK"]).replace("$(MASTER_ADDR)", env["MASTER_ADDR"]) for part in argv
    ]
    expanded = [part.replace("$(MASTER_PORT)", env["MASTER_PORT"]) for part in expanded]
    retry_code, torchrun_args = split_options(expanded[1:])  # sft-torchrun's own option first
    assert retry_code == 200
    args = get_args_parser().parse_args(torchrun_args)
    assert (args.nnodes, args.nproc_per_node, args.node_rank) == ("4", "8", 2)
    assert (args.master_addr, args.master_port, args.max_restarts) == ("run-train-master-0", 23456, 0)
    assert args.no_python and args.training_script == "sft-train"
    assert args.training_script_args == ["--config", "/etc/sft/config.yaml"]


def test_pods_are_hardened_wired_to_the_owner_and_keep_logs_on_error() -> None:
    job = render_run(cr(), DATA, DEFAULTS).job
    template = job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]
    pod, container = template["spec"], the_container(job)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert pod["serviceAccountName"] == "sft-workload"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["SFT_OWNER_PLURAL"] == "sftruns" and env["SFT_OWNER_NAME"] == "run"
    assert env["SFT_OWNER_NAMESPACE"] == "ml" and env["SFT_OWNER_GROUP"] == "sft.dev"
    assert template["metadata"]["annotations"] == {
        "sft.dev/owner-kind": "SFTRun",
        "sft.dev/owner-name": "run",
    }
    assert template["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "sft-operator"
    assert template["metadata"]["labels"]["sft.dev/run"] == "run"


def test_run_policy_kueue_and_scheduling() -> None:
    owner = cr(
        suspend=True,
        activeDeadlineSeconds=86400,
        ttlSecondsAfterFinished=3600,
        backoffLimit=5,
        queueName="gpu-team",
        priorityClassName="training-high",
    )
    job = render_run(owner, DATA, DEFAULTS).job
    assert job["spec"]["runPolicy"] == {
        "cleanPodPolicy": "None",
        "backoffLimit": 5,
        "suspend": True,
        "activeDeadlineSeconds": 86400,
        "ttlSecondsAfterFinished": 3600,
        "schedulingPolicy": {"minAvailable": 4, "priorityClass": "training-high"},
    }
    assert job["metadata"]["labels"][KUEUE_QUEUE_LABEL] == "gpu-team"
    assert job["metadata"]["annotations"][SUSPEND_ANNOTATION] == "true"
    assert (
        the_container(job)
        and job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["priorityClassName"]
        == "training-high"
    )
    (ref,) = job["metadata"]["ownerReferences"]
    assert ref["kind"] == "SFTRun" and ref["controller"] is True


def test_config_map_is_the_trainer_config_with_the_data_resolved() -> None:
    owner = cr(train={"trainIters": 100, "globalBatchSize": 64}, optimizer={"lr": 2e-5})
    cm = render_run(owner, DATA, DEFAULTS).config_map
    config = TrainConfig.model_validate(load_yaml(cm["data"]["config.yaml"]))
    assert config.data.path == "s3://bucket/prep/out"
    assert config.model.seq_length == 4096
    assert config.train.global_batch_size == 64 and config.optimizer.lr == 2e-5
    assert config.checkpoint.save == "s3://bucket/ckpt/run"
    assert config.parallelism.expert_parallel_size == 8
    assert cm["metadata"]["name"] == "run-train-config"


def test_cpu_run_has_no_gpus_and_one_process_per_pod() -> None:
    job = render_run(cr(**cpu_spec()), render.ResolvedData("s3://bucket/prep/out", 512), DEFAULTS).job
    assert "Worker" not in job["spec"]["pytorchReplicaSpecs"]
    assert job["spec"]["nprocPerNode"] == "1"
    container = the_container(job)
    assert "nvidia.com/gpu" not in str(container.get("resources"))
    assert "--nproc-per-node=1" in container["command"]


def test_rendering_is_deterministic_and_hash_covers_only_training_fields() -> None:
    a = render_run(cr(), DATA, DEFAULTS)
    assert render_run(cr(), DATA, DEFAULTS) == a
    scheduling = render_run(
        cr(suspend=True, queueName="q", tolerations=[{"operator": "Exists"}]), DATA, DEFAULTS
    )
    assert scheduling.spec_hash == a.spec_hash
    for change in (
        {"train": {"trainIters": 5, "globalBatchSize": 32}},
        {"nodes": 2},
        {"image": "other:1"},
        {"gpusPerNode": 4},
    ):
        assert render_run(cr(**change), DATA, DEFAULTS).spec_hash != a.spec_hash, change
    assert a.job["metadata"]["annotations"][SPEC_HASH_ANNOTATION] == a.spec_hash


def test_a_run_without_base_weights_is_invalid() -> None:
    """Found by `make bench-faults`: no model.pretrainedCheckpoint and no checkpoint.load was accepted,
    and the trainer would have failed in the cluster."""
    owner = cr(model={}, checkpoint={"save": "s3://bucket/ckpt/run"})
    with pytest.raises(InvalidSpec, match=r"model\.pretrainedCheckpoint is not set"):
        render_run(owner, DATA, DEFAULTS)
    resumed = cr(model={}, checkpoint={"save": "s3://bucket/ckpt/run", "load": "s3://bucket/ckpt/run"})
    assert render_run(resumed, DATA, DEFAULTS).job


def test_default_image_and_missing_image() -> None:
    owner = cr()
    del owner["spec"]["image"]
    assert the_container(render_run(owner, DATA, DEFAULTS).job)["image"] == DEFAULTS.trainer_image
    with pytest.raises(InvalidSpec, match="SFT_DEFAULT_TRAINER_IMAGE"):
        render_run(owner, DATA, render.WorkloadDefaults())


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"gpusPerNode": 0}, "engine megatron needs GPUs"),
        ({"parallelism": {"tensorParallelSize": 3}}, "does not divide the 32 GPUs"),
        ({"parallelism": {"expertParallelSize": 64}}, "expertParallelSize"),
        ({"checkpoint": {"saveInterval": 10}}, "checkpoint.save is not set"),
        ({"checkpoint": {"save": "/ckpt/run"}}, "no volumeMount holds it"),
        ({"checkpoint": {"save": "relative/dir"}}, "relative path"),
        ({"checkpoint": {"save": "gs://bucket/x"}}, "scheme 'gs://' is not supported"),
        ({"data": {"dataPrepRef": {"name": "p"}, "uri": "s3://b/d"}}, "exactly one of dataPrepRef"),
        ({"data": {}}, "exactly one of dataPrepRef"),
        ({"data": {"dataPrepRef": {"name": "p"}, "packSize": 4096}}, "packSize goes with data.uri"),
        ({"resources": {"limits": {"nvidia.com/gpu": 4}}}, "leave nvidia.com/gpu out"),
        ({"shmSize": "lots"}, "not a Kubernetes quantity"),
        (
            {
                "volumes": [{"name": "x", "emptyDir": {}}],
                "volumeMounts": [{"name": "x", "mountPath": "/dev/shm"}],
            },
            "shmSize",
        ),
        ({"train": {"trainIters": 0}}, "train.trainIters"),
    ],
)
def test_invalid_specs_say_what_to_fix(overrides: dict[str, Any], expected: str) -> None:
    with pytest.raises(InvalidSpec) as info:
        render_run(cr(**overrides), DATA, DEFAULTS)
    assert expected in info.value.message


def test_local_paths_on_a_mounted_volume_are_fine() -> None:
    owner = cr(
        checkpoint={"save": "/ckpt/run"},
        volumes=[{"name": "ckpt", "persistentVolumeClaim": {"claimName": "ckpt"}}],
        volumeMounts=[{"name": "ckpt", "mountPath": "/ckpt"}],
    )
    container = the_container(render_run(owner, DATA, DEFAULTS).job)
    assert {"name": "ckpt", "mountPath": "/ckpt"} in container["volumeMounts"]


def test_seq_length_must_match_the_pack_size() -> None:
    with pytest.raises(InvalidSpec) as info:
        render_run(cr(model={"seqLength": 2048, "pretrainedCheckpoint": "s3://b/base"}), DATA, DEFAULTS)
    assert info.value.reason == "SeqLengthMismatch" and "packed into bins of 4096" in info.value.message


@pytest.mark.parametrize("nodes", [1, 4])
def test_pytorchjob_matches_the_upstream_crd_schema(nodes: int) -> None:
    """Nothing pruned (every field we write exists upstream) and no validation error."""
    job = render_run(
        cr(nodes=nodes, suspend=True, priorityClassName="p", activeDeadlineSeconds=60), DATA, DEFAULTS
    ).job
    admitted, causes = admit(copy.deepcopy(job), ptj_schema(), None)
    assert causes == []
    assert _without_defaults(admitted, job) == job


def _without_defaults(admitted: Any, original: Any) -> Any:
    """``admitted`` restricted to the keys of ``original`` (the schema may add defaults, never drop)."""
    if isinstance(admitted, dict) and isinstance(original, dict):
        return {k: _without_defaults(admitted[k], original[k]) for k in original if k in admitted}
    if isinstance(admitted, list) and isinstance(original, list):
        return [_without_defaults(a, o) for a, o in zip(admitted, original, strict=False)]
    return admitted


@pytest.mark.parametrize("version", k8s_versions())
def test_pod_templates_and_config_map_pass_kubernetes_validate(version: str) -> None:
    children = render_run(cr(), DATA, DEFAULTS)
    kubernetes_validate.validate(children.config_map, version, strict=True)
    for replica in children.job["spec"]["pytorchReplicaSpecs"].values():
        template = {
            "apiVersion": "v1",
            "kind": "PodTemplate",
            "metadata": {"name": "run-train", "namespace": "ml"},
            "template": replica["template"],
        }
        kubernetes_validate.validate(template, version, strict=True)
