"""Helpers shared by the pipeline tests: configs on the bundled samples, running the CLI, reading results."""

from __future__ import annotations

import io
import itertools
import json
import os
from collections.abc import Callable
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import yaml

import sft_prep
from sft_prep import cli
from sft_prep.tokenizer import Tokenizer, load_tokenizer

SAMPLES = Path(sft_prep.__file__).parent / "samples"
CHATS = SAMPLES / "chats.jsonl"
TOKENIZER = SAMPLES / "tokenizer"


def write_config(tmp_path: Path, name: str = "prep.yaml", **fields: Any) -> Path:
    data: dict[str, Any] = {
        "datasets": [{"name": "chats", "path": str(CHATS)}],
        "tokenizer": {"model": str(TOKENIZER)},
        "pack_size": 1024,
        "num_shards": 4,
        "output_dir": str(tmp_path / "out"),
    }
    data.update(fields)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def run_cli(*argv: str) -> tuple[int, str]:
    """Run ``sft-prep`` in this process; returns (exit code, stdout)."""
    out = io.StringIO()
    with redirect_stdout(out):
        code = cli.main(list(argv))
    return code, out.getvalue()


def termination() -> dict[str, Any]:
    return json.loads(Path(os.environ["SFT_TERMINATION_LOG"]).read_text())


def result_line(stdout: str) -> dict[str, Any]:
    lines = [json.loads(line) for line in stdout.splitlines() if line.startswith('{"event": "result"')]
    assert len(lines) == 1, stdout
    return lines[0]


def read_rows(path: Path) -> list[dict[str, Any]]:
    return pq.read_table(path).to_pylist()


def trained_runs(row: dict[str, Any]) -> list[list[int]]:
    """Per sub-sequence, the maximal runs of trained label tokens, as Megatron-Bridge's collate sees them.

    For sub-sequence [s, e): labels = ids[s+1:e], loss_mask = mask[s:e-1]; a label trains iff its mask is 1.
    """
    ids, mask, starts = row["input_ids"], row["loss_mask"], row["seq_start_id"]
    bounds = [*starts, len(ids)]
    runs: list[list[int]] = []
    for s, e in itertools.pairwise(bounds):
        labels = np.array(ids[s + 1 : e])
        trained = np.array(mask[s : e - 1], dtype=bool)
        runs.extend(_runs(labels, trained))
    return runs


def _runs(values: np.ndarray, flags: np.ndarray) -> list[list[int]]:
    out: list[list[int]] = []
    current: list[int] = []
    for v, f in zip(values.tolist(), flags.tolist(), strict=True):
        if f:
            current.append(v)
        elif current:
            out.append(current)
            current = []
    if current:
        out.append(current)
    return out


def unrolled_runs(ids: np.ndarray, mask: np.ndarray) -> list[list[int]]:
    """Runs of assistant tokens of one un-packed sequence (its first token can never be a label)."""
    flags = np.array(mask, dtype=bool)
    flags[0] = False
    return _runs(np.array(ids), flags)


def edited_tokenizer(tmp_path: Path, source_dir: Path, edit: Callable[[dict[str, Any]], None]) -> Tokenizer:
    """The tokenizer of ``source_dir`` with ``edit`` applied to its tokenizer.json, saved in ``tmp_path``."""
    spec = json.loads((source_dir / "tokenizer.json").read_text(encoding="utf-8"))
    edit(spec)
    (tmp_path / "tokenizer.json").write_text(json.dumps(spec), encoding="utf-8")
    return load_tokenizer(str(tmp_path))


def big_input(tmp_path: Path, copies: int) -> Path:
    """The bundled sample chats ``copies`` times over in one JSONL file: a run that takes a while."""
    data = CHATS.read_bytes()
    path = tmp_path / "big.jsonl"
    with path.open("wb") as fh:
        for _ in range(copies):
            fh.write(data)
    return path
