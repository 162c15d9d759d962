"""One source for the Nemotron 3 Super defaults, and a dry run that checks the parallelism against the
world size it prints.

The source: TrainConfig's defaults (the recipe's hyperparameters) and ``megatron_plan.RECIPES`` (the
sizes Megatron-Bridge 0.6.2's ``nemotron_3_super_sft_16gpu_h100_bf16_config`` sets: TP 8, PP 1, CP 1,
EP 16, ETP 1, sequence parallel — recipes/nemotronh/h100/nemotron_3_super.py). The shipped
default.yaml and the flagship SFTRun samples must agree with it. The world-size rules are
Megatron-Core's (parallel_state.initialize_model_parallel): TP·PP·CP divides the world, EP·ETP divides
world/PP, and the global batch is a multiple of micro batch × DP.
"""

from __future__ import annotations

import shlex
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml

from sft_common.config import load_config
from sft_train.cli import main
from sft_train.config import TrainConfig
from sft_train.engines.megatron_plan import RECIPES
from sft_train.parallel import Parallelism, run_parallelism, world_problem

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "manifests" / "samples"
DEFAULT = Path(str(resources.files("sft_train") / "config" / "default.yaml"))
SUPER3 = RECIPES["nemotron_3_super"]
RECIPE_SECTIONS = ("train", "optimizer", "scheduler", "loss")


def _recipe_defaults() -> dict[str, Any]:
    """The recipe's hyperparameters: TrainConfig's defaults (engine megatron, full SFT)."""
    return TrainConfig.model_validate({"data": {"path": "/d"}}).model_dump()


def _agrees(config: TrainConfig) -> None:
    recipe = _recipe_defaults()
    dumped = config.model_dump()
    for section in RECIPE_SECTIONS:
        for key, value in dumped[section].items():
            if key in ("exit_interval", "lr"):  # lr: compared as config.lr (the mode's default)
                continue
            assert value == recipe[section][key], (
                f"{section}.{key}: {value} != the recipe's {recipe[section][key]}"
            )
    assert config.precision == recipe["precision"] == "bf16"
    assert config.lr == 5e-6
    assert run_parallelism(config) == SUPER3.sft_parallelism


def test_the_recipe_sizes_are_megatron_bridges() -> None:
    assert SUPER3.sft_parallelism == Parallelism(tp=8, pp=1, cp=1, ep=16, etp=1, sp=True)
    assert SUPER3.peft_parallelism == Parallelism(tp=1, pp=1, cp=1, ep=1, etp=1, sp=True)
    assert SUPER3.sft_parallelism.min_world() == 16


def test_default_yaml_states_the_recipe_explicitly() -> None:
    config = load_config(TrainConfig, str(DEFAULT))
    _agrees(config)
    raw = yaml.safe_load(DEFAULT.read_text())
    # stated, not left to defaults: the file is what the README's dry run shows a reader
    assert raw["parallelism"] == SUPER3.sft_parallelism.as_config()
    assert {k: raw["train"][k] for k in ("train_iters", "global_batch_size", "micro_batch_size")} == {
        k: _recipe_defaults()["train"][k] for k in ("train_iters", "global_batch_size", "micro_batch_size")
    }


@pytest.mark.parametrize("name", ["sftrun-super3.yaml"])
def test_the_flagship_sample_is_the_recipe(name: str) -> None:
    from sft_operator.api.sftrun import SFTRunSpec

    body = next(d for d in yaml.safe_load_all((SAMPLES / name).read_text()) if d and d["kind"] == "SFTRun")
    spec = SFTRunSpec.model_validate(body["spec"])
    _agrees(spec.train_config("/data", None))
    gbs, mbs = spec.train.global_batch_size, spec.train.micro_batch_size
    assert world_problem(SUPER3.sft_parallelism, spec.nodes, spec.gpus(), gbs, mbs) is None


def test_trainjob_sample_does_not_ask_for_padding_without_context_parallelism() -> None:
    """Padding to a multiple is needed only with CP (sft_train.config.pad_multiple); TP 4 with sequence
    parallelism and CP 1 needs none, so the sample must not tell its prep to set padSeqToMult: 4."""
    from sft_operator.api.sftrun import SFTRunSpec

    text = (SAMPLES / "sftrun-super3-trainjob.yaml").read_text()
    body = next(d for d in yaml.safe_load_all(text) if d and d["kind"] == "SFTRun")
    spec = SFTRunSpec.model_validate(body["spec"])
    assert spec.seq_multiple() == 1
    assert "padSeqToMult: 4" not in text and "must set padSeqToMult" not in text


def _dry(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["--dry-run", "--config", str(DEFAULT), *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_dry_run_of_default_yaml_prints_a_world_that_holds_ep16(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _dry(capsys)
    assert code == 0
    report = yaml.safe_load(out)
    argv = shlex.split(report["torchrun"])
    assert "--nnodes=2" in argv and "--nproc-per-node=8" in argv
    assert report["parallelism"]["expert_parallel_size"] == 16
    assert report["parallelism"]["gpus"] == 16 and report["parallelism"]["data_parallel_size"] == 2
    overrides = report["megatron_bridge"]["overrides"]
    assert "model.tensor_model_parallel_size=8" in overrides
    assert "model.expert_model_parallel_size=16" in overrides


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--nnodes", "1"], ["expert (16)", "does not divide the 8 GPUs", "16 GPUs (2 nodes of 8)"]),
        (["--nnodes", "2", "parallelism.tensor_parallel_size=3"], ["tensor (3)", "divide the 16 GPUs"]),
        (["train.global_batch_size=3"], ["global_batch_size 3", "data-parallel size 2", "multiple of 2"]),
        (["--nnodes", "4", "train.global_batch_size=6"], ["global_batch_size 6", "data-parallel size 4"]),
        (
            [
                "parallelism.tensor_parallel_size=8",
                "parallelism.expert_parallel_size=16",
                "--nproc-per-node",
                "4",
            ],
            ["--nnodes × --nproc-per-node"],
        ),
    ],
)
def test_dry_run_refuses_a_world_the_parallelism_cannot_fit(
    capsys: pytest.CaptureFixture[str], argv: list[str], words: list[str]
) -> None:
    code, out, err = _dry(capsys, *argv)
    if "--nproc-per-node" in argv and "--nnodes" not in argv:  # without --nnodes it picks enough nodes
        assert code == 0 and "--nnodes=4" in yaml.safe_load(out)["torchrun"]
        assert main(["--dry-run", "--config", str(DEFAULT), *argv, "--nnodes", "3"]) == 2
        err = capsys.readouterr().err
    else:
        assert code == 2, out
    assert "Traceback" not in err
    for word in words:
        assert word in err, err


def test_tiny_yaml_names_the_outputs_the_demo_leaves() -> None:
    """config/tiny.yaml trains on what `make demo` wrote: its volume is <output-dir>/data, the
    pipeline's /data (manifests/samples/pipeline-local.yaml)."""
    from sft_operator.ctl import demo

    tiny = yaml.safe_load(Path(str(resources.files("sft_train") / "config" / "tiny.yaml")).read_text())
    docs = {d["kind"]: d for d in yaml.safe_load_all(demo.SAMPLE.read_text()) if d}
    volume = Path(demo.parse_args([]).output_dir) / "data"

    def on_volume(path: str) -> str:
        return "./" + str(volume / Path(path).relative_to("/data"))

    assert tiny["data"]["path"] == on_volume(docs["SFTDataPrep"]["spec"]["outputDir"])
    assert tiny["model"]["pretrained_checkpoint"] == on_volume(
        docs["SFTRun"]["spec"]["model"]["pretrainedCheckpoint"]
    )
