"""The torchrun command ``sft-train --dry-run`` prints can be pasted into a shell as it is (issue 21
point 6): before, YAML folded the long line, so the overrides after the fold became a separate shell
line (``peft=lora`` a variable assignment) and LoRA silently became full SFT.

The check is the shell's own: the printed block (the lines exactly as they appear on the terminal) is
parsed by ``bash -n`` and then run by bash with ``torchrun`` defined as a function that prints its
argv, which must equal the argv the trainer plan means.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "workloads" / "sft_train" / "config" / "default.yaml"
SFT_TRAIN = Path(sys.executable).parent / "sft-train"
OVERRIDES = [
    "peft=lora",
    "train.train_iters=10",
    'logging.wandb_exp_name=it\'s a "test" $HOME `x`',  # quotes, $ and backticks stay literal
    "checkpoint.save=/tmp/a path/with spaces",
]


def printed_block(stdout: str) -> str:
    """The ``torchrun: |`` block as the terminal shows it, indentation removed (what a user selects)."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("torchrun:"))
    assert lines[start].strip() == "torchrun: |-", lines[start]
    block = []
    for line in lines[start + 1 :]:
        if line and not line.startswith(" "):
            break
        block.append(line.strip())
    return "\n".join(block)


def argv_in_bash(text: str) -> list[str]:
    script = "torchrun() { printf '%s\\0' \"$@\"; }\n" + text
    check = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True)
    return proc.stdout.split("\0")[:-1]


@pytest.mark.parametrize("engine", ["megatron", "hf"])
def test_the_printed_torchrun_pastes_into_bash_with_every_override(engine: str, tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            str(SFT_TRAIN),
            "--config",
            str(CONFIG),
            "--dry-run",
            f"engine={engine}",
            "data.path=/nonexistent/prep",
            *OVERRIDES,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    block = printed_block(proc.stdout)
    argv = argv_in_bash(block)
    assert argv[-len(OVERRIDES) :] == OVERRIDES
    assert argv[argv.index("--config") + 1] == str(CONFIG)
    assert argv[0].startswith("--nnodes=")  # the launcher's own options came through too
    # the YAML value is the same command (a literal block keeps it byte for byte)
    assert yaml.safe_load(proc.stdout)["torchrun"] == block.replace("\n", "\n    ")
    # LoRA is in the plan the command starts
    if engine == "megatron":
        assert yaml.safe_load(proc.stdout)["megatron_bridge"]["peft"] is not None
