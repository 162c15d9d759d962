"""The SFTRun samples: admitted by the generated CRD, renderable, and saying what they claim (the
reference recipe's full-SFT and LoRA settings, and a tiny CPU run on the tiny prep)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from sftrun_objects import render_run

from kubeemu import KubeEmulator
from sft_operator import backends
from sft_operator.render import sftrun as render
from sft_operator.render.pods import WorkloadDefaults

SAMPLES = Path(__file__).resolve().parents[2] / "manifests" / "samples"
RUN_SAMPLES = sorted(p for p in SAMPLES.glob("sftrun-*.yaml") if "trainjob" not in p.name)
"""The JobSet/PyTorchJob samples (the TrainJob ones: test_sftrun_trainjob_samples.py)."""
DATA = render.ResolvedData("s3://sft-data/super3/stage1_sft/packed", 4096)


def the_run(path: Path) -> dict[str, Any]:
    (cr,) = [d for d in yaml.safe_load_all(path.read_text()) if d and d["kind"] == "SFTRun"]
    return cr


def test_there_are_full_lora_and_tiny_samples() -> None:
    assert [p.name for p in RUN_SAMPLES] == [
        "sftrun-super3-lora.yaml",
        "sftrun-super3.yaml",
        "sftrun-tiny.yaml",
    ]


@pytest.mark.parametrize("path", RUN_SAMPLES, ids=[p.name for p in RUN_SAMPLES])
def test_samples_are_admitted_and_render(path: Path, kube: KubeEmulator) -> None:
    kube.apply(SAMPLES.parent / "crds")
    created = kube.create(
        {**the_run(path), "metadata": {**the_run(path)["metadata"], "namespace": "default"}}
    )
    # each as shipped: the flagship samples name backend jobset (envFrom, per-run TTL), tiny is auto
    # (rendered here as PyTorchJob, the shape checked below)
    backend = created["spec"].get("backend", "auto")
    children = render_run(
        created,
        DATA,
        WorkloadDefaults(trainer_image="ghcr.io/sft-operator/sft-trainer:0.1.0"),
        *([] if backend == "auto" else [backends.named(backend)]),
    )
    job = children.job
    nodes = created["spec"]["nodes"]
    assert job["kind"] == {"jobset": "JobSet", "auto": "PyTorchJob"}[backend]
    if job["kind"] == "JobSet":
        (group,) = job["spec"]["replicatedJobs"]
        assert group["replicas"] == 1 and group["template"]["spec"]["completions"] == nodes
    else:
        assert job["spec"]["pytorchReplicaSpecs"]["Master"]["replicas"] == 1
        assert job["spec"]["pytorchReplicaSpecs"].get("Worker", {}).get("replicas", 0) == nodes - 1


def test_full_sft_sample_mirrors_the_recipe() -> None:
    spec = the_run(SAMPLES / "sftrun-super3.yaml")["spec"]
    assert (spec["nodes"], spec["gpusPerNode"]) == (4, 8)
    par = spec["parallelism"]
    # Megatron-Bridge's nemotron_3_super_sft_config: TP 8 + sequence parallel, EP 16 → DP 4 on 32 GPUs
    assert (par["tensorParallelSize"], par["pipelineParallelSize"], par["expertParallelSize"]) == (8, 1, 16)
    assert par["sequenceParallel"] is True and spec["train"]["globalBatchSize"] == 4
    assert spec["optimizer"]["lr"] == 5e-6 and spec["peft"] is None and spec["precision"] == "bf16"
    assert spec["scheduler"] == {"lrWarmupIters": 50, "lrDecayStyle": "cosine"}
    assert spec["loss"] == {"calculatePerTokenLoss": True, "mtpLossScalingFactor": 0.3}
    assert spec["data"] == {"dataPrepRef": {"name": "super3-stage1-sft"}}
    assert all("secretRef" in e for e in spec["envFrom"])  # credentials only from Secrets
    job = render_run(
        the_run(SAMPLES / "sftrun-super3.yaml") | {"metadata": {"name": "s", "namespace": "n", "uid": "u"}},
        DATA,
        backend=backends.named(spec["backend"]),
    ).job
    assert spec["backend"] == "jobset" and job["kind"] == "JobSet"
    (group,) = job["spec"]["replicatedJobs"]
    (container,) = group["template"]["spec"]["template"]["spec"]["containers"]
    assert str(container["resources"]["limits"]["nvidia.com/gpu"]) == "8"
    assert "--nproc-per-node=8" in container["command"]
    assert job["spec"]["failurePolicy"]["maxRestarts"] == spec["maxRestarts"] == 3


def test_lora_sample_mirrors_the_recipe() -> None:
    spec = the_run(SAMPLES / "sftrun-super3-lora.yaml")["spec"]
    assert spec["peft"]["dim"] == 32 and spec["peft"]["alpha"] == 32 and spec["peft"]["dropout"] == 0.0
    assert spec["peft"]["targetModules"] == [
        "linear_qkv",
        "linear_proj",
        "linear_fc1",
        "linear_fc2",
        "in_proj",
        "out_proj",
    ]
    assert spec["optimizer"]["lr"] == 1e-4
    par = spec["parallelism"]
    # the recipe's LoRA example: TP 4, CP 2, sequence parallel, on 8 GPUs
    assert (par["tensorParallelSize"], par["pipelineParallelSize"], par["expertParallelSize"]) == (4, 1, 1)
    assert (par["contextParallelSize"], par["sequenceParallel"]) == (2, True)
    assert (spec["nodes"], spec["gpusPerNode"]) == (1, 8)
    assert spec["data"] == {"dataPrepRef": {"name": "super3-stage1-lora"}}


def test_tiny_sample_runs_on_cpu_from_the_tiny_prep() -> None:
    spec = the_run(SAMPLES / "sftrun-tiny.yaml")["spec"]
    prep = [
        d
        for d in yaml.safe_load_all((SAMPLES / "sftdataprep-tiny.yaml").read_text())
        if d and d["kind"] == "SFTDataPrep"
    ]
    assert spec["data"]["dataPrepRef"]["name"] == prep[0]["metadata"]["name"]
    assert spec["engine"] == "hf" and spec["gpusPerNode"] == 0
