"""Every shipped sample (manifests/samples/*.yaml) through the pydantic API models, which carry the
operator's admission checks, plus a consistency check of its own: what Megatron would refuse only
after minutes on a GPU cluster must fail here.

Facts the checks rely on:
- Megatron-Core (``megatron/core/num_microbatches_calculator.py``) requires the global batch size to
  be divisible by micro batch × data-parallel size, and data parallelism is what
  ``world / (TP × PP × CP)`` leaves.
- Megatron-Bridge's THD context parallelism needs every packed sub-sequence's input tokens to be a
  multiple of 2·CP, and of CP·TP with sequence parallelism (Nemotron's recipe derives
  ``pad_seq_to_mult`` as lcm(2·CP, CP·TP)); sft-prep's ``padSeqToMult`` pads the data to it.
- The images the project builds are ``images/<name>/Dockerfile`` → ``ghcr.io/sft-operator/sft-<name>``
  (Makefile ``images``), tagged with the chart's appVersion; the GPU trainer is ``sft-trainer``.
- Nemotron 3 Super has ~120B parameters (bf16: 2 bytes each); an 80 GB GPU cannot hold them unsharded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from sft_operator.api.dataprep import SFTDataPrepSpec
from sft_operator.api.sftrun import SFTRunSpec
from sft_train.engines.megatron_plan import pad_multiple

REPO = Path(__file__).resolve().parents[2]
SAMPLES = sorted((REPO / "manifests" / "samples").glob("*.yaml"))
MODELS = {"SFTRun": SFTRunSpec, "SFTDataPrep": SFTDataPrepSpec}
BUILT_IMAGES = {f"sft-{d.name}" for d in (REPO / "images").iterdir() if (d / "Dockerfile").is_file()}
APP_VERSION = yaml.safe_load((REPO / "charts" / "sft-operator" / "Chart.yaml").read_text())["appVersion"]
#: Parameters of the models the samples name (model.recipe) and the GPU memory of their nodes.
PARAMETERS = {"nemotron_3_super": 120e9}
GPU_MEMORY = {"NVIDIA-H100-80GB-HBM3": 80e9}


def documents() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in SAMPLES:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                out.append((path.name, doc))
    return out


DOCS = documents()
CRS = [(name, doc) for name, doc in DOCS if doc["kind"] in MODELS]
PREPS = {
    doc["metadata"]["name"]: SFTDataPrepSpec.model_validate(doc["spec"])
    for _, doc in CRS
    if doc["kind"] == "SFTDataPrep"
}


def test_every_sample_file_holds_a_custom_resource_or_a_known_kind() -> None:
    assert {name for name, _ in CRS} >= {
        p.name for p in SAMPLES if p.name.startswith(("sftrun-", "sftdataprep-"))
    }
    others = {"ServiceAccount", "Role", "RoleBinding", "PersistentVolumeClaim", "Secret"}
    assert {doc["kind"] for _, doc in DOCS} - set(MODELS) <= others


@pytest.mark.parametrize(("name", "doc"), CRS, ids=[f"{n}:{d['metadata']['name']}" for n, d in CRS])
def test_sample_loads_through_its_model(name: str, doc: dict[str, Any]) -> None:
    spec = MODELS[doc["kind"]].model_validate(doc["spec"])  # the admission checks run here
    image = getattr(spec, "image", None)
    if image:
        repo, _, tag = image.rpartition(":")
        assert repo.rpartition("/")[2] in BUILT_IMAGES, f"{name}: {image} is not an image the project builds"
        assert tag == APP_VERSION, f"{name}: {image} is not tagged with the chart's appVersion {APP_VERSION}"


RUNS = [(n, d) for n, d in CRS if d["kind"] == "SFTRun"]


@pytest.mark.parametrize(("name", "doc"), RUNS, ids=[n for n, _ in RUNS])
def test_run_sample_is_runnable_as_written(name: str, doc: dict[str, Any]) -> None:
    spec = SFTRunSpec.model_validate(doc["spec"])
    ref = spec.data.data_prep_ref
    if ref is not None:
        assert ref.name in PREPS, f"{name}: dataPrepRef {ref.name} is not one of the samples"
    if spec.engine != "megatron":
        assert spec.image is None or spec.image.rpartition(":")[0].endswith(
            ("sft-trainer", "sft-trainer-cpu")
        )
        return
    assert spec.image is None or spec.image.rpartition(":")[0].endswith("/sft-trainer")
    par = spec.parallelism
    tp, pp, cp = (
        par.tensor_parallel_size or 1,
        par.pipeline_parallel_size or 1,
        par.context_parallel_size or 1,
    )
    world = spec.nodes * spec.gpus()
    assert world % (tp * pp * cp) == 0
    dp = world // (tp * pp * cp)
    gbs = spec.train.global_batch_size
    assert gbs % (dp * spec.train.micro_batch_size) == 0, (
        f"{name}: global batch {gbs} is not a multiple of data parallel {dp} × micro batch "
        f"{spec.train.micro_batch_size}"
    )
    if par.sequence_parallel:
        assert tp > 1, f"{name}: sequence parallelism needs TP > 1"
    if cp > 1:
        need = pad_multiple(tp, cp, bool(par.sequence_parallel))  # the trainer's own rule
        assert ref is not None and PREPS[ref.name].pad_seq_to_mult % need == 0, (
            f"{name}: CP {cp} needs data padded to a multiple of {need}"
        )
        assert PREPS[ref.name].pack_size % need == 0
    # the GPUs: asked for, selected, tolerated, and big enough for the model's shard
    assert spec.gpus() > 0 and spec.node_selector, f"{name}: a GPU run needs a GPU nodeSelector"
    assert any(t.key == "nvidia.com/gpu" for t in spec.tolerations)
    product = spec.node_selector.get("nvidia.com/gpu.product")
    params = PARAMETERS.get(spec.model.recipe)
    if params and product in GPU_MEMORY:
        ep = par.expert_parallel_size or 1
        per_gpu = 2 * params / (tp * pp * max(ep, 1))
        assert per_gpu < GPU_MEMORY[product], f"{name}: {per_gpu / 1e9:.0f} GB of bf16 weights per GPU"


def test_lora_and_full_samples_pair_with_their_data() -> None:
    runs = {d["metadata"]["name"]: SFTRunSpec.model_validate(d["spec"]) for _, d in RUNS}
    lora, full = runs["super3-stage1-lora"], runs["super3-stage1-sft"]
    assert lora.peft is not None and lora.lr == 1e-4 and full.peft is None and full.lr == 5e-6
    assert (lora.parallelism.tensor_parallel_size, lora.parallelism.context_parallel_size) == (4, 2)
    assert lora.parallelism.sequence_parallel is True
    assert lora.data.data_prep_ref is not None and PREPS[lora.data.data_prep_ref.name].pad_seq_to_mult == 8
    assert full.data.data_prep_ref is not None and PREPS[full.data.data_prep_ref.name].pad_seq_to_mult == 1
    assert full.train.global_batch_size == 4  # the recipe's (Nemotron super3 stage1_sft default.yaml)
