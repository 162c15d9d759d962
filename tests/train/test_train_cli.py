"""``sft-train`` as a user and the operator meet it: dry-run output, exit codes, termination messages."""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from trainfixtures import hf_config, write_config

from sft_train.cli import main


def termination() -> dict[str, Any]:
    return json.loads(Path(os.environ["SFT_TERMINATION_LOG"]).read_text())


def megatron_config(data: Path, tmp_path: Path, **extra: Any) -> Path:
    config: dict[str, Any] = {
        "data": {"path": str(data)},
        "model": {"pretrained_checkpoint": "/models/base-megatron"},
        "train": {"train_iters": 100, "global_batch_size": 16},
        "parallelism": {"tensor_parallel_size": 4, "expert_parallel_size": 8, "sequence_parallel": True},
        "checkpoint": {"save": str(tmp_path / "ckpt"), "save_interval": 50},
        "logging": {"wandb_project": "sft", "wandb_entity": "team"},
    }
    config.update(extra)
    return write_config(tmp_path / "run.yaml", config)


def dry_run(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    assert main(["--dry-run", *argv]) == 0
    return yaml.safe_load(capsys.readouterr().out)


def test_dry_run_full_sft(
    make_data: Callable[..., Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = make_data(valid=4)
    path = megatron_config(data, tmp_path)
    scratch = tmp_path / "scratch"
    monkeypatch.setenv("SFT_SCRATCH", str(scratch))
    report = dry_run(capsys, "--config", str(path), "--nproc-per-node", "8", "--nnodes", "2")
    mb = report["megatron_bridge"]
    assert mb["recipe"] == (
        "megatron.bridge.recipes.nemotronh.h100.nemotron_3_super.nemotron_3_super_sft_16gpu_h100_bf16_config"
    )
    assert mb["recipe_kwargs"] == {} and mb["peft"] is None
    assert mb["overrides"] == [
        "model.seq_length=64",
        "model.calculate_per_token_loss=true",
        "model.mtp_loss_scaling_factor=0.3",
        "model.tensor_model_parallel_size=4",
        "model.expert_model_parallel_size=8",
        "model.sequence_parallel=true",
        "train.train_iters=100",
        "train.global_batch_size=16",
        "train.micro_batch_size=1",
        "train.exit_signal_handler=true",  # SIGTERM: finish the step, save, exit (→ Preempted, 143)
        "optimizer.lr=5e-06",
        "optimizer.min_lr=0.0",
        "optimizer.adam_beta1=0.9",
        "optimizer.adam_beta2=0.95",
        "optimizer.adam_eps=1e-08",
        "optimizer.weight_decay=0.1",
        "optimizer.clip_grad=1.0",
        "scheduler.lr_warmup_iters=50",
        "scheduler.lr_decay_style=cosine",
        "scheduler.lr_decay_iters=100",
        "scheduler.start_weight_decay=0.1",
        "scheduler.end_weight_decay=0.1",
        "rng.seed=1234",
        "mixed_precision=bf16_mixed",  # the precision really used, shown in the dry run
        "checkpoint.pretrained_checkpoint=/models/base-megatron",
        "checkpoint.finetune=true",  # base weights only, from iteration 0 (nothing to resume yet)
        f"checkpoint.save={tmp_path / 'ckpt'}",
        "checkpoint.save_interval=50",
        "checkpoint.load=null",
        "logger.log_interval=10",
        "logger.wandb_project=sft",
        "logger.wandb_entity=team",
        "logger.wandb_exp_name=nemotron_3_super-sft",
    ]
    assert mb["user_overrides"] == []
    assert mb["dataset"] == {
        "dataset_root": str(data),
        "seq_length": 64,
        "seed": 1234,
        "packed_sequence_specs": {
            "packed_sequence_size": 64,
            "packed_train_data_path": f"{data}/splits/train",
            "packed_val_data_path": f"{data}/splits/valid",
            "packed_metadata_path": str(scratch / "64_metadata.jsonl"),  # not under the data dir
            "pad_seq_to_mult": 1,
        },
        "dataloader_type": "batch",
        "do_validation": True,
        "do_test": False,
    }
    assert report["torchrun"] == f"torchrun --nnodes=2 --nproc-per-node=8 -m sft_train --config {path}"
    assert report["data"] == {
        "path": str(data),
        "found": True,
        "pack_size": 64,
        "shards": {"train": 2, "valid": 1, "test": 0},
    }
    assert "warnings" not in report
    assert report["config"]["engine"] == "megatron"


def test_dry_run_lora(
    make_data: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = megatron_config(make_data(), tmp_path, peft={"type": "lora"})
    report = dry_run(capsys, "--config", str(path), "parallelism.context_parallel_size=2")
    mb = report["megatron_bridge"]
    assert mb["recipe"].endswith("h100.nemotron_3_super.nemotron_3_super_peft_1gpu_h100_bf16_config")
    assert mb["recipe_kwargs"] == {"peft_scheme": "lora"}
    assert "optimizer.lr=0.0001" in mb["overrides"]
    assert "model.context_parallel_size=2" in mb["overrides"]
    assert "logger.wandb_exp_name=nemotron_3_super-lora" in mb["overrides"]
    # Megatron-Bridge 0.6.2 keeps its (callable) LoRA object out of the override tree: set on it instead.
    assert not any(o.startswith("peft.") for o in mb["overrides"])
    assert mb["peft"] == {
        "dim": 32,
        "alpha": 32,
        "dropout": 0.0,
        "target_modules": ["linear_qkv", "linear_proj", "linear_fc1", "linear_fc2", "in_proj", "out_proj"],
    }
    # the multiple the data was padded with (this data: none); the trainer refuses it for CP 2
    assert mb["dataset"]["packed_sequence_specs"]["pad_seq_to_mult"] == 1
    assert mb["dataset"]["do_validation"] is False
    # CLI overrides of our config travel in the torchrun command too, so every rank resolves the same config.
    assert shlex.split(report["torchrun"])[-1] == "parallelism.context_parallel_size=2"


def test_user_overrides_pass_through_untouched(
    make_data: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    overrides = ["model.moe_router_dtype=fp32", "ddp.overlap_grad_reduce=false", "+model.extra='a b'"]
    path = megatron_config(make_data(), tmp_path, overrides=overrides)
    assert dry_run(capsys, "--config", str(path))["megatron_bridge"]["user_overrides"] == overrides


def test_dry_run_resumes_from_a_complete_megatron_checkpoint(
    make_data: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = megatron_config(make_data(), tmp_path)
    (tmp_path / "ckpt" / "iter_0000050").mkdir(parents=True)  # in progress: no tracker file yet
    assert "checkpoint.load=null" in dry_run(capsys, "--config", str(path))["megatron_bridge"]["overrides"]
    (tmp_path / "ckpt" / "latest_checkpointed_iteration.txt").write_text("50")
    mb = dry_run(capsys, "--config", str(path))["megatron_bridge"]
    assert f"checkpoint.load={tmp_path / 'ckpt'}" in mb["overrides"]
    assert mb["resume_from"] == str(tmp_path / "ckpt")


def test_dry_run_hf_engine(
    make_data: Callable[..., Path], tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path / "hf.yaml", hf_config(make_data(), tiny_model, tmp_path / "ck"))
    report = dry_run(capsys, "--config", str(path))
    assert "megatron_bridge" not in report
    assert report["hf"] == {"resume_from": None}
    assert report["torchrun"] == f"torchrun --nnodes=1 --nproc-per-node=1 -m sft_train --config {path}"


def test_train_hf_writes_summary_and_termination_message(
    make_data: Callable[..., Path], tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path / "hf.yaml", hf_config(make_data(), tiny_model, tmp_path / "ck"))
    assert main(["--config", str(path), "train.train_iters=4"]) == 0
    out = capsys.readouterr().out
    assert "training finished: iteration 4" in out
    assert f"checkpoint: {tmp_path / 'ck' / 'iter_0000004'}" in out
    message = termination()
    assert message["status"] == "succeeded"
    assert message["checkpoint"] == str(tmp_path / "ck" / "iter_0000004")
    assert message["lastIteration"] == 4
    assert isinstance(message["finalLoss"], float) and message["finalLoss"] > 0
    assert message["hfExport"] is None
    assert json.loads(out.splitlines()[-1])["event"] == "result"


def _fails(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, dict[str, Any]]:
    code = main(argv)
    return code, capsys.readouterr().err, termination()


def test_missing_data_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = megatron_config(tmp_path / "no-such-prep", tmp_path)
    code, err, message = _fails(["--config", str(path)], capsys)
    assert code == 2
    assert "no-such-prep does not exist" in err
    assert message["reason"] == "DataNotFound" and message["status"] == "failed"


def test_dry_run_of_the_shipped_default_without_data(capsys: pytest.CaptureFixture[str]) -> None:
    """The shipped config names /data/sft-prep, which this machine does not have: the plan still prints."""
    from importlib import resources

    default = Path(str(resources.files("sft_train") / "config" / "default.yaml"))
    assert not Path("/data/sft-prep").exists()
    assert main(["--dry-run", "--config", str(default)]) == 0
    captured = capsys.readouterr()
    report = yaml.safe_load(captured.out)
    assert "warning: data: data.path /data/sft-prep does not exist" in captured.err
    assert "the plan assumes 4096" in captured.err
    assert report["warnings"] and all(w.startswith("data: ") for w in report["warnings"])
    assert report["data"] == {
        "path": "/data/sft-prep",
        "found": False,
        "pack_size": 4096,
        "shards": {"train": 0, "valid": 0, "test": 0},
    }
    mb = report["megatron_bridge"]
    assert "model.seq_length=4096" in mb["overrides"] and "optimizer.lr=5e-06" in mb["overrides"]
    assert mb["dataset"]["do_validation"] is False
    # the recipe's EP 16 needs 16 GPUs: two nodes of 8, not one (issue 21)
    assert report["torchrun"].startswith("torchrun --nnodes=2 --nproc-per-node=8 -m sft_train")
    # ... and LoRA on the same config previews the LoRA rate, with the given sequence length
    assert main(["--dry-run", "--config", str(default), "peft=lora", "model.seq_length=8192"]) == 0
    captured = capsys.readouterr()
    mb = yaml.safe_load(captured.out)["megatron_bridge"]
    assert "optimizer.lr=0.0001" in mb["overrides"] and "model.seq_length=8192" in mb["overrides"]
    assert "the plan assumes" not in captured.err


@pytest.mark.parametrize(
    ("setup", "words"),
    [
        (lambda d: d.mkdir(), "has no metadata.json"),
        (lambda d: (d.mkdir(), (d / "metadata.json").write_text("{not json")), "is not valid JSON"),
        (lambda d: (d.mkdir(), (d / "metadata.json").write_text('{"pack_size": 64}')), "no training shards"),
    ],
)
def test_dry_run_reports_data_problems_as_warnings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], setup: Callable[[Path], Any], words: str
) -> None:
    setup(tmp_path / "prep")
    report = dry_run(capsys, "--config", str(megatron_config(tmp_path / "prep", tmp_path)))
    assert words in report["warnings"][0] and report["data"]["found"] is False
    assert report["megatron_bridge"]["overrides"]


def test_empty_data_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "prep" / "splits" / "train").mkdir(parents=True)
    (tmp_path / "prep" / "metadata.json").write_text('{"pack_size": 64}')
    code, err, message = _fails(["--config", str(megatron_config(tmp_path / "prep", tmp_path))], capsys)
    assert code == 2 and "no training shards" in err and message["reason"] == "DataNotFound"


def test_pack_size_mismatch(
    make_data: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = megatron_config(make_data(), tmp_path)
    code, err, message = _fails(["--config", str(path), "--dry-run", "model.seq_length=4096"], capsys)
    assert code == 2
    assert "model.seq_length is 4096 but the data was packed into bins of 64 tokens" in err
    assert message["reason"] == "PackSizeMismatch"


def test_missing_checkpoint_hf(
    make_data: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path / "hf.yaml", hf_config(make_data(), tmp_path / "no-model", None))
    code, err, message = _fails(["--config", str(path)], capsys)
    assert code == 2 and "no-model does not exist" in err and message["reason"] == "CheckpointNotFound"


def test_missing_load_checkpoint_megatron(
    make_data: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = megatron_config(make_data(), tmp_path)
    code, err, message = _fails(
        ["--config", str(path), "--dry-run", f"checkpoint.load={tmp_path}/gone"], capsys
    )
    assert code == 2 and "holds no complete Megatron-Bridge checkpoint" in err
    assert message["reason"] == "CheckpointNotFound"


def test_unknown_config_key(
    make_data: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = megatron_config(make_data(), tmp_path)
    code, err, message = _fails(["--config", str(path), "optimizer.learning_rate=1"], capsys)
    assert (
        code == 2 and "unknown key 'optimizer.learning_rate'" in err and message["reason"] == "InvalidConfig"
    )


def test_megatron_engine_without_megatron_bridge(
    make_data: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("torch")
    try:
        import megatron.bridge  # noqa: F401

        pytest.skip("Megatron-Bridge is installed here")
    except ImportError:
        pass
    (tmp_path / "base").mkdir()
    path = megatron_config(make_data(), tmp_path)
    code, _, message = _fails(
        ["--config", str(path), f"model.pretrained_checkpoint={tmp_path / 'base'}"], capsys
    )
    assert code == 1
    assert message["reason"] == "MegatronBridgeMissing"
    assert "use engine: hf" in message["message"]


def test_missing_pretrained_checkpoint_megatron(
    make_data: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Checked before Megatron-Bridge is even imported, so the error is the same on any machine."""
    code, err, message = _fails(["--config", str(megatron_config(make_data(), tmp_path))], capsys)
    assert code == 2 and "model.pretrained_checkpoint /models/base-megatron does not exist" in err
    assert message["reason"] == "CheckpointNotFound"


def test_bad_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, err, message = _fails(["--dry-run"], capsys)
    assert code == 2 and "--config" in err
    assert message["reason"] == "InvalidConfig"
