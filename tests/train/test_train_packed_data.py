"""Reading sft-prep's output: checks, errors, and Megatron-Bridge's split of a packed row."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from trainfixtures import write_shard

from sft_train.errors import DataError, PackSizeMismatch
from sft_train.packed_data import (
    PackedSplit,
    boundaries,
    check_seq_length,
    inspect_data,
    pad_multiple_of,
    sample_order,
    split_row,
)


def test_inspect_lists_shards_and_pack_size(make_data: Callable[..., Path]) -> None:
    root = make_data(valid=5)
    info = inspect_data(str(root))
    assert info.pack_size == 64
    assert [Path(p).name for p in info.shards["train"]] == ["shard_000000.parquet", "shard_000001.parquet"]
    assert len(info.shards["valid"]) == 1 and info.shards["test"] == []
    assert info.split_dir("train") == f"{root}/splits/train"


def test_missing_data_dir(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"data.path .*nowhere does not exist"):
        inspect_data(str(tmp_path / "nowhere"))


def test_dir_without_metadata(tmp_path: Path) -> None:
    (tmp_path / "splits" / "train").mkdir(parents=True)
    with pytest.raises(DataError, match=r"no metadata\.json"):
        inspect_data(str(tmp_path))


def test_empty_train_split(tmp_path: Path) -> None:
    (tmp_path / "splits" / "train").mkdir(parents=True)
    (tmp_path / "metadata.json").write_text(json.dumps({"pack_size": 64}))
    with pytest.raises(DataError, match="no training shards"):
        inspect_data(str(tmp_path))


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ({"version": 1}, "has no 'pack_size'"),
        ({"pack_size": "64"}, "must be a positive integer"),
        ("[]", "JSON object"),
    ],
)
def test_bad_metadata(tmp_path: Path, metadata: object, message: str) -> None:
    write_shard(tmp_path / "splits/train/shard_000000.parquet", [])
    text = metadata if isinstance(metadata, str) else json.dumps(metadata)
    (tmp_path / "metadata.json").write_text(text)
    with pytest.raises(DataError, match=message):
        inspect_data(str(tmp_path))


def test_camel_case_pack_size_is_accepted(make_data: Callable[..., Path]) -> None:
    root = make_data()
    (root / "metadata.json").write_text(json.dumps({"packSize": 64}))
    assert inspect_data(str(root)).pack_size == 64


def test_pack_size_mismatch_says_both_numbers() -> None:
    assert check_seq_length(4096, None) == 4096
    assert check_seq_length(4096, 4096) == 4096
    with pytest.raises(
        PackSizeMismatch, match=r"model.seq_length is 2048 but the data was packed into bins of 4096"
    ):
        check_seq_length(4096, 2048)


def test_split_row_matches_megatron_collate() -> None:
    ids = np.array([10, 11, 12, 13, 20, 21, 22, 30], dtype=np.int32)
    mask = np.array([0, 1, 1, 0, 1, 1, 0, 0], dtype=np.uint8)
    starts = np.array([0, 4, 7], dtype=np.int32)
    assert boundaries(starts, len(ids)) == [(0, 4), (4, 7), (7, 8)]
    subs = split_row(ids, mask, starts)
    # [0,4): tokens ids[0:3], labels ids[1:4], mask[0:3]; [4,7): ids[4:6], ids[5:7], mask[4:6];
    # [7,8) has one token: nothing to predict.
    assert len(subs) == 2
    assert subs[0].tokens.tolist() == [10, 11, 12]
    assert subs[0].labels.tolist() == [11, 12, 13]
    assert subs[0].loss_mask.tolist() == [0, 1, 1]
    assert subs[1].tokens.tolist() == [20, 21]
    assert subs[1].labels.tolist() == [21, 22]
    assert subs[1].loss_mask.tolist() == [1, 1]
    assert subs[1].positions.tolist() == [0, 1]


def test_the_label_after_eos_is_untrained_as_in_megatron_bridge() -> None:
    """Megatron-Bridge 0.6.2's packed collate sets loss_mask[tokens == eos_id] = 0 (its
    data/packing/gpt_sft.py); ``tests/megatron/`` checks this against that code itself."""
    eos = 7
    # "<|im_end|>" (7) closes the assistant turn and "\n" (9) follows it: sft-prep marks both trained.
    ids = np.array([1, 5, 6, 7, 9, 2, 7, 9], dtype=np.int32)
    mask = np.array([0, 1, 1, 1, 0, 1, 1, 0], dtype=np.uint8)
    starts = np.array([0, 5], dtype=np.int32)
    plain = split_row(ids, mask, starts)
    assert [s.loss_mask.tolist() for s in plain] == [[0, 1, 1, 1], [1, 1]]
    subs = split_row(ids, mask, starts, eos_id=eos)
    # the label 9 after each eos is no longer trained; everything else is unchanged
    assert [s.loss_mask.tolist() for s in subs] == [[0, 1, 1, 0], [1, 0]]
    assert [s.labels.tolist() for s in subs] == [s.labels.tolist() for s in plain]


@pytest.mark.parametrize(("meta", "multiple"), [({}, 1), ({"pad_seq_to_mult": 4}, 4)])
def test_pad_multiple_from_metadata(meta: dict[str, int], multiple: int) -> None:
    assert pad_multiple_of(meta) == multiple


@pytest.mark.parametrize("bad", [0, -2, 2.5, "4", True])
def test_bad_pad_multiple_is_a_data_error(bad: object) -> None:
    with pytest.raises(DataError, match="pad_seq_to_mult"):
        pad_multiple_of({"pad_seq_to_mult": bad})


def test_packed_split_reads_all_rows_across_shards(make_data: Callable[..., Path]) -> None:
    info = inspect_data(str(make_data(n_conversations=30)))
    split = PackedSplit(info.shards["train"], info.pack_size)
    rows = [split.row(i) for i in range(len(split))]
    assert len(rows) == split.num_rows > 2
    for ids, mask, starts in rows:
        assert len(ids) == len(mask) <= 64 and starts[0] == 0


def test_corrupt_rows_are_reported_with_their_place(tmp_path: Path) -> None:
    shard = tmp_path / "s.parquet"
    write_shard(shard, [{"input_ids": [1, 2, 3], "loss_mask": [0, 1], "seq_start_id": [0]}])
    with pytest.raises(DataError, match=r"s.parquet row 0: input_ids has 3 tokens but loss_mask has 2"):
        PackedSplit([str(shard)], 64).row(0)
    write_shard(shard, [{"input_ids": [1, 2, 3], "loss_mask": [0, 1, 0], "seq_start_id": [1]}])
    with pytest.raises(DataError, match="seq_start_id must start with 0"):
        PackedSplit([str(shard)], 64).row(0)
    write_shard(shard, [{"input_ids": list(range(1, 10)), "loss_mask": [0] * 9, "seq_start_id": [0]}])
    with pytest.raises(DataError, match="exceed the pack size 8"):
        PackedSplit([str(shard)], 8).row(0)


def test_missing_columns(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    shard = tmp_path / "s.parquet"
    pq.write_table(pa.table({"input_ids": [[1, 2]]}), shard)
    with pytest.raises(DataError, match="cannot read packed Parquet"):
        PackedSplit([str(shard)], 64)


def test_all_shards_empty(tmp_path: Path) -> None:
    shard = tmp_path / "s.parquet"
    write_shard(shard, [])
    with pytest.raises(DataError, match="hold no rows"):
        PackedSplit([str(shard)], 64)


def test_sample_order_is_a_seeded_permutation_per_epoch() -> None:
    order = sample_order(5, seed=3, start=0, count=10)
    assert sorted(order[:5]) == sorted(order[5:]) == [0, 1, 2, 3, 4]
    assert order != sample_order(5, seed=4, start=0, count=10)
    # Resuming at sample 7 continues the same sequence.
    assert sample_order(5, seed=3, start=7, count=3) == order[7:10]
