"""Our packed Parquet and our megatron plan against Megatron-Bridge 0.6.2's own code, on the CPU.

Runs in ``make test-megatron`` (a Python 3.12 venv, ``.venv-mb``, with megatron-bridge 0.6.2 and
megatron-core 0.19.2 from PyPI); skips elsewhere. What is Megatron-Bridge's and what is shimmed is in
``mb_shim``'s docstring; the shims, in short: (1) the package ``__init__`` files of
``megatron.bridge``, ``.data``, ``.data.datasets``, ``.data.builders``, ``.training``,
``.training.tokenizers``, ``.utils``, ``.models``, ``.models.conversion``, ``.peft``, ``.recipes``
are kept from running (they import AutoBridge and every model bridge); (2) the names those
``__init__`` files would re-export are taken from the real submodules; (3) a ``transformer_engine``
placeholder exists only while ``megatron.bridge.peft.lora`` is imported (its LoRA layers name
``te.ops.*`` in signatures); nothing calls them. The dataset (``GPTSFTPackedParquetDataset``), the
builder (``GPTSFTDatasetBuilder``), the collate, ``PackedSequenceSpecs``, the tokenizer,
``ConfigContainer`` and the OmegaConf/Hydra override helpers are Megatron-Bridge's, unmodified.

The data is what our sft-prep writes for the bundled chats (train/valid/test); the CP 2 data is the
same run with ``pad_seq_to_mult: 4``.
"""

from __future__ import annotations

import ast
import dataclasses
import errno
import inspect
import shutil
import signal
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import mb_shim
import numpy as np
import pytest

from conftest import PACK, SAMPLES, read_only
from sft_common.config import validate
from sft_train.config import TrainConfig
from sft_train.engines import megatron_engine
from sft_train.engines.hf_batch import IGNORE, collate
from sft_train.engines.megatron_plan import MEGATRON_BRIDGE_VERSION, RECIPES, build_plan
from sft_train.errors import InvalidOverride
from sft_train.packed_data import PackedSplit, inspect_data, split_row

pytestmark = [
    pytest.mark.megatron,
    pytest.mark.skipif(
        not mb_shim.installed(),
        reason=f"needs Megatron-Bridge {MEGATRON_BRIDGE_VERSION} (Python 3.12): run `make test-megatron`",
    ),
]


def test_the_pinned_version_is_installed() -> None:
    from importlib import metadata

    assert metadata.version("megatron-bridge") == MEGATRON_BRIDGE_VERSION


def _config(data: Path, tmp_path: Path, **extra: Any) -> TrainConfig:
    raw: dict[str, Any] = {
        "data": {"path": str(data)},
        "model": {"pretrained_checkpoint": str(tmp_path / "base")},
        "checkpoint": {"save": str(tmp_path / "ckpt")},
        "parallelism": {"tensor_parallel_size": 1, "sequence_parallel": False},
    }
    for key, value in extra.items():
        raw.setdefault(key, {}).update(value) if isinstance(value, dict) else raw.__setitem__(key, value)
    return validate(TrainConfig, raw)


def _build(mb: SimpleNamespace, tokenizer: Any, config: TrainConfig, **spec_changes: Any) -> list[Any]:
    """Our plan's dataset spec → our engine's GPTSFTDatasetConfig → Megatron-Bridge's builder."""
    plan = build_plan(config, inspect_data(config.data.path))
    spec = dict(plan.dataset)
    spec["packed_sequence_specs"] = {**spec["packed_sequence_specs"], **spec_changes}
    dataset_config = megatron_engine.build_dataset_config(spec)
    assert isinstance(dataset_config, mb.builders.GPTSFTDatasetConfig)
    return mb.builders.GPTSFTDatasetBuilder(config=dataset_config, tokenizer=tokenizer).build()


def _test_split(mb: SimpleNamespace, tokenizer: Any, config: TrainConfig) -> Any:
    """The test shards through the builder's own split function, configured as for train/valid."""
    info = inspect_data(config.data.path)
    spec = build_plan(config, info).dataset["packed_sequence_specs"]
    return mb.builders.build_gpt_sft_split(
        info.split_dir("test"),
        tokenizer=tokenizer,
        seq_length=info.pack_size,
        memmap_workers=1,
        seed=config.train.seed,
        packed_sequence_size=info.pack_size,
        pad_seq_to_mult=spec["pad_seq_to_mult"],
        is_test=True,
    )


def _check_rows(dataset: Any, shards: list[str], eos: int, multiple: int) -> int:
    """Every row: Megatron-Bridge's collate equals ours (tokens, labels, loss mask, positions, cu_seqlens)."""
    assert dataset._parquet_paths == shards  # the same shards in the same order
    ours = PackedSplit(shards, PACK, eos_id=eos)
    assert len(dataset) == len(ours)
    trained = 0
    for i in range(len(ours)):
        batch = dataset.collate_fn([dataset[i]])
        subs = split_row(*ours.row(i), eos_id=eos)
        n = sum(len(s.tokens) for s in subs)
        tokens, labels = batch["tokens"][0].numpy(), batch["labels"][0].numpy()
        mask, positions = batch["loss_mask"][0].numpy(), batch["position_ids"][0].numpy()
        assert tokens[:n].tolist() == np.concatenate([s.tokens for s in subs]).tolist(), f"row {i}"
        assert labels[:n].tolist() == np.concatenate([s.labels for s in subs]).tolist(), f"row {i}"
        assert mask[:n].tolist() == np.concatenate([s.loss_mask for s in subs]).tolist(), f"row {i}"
        assert positions[:n].tolist() == np.concatenate([s.positions for s in subs]).tolist(), f"row {i}"
        assert not mask[n:].any() and len(tokens) <= PACK
        # no trained label ever follows an eos token (Megatron-Bridge 0.6.2's collate rule)
        assert not mask[tokens == eos].any()
        lengths = [len(s.tokens) for s in subs]
        cuts = np.cumsum([0, *lengths]).tolist()
        if multiple == 1:
            assert batch["cu_seqlens_q"][0].tolist()[: len(cuts)] == cuts
            assert "cu_seqlens_q_padded" not in batch
        else:
            padded = batch["cu_seqlens_q_padded"][0].tolist()
            assert padded[: len(cuts)] == cuts
            assert all(length % multiple == 0 for length in lengths), f"row {i}: {lengths}"
            # the logical lengths end at each sub-sequence's last non-eos token: padding is not attended
            logical = batch["cu_seqlens_q"][0].tolist()
            for k, sub in enumerate(subs):
                real = np.flatnonzero(sub.tokens != eos)
                assert logical[k + 1] - logical[k] == (int(real[-1]) + 1 if real.size else 0)
        trained += int(mask.sum())
    return trained


@pytest.mark.parametrize("cp", [1, 2])
def test_every_row_of_every_split_through_the_builder_as_the_engine_configures_it(
    mb: SimpleNamespace,
    mb_tokenizer: Any,
    prep_output: Path,
    padded_output: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    cp: int,
) -> None:
    monkeypatch.setenv("SFT_SCRATCH", str(tmp_path / "scratch"))
    data = prep_output if cp == 1 else padded_output
    config = _config(data, tmp_path, parallelism={"context_parallel_size": cp})
    info = inspect_data(str(data))
    train_ds, valid_ds, test_ds = _build(mb, mb_tokenizer, config)
    eos = int(mb_tokenizer.eos_id)
    multiple = 1 if cp == 1 else 4
    assert type(train_ds).__name__ == "GPTSFTPackedParquetDataset"
    assert _check_rows(train_ds, info.shards["train"], eos, multiple) > 0
    assert _check_rows(valid_ds, info.shards["valid"], eos, multiple) > 0
    # do_test stays off: Megatron-Bridge would read {dataset_root}/test.jsonl, never our test shards
    assert test_ds is None
    assert _check_rows(_test_split(mb, mb_tokenizer, config), info.shards["test"], eos, multiple) > 0
    assert not (data / "packed").exists()  # nothing written under the data dir


def test_the_test_split_is_never_read_as_packed_data(
    mb: SimpleNamespace, mb_tokenizer: Any, prep_output: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Why do_test is off: with it on, this version looks for test.jsonl and ignores splits/test."""
    monkeypatch.setenv("SFT_SCRATCH", str(tmp_path / "scratch"))
    config = _config(prep_output, tmp_path)
    spec = dict(build_plan(config, inspect_data(str(prep_output))).dataset, do_test=True)
    builder = mb.builders.GPTSFTDatasetBuilder(
        config=megatron_engine.build_dataset_config(spec), tokenizer=mb_tokenizer
    )
    assert builder.test_path == prep_output / "test.jsonl"
    assert builder.build()[2] is None


def test_trained_labels_equal_the_hf_engines(
    mb: SimpleNamespace, mb_tokenizer: Any, prep_output: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hf engine's labels (``hf_batch.collate`` of ``PackedSplit`` with the model's eos) are
    exactly the labels Megatron-Bridge trains; without the eos rule they would not be."""
    from transformers import AutoTokenizer

    from sft_train.engines.hf_model import eos_token_id

    monkeypatch.setenv("SFT_SCRATCH", str(tmp_path / "scratch"))
    train_ds = _build(mb, mb_tokenizer, _config(prep_output, tmp_path))[0]
    model = SimpleNamespace(config=SimpleNamespace(eos_token_id=None))
    eos = eos_token_id(SAMPLES / "tokenizer", model)  # what the hf engine finds next to the weights
    assert eos == int(mb_tokenizer.eos_id)
    info = inspect_data(str(prep_output))
    ours, plain = PackedSplit(info.shards["train"], PACK, eos_id=eos), PackedSplit(info.shards["train"], PACK)
    hf_tok = AutoTokenizer.from_pretrained(str(SAMPLES / "tokenizer"))
    untrained_after_eos = 0
    for i in range(len(ours)):
        batch = train_ds.collate_fn([train_ds[i]])
        mb_trained = batch["labels"][0][batch["loss_mask"][0].bool()].tolist()
        hf = collate(ours.subsequences(i))
        assert hf.labels[hf.labels != IGNORE].tolist() == mb_trained, f"row {i}"
        untrained_after_eos += collate(plain.subsequences(i)).num_trained - hf.num_trained
        # trained labels are assistant turns: each trained run ends with <|im_end|>, none holds a prompt
        for sub in ours.subsequences(i):
            runs = np.split(sub.labels, np.flatnonzero(np.diff(sub.loss_mask) != 0) + 1)
            masks = np.split(sub.loss_mask, np.flatnonzero(np.diff(sub.loss_mask) != 0) + 1)
            for run, m in zip(runs, masks, strict=True):
                if m[0]:
                    text = hf_tok.decode(run.tolist())
                    assert text.endswith("<|im_end|>") and "<|im_start|>user" not in text
    assert untrained_after_eos > 0  # sft-prep marks the "\n" after <|im_end|>; Megatron-Bridge drops it


def test_a_read_only_data_dir_works(
    mb: SimpleNamespace, mb_tokenizer: Any, prep_output: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SFT_SCRATCH", str(tmp_path / "scratch"))
    data = tmp_path / "data"
    shutil.copytree(prep_output, data)
    config = _config(data, tmp_path)
    with read_only(data):
        train_ds, valid_ds, _ = _build(mb, mb_tokenizer, config)
        assert len(train_ds) and len(valid_ds)
        train_ds.collate_fn([train_ds[0]])
        # what the plan fixes: without packed_metadata_path the builder makes {dataset_root}/packed/…
        with pytest.raises(OSError) as info:
            _build(mb, mb_tokenizer, config, packed_metadata_path=None)
        assert info.value.errno in (errno.EROFS, errno.EACCES)
        train_ds.close()
        valid_ds.close()


def _full_plan(data: Path, tmp_path: Path, lora: bool) -> tuple[TrainConfig, Any]:
    """A config that makes the plan emit every key it can."""
    extra: dict[str, Any] = {
        "parallelism": {
            "tensor_parallel_size": 1,
            "pipeline_parallel_size": 1,
            "expert_parallel_size": 1,
            "expert_tensor_parallel_size": 1,
            "context_parallel_size": 1,
            "sequence_parallel": False,
        },
        "train": {"train_iters": 20, "global_batch_size": 4, "exit_interval": 10},
        "scheduler": {"lr_decay_iters": 20},
        "checkpoint": {"save_interval": 5},
        "logging": {"wandb_project": "sft", "wandb_entity": "team"},
    }
    if lora:
        extra["peft"] = {"dim": 8, "alpha": 16, "dropout": 0.1}
    config = _config(data, tmp_path, **extra)
    plan = build_plan(config, inspect_data(str(data)))
    stand_in = "mb_recipes.tiny_peft_config" if lora else "mb_recipes.tiny_sft_config"
    return config, dataclasses.replace(plan, recipe=stand_in)


@pytest.mark.parametrize("lora", [False, True])
def test_every_override_the_plan_emits_is_accepted_by_a_real_config_container(
    mb: SimpleNamespace, prep_output: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lora: bool
) -> None:
    """Built for real: Megatron-Bridge's common SFT/PEFT recipe (``mb_recipes``), then our engine's
    ``build_container`` with the plan's overrides through Megatron-Bridge's Hydra helpers."""
    monkeypatch.setenv("SFT_SCRATCH", str(tmp_path / "scratch"))
    config, plan = _full_plan(prep_output, tmp_path, lora)
    keys = {o.partition("=")[0] for o in plan.overrides}
    assert {"checkpoint.finetune", "mixed_precision", "logger.wandb_exp_name", "train.exit_interval"} <= keys
    cfg = megatron_engine.build_container(config, plan)
    assert isinstance(cfg, mb.config.ConfigContainer)
    assert cfg.model.seq_length == PACK and cfg.train.train_iters == 20 and cfg.train.exit_interval == 10
    assert cfg.checkpoint.finetune is True and cfg.checkpoint.pretrained_checkpoint == str(tmp_path / "base")
    assert cfg.mixed_precision == "bf16_mixed"
    # preemption: SIGTERM → finish the step, save, exit (megatron.training.config TrainingConfig)
    assert cfg.train.exit_signal_handler is True and cfg.train.exit_signal == signal.SIGTERM
    assert cfg.logger.wandb_exp_name == ("nemotron_3_super-lora" if lora else "nemotron_3_super-sft")
    assert cfg.optimizer.lr == config.lr and cfg.scheduler.lr_decay_iters == 20
    assert isinstance(cfg.dataset, mb.builders.GPTSFTDatasetConfig)
    if lora:
        assert (cfg.peft.dim, cfg.peft.alpha, cfg.peft.dropout) == (8, 16, 0.1)
        assert cfg.peft.target_modules == list(config.peft.target_modules)  # type: ignore[union-attr]
    else:
        assert cfg.peft is None


def test_lora_settings_cannot_be_hydra_overrides_in_this_version(
    mb: SimpleNamespace, prep_output: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Why the plan sets LoRA on the PEFT object: 0.6.2 leaves the (callable) LoRA out of the tree."""
    monkeypatch.setenv("SFT_SCRATCH", str(tmp_path / "scratch"))
    config, plan = _full_plan(prep_output, tmp_path, lora=True)
    with pytest.raises(InvalidOverride, match=r"peft\.dim"):
        megatron_engine.build_container(
            config, dataclasses.replace(plan, overrides=[*plan.overrides, "peft.dim=8"])
        )


def _source(module: str) -> Path:
    """The installed file of a ``megatron.bridge`` module (located, not imported: the recipe
    packages' ``__init__`` files and modules import AutoBridge)."""
    root = Path(sys.modules["megatron.bridge"].__path__[0])
    path = root.joinpath(*module.split(".")[2:]).with_suffix(".py")
    assert path.is_file(), f"Megatron-Bridge {MEGATRON_BRIDGE_VERSION} has no {module}"
    return path


def test_a_signal_saves_a_checkpoint_then_exits_zero_from_finetune() -> None:
    """What megatron_engine.stopped_by_signal relies on, in the installed training loop: with
    exit_signal_handler, a received signal saves (when checkpoint.save is set) and makes train() end
    through ``sys.exit(exit_code)``, exit_code staying 0 on that path."""
    tree = ast.parse(_source("megatron.bridge.training.train").read_text())
    funcs = {n.name: n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
    decide = ast.unparse(funcs["checkpoint_and_decide_exit"])
    assert "state.cfg.train.exit_signal_handler" in decide and "signals_received()" in decide
    branch = decide[decide.index("signals_received()") :]
    assert branch.index("save_checkpoint_and_time") < branch.index("return True")
    train = ast.unparse(funcs["train"])
    assert "exit_code = 0" in train and "sys.exit(exit_code)" in train


def _defines(module: str, function: str) -> inspect.Signature | None:
    """The signature of ``module.function`` as the installed file defines it."""
    tree = ast.parse(_source(module).read_text())
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == function:
            params = [
                inspect.Parameter(a.arg, inspect.Parameter.POSITIONAL_OR_KEYWORD) for a in node.args.args
            ]
            return inspect.Signature(params)
    return None


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_functions_exist_under_their_current_names(mb: SimpleNamespace, name: str) -> None:
    recipe = RECIPES[name]
    for target, takes_scheme in ((recipe.sft, False), (recipe.peft, True)):
        module, _, function = target.rpartition(".")
        signature = _defines(module, function)
        assert signature is not None, f"{target} is not defined (only an alias?) in {MEGATRON_BRIDGE_VERSION}"
        assert ("peft_scheme" in signature.parameters) == takes_scheme
    assert f'"{recipe.hf_model_id}"' in _source(recipe.sft.rpartition(".")[0]).read_text()
