"""Helpers for the trainer tests: small packed-Parquet outputs written here (not by sft-prep) and a
tiny random Llama checkpoint, so every test is independent of the prep workload."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from sft_train.demo import save_tiny_llama

VOCAB = 48
PACK = 64


@dataclass
class Conversation:
    """An unrolled example: tokens and the per-token "assistant" mask before sft-prep rolls it."""

    tokens: np.ndarray
    assistant: np.ndarray


def roll(assistant: np.ndarray) -> np.ndarray:
    """The prep roll for one sequence: aligned[0:L-1] = mask[1:L], aligned[L-1] = 0."""
    aligned = np.zeros_like(assistant)
    aligned[:-1] = assistant[1:]
    return aligned


def random_conversation(rng: np.random.Generator, min_len: int = 4, max_len: int = 24) -> Conversation:
    """A prompt (mask 0) followed by a response (mask 1); tokens 1..VOCAB-1 (0 is padding)."""
    length = int(rng.integers(min_len, max_len + 1))
    prompt = int(rng.integers(1, length - 1))
    tokens = rng.integers(1, VOCAB, size=length).astype(np.int32)
    assistant = np.zeros(length, dtype=np.uint8)
    assistant[prompt:] = 1
    return Conversation(tokens, assistant)


def pack(conversations: Sequence[Conversation], pack_size: int = PACK) -> list[dict[str, list[int]]]:
    """First-fit packing into rows of at most ``pack_size`` tokens, masks rolled per sub-sequence."""
    rows: list[list[Conversation]] = []
    for conv in conversations:
        for row in rows:
            if sum(len(c.tokens) for c in row) + len(conv.tokens) <= pack_size:
                row.append(conv)
                break
        else:
            rows.append([conv])
    out = []
    for row in rows:
        starts = np.cumsum([0] + [len(c.tokens) for c in row[:-1]]).tolist()
        out.append(
            {
                "input_ids": np.concatenate([c.tokens for c in row]).tolist(),
                "loss_mask": np.concatenate([roll(c.assistant) for c in row]).tolist(),
                "seq_start_id": [int(s) for s in starts],
            }
        )
    return out


def write_shard(path: Path, rows: Sequence[dict[str, list[int]]]) -> None:
    schema = pa.schema(
        [
            ("input_ids", pa.list_(pa.int32())),
            ("loss_mask", pa.list_(pa.uint8())),
            ("seq_start_id", pa.list_(pa.int32())),
        ]
    )
    table = pa.Table.from_pylist(list(rows), schema=schema)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, compression="zstd", row_group_size=7)


def write_prep_output(
    root: Path,
    train_rows: Sequence[dict[str, list[int]]],
    valid_rows: Sequence[dict[str, list[int]]] = (),
    pack_size: int = PACK,
    shards: int = 2,
) -> Path:
    """An sft-prep-shaped output dir: splits/{train,valid}/shard_NNNNNN.parquet + metadata.json."""
    chunks = [list(train_rows[i::shards]) for i in range(shards)]
    for i, chunk in enumerate(chunks):
        write_shard(root / "splits" / "train" / f"shard_{i:06d}.parquet", chunk)
    if valid_rows:
        write_shard(root / "splits" / "valid" / f"shard_{shards:06d}.parquet", valid_rows)
    (root / "metadata.json").write_text(json.dumps({"version": 1, "pack_size": pack_size}))
    return root


def build_tiny_llama(path: Path, vocab: int = VOCAB, max_positions: int = 256, seed: int = 0) -> Path:
    """The demo's tiny Llama, smaller still, for token ids below ``vocab`` (0 pads, 1 BOS, 2 EOS)."""
    return save_tiny_llama(
        path,
        vocab_size=vocab,
        max_positions=max_positions,
        seed=seed,
        hidden_size=32,
        intermediate_size=64,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        tie_word_embeddings=False,
    )


def hf_config(data: Path, model: Path, save: Path | None, **overrides: Any) -> dict[str, Any]:
    """A small hf-engine config (fp32, no warm-up surprises) as a dict; nested keys via overrides."""
    config: dict[str, Any] = {
        "engine": "hf",
        "data": {"path": str(data)},
        "model": {"pretrained_checkpoint": str(model)},
        "train": {"train_iters": 6, "global_batch_size": 4, "seed": 7},
        "optimizer": {"lr": 1e-2, "weight_decay": 0.1},
        "scheduler": {"lr_warmup_iters": 1},
        "precision": "fp32",
        "checkpoint": {"save": str(save) if save else None, "save_interval": 3},
        "logging": {"log_interval": 1},
    }
    for key, value in overrides.items():
        node = config
        *parents, last = key.split(".")
        for part in parents:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[last] = value
    return config


def write_config(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


def upload_tree(local: Path, uri: str) -> str:
    """Copy a local directory to an object-store prefix (for S3 tests)."""
    from sft_common import storage

    for path in sorted(local.rglob("*")):
        if path.is_file():
            storage.upload_file(path, storage.join(uri, str(path.relative_to(local))))
    return uri
