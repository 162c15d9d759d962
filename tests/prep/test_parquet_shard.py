"""The Parquet shard: exact schema, row groups, codec, no padding, atomic writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sft_prep import parquet_shard
from sft_prep.packing import pack
from sft_prep.parquet_shard import SCHEMA, SequenceStore, materialize, write_shard


def _packed(n: int = 50, pack_size: int = 64, seed: int = 0) -> parquet_shard.PackedBins:
    rng = np.random.default_rng(seed)
    store = SequenceStore()
    for batch in np.array_split(rng.integers(1, pack_size + 1, n), 3):  # batches as the pipeline adds them
        total = int(batch.sum())
        store.extend(rng.integers(0, 1000, total), rng.integers(0, 2, total), batch)
    assert len(store) == n
    ids, mask, lengths = store.take()
    assert len(store) == 0, "take() empties the store"
    return materialize(ids, mask, lengths, pack(lengths, pack_size, "best_fit_decreasing"))


@pytest.mark.parametrize("codec", ["zstd", "snappy", "none"])
def test_schema_row_groups_and_codec(tmp_path: Path, codec: str) -> None:
    packed = _packed()
    path = tmp_path / "splits" / "train" / "shard_000000.parquet"
    size = write_shard(str(path), packed, row_group_size=4, compression=codec)
    assert size == path.stat().st_size
    pf = pq.ParquetFile(path)
    assert pf.schema_arrow == SCHEMA
    assert str(pf.schema_arrow.field("input_ids").type) == "list<element: int32>"
    assert str(pf.schema_arrow.field("loss_mask").type) == "list<element: uint8>"
    assert str(pf.schema_arrow.field("seq_start_id").type) == "list<element: int32>"
    assert pf.metadata.num_rows == packed.num_bins
    groups = [pf.metadata.row_group(i).num_rows for i in range(pf.metadata.num_row_groups)]
    assert all(g == 4 for g in groups[:-1]) and 0 < groups[-1] <= 4
    expected_codec = "UNCOMPRESSED" if codec == "none" else codec.upper()
    assert pf.metadata.row_group(0).column(0).compression == expected_codec
    table = pf.read()
    for b in range(packed.num_bins):
        ids, mask, starts = packed.row(b)
        assert table["input_ids"][b].as_py() == ids.tolist()  # no padding: exactly the bin's tokens
        assert table["loss_mask"][b].as_py() == mask.tolist()
        assert table["seq_start_id"][b].as_py() == starts.tolist()


def test_a_failed_write_leaves_neither_the_file_nor_a_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "shard_000001.parquet"

    def broken(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(parquet_shard, "write_local", broken)
    with pytest.raises(OSError, match="disk full"):
        write_shard(str(target), _packed(), row_group_size=10, compression="zstd")
    assert list(tmp_path.iterdir()) == []


def test_an_existing_shard_is_replaced_whole(tmp_path: Path) -> None:
    target = tmp_path / "shard.parquet"
    write_shard(str(target), _packed(seed=1), 10, "zstd")
    replacement = _packed(n=5, seed=2)
    write_shard(str(target), replacement, 10, "zstd")
    assert pq.read_metadata(target).num_rows == replacement.num_bins
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shard.parquet"]


def test_empty_shards_are_not_written(tmp_path: Path) -> None:
    empty = materialize(
        np.zeros(0, np.int32), np.zeros(0, np.uint8), np.zeros(0, np.int64), pack([], 8, "first_fit_shuffle")
    )
    with pytest.raises(ValueError, match="without rows"):
        write_shard(str(tmp_path / "x.parquet"), empty, 10, "zstd")


def test_large_groups_keep_int32_offsets(tmp_path: Path) -> None:
    """List offsets are rebased per row group, so a shard's total tokens may exceed one group's range."""
    packed = _packed(n=300, pack_size=64)
    tables = list(parquet_shard.row_group_tables(packed, 7))
    assert sum(t.num_rows for t in tables) == packed.num_bins
    assert all(t["input_ids"].type == pa.list_(pa.int32()) for t in tables)
    assert all(t.column("input_ids").chunk(0).offsets[0].as_py() == 0 for t in tables)


def test_writing_part_by_part_gives_the_same_file_as_all_at_once(tmp_path: Path) -> None:
    """A shard is materialised a few row groups at a time (memory); the file must not change."""
    rng = np.random.default_rng(5)
    lengths = rng.integers(1, 9, 6000)
    ids = rng.integers(0, 1000, int(lengths.sum())).astype(np.int32)
    mask = rng.integers(0, 2, int(lengths.sum())).astype(np.uint8)
    packing = pack(lengths, 8, "best_fit_decreasing")
    order = np.random.default_rng(1).permutation(packing.num_bins)
    parts = list(parquet_shard.packed_parts(ids, mask, lengths, packing, order, row_group_size=3))
    assert len(parts) > 1 and all(p.num_bins % 3 == 0 for p in parts[:-1])
    whole = materialize(ids, mask, lengths, packing, order)
    write_shard(str(tmp_path / "parts.parquet"), iter(parts), 3, "zstd")
    write_shard(str(tmp_path / "whole.parquet"), whole, 3, "zstd")
    assert (tmp_path / "parts.parquet").read_bytes() == (tmp_path / "whole.parquet").read_bytes()
    assert pq.ParquetFile(tmp_path / "parts.parquet").metadata.row_group(1).num_rows == 3


def test_gather_index_and_group_sums() -> None:
    from sft_prep.ranges import gather_index, group_sums

    flat = np.arange(100, 120)
    assert flat[gather_index(np.array([5, 0, 18]), np.array([3, 2, 0]))].tolist() == [105, 106, 107, 100, 101]
    assert gather_index(np.array([], dtype=np.int64), np.array([], dtype=np.int64)).tolist() == []
    assert group_sums(np.array([1, 2, 3, 4]), np.array([2, 0, 1, 1])).tolist() == [3, 0, 3, 4]


def test_store_rejects_batches_it_cannot_pack() -> None:
    store = SequenceStore()
    with pytest.raises(ValueError, match="disagree"):
        store.extend(np.zeros(3, np.int32), np.zeros(2, np.uint8), np.array([3]))
    with pytest.raises(ValueError, match="empty sequence"):
        store.extend(np.zeros(3, np.int32), np.zeros(3, np.uint8), np.array([3, 0]))
    assert len(store) == 0
