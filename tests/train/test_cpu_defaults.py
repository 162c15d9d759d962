"""CPU defaults (issue 21): an hf SFTRun that leaves gpusPerNode out runs one CPU process per pod
(``sftctl run --dry-run=client`` as a user types it); a warm-up longer than the run is warned about by
``sft-train`` (the rate would peak far below optimizer.lr)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from trainfixtures import hf_config, write_config

from sft_train.cli import main as sft_train


def hf_run(**spec: object) -> dict:
    return {
        "apiVersion": "sft.dev/v1alpha1",
        "kind": "SFTRun",
        "metadata": {"name": "cpu"},
        "spec": {
            "engine": "hf",
            "data": {"uri": "s3://b/prep"},
            "model": {"pretrainedCheckpoint": "s3://b/base"},
            "train": {"trainIters": 10, "globalBatchSize": 4},
            "checkpoint": {"save": "s3://b/ckpt"},
            **spec,
        },
    }


def test_hf_run_without_gpus_per_node_is_one_cpu_process_per_pod(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """gpusPerNode defaulted to 8 for every engine: an hf run on CPU asked for 8 processes and was refused
    ("globalBatchSize 4 is not a multiple of ... the 8 processes"). Now its default is 0 (hf) and the
    rendered child has one process and no GPU; megatron keeps 8."""
    from sft_operator.ctl.main import main as sftctl

    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(hf_run()))
    assert sftctl(["run", "--dry-run=client", "-o", "yaml", "--backend", "jobset", "-f", str(path)]) == 0
    out = capsys.readouterr().out
    job = next(d for d in yaml.safe_load_all(out) if d and d["kind"] == "JobSet")
    pod = job["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]
    trainer = pod["containers"][0]
    assert "--nproc-per-node=1" in trainer["command"]
    assert "nvidia.com/gpu" not in json.dumps(trainer.get("resources") or {})
    # explicit GPUs on hf: the batch check names the way back to the CPU default
    path.write_text(yaml.safe_dump(hf_run(gpusPerNode=8)))
    assert sftctl(["run", "--dry-run=client", "-f", str(path)]) == 2
    assert "for a CPU run leave gpusPerNode out (or 0: one process per pod)" in capsys.readouterr().err
    megatron = hf_run(engine="megatron", nodes=2, train={"trainIters": 10, "globalBatchSize": 16})
    path.write_text(yaml.safe_dump(megatron))
    assert sftctl(["run", "--dry-run=client", "-o", "yaml", "--backend", "jobset", "-f", str(path)]) == 0
    assert "--nproc-per-node=8" in capsys.readouterr().out


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
