"""The sft-prep command line: config errors exit 2 before any work, naming the key and the choices."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from prep.pipeline_support import run_cli, termination, write_config


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["pack_sise=128"], ["unknown key 'pack_sise'", "did you mean 'pack_size'", "valid keys here"]),
        (["algorithm=next_fit"], ["algorithm", "best_fit_decreasing", "first_fit_shuffle"]),
        (["pack_size=lots"], ["pack_size", "lots"]),
        (["datasets.0.wieght=2"], ["unknown key 'datasets.0.wieght'", "did you mean 'datasets.0.weight'"]),
        (["tokenizer.model=/nonexistent/tok"], ["tokenizer.model", "/nonexistent/tok"]),
        (["chat_template=/nonexistent.jinja"], ["chat_template", "nano3"]),
        (["--worker-index", "3", "--num-workers", "2"], ["--worker-index", "0..1"]),
        (["--num-workers", "0"], ["--num-workers"]),
        (["--sample", "zero"], ["invalid command line"]),
    ],
)
def test_bad_input_exits_2_with_an_actionable_message(
    tmp_path: Path, args: list[str], expected: list[str]
) -> None:
    config = write_config(tmp_path)
    code, _ = run_cli("--config", str(config), *args)
    assert code == 2
    msg = termination()
    assert msg["status"] == "failed" and msg["reason"] == "InvalidConfig"
    for text in expected:
        assert text in msg["message"]
    assert not (tmp_path / "out").exists(), "nothing may be written before the config is valid"


def test_missing_config_file_names_it(tmp_path: Path) -> None:
    code, _ = run_cli("--config", str(tmp_path / "absent.yaml"))
    assert code == 2 and "absent.yaml" in termination()["message"]


def test_overrides_flags_and_options_mix_in_any_order(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    code, _ = run_cli("pack_size=512", "--config", str(config), "--sample", "30", "num_shards=1")
    assert code == 0
    meta = json.loads((tmp_path / "out" / "metadata.json").read_text())
    assert meta["pack_size"] == 512 and meta["totals"]["rows"] == 30 and meta["num_shards"] == 1


def test_python_dash_m_entry_point_and_help(tmp_path: Path) -> None:
    env = {**os.environ, "SFT_PROGRESS": "off"}
    shown = subprocess.run(
        [sys.executable, "-m", "sft_prep", "--help"], capture_output=True, text=True, env=env
    )
    assert shown.returncode == 0 and "--worker-index" in shown.stdout and "key=value" in shown.stdout
    config = write_config(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "sft_prep", "--config", str(config), "--sample", "25"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["event"] == "result" and result["status"] == "succeeded" and result["totals"]["rows"] == 25
