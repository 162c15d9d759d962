"""``make demo`` end to end, shortened: real sft-prep on the bundled chats, then the hf fine-tune."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_demo_runs_the_pipeline(tmp_path: Path) -> None:
    out = tmp_path / "demo-output"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    argv = [sys.executable, "-m", "sft_train.demo", "--output-dir", str(out), "--iterations", "8"]
    result = subprocess.run(
        [*argv, "--pack-size", "256"], env=env, capture_output=True, text=True, timeout=280
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "loss (mean of 5 iterations)" in result.stdout
    metadata = json.loads((out / "prep" / "metadata.json").read_text())
    assert metadata["pack_size"] == 256
    message = json.loads(Path(os.environ["SFT_TERMINATION_LOG"]).read_text())
    assert message["lastIteration"] == 8
    assert message["checkpoint"] == str(out / "checkpoints" / "iter_0000008")
    assert (out / "hf-export" / "config.json").exists()
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    assert "validation_loss" in records[-1] and "validation loss" in result.stdout
    assert len(losses) == 8 and losses[-1] < losses[0]
