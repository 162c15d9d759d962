"""Per-shard receipts: the durable record that a shard is finished, and what it holds.

A receipt is written (atomically) only after its Parquet file is in place, so "receipt present and
matching" means "shard done": a killed run resumes by skipping those shards, and a rerun of the same
config finds every receipt and does nothing. ``metadata.json`` and ``blend.json`` are built from the
receipts alone, so whichever worker writes them writes the same bytes.

Layout under ``output_dir``::

    splits/{train,valid,test}/shard_NNNNNN.parquet   the data (real files; empty shards have none)
    receipts/shard_NNNNNN.json                        one per shard
    blend.json, metadata.json                         written last; metadata.json is the commit marker
    history/metadata-<run_id>.json                    metadata of a replaced run (config changed/--force)
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from sft_common import storage

RECEIPT_VERSION = 1


@dataclass(frozen=True)
class Layout:
    output_dir: str

    def uri(self, rel: str) -> str:
        return storage.join(self.output_dir, rel)

    def receipt(self, shard_index: int) -> str:
        return self.uri(f"receipts/shard_{shard_index:06d}.json")

    @property
    def receipts_dir(self) -> str:
        return self.uri("receipts")

    @property
    def splits_dir(self) -> str:
        return self.uri("splits")

    @property
    def blend(self) -> str:
        return self.uri("blend.json")

    @property
    def metadata(self) -> str:
        return self.uri("metadata.json")

    def history(self, run_id: str) -> str:
        return self.uri(f"history/metadata-{run_id}.json")


def read_json(uri: str) -> dict[str, Any] | None:
    """A JSON object at ``uri``, or None when absent or unreadable (a torn write counts as absent)."""
    try:
        if not storage.exists(uri):
            return None
        data = json.loads(storage.read_text(uri))
    except (storage.StorageError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_json(uri: str, data: dict[str, Any]) -> None:
    storage.write_text(uri, json.dumps(data, indent=2, sort_keys=False) + "\n")


def matches(receipt: dict[str, Any] | None, config_hash: str, run_id: str, forced: bool) -> bool:
    """Does this receipt belong to the current run? A --force run accepts only its own receipts."""
    if not receipt or receipt.get("version") != RECEIPT_VERSION or receipt.get("status") != "completed":
        return False
    if receipt.get("config_hash") != config_hash:
        return False
    return not forced or receipt.get("run_id") == run_id


def is_done(layout: Layout, shard_index: int, config_hash: str, run_id: str, forced: bool) -> bool:
    """Receipt matches and its file (if the shard has rows) is really there."""
    receipt = read_json(layout.receipt(shard_index))
    if not matches(receipt, config_hash, run_id, forced):
        return False
    assert receipt is not None
    rel = receipt.get("file")
    return rel is None or storage.exists(layout.uri(rel))


def read_all(layout: Layout, indices: Iterable[int], threads: int = 16) -> dict[int, dict[str, Any] | None]:
    """Receipts of many shards (threaded: on S3 each read is a round trip)."""
    items = list(indices)
    with ThreadPoolExecutor(max_workers=max(1, min(threads, len(items)))) as pool:
        found = list(pool.map(lambda i: read_json(layout.receipt(i)), items))
    return dict(zip(items, found, strict=True))
