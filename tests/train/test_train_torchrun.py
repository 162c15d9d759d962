"""Two processes under torchrun (gloo, DDP) follow the loss curve of one process, same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from trainfixtures import hf_config, write_config

from sft_common.config import validate
from sft_train.config import TrainConfig
from sft_train.engines import hf_engine
from sft_train.packed_data import inspect_data


def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SFT_PROGRESS": "off"}
    result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def _curve(path: Path) -> list[tuple[int, float]]:
    records = map(json.loads, path.read_text().splitlines())
    return [(r["iteration"], r["loss"]) for r in records if "loss" in r]


@pytest.mark.slow
def test_two_ranks_match_one_rank(make_data: Callable[..., Path], tiny_model: Path, tmp_path: Path) -> None:
    config = hf_config(
        make_data(),
        tiny_model,
        None,
        peft={"dim": 4, "alpha": 8},
        **{"train.train_iters": 5, "optimizer.lr": 2e-2},
    )
    path = write_config(tmp_path / "run.yaml", config)
    two = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    two += ["-m", "sft_train", "--config", str(path)]
    result = _run(
        [*two, f"logging.metrics_file={tmp_path / 'two.jsonl'}", f"checkpoint.save={tmp_path / 'ck2'}"],
        tmp_path,
    )
    double = _curve(tmp_path / "two.jsonl")
    message = json.loads(Path(os.environ["SFT_TERMINATION_LOG"]).read_text())
    # One process, in this interpreter (the CLI and torchrun only add the process group).
    cfg = validate(TrainConfig, {**config, "checkpoint": {"save": str(tmp_path / "ck1")}})
    single = hf_engine.train(cfg, inspect_data(cfg.data.path)).losses
    assert [i for i, _ in single] == [i for i, _ in double] == [1, 2, 3, 4, 5]
    assert [loss for _, loss in double] == pytest.approx([loss for _, loss in single], abs=1e-5)
    assert single[-1][1] < single[0][1]  # it trained
    # Only rank 0 reports: one summary line, one termination message naming rank 0's checkpoint.
    assert result.stdout.count('"event": "result"') == 1
    assert message["checkpoint"] == str(tmp_path / "ck2" / "iter_0000005")
    assert (tmp_path / "ck2" / "iter_0000005" / "adapter" / "adapter_model.safetensors").exists()
