"""``blend.json`` and ``metadata.json``: pure functions of the shard plan and the shard receipts.

Deterministic (no wall-clock values of the writer), so two workers finishing at the same moment write
identical files and the race is harmless.

``blend.json`` is the reference's per-split format that Megatron-Bridge reads
(``per_split_data_args_path``): ``{"train": ["<weight>", "<path without .parquet>", ...], "valid": [...],
"test": [...]}``, one pair per non-empty shard (a Parquet file with zero rows is rejected by the
reader, so empty shards are neither written nor listed).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from sft_common import storage
from sft_prep.config import padded_limit
from sft_prep.sharding import SPLITS, Shard
from sft_prep.stats import ShardCounts

METADATA_VERSION = 1
PADDING_RULE = (
    "each sequence of n tokens stored as ceil(n/pad_seq_to_mult)*pad_seq_to_mult + 1 tokens, padded with "
    "token_id at loss mask 0, so its input tokens (all but the last) are a multiple of pad_seq_to_mult"
)


def absolute_output_dir(output_dir: str) -> str:
    """Blend paths must not depend on the trainer's working directory (and readers want no file://)."""
    if storage.is_remote(output_dir):
        return output_dir.rstrip("/")
    if output_dir.startswith("file://"):
        output_dir = output_dir[len("file://") :]
    return os.path.abspath(output_dir)


def build_blend(
    output_dir: str, shards: Sequence[Shard], receipts: Mapping[int, Mapping[str, Any]]
) -> dict[str, Any]:
    base = absolute_output_dir(output_dir)
    blend: dict[str, list[str]] = {split: [] for split in SPLITS}
    for shard in sorted(shards, key=lambda s: s.index):
        if receipts[shard.index].get("file") is None:
            continue
        blend[shard.split].extend([str(shard.weight), storage.join(base, shard.rel_prefix)])
    return blend


def build_metadata(
    *,
    config: Mapping[str, Any],
    identity: Mapping[str, Any],
    shards: Sequence[Shard],
    receipts: Mapping[int, Mapping[str, Any]],
    sources: Mapping[str, Sequence[str]],
    encoding: Mapping[str, Any] | None = None,
    pad_token_id: int | None = None,
) -> dict[str, Any]:
    """Everything a person or the trainer needs to know about the prepared data, from receipts only.

    ``encoding``: the tokenization strategy (``strategy``, ``why``); the sequence counts per strategy
    and fallback reason, and the sequences and tokens taken from an encoding already made instead of
    encoding the text again (``reused``, see ``sequence_encode``), are summed from the receipts."""
    pack_size = int(config["pack_size"])
    mult = int(config.get("pad_seq_to_mult") or 1)
    per_shard = {s.index: ShardCounts.from_dict(receipts[s.index]["stats"]) for s in shards}
    totals = ShardCounts.total(per_shard.values())
    datasets: dict[str, Any] = {}
    for name in dict.fromkeys(s.dataset for s in shards):
        mine = [s for s in shards if s.dataset == name]
        datasets[name] = {
            "weight": mine[0].weight,
            "sources": list(sources.get(name, [])),
            "shards": len(mine),
            "shards_by_split": {sp: sum(1 for s in mine if s.split == sp) for sp in SPLITS},
            **ShardCounts.total(per_shard[s.index] for s in mine).summary(pack_size),
        }
    splits: dict[str, Any] = {}
    for split in SPLITS:
        mine = [s for s in shards if s.split == split]
        files = [receipts[s.index]["file"] for s in mine if receipts[s.index].get("file")]
        splits[split] = {
            "shards": len(mine),
            "files": len(files),
            **ShardCounts.total(per_shard[s.index] for s in mine).summary(pack_size),
        }
    head = totals.summary(pack_size)
    rows = totals.rows
    completed = sorted(str(receipts[s.index].get("completed_at", "")) for s in shards)
    return {
        "version": METADATA_VERSION,
        "run_id": identity["run_id"],
        "config_hash": identity["config_hash"],
        "completed_at": completed[-1] if completed else None,
        "pack_size": pack_size,
        "max_doc_tokens": min(config.get("max_doc_tokens") or pack_size, padded_limit(pack_size, mult)),
        "pad_seq_to_mult": mult,
        "padding": {
            "token_id": pad_token_id,
            "tokens": totals.pad_tokens,
            "rule": PADDING_RULE if pad_token_id is not None else None,
        },
        "algorithm": config["algorithm"],
        "seed": config["seed"],
        "tokenizer": identity["tokenizer"],
        "chat_template": identity["chat_template"],
        "encoding": {
            **(encoding or {}),
            "sequences": dict(sorted(rows.encoding.items())),
            "reused": {"sequences": rows.reused["sequences"], "tokens": rows.reused["tokens"]},
        },
        "num_shards": len(shards),
        "parquet": {
            "schema": {"input_ids": "list<int32>", "loss_mask": "list<uint8>", "seq_start_id": "list<int32>"},
            "compression": config["parquet_compression"],
            "row_group_size": config["parquet_row_group_size"],
            "loss_mask": "label-aligned per sub-sequence: loss_mask[j] = 1 iff input_ids[j+1] is trained",
        },
        "totals": {k: v for k, v in head.items() if k not in ("packing_efficiency", "packing_factor")},
        "packing_efficiency": head["packing_efficiency"],
        "packing_factor": head["packing_factor"],
        "lower_bound_bins": -(-rows.tokens // pack_size),
        "dropped": dict(sorted(rows.dropped.items())),
        "dropped_sequences": dict(sorted(rows.dropped_sequences.items())),
        "truncated": {"sequences": rows.truncated},
        # messages whose field the chat template rendered nowhere (custom templates; sftctl preview warns)
        "template_dropped_fields": dict(sorted(rows.template_dropped.items())),
        "examples": {k: list(v) for k, v in sorted(rows.examples.items())},
        "datasets": datasets,
        "splits": splits,
        "shards": [
            {
                "index": s.index,
                "dataset": s.dataset,
                "split": s.split,
                "file": receipts[s.index].get("file"),
                "bytes": receipts[s.index].get("bytes", 0),
                "rows": per_shard[s.index].rows.rows,
                "sequences": per_shard[s.index].rows.sequences,
                "tokens": per_shard[s.index].rows.tokens,
                "trainable_tokens": per_shard[s.index].label_tokens,
                "bins": per_shard[s.index].bins,
            }
            for s in sorted(shards, key=lambda s: s.index)
        ],
        "config": dict(config),
    }
