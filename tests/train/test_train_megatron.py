"""The megatron engine without Megatron-Bridge: the pure plan, and the wiring around MB's own helpers.

Megatron-Bridge needs Python 3.12 + CUDA, so the wiring tests install small stand-ins for the few
Megatron-Bridge functions the engine calls (recipe, OmegaConf dotlist helpers, dataset configs);
they check the order of application and that Megatron-Bridge's error text reaches the user.
``test_train_gpu.py`` runs the real thing where a GPU and Megatron-Bridge exist.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from sft_common.config import validate
from sft_train.config import TrainConfig
from sft_train.engines import megatron_engine
from sft_train.engines.megatron_plan import build_plan, complete_checkpoint, format_value, recipe_target
from sft_train.errors import InvalidOverride, TrainInputError
from sft_train.packed_data import inspect_data


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "null"),
        (True, "true"),
        (5e-6, "5e-06"),
        (32, "32"),
        (["linear_qkv", "in_proj"], "[linear_qkv,in_proj]"),
        ("s3://bucket/ckpt", "s3://bucket/ckpt"),
        ("/path with space", "'/path with space'"),
        ("it's", "'it\\'s'"),
        ("null", "'null'"),
    ],
)
def test_hydra_value_formatting(value: Any, text: str) -> None:
    assert format_value(value) == text


def test_recipe_names() -> None:
    """Megatron-Bridge 0.6.2's current functions, not the ``nemotronh.nemotron_3_super.*_config``
    compatibility aliases (``tests/megatron/`` checks they exist in the pinned version)."""
    h100 = "megatron.bridge.recipes.nemotronh.h100.nemotron_3_super.nemotron_3_super"
    assert recipe_target("nemotron_3_super", peft=False) == f"{h100}_sft_16gpu_h100_bf16_config"
    assert recipe_target("nemotron_3_super", peft=True) == f"{h100}_peft_1gpu_h100_bf16_config"
    assert recipe_target("my.pkg.tiny_recipe", peft=True) == "my.pkg.tiny_recipe"
    with pytest.raises(TrainInputError, match=r"unknown recipe 'nemotron_3_nano'.*nemotron_3_super"):
        recipe_target("nemotron_3_nano", peft=False)


def test_completeness_marker(tmp_path: Path) -> None:
    assert not complete_checkpoint(str(tmp_path))
    assert not complete_checkpoint(None)
    (tmp_path / "latest_train_state.pt").write_bytes(b"x")
    assert complete_checkpoint(str(tmp_path))


# -- stand-ins for the Megatron-Bridge functions the engine calls --------------------------------


class OverridesError(Exception):
    """Like Megatron-Bridge's: raised by parse_hydra_overrides for a key the config lacks."""


@dataclass
class Section:
    values: dict[str, Any] = field(default_factory=dict)


@dataclass
class Container:
    sections: dict[str, dict[str, Any]]
    dataset: Any = None


def _install_fake_mb(monkeypatch: pytest.MonkeyPatch, calls: list[Any]) -> None:
    def recipe(**kwargs: Any) -> Container:
        calls.append(("recipe", kwargs))
        return Container(
            {
                "model": {
                    "seq_length": 4096,
                    "calculate_per_token_loss": False,
                    "mtp_loss_scaling_factor": 0.1,
                },
                # Megatron-Bridge's TrainingConfig (megatron.training.config) has exit_signal_handler
                "train": {
                    "train_iters": 1,
                    "global_batch_size": 1,
                    "micro_batch_size": 1,
                    "exit_signal_handler": False,
                },
                "optimizer": dict.fromkeys(
                    ["lr", "min_lr", "adam_beta1", "adam_beta2", "adam_eps", "weight_decay", "clip_grad"], 0
                ),
                "scheduler": dict.fromkeys(
                    [
                        "lr_warmup_iters",
                        "lr_decay_style",
                        "lr_decay_iters",
                        "start_weight_decay",
                        "end_weight_decay",
                    ]
                ),
                "rng": {"seed": 0},
                "checkpoint": dict.fromkeys(
                    ["pretrained_checkpoint", "finetune", "save", "save_interval", "load"]
                ),
                "logger": {"log_interval": 1},
                "mixed_precision": "bf16_mixed",
            }
        )

    def create_omegaconf_dict_config(cfg: Container) -> tuple[dict[str, Any], dict[str, Any]]:
        merged = {k: dict(v) if isinstance(v, dict) else v for k, v in cfg.sections.items()}
        merged["dataset"] = dict(cfg.dataset.kwargs)
        return merged, {"excluded": True}

    def parse_hydra_overrides(merged: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
        calls.append(("overrides", list(overrides)))
        for text in overrides:
            key, _, value = text.partition("=")
            section, _, name = key.partition(".")
            if not name and section in merged and not isinstance(merged[section], dict):
                merged[section] = value
                continue
            if section not in merged or not isinstance(merged[section], dict) or name not in merged[section]:
                raise OverridesError(f"Failed to parse Hydra overrides: Could not override '{key}'.")
            merged[section][name] = value
        return merged

    def apply_overrides(cfg: Container, merged: dict[str, Any], excluded: dict[str, Any]) -> None:
        calls.append(("apply", excluded))
        cfg.sections = {k: v for k, v in merged.items() if k != "dataset"}

    class Config:
        def __init__(self, **kwargs: Any) -> None:
            self.kwargs = kwargs

    modules = {
        "fake_recipes": types.SimpleNamespace(tiny=recipe),
        "omegaconf": types.SimpleNamespace(
            OmegaConf=types.SimpleNamespace(to_container=lambda c, resolve: c)
        ),
        "megatron.bridge.training.utils.omegaconf_utils": types.SimpleNamespace(
            create_omegaconf_dict_config=create_omegaconf_dict_config,
            parse_hydra_overrides=parse_hydra_overrides,
            apply_overrides=apply_overrides,
        ),
        "megatron.bridge.data.builders": types.SimpleNamespace(GPTSFTDatasetConfig=Config),
        "megatron.bridge.data.packing": types.SimpleNamespace(PackedSequenceSpecs=Config),
    }

    def fake_import(name: str) -> Any:
        if name in modules:
            return modules[name]
        raise ImportError(f"No module named '{name}'")

    monkeypatch.setattr(megatron_engine, "_import", fake_import)
    monkeypatch.setattr(megatron_engine.importlib, "import_module", fake_import)
    monkeypatch.setitem(sys.modules, "fake_recipes", modules["fake_recipes"])  # type: ignore[arg-type]


def _plan(make_data: Callable[..., Path], overrides: list[str]) -> tuple[TrainConfig, Any]:
    data = make_data()
    config = validate(
        TrainConfig,
        {"data": {"path": str(data)}, "model": {"recipe": "fake_recipes.tiny"}, "overrides": overrides},
    )
    return config, build_plan(config, inspect_data(str(data)))


def test_container_is_recipe_then_ours_then_users(
    make_data: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[Any] = []
    _install_fake_mb(monkeypatch, calls)
    config, plan = _plan(make_data, ["train.train_iters=7"])
    cfg = megatron_engine.build_container(config, plan)
    assert [c[0] for c in calls] == ["recipe", "overrides", "overrides", "apply"]
    assert calls[1][1] == plan.overrides and calls[2][1] == ["train.train_iters=7"]
    assert cfg.sections["train"]["train_iters"] == "7"  # the user's override wins over ours (1700)
    assert cfg.sections["model"]["seq_length"] == "64"
    assert calls[3][1] == {"excluded": True}  # MB's excluded callables are handed back
    specs = cfg.dataset.kwargs["offline_packing_specs"].kwargs
    assert specs["packed_train_data_path"].endswith("/splits/train")


def test_unknown_override_key_surfaces_megatron_bridges_error(
    make_data: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    _install_fake_mb(monkeypatch, [])
    config, plan = _plan(make_data, ["train.not_a_key=1"])
    with pytest.raises(InvalidOverride) as info:
        megatron_engine.build_container(config, plan)
    assert "Could not override 'train.not_a_key'" in str(info.value)
    assert isinstance(info.value.__cause__, OverridesError)
    assert info.value.reason == "InvalidOverride"


def test_missing_megatron_bridge_is_a_clear_error() -> None:
    try:
        import megatron.bridge  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("Megatron-Bridge is installed here")
    with pytest.raises(megatron_engine.MegatronBridgeMissing, match="run it in the trainer image"):
        megatron_engine.resolve_recipe(
            "megatron.bridge.recipes.nemotronh.nemotron_3_super.nemotron_3_super_sft_config"
        )


def test_progress_callback_reports_megatron_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    """After each Megatron-Bridge step, rank 0 feeds iteration, loss, lr and tokens to our Progress."""
    import torch

    from sft_common.progress import Progress

    class Callback:  # Megatron-Bridge's base class has no-op event methods
        pass

    fake = {"megatron.bridge.training.callbacks": types.SimpleNamespace(Callback=Callback), "torch": torch}
    monkeypatch.setattr(megatron_engine, "_import", fake.__getitem__)
    config = validate(
        TrainConfig, {"data": {"path": "/d"}, "train": {"global_batch_size": 8, "train_iters": 10}}
    )
    progress = Progress("train", total=10, unit="iterations", rates=("tokens",), mode="off", owner=False)
    last: dict[str, Any] = {}
    callback = megatron_engine.progress_callback(config, 4096, progress, last)
    for step, loss in ((0, 2.5), (1, 2.25)):  # train_state.step before Megatron-Bridge increments it
        context = types.SimpleNamespace(
            state=types.SimpleNamespace(train_state=types.SimpleNamespace(step=step)),
            loss_dict={"lm loss": torch.tensor(loss)},
            optimizer=types.SimpleNamespace(param_groups=[{"lr": 1e-4 * (step + 1)}]),
        )
        callback.on_train_step_end(context)
    snapshot = progress.snapshot()
    assert snapshot["completed"] == 2 and snapshot["loss"] == 2.25 and snapshot["learningRate"] == 2e-4
    assert snapshot["tokens"] == 2 * 8 * 4096  # packed rows × pack size since this process started
    assert last == {"start": 0, "loss": 2.25, "step": 2}


# -- fixes found by running Megatron-Bridge 0.6.2's own code (tests/megatron/) ---------------------


def test_an_import_error_inside_megatron_bridge_is_not_reported_as_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A broken dependency inside an installed Megatron-Bridge (e.g. transformer_engine) must say so."""
    pkg = tmp_path / "brokenmb"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("import transformer_engine_that_is_not_there\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(megatron_engine.MegatronBridgeBroken, match="transformer_engine_that_is_not_there"):
        megatron_engine._import("brokenmb")
    monkeypatch.setitem(sys.modules, "megatron", None)  # not installed at all
    with pytest.raises(megatron_engine.MegatronBridgeMissing, match=r"needs Megatron-Bridge 0\.6\.2"):
        megatron_engine._import("megatron.bridge.training.finetune")


def test_a_missing_user_recipe_module_is_an_input_error() -> None:
    with pytest.raises(TrainInputError, match="no module no_such_recipes"):
        megatron_engine.resolve_recipe("no_such_recipes.tiny")


def _write_meta(data: Path, **extra: Any) -> None:
    import json

    meta = json.loads((data / "metadata.json").read_text())
    (data / "metadata.json").write_text(json.dumps({**meta, **extra}))


@pytest.mark.parametrize(
    ("parallelism", "packed", "ok"),
    [
        ({"context_parallel_size": 2, "tensor_parallel_size": 1}, 1, False),  # CP 2 needs 4
        ({"context_parallel_size": 2, "tensor_parallel_size": 1}, 4, True),
        ({"context_parallel_size": 2, "tensor_parallel_size": 1}, 8, True),  # a multiple of 4 fits too
        ({"context_parallel_size": 2, "tensor_parallel_size": 4, "sequence_parallel": True}, 4, False),
        ({"context_parallel_size": 2, "tensor_parallel_size": 4, "sequence_parallel": True}, 8, True),
        ({"tensor_parallel_size": 4, "sequence_parallel": True}, 1, True),  # no CP: nothing padded
    ],
)
def test_the_trainer_refuses_data_padded_for_another_parallelism(
    make_data: Callable[..., Path], tmp_path: Path, parallelism: dict[str, Any], packed: int, ok: bool
) -> None:
    from sft_train.engines.megatron_plan import pad_multiple_problem, required_pad_multiple
    from sft_train.errors import PadMultipleMismatch

    data = make_data()
    _write_meta(data, pad_seq_to_mult=packed)
    config = validate(
        TrainConfig,
        {
            "data": {"path": str(data)},
            "model": {"pretrained_checkpoint": str(tmp_path)},
            "parallelism": parallelism,
            "checkpoint": {"save": str(tmp_path / "ck")},
        },
    )
    info = inspect_data(str(data))
    problem = pad_multiple_problem(required_pad_multiple(config), info)
    assert (problem is None) == ok
    if not ok:
        assert problem is not None and "re-run sft-prep with pad_seq_to_mult:" in problem
        # the engine refuses before it imports anything of Megatron-Bridge
        with pytest.raises(PadMultipleMismatch, match="pad_seq_to_mult"):
            megatron_engine.train(config, info)


def test_recipe_defaults_decide_the_multiple_when_parallelism_is_unset(
    make_data: Callable[..., Path],
) -> None:
    from sft_train.engines.megatron_plan import required_pad_multiple

    # nemotron_3_super's full-SFT function: TP 8, SP, CP 1 → with CP 2 set: lcm(4, 16) = 16
    full = validate(TrainConfig, {"data": {"path": "/d"}, "parallelism": {"context_parallel_size": 2}})
    assert required_pad_multiple(full) == 16
    # its LoRA function: TP 1 → 2·CP
    lora = validate(
        TrainConfig, {"data": {"path": "/d"}, "peft": {}, "parallelism": {"context_parallel_size": 2}}
    )
    assert required_pad_multiple(lora) == 4


def test_finetune_only_when_starting_from_base_weights(
    make_data: Callable[..., Path], tmp_path: Path
) -> None:
    data = make_data()
    raw = {
        "data": {"path": str(data)},
        "model": {"pretrained_checkpoint": "/models/base"},
        "checkpoint": {"save": str(tmp_path / "ck")},
    }
    first = build_plan(validate(TrainConfig, raw), inspect_data(str(data)))
    assert "checkpoint.finetune=true" in first.overrides and first.resume_from is None
    (tmp_path / "ck").mkdir()
    (tmp_path / "ck" / "latest_train_state.pt").write_bytes(b"x")
    resumed = build_plan(validate(TrainConfig, raw), inspect_data(str(data)))
    # resuming keeps the saved iteration, optimizer and scheduler: finetune would reset them
    assert "checkpoint.finetune=false" in resumed.overrides and resumed.resume_from == str(tmp_path / "ck")


@pytest.mark.parametrize(
    ("engine", "value", "where"),
    [
        ("megatron", {}, "ck/hf"),  # on by default, as the recipe's convert_to_hf
        ("megatron", {"hf_export_enabled": False}, None),
        ("megatron", {"hf_export": "/exports/m"}, "/exports/m"),
        ("hf", {}, None),
        ("hf", {"hf_export_enabled": True}, "ck/hf"),
        ("hf", {"hf_export": "/exports/m"}, "/exports/m"),
    ],
)
def test_hf_export_location(tmp_path: Path, engine: str, value: dict[str, Any], where: str | None) -> None:
    raw: dict[str, Any] = {
        "engine": engine,
        "data": {"path": "/d"},
        "checkpoint": {"save": str(tmp_path / "ck")},
    }
    if engine == "hf":
        raw["precision"] = "fp32"
    raw["checkpoint"].update(value)
    location = validate(TrainConfig, raw).hf_export_location
    expected = where if where is None or where.startswith("/") else str(tmp_path / where)
    assert location == expected


def test_lora_settings_are_set_on_the_peft_object() -> None:
    @dataclass
    class LoRA:  # the fields of Megatron-Bridge 0.6.2's LoRA that we set
        dim: int = 8
        alpha: int = 16
        dropout: float = 0.0
        target_modules: list[str] = field(default_factory=list)

    cfg = types.SimpleNamespace(peft=LoRA())
    megatron_engine.apply_peft(cfg, {"dim": 32, "alpha": 32, "dropout": 0.1, "target_modules": ["in_proj"]})
    assert cfg.peft == LoRA(32, 32, 0.1, ["in_proj"])
    with pytest.raises(InvalidOverride, match="no field 'rank'"):
        megatron_engine.apply_peft(cfg, {"rank": 4})
    with pytest.raises(TrainInputError, match="no PEFT object"):
        megatron_engine.apply_peft(types.SimpleNamespace(peft=None), {"dim": 4})
