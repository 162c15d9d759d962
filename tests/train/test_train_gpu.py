"""A real tiny Megatron-Bridge fine-tune on our packed Parquet (GPU + Megatron-Bridge only).

Skips cleanly elsewhere. Path: a random tiny Llama in Hugging Face format → ``AutoBridge.import_ckpt``
→ Megatron checkpoint → ``sft-train`` (engine megatron) under torchrun for 6 iterations → a rerun
with more iterations resumes from the saved checkpoint without being told.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from trainfixtures import build_tiny_llama, write_config


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def _megatron_bridge() -> bool:
    try:
        return importlib.util.find_spec("megatron.bridge") is not None
    except ModuleNotFoundError:
        return False


pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not _cuda(), reason="needs a CUDA GPU"),
    pytest.mark.skipif(not _megatron_bridge(), reason="needs Megatron-Bridge (the trainer image)"),
]


def _sft_train(
    config: Path, tmp_path: Path, hf_model: Path, *overrides: str
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "SFT_TEST_HF_MODEL": str(hf_model),
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]),
    }
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=1"]
    argv += ["-m", "sft_train", "--config", str(config), *overrides]
    return subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)


def test_megatron_finetune_and_resume(make_data: Callable[..., Path], tmp_path: Path) -> None:
    from megatron.bridge import AutoBridge

    hf_model = build_tiny_llama(tmp_path / "hf", vocab=128, max_positions=256)
    AutoBridge.import_ckpt(str(hf_model), str(tmp_path / "mcore"))
    data = make_data()
    config = write_config(
        tmp_path / "run.yaml",
        {
            "engine": "megatron",
            "data": {"path": str(data)},
            "model": {
                "recipe": "train_gpu_recipe.tiny_sft_config",
                "pretrained_checkpoint": str(tmp_path / "mcore"),
            },
            "train": {"train_iters": 6, "global_batch_size": 4},
            "optimizer": {"lr": 1e-3},
            "scheduler": {"lr_warmup_iters": 1},
            "checkpoint": {"save": str(tmp_path / "ckpt"), "save_interval": 3},
            "logging": {"log_interval": 1},
        },
    )
    first = _sft_train(config, tmp_path, hf_model)
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-4000:]
    message = json.loads(Path(os.environ["SFT_TERMINATION_LOG"]).read_text())
    assert message["status"] == "succeeded" and message["lastIteration"] == 6
    assert message["checkpoint"] == str(tmp_path / "ckpt" / "iter_0000006")
    assert isinstance(message["finalLoss"], float)
    second = _sft_train(config, tmp_path, hf_model, "train.train_iters=8")
    assert second.returncode == 0, second.stdout[-4000:] + second.stderr[-4000:]
    assert f"resuming from {tmp_path / 'ckpt'}" in second.stdout
    assert json.loads(Path(os.environ["SFT_TERMINATION_LOG"]).read_text())["lastIteration"] == 8
