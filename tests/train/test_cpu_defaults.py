"""CPU defaults (issue 21): an hf SFTRun that leaves gpusPerNode at its default 8 is told to set 0,
through ``sftctl run --local`` as a user types it; a warm-up longer than the run is warned about by
``sft-train`` (the rate would peak far below optimizer.lr)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from trainfixtures import hf_config, write_config

from sft_train.cli import main as sft_train


def test_hf_run_on_cpu_without_gpus_per_node_says_to_set_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sft_operator.ctl.main import main as sftctl

    run = {
        "apiVersion": "sft.dev/v1alpha1",
        "kind": "SFTRun",
        "metadata": {"name": "cpu"},
        "spec": {
            "engine": "hf",
            "data": {"uri": str(tmp_path / "prep")},
            "model": {"pretrainedCheckpoint": str(tmp_path / "base")},
            "train": {"trainIters": 10, "globalBatchSize": 4},
            "checkpoint": {"save": str(tmp_path / "ckpt")},
        },
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(run))
    code = sftctl(["run", "--local", "-f", str(path), "--workdir", str(tmp_path / "w")])
    err = capsys.readouterr().err
    assert code == 2
    assert "for a CPU run set gpusPerNode: 0" in err
    run["spec"]["gpusPerNode"] = 0
    path.write_text(yaml.safe_dump(run))
    assert sftctl(["run", "--local", "-f", str(path), "--workdir", str(tmp_path / "w2")]) != 0  # no data yet
    assert "gpusPerNode" not in capsys.readouterr().err


@pytest.mark.parametrize(("warmup", "warned"), [(50, True), (10, True), (9, False), (0, False)])
def test_warm_up_not_below_train_iters_is_warned(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], warmup: int, warned: bool
) -> None:
    config = hf_config(
        tmp_path / "prep",
        tmp_path / "base",
        tmp_path / "ckpt",
        **{"train.train_iters": 10, "scheduler.lr_warmup_iters": warmup, "optimizer.lr": 2e-5},
    )
    path = write_config(tmp_path / "run.yaml", config)
    assert sft_train(["--config", str(path), "--dry-run"]) == 0
    err = capsys.readouterr().err
    assert ("scheduler.lr_warmup_iters" in err) == warned, err
    if warmup == 50:
        # the step of iteration 9 (the last) uses lr × 9 / 50 (engines/schedule.py, Megatron's warm-up)
        assert "never reaches optimizer.lr 2e-05 (it peaks at 3.6e-06 on the last iteration)" in err
