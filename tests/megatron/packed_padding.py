"""Pad every packed sub-sequence of an sft-prep output for context parallelism (test data helper)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


def pad_output(source: Path, target: Path, multiple: int, eos_id: int) -> Path:
    """The same data with every sub-sequence padded for ``pad_seq_to_mult`` = ``multiple``.

    Models what sft-prep's ``pad_seq_to_mult`` writes, with Megatron-Bridge 0.6.2's own padding rule
    (``data/packing/offline.py``): a sub-sequence's *runtime* length (stored length − 1, since labels
    are the tokens shifted by one) is rounded up to the multiple, with eos tokens and loss mask 0;
    the multiple is recorded in metadata.json. Rows whose padded sub-sequences no longer fit the pack
    are split so every row stays within the pack size.
    """
    meta = json.loads((source / "metadata.json").read_text())
    pack = meta["pack_size"]
    for shard in sorted((source / "splits").glob("*/*.parquet")):
        table = pq.read_table(shard).to_pylist()
        rows: list[dict[str, list[int]]] = []
        for row in table:
            ids, mask, starts = row["input_ids"], row["loss_mask"], row["seq_start_id"]
            edges = [*starts, len(ids)]
            current: dict[str, list[int]] = {"input_ids": [], "loss_mask": [], "seq_start_id": []}
            for s, e in itertools.pairwise(edges):
                runtime = e - s - 1
                padded = -(-runtime // multiple) * multiple
                seg_ids = ids[s:e] + [eos_id] * (padded - runtime)
                seg_mask = mask[s:e] + [0] * (padded - runtime)
                if len(current["input_ids"]) + len(seg_ids) > pack and current["input_ids"]:
                    rows.append(current)
                    current = {"input_ids": [], "loss_mask": [], "seq_start_id": []}
                assert len(seg_ids) <= pack, "a padded sub-sequence longer than the pack"
                current["seq_start_id"].append(len(current["input_ids"]))
                current["input_ids"] += seg_ids
                current["loss_mask"] += seg_mask
            rows.append(current)
        out = target / shard.relative_to(source)
        out.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(rows, schema=pq.read_schema(shard)), out)
    (target / "metadata.json").write_text(json.dumps({**meta, "pad_seq_to_mult": multiple}))
    return target
