"""TrainConfig: recipe defaults, shipped YAML files, and clear errors for bad input."""

from __future__ import annotations

import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest

from sft_common.config import ConfigError, load_config, validate
from sft_train.config import DEFAULT_LORA_TARGETS, TrainConfig


def shipped(name: str) -> Path:
    return Path(str(resources.files("sft_train") / "config" / name))


def test_recipe_defaults_full_sft() -> None:
    cfg = validate(TrainConfig, {"data": {"path": "/d"}})
    assert cfg.engine == "megatron"
    assert cfg.lr == 5e-6
    assert (cfg.optimizer.adam_beta1, cfg.optimizer.adam_beta2) == (0.9, 0.95)
    assert cfg.optimizer.weight_decay == 0.1
    assert cfg.scheduler.lr_decay_style == "cosine"
    assert cfg.scheduler.lr_warmup_iters == 50
    assert cfg.precision == "bf16"
    assert cfg.loss.calculate_per_token_loss is True
    assert cfg.loss.mtp_loss_scaling_factor == 0.3
    assert cfg.train.micro_batch_size == 1
    assert cfg.decay_iters == cfg.train.train_iters


def test_lora_defaults() -> None:
    cfg = validate(TrainConfig, {"data": {"path": "/d"}, "peft": {"type": "lora"}})
    assert cfg.lr == 1e-4
    assert cfg.peft is not None
    assert (cfg.peft.dim, cfg.peft.alpha, cfg.peft.dropout) == (32, 32, 0.0)
    assert cfg.peft.target_modules == list(DEFAULT_LORA_TARGETS)
    assert list(DEFAULT_LORA_TARGETS) == [
        "linear_qkv",
        "linear_proj",
        "linear_fc1",
        "linear_fc2",
        "in_proj",
        "out_proj",
    ]


@pytest.mark.parametrize(
    ("overrides", "peft", "lr"),
    [
        ([], False, 5e-6),
        (["peft=lora"], True, 1e-4),
        (["peft.type=lora"], True, 1e-4),
        (["peft=LoRA"], True, 1e-4),
        (["peft.type=lora", "peft.dim=16"], True, 1e-4),
        (["peft=lora", "optimizer.lr=2e-5"], True, 2e-5),
        (["optimizer.lr=1e-5"], False, 1e-5),
        (["peft=lora", "peft=null"], False, 5e-6),
        (["peft=none"], False, 5e-6),
    ],
)
def test_default_yaml_learning_rate_follows_the_mode(overrides: list[str], peft: bool, lr: float) -> None:
    """The shipped default.yaml must not pin the full-SFT rate: LoRA on it trains at the recipe's 1e-4."""
    from sft_train.engines.megatron_plan import mb_overrides

    cfg = load_config(TrainConfig, shipped("default.yaml"), overrides)
    assert (cfg.peft is not None) == peft and cfg.lr == lr
    assert f"optimizer.lr={lr!r}" in mb_overrides(cfg, 4096, None)
    if peft:
        assert cfg.peft is not None and cfg.peft.alpha == 32 and cfg.peft.target_modules


def test_peft_shorthand_rejects_unknown_schemes() -> None:
    with pytest.raises(ConfigError, match=r"peft: .*'qlora' is not a PEFT scheme; use 'lora'"):
        load_config(TrainConfig, shipped("default.yaml"), ["peft=qlora"])


def test_explicit_lr_wins_over_recipe_default() -> None:
    cfg = validate(TrainConfig, {"data": {"path": "/d"}, "peft": {}, "optimizer": {"lr": 3e-5}})
    assert cfg.lr == 3e-5


@pytest.mark.parametrize("name", ["default.yaml", "tiny.yaml"])
def test_shipped_configs_load(name: str) -> None:
    cfg = load_config(TrainConfig, shipped(name))
    assert cfg.data.path


def test_default_yaml_is_full_sft_on_megatron_and_tiny_is_hf_lora() -> None:
    default = load_config(TrainConfig, shipped("default.yaml"))
    tiny = load_config(TrainConfig, shipped("tiny.yaml"))
    assert default.engine == "megatron" and default.peft is None and default.lr == 5e-6
    assert tiny.engine == "hf" and tiny.precision == "fp32"


def test_camel_case_keys_as_in_the_cr_spec() -> None:
    cfg = validate(
        TrainConfig,
        {"data": {"path": "/d"}, "train": {"globalBatchSize": 8}, "parallelism": {"tensorParallelSize": 4}},
    )
    assert cfg.train.global_batch_size == 8
    assert cfg.parallelism.tensor_parallel_size == 4


def test_dotted_overrides(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("data: {path: /d}\n")
    cfg = load_config(TrainConfig, path, ["train.train_iters=10", "peft.type=lora", "optimizer.lr=2e-4"])
    assert cfg.train.train_iters == 10 and cfg.peft is not None and cfg.lr == 2e-4


def test_unknown_key_names_it_and_suggests() -> None:
    with pytest.raises(
        ConfigError, match=r"unknown key 'train.train_iter'.*did you mean 'train.train_iters'"
    ):
        validate(TrainConfig, {"data": {"path": "/d"}, "train": {"train_iter": 3}})


def test_micro_batch_size_must_be_one() -> None:
    with pytest.raises(ConfigError, match=r"train\.micro_batch_size"):
        validate(TrainConfig, {"data": {"path": "/d"}, "train": {"micro_batch_size": 2}})


def test_fp32_is_for_the_hf_engine_only() -> None:
    with pytest.raises(ConfigError, match="precision: engine megatron"):
        validate(TrainConfig, {"data": {"path": "/d"}, "precision": "fp32"})
    assert (
        validate(TrainConfig, {"engine": "hf", "data": {"path": "/d"}, "precision": "fp32"}).precision
        == "fp32"
    )


def test_megatron_overrides_are_rejected_on_the_hf_engine() -> None:
    with pytest.raises(ConfigError, match="engine megatron only"):
        validate(TrainConfig, {"engine": "hf", "data": {"path": "/d"}, "overrides": ["train.train_iters=3"]})


def test_override_without_equals_is_rejected() -> None:
    with pytest.raises(ConfigError, match="not of the form key=value"):
        validate(TrainConfig, {"data": {"path": "/d"}, "overrides": ["train.train_iters"]})


def test_data_path_is_required() -> None:
    with pytest.raises(ConfigError, match="data"):
        validate(TrainConfig, {})


def test_field_descriptions_for_kubectl_explain() -> None:
    schema = TrainConfig.model_json_schema()
    assert "pack size" in schema["$defs"]["ModelSpec"]["properties"]["seqLength"]["description"]
    assert "WANDB_API_KEY" in schema["$defs"]["LoggingSpec"]["description"]


def test_config_module_stays_light() -> None:
    """The operator imports the model to build its CRD: no torch, pyarrow or transformers."""
    code = (
        "import sys, sft_train.config; "
        "heavy = [m for m in ('torch', 'pyarrow', 'transformers', 'numpy', 'megatron') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
