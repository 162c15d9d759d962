"""Fixtures of the Megatron-Bridge conformance tier (``make test-megatron``): sft-prep output on the
bundled sample chats, and Megatron-Bridge 0.6.2's own modules imported on the CPU (``mb_shim``)."""

from __future__ import annotations

import contextlib
import gc
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import mb_shim
import pytest
import yaml

SAMPLES = Path(__file__).resolve().parents[2] / "workloads" / "sft_prep" / "samples"
PACK = 512


@pytest.fixture(scope="session")
def mb() -> SimpleNamespace:
    return mb_shim.load()


@pytest.fixture(scope="session")
def mb_tokenizer(mb: SimpleNamespace) -> object:
    """Megatron-Bridge's own tokenizer over the tokenizer sft-prep used (eos ``<|im_end|>``)."""
    config = mb.tokenizer_config.TokenizerConfig(
        tokenizer_type="HuggingFaceTokenizer", tokenizer_model=str(SAMPLES / "tokenizer")
    )
    return mb.tokenizer.build_tokenizer(config)


def run_prep(root: Path, **extra: object) -> Path:
    """Our sft-prep on the bundled chats: train, valid and test splits, pack size 512."""
    from sft_prep import cli

    config = {
        "datasets": [{"name": "chats", "path": str(SAMPLES / "chats.jsonl")}],
        "tokenizer": {"model": str(SAMPLES / "tokenizer")},
        "chat_template": "nano3",
        "pack_size": PACK,
        "num_shards": 6,
        "valid_ratio": 0.2,
        "test_ratio": 0.2,
        "output_dir": str(root / "out"),
        **extra,
    }
    (root / "prep.yaml").write_text(yaml.safe_dump(config))
    os.environ.setdefault("SFT_TERMINATION_LOG", str(root / "termination-log"))
    assert cli.main(["--config", str(root / "prep.yaml")]) == 0
    out = root / "out"
    for split in ("train", "valid", "test"):
        assert list((out / "splits" / split).glob("*.parquet")), f"sft-prep wrote no {split} shards"
    return out


@pytest.fixture(scope="session")
def prep_output(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return run_prep(tmp_path_factory.mktemp("prep"))


@pytest.fixture(scope="session")
def padded_output(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same chats padded for CP 2 (TP 1): sft-prep's ``pad_seq_to_mult: 4``."""
    out = run_prep(tmp_path_factory.mktemp("prep4"), pad_seq_to_mult=4)
    assert json.loads((out / "metadata.json").read_text())["pad_seq_to_mult"] == 4
    return out


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[None]:
    """``path`` read-only for this process: a read-only bind mount when running as root (root ignores
    file modes), else the write bits taken away. Skips when neither makes it read-only."""
    mounted = False
    if os.geteuid() == 0:
        try:
            subprocess.run(["mount", "--bind", str(path), str(path)], check=True, capture_output=True)
            mounted = True
            subprocess.run(["mount", "-o", "remount,bind,ro", str(path)], check=True, capture_output=True)
        except (OSError, subprocess.CalledProcessError) as exc:
            if mounted:
                subprocess.run(["umount", str(path)], check=False)
            pytest.skip(f"cannot make {path} read-only here (bind mount failed: {exc})")
    else:
        for p in [path, *path.rglob("*")]:
            p.chmod(p.stat().st_mode & ~0o222)
    try:
        probe = path / ".write-probe"
        try:
            probe.write_text("x")
        except OSError:
            pass
        else:
            probe.unlink()
            pytest.skip(f"{path} is still writable")
        yield
    finally:
        if mounted:
            gc.collect()  # Megatron-Bridge's datasets close their Parquet handles when collected
            if subprocess.run(["umount", str(path)], check=False, capture_output=True).returncode:
                subprocess.run(["umount", "--lazy", str(path)], check=True)
        else:
            for p in [path, *path.rglob("*")]:
                p.chmod(p.stat().st_mode | 0o200)
