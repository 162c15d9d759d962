"""The Super3 full-SFT and LoRA samples on Kubeflow Trainer v2: admitted by our CRD, valid for the
checks the operator makes before starting (parallel sizes, global batch over data parallel), and
rendered into TrainJobs that Trainer's CRDs (kubeemu, from the v2.3 types) admit. Parallelism and
batch sizes from the reference recipe's Megatron-Bridge commands (shared/reference
nemotron-super3-stage1-sft.md: full TP 4 + SP, gbs 16; LoRA TP 4, CP 2, SP, gbs 4)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from kubeemu import KubeEmulator
from sft_operator.backends.trainjob import BACKEND as trainjob
from sft_operator.render import sftrun as render
from sft_operator.render.pods import WorkloadDefaults

SAMPLES = Path(__file__).resolve().parents[2] / "manifests" / "samples"
RUNTIME = SAMPLES.parent / "trainer" / "sft-torch-distributed.yaml"
TRAINJOB_SAMPLES = sorted(SAMPLES.glob("sftrun-*trainjob*.yaml"))
DATA = render.ResolvedData("s3://sft-data/super3/stage1_sft/packed", 4096)


def the_run(path: Path) -> dict[str, Any]:
    (cr,) = [d for d in yaml.safe_load_all(path.read_text()) if d and d["kind"] == "SFTRun"]
    return cr


def test_there_are_full_and_lora_trainjob_samples() -> None:
    assert [p.name for p in TRAINJOB_SAMPLES] == [
        "sftrun-super3-lora-trainjob.yaml",
        "sftrun-super3-trainjob.yaml",
    ]


@pytest.mark.parametrize("path", TRAINJOB_SAMPLES, ids=[p.name for p in TRAINJOB_SAMPLES])
def test_trainjob_samples_are_admitted_render_and_trainer_accepts_them(
    path: Path, kube: KubeEmulator
) -> None:
    kube.apply(SAMPLES.parent / "crds")
    kube.install_trainer_crds()
    kube.apply(yaml.safe_load(RUNTIME.read_text()))
    created = kube.create(
        {**the_run(path), "metadata": {**the_run(path)["metadata"], "namespace": "default"}}
    )
    assert created["spec"]["backend"] == "trainjob"
    spec = render.parse_spec(created)
    cp = spec.parallelism.context_parallel_size or 1
    # the trainer's rule: no padding without CP, else lcm(2·CP, CP·TP) with sequence parallelism
    assert spec.seq_multiple() == (8 if cp == 2 else 1)
    job = render.render(created, DATA, WorkloadDefaults(), trainjob).job
    assert job["kind"] == "TrainJob" and job["spec"]["trainer"]["numNodes"] == 4
    assert job["spec"]["trainer"]["resourcesPerNode"]["limits"]["nvidia.com/gpu"] == "8"
    assert not any("value" in e and "KEY" in e["name"] for e in job["spec"]["trainer"]["env"])
    job["metadata"].pop("ownerReferences")
    assert kube.create(job)["spec"]["runtimeRef"]["name"] == "sft-torch-distributed"


def test_full_and_lora_trainjob_samples_follow_the_recipe() -> None:
    full = the_run(SAMPLES / "sftrun-super3-trainjob.yaml")["spec"]
    assert full["train"]["globalBatchSize"] == 16 and full["peft"] is None
    assert (full["parallelism"]["tensorParallelSize"], full["parallelism"]["sequenceParallel"]) == (4, True)
    lora = the_run(SAMPLES / "sftrun-super3-lora-trainjob.yaml")["spec"]
    assert lora["peft"]["dim"] == 32 and lora["train"]["globalBatchSize"] == 4
    assert lora["parallelism"]["contextParallelSize"] == 2 and lora["parallelism"]["tensorParallelSize"] == 4
