"""Inputs that cannot train this model are refused before the first iteration (``sft_train.prechecks``).

Each case runs ``sft-train`` as a user does (the CLI's ``main``) on data or checkpoints that are wrong the
way they go wrong in practice, and checks: exit 2, one ``error:`` line naming both sides, no traceback,
the reason in the termination message, and that no weights were loaded (the loader is replaced by one
that fails the test), i.e. no model or GPU time was spent.
"""

from __future__ import annotations

import json
import os
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from trainfixtures import (
    PACK,
    Conversation,
    build_tiny_llama,
    hf_config,
    pack,
    random_conversation,
    write_config,
    write_prep_output,
    write_shard,
)

from sft_train.cli import main
from sft_train.engines import hf_engine


def termination() -> dict[str, Any]:
    return json.loads(Path(os.environ["SFT_TERMINATION_LOG"]).read_text())


@pytest.fixture
def no_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading model weights fails the test: a pre-check must refuse first."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("model weights were loaded before the inputs were checked")

    monkeypatch.setattr(hf_engine, "load_base_model", refuse)


def refused(
    capsys: pytest.CaptureFixture[str], config: dict[str, Any], tmp_path: Path, *overrides: str
) -> tuple[str, dict[str, Any]]:
    """Run sft-train; assert exit 2, one error line, no traceback; return (the error line, message)."""
    path = write_config(tmp_path / "run.yaml", config)
    code = main(["--config", str(path), *overrides])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    message = termination()
    assert message["status"] == "failed"
    return lines[0], message


def conversations(n: int = 40, seed: int = 0) -> list[Conversation]:
    rng = np.random.default_rng(seed)
    return [random_conversation(rng) for _ in range(n)]


# --------------------------------------------------------------------------- vocabulary


def test_token_ids_past_the_models_vocabulary(
    tmp_path: Path, tiny_model: Path, capsys: pytest.CaptureFixture[str], no_weights: None
) -> None:
    """Data tokenized with a bigger tokenizer (ids up to 60) for a model of 48 tokens: before the fix an
    ``IndexError: index out of range in self`` in the embedding, exit 1."""
    convs = conversations()
    convs[5].tokens[2] = 60
    data = write_prep_output(tmp_path / "prep", pack(convs))
    line, message = refused(capsys, hf_config(data, tiny_model, tmp_path / "ck"), tmp_path)
    assert "token id 60 in" in line and "vocabulary of 48 tokens" in line
    assert str(tiny_model) in line and "re-run sft-prep with the model's own tokenizer" in line
    assert message["reason"] == "DataError"
    assert not (tmp_path / "ck").exists()


def test_a_tokenizer_bigger_than_the_model_is_refused(
    tmp_path: Path, tiny_model: Path, capsys: pytest.CaptureFixture[str], no_weights: None
) -> None:
    data = write_prep_output(tmp_path / "prep", pack(conversations()))
    meta = json.loads((data / "metadata.json").read_text())
    meta["tokenizer"] = {"model": "org/big-tokenizer", "vocab_size": 151_665}
    (data / "metadata.json").write_text(json.dumps(meta))
    line, message = refused(capsys, hf_config(data, tiny_model, None), tmp_path)
    assert "org/big-tokenizer, a vocabulary of 151665 tokens" in line and "the model has 48" in line
    assert message["reason"] == "DataError"


def test_megatron_engine_checks_the_recipe_models_vocabulary_before_finetune(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The megatron engine's path up to ``finetune()``, on the CPU: Megatron-Bridge's ConfigContainer is
    replaced by one whose model provider has ``vocab_size`` 32 (the field Megatron-Bridge's
    ``GPTModelProvider`` carries, from the Hugging Face config); the data's ids go up to 47."""
    from sft_train.engines import megatron_engine

    reached: list[str] = []

    def build_container(config: Any, plan: Any) -> Any:
        reached.append("container")
        return types.SimpleNamespace(model=types.SimpleNamespace(vocab_size=32))

    def imports(name: str) -> Any:
        reached.append(name)
        raise AssertionError(f"{name} imported: finetune() was reached")

    monkeypatch.setattr(megatron_engine, "build_container", build_container)
    monkeypatch.setattr(megatron_engine, "_import", imports)
    data = write_prep_output(tmp_path / "prep", pack(conversations()))
    (tmp_path / "base").mkdir()
    config = {
        "data": {"path": str(data)},
        "model": {"pretrained_checkpoint": str(tmp_path / "base")},
        "checkpoint": {"save": str(tmp_path / "ck")},
    }
    line, message = refused(capsys, config, tmp_path)
    assert reached == ["container"]
    assert "outside the model's vocabulary of 32 tokens" in line and "nemotron_3_super" in line
    assert message["reason"] == "DataError"


# --------------------------------------------------------------------------- shards


def _train_then(tmp_path: Path, tiny_model: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, Path]:
    """A finished run with validation; returns (data dir, config path)."""
    rows = pack(conversations())
    data = write_prep_output(tmp_path / "prep", rows, pack(conversations(8, seed=1)))
    path = write_config(tmp_path / "run.yaml", hf_config(data, tiny_model, tmp_path / "ck"))
    assert main(["--config", str(path)]) == 0
    assert "validation loss" in capsys.readouterr().out
    return data, path


def test_a_corrupt_valid_shard_fails_before_training_and_on_a_rerun(
    tmp_path: Path, tiny_model: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before the fix the whole run trained, then failed on validation; the rerun "succeeded" without
    validating (nothing left to train, so nothing evaluated)."""
    data, path = _train_then(tmp_path, tiny_model, capsys)
    valid = next((data / "splits" / "valid").glob("*.parquet"))
    valid.write_bytes(valid.read_bytes()[: valid.stat().st_size // 2])  # a copy cut short
    line, message = refused(capsys, yaml.safe_load(path.read_text()), tmp_path)
    assert f"{valid} cannot be read as Parquet" in line and "force: true" in line
    assert message["reason"] == "DataError"
    # a fresh run on the same data trains nothing at all
    monkeypatch.setattr(hf_engine, "load_base_model", _refuse)
    refused(capsys, hf_config(data, tiny_model, tmp_path / "fresh"), tmp_path)
    assert not (tmp_path / "fresh").exists()


def _refuse(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("model weights were loaded before the inputs were checked")


def test_an_empty_valid_shard_fails_before_training(
    tmp_path: Path, tiny_model: Path, capsys: pytest.CaptureFixture[str], no_weights: None
) -> None:
    data = write_prep_output(tmp_path / "prep", pack(conversations()), pack(conversations(8, seed=1)))
    valid = next((data / "splits" / "valid").glob("*.parquet"))
    write_shard(valid, [])  # a shard replaced by a zero-row file (sft-prep never writes one)
    line, message = refused(capsys, hf_config(data, tiny_model, tmp_path / "ck"), tmp_path)
    assert f"{valid} holds no rows" in line and message["reason"] == "DataError"
    assert not (tmp_path / "ck").exists()


def test_an_unreadable_train_shard_is_named(
    tmp_path: Path, tiny_model: Path, capsys: pytest.CaptureFixture[str], no_weights: None
) -> None:
    data = write_prep_output(tmp_path / "prep", pack(conversations()))
    shard = data / "splits" / "train" / "shard_000001.parquet"
    shard.write_bytes(b"not parquet at all" * 10)
    line, message = refused(capsys, hf_config(data, tiny_model, None), tmp_path)
    assert f"{shard} cannot be read as Parquet" in line and message["reason"] == "DataError"


# --------------------------------------------------------------------------- context and checkpoint kind


def test_pack_size_longer_than_the_models_context(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_weights: None
) -> None:
    short = build_tiny_llama(tmp_path / "short", max_positions=32)
    data = write_prep_output(tmp_path / "prep", pack(conversations()))
    line, message = refused(capsys, hf_config(data, short, None), tmp_path)
    assert "at most 32 positions (max_position_embeddings of model.pretrained_checkpoint" in line
    assert f"bins of {PACK} tokens" in line and "pack_size <= 33" in line
    assert message["reason"] == "PackSizeMismatch"


@pytest.mark.parametrize("resume", ["auto", "force"])
@pytest.mark.parametrize(("first", "then"), [(None, "lora"), ("lora", None)])
def test_peft_against_the_kind_of_the_checkpoint_to_resume(
    tmp_path: Path,
    tiny_model: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    first: str | None,
    then: str | None,
    resume: str,
) -> None:
    """A LoRA run on a full run's location died on ``adapter_config.json`` with a traceback (and a full
    run on a LoRA run's location on a missing ``config.json``). The ledger's drift guard refuses it
    first (``auto``); with ``checkpoint.resume: force`` the guard steps aside and the pre-check on the
    checkpoint's kind still refuses what cannot be loaded."""
    data = write_prep_output(tmp_path / "prep", pack(conversations()))
    config = hf_config(data, tiny_model, tmp_path / "ck", peft=first, **{"train.exit_interval": 3})
    assert main(["--config", str(write_config(tmp_path / "a.yaml", config))]) == 0
    capsys.readouterr()
    monkeypatch.setattr(hf_engine, "load_base_model", _refuse)
    config["peft"] = then
    config["checkpoint"]["resume"] = resume
    line, message = refused(capsys, config, tmp_path)
    where = (
        "checkpoint.save " + str(tmp_path / "ck")
        if resume == "auto"
        else str(tmp_path / "ck" / "iter_0000003")
    )
    assert where in line and "peft" in line
    assert message["reason"] == "CheckpointMismatch"


def test_an_adapter_as_the_pretrained_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_weights: None
) -> None:
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "org/base-7b"}))
    data = write_prep_output(tmp_path / "prep", pack(conversations()))
    line, message = refused(capsys, hf_config(data, adapter, None), tmp_path)
    assert "is a LoRA adapter" in line and "org/base-7b" in line
    assert message["reason"] == "CheckpointMismatch"


def test_megatron_resume_of_a_lora_checkpoint_by_a_full_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Megatron-Bridge writes its ConfigContainer into ``iter_N/run_config.yaml`` (``peft: null`` for
    full SFT, the LoRA dataclass's fields with ``_target_`` for LoRA) and the iteration into the tracker."""
    from sft_train.engines import megatron_engine

    monkeypatch.setattr(
        megatron_engine,
        "build_container",
        lambda config, plan: types.SimpleNamespace(model=types.SimpleNamespace(vocab_size=48)),
    )
    monkeypatch.setattr(megatron_engine, "_import", _refuse)
    ck = tmp_path / "ck"
    (ck / "iter_0000005").mkdir(parents=True)
    (ck / "latest_checkpointed_iteration.txt").write_text("5")
    (ck / "latest_train_state.pt").write_bytes(b"state")
    (ck / "iter_0000005" / "run_config.yaml").write_text(
        "model:\n  seq_length: 64\npeft:\n  _target_: megatron.bridge.peft.lora.LoRA\n  dim: 32\n"
    )
    (tmp_path / "base").mkdir()
    data = write_prep_output(tmp_path / "prep", pack(conversations()))
    config = {
        "data": {"path": str(data)},
        "model": {"pretrained_checkpoint": str(tmp_path / "base")},
        "checkpoint": {"save": str(ck)},
    }
    line, message = refused(capsys, config, tmp_path)
    assert "full SFT" in line and "written by a LoRA run" in line
    assert message["reason"] == "CheckpointMismatch"


def test_megatron_pretrained_checkpoint_of_a_lora_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from sft_train.engines import megatron_engine

    monkeypatch.setattr(
        megatron_engine,
        "build_container",
        lambda config, plan: types.SimpleNamespace(model=types.SimpleNamespace(vocab_size=48)),
    )
    monkeypatch.setattr(megatron_engine, "_import", _refuse)
    base = tmp_path / "lora-run"
    (base / "iter_0000100").mkdir(parents=True)
    (base / "latest_checkpointed_iteration.txt").write_text("100")
    lora = "peft:\n  _target_: megatron.bridge.peft.lora.LoRA\n"
    (base / "iter_0000100" / "run_config.yaml").write_text(lora)
    data = write_prep_output(tmp_path / "prep", pack(conversations()))
    config = {
        "data": {"path": str(data)},
        "model": {"pretrained_checkpoint": str(base)},
        "checkpoint": {"save": str(tmp_path / "ck")},
    }
    line, message = refused(capsys, config, tmp_path)
    assert f"model.pretrained_checkpoint {base} was written by a LoRA run" in line
    assert message["reason"] == "CheckpointMismatch"


# --------------------------------------------------------------------------- loss mask


def _masked(conv: Conversation, value: int) -> Conversation:
    return Conversation(conv.tokens, np.full_like(conv.assistant, value))


@pytest.mark.parametrize("from_metadata", [False, True])
@pytest.mark.parametrize(("value", "words"), [(0, "trains no token"), (1, "trains 100.0% of the labels")])
def test_a_mask_that_trains_nothing_or_everything(
    tmp_path: Path,
    tiny_model: Path,
    capsys: pytest.CaptureFixture[str],
    no_weights: None,
    value: int,
    words: str,
    from_metadata: bool,
) -> None:
    """All-0: a template that marked no assistant turn. All-1: a template that marks every token (the
    Megatron-Bridge pitfall); sft-prep rolls it, so every label but each sequence's first is trained.
    Counted from the shards, or taken from metadata.json's ``splits.train`` as sft-prep writes it."""
    convs = [_masked(c, value) for c in conversations()]
    data = write_prep_output(tmp_path / "prep", pack(convs))
    if from_metadata:
        tokens = sum(len(c.tokens) for c in convs)
        trained = 0 if value == 0 else tokens - len(convs)
        meta = json.loads((data / "metadata.json").read_text())
        meta["splits"] = {"train": {"tokens": tokens, "sequences": len(convs), "trainable_tokens": trained}}
        (data / "metadata.json").write_text(json.dumps(meta))
    line, message = refused(capsys, hf_config(data, tiny_model, None), tmp_path)
    assert words in line and str(data / "splits" / "train") in line and message["reason"] == "DataError"
    assert ("data.allow_full_loss_mask: true" in line) == (value == 1)


def test_a_full_mask_trains_when_the_spec_says_it_is_meant(
    tmp_path: Path, tiny_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    convs = [_masked(c, 1) for c in conversations()]
    data = write_prep_output(tmp_path / "prep", pack(convs))
    config = hf_config(data, tiny_model, None, **{"data.allow_full_loss_mask": True, "train.train_iters": 2})
    assert main(["--config", str(write_config(tmp_path / "run.yaml", config))]) == 0
    assert "training finished: iteration 2" in capsys.readouterr().out


def test_a_real_chat_mask_passes(tmp_path: Path) -> None:
    """One untrained role-header label per sequence is enough: a long answer after a short prompt is
    ordinary SFT data (reasoning traces), not a template that marks everything."""
    from sft_train.config import TrainConfig
    from sft_train.packed_data import inspect_data
    from sft_train.prechecks import ModelFacts, run

    rng = np.random.default_rng(3)
    convs = []
    for _ in range(20):
        tokens = rng.integers(1, 40, size=60).astype(np.int32)
        assistant = np.ones(60, dtype=np.uint8)
        assistant[:3] = 0  # "<|im_start|>", "user", "\n": the first is no label, two labels untrained
        convs.append(Conversation(tokens, assistant))
    data = write_prep_output(tmp_path / "prep", pack(convs))
    config = TrainConfig.model_validate({"engine": "hf", "data": {"path": str(data)}})
    facts = run(config, inspect_data(str(data)), ModelFacts(source="m", vocab_size=48, context=64))
    assert facts.mask is not None and facts.mask.trained == 20 * 57 and facts.rows["train"] > 0


def test_the_sftrun_spec_carries_the_switch_into_the_trainer_config() -> None:
    """``spec.data.allowFullLossMask`` of an SFTRun reaches the ConfigMap's ``data.allow_full_loss_mask``."""
    from sft_operator.api.sftrun import SFTRunSpec

    for value in (True, False):
        spec = SFTRunSpec.model_validate(
            {
                "data": {"uri": "s3://bkt/prep", "allowFullLossMask": value},
                "model": {"pretrainedCheckpoint": "s3://bkt/base"},
                "train": {"globalBatchSize": 8},
                "checkpoint": {"save": "s3://bkt/ck"},
                "parallelism": {"tensorParallelSize": 1, "expertParallelSize": 1},  # fits 1 × 8 GPUs
            }
        )
        assert spec.train_config("s3://bkt/prep", None).data.allow_full_loss_mask is value
