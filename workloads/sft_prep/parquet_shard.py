"""Packed bins → one Parquet shard in the exact layout Megatron-Bridge's packed-Parquet SFT dataset reads.

Schema (nothing else, no padding): ``input_ids`` list<int32>, ``loss_mask`` list<uint8> (label-aligned,
rolled per sub-sequence), ``seq_start_id`` list<int32> (sub-sequence starts: 0 first, strictly
increasing). One row per bin, row groups of ``row_group_size`` bins so a reader can stream a shard.

Materialisation is vectorised: one gather index turns the shard's concatenated sequences into the
packed order, so building a 100k-bin shard costs a few numpy passes, not a Python loop per token.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from sft_common import storage
from sft_prep.loss_mask import roll_within
from sft_prep.packing import Packing
from sft_prep.ranges import gather_index

SCHEMA = pa.schema(
    [
        ("input_ids", pa.list_(pa.int32())),
        ("loss_mask", pa.list_(pa.uint8())),
        ("seq_start_id", pa.list_(pa.int32())),
    ]
)


class SequenceStore:
    """The sequences of one shard, appended as they are produced, concatenated once at the end.

    Holding one shard (not the dataset) is the memory bound of a worker.
    """

    def __init__(self) -> None:
        self._ids: list[np.ndarray] = []
        self._masks: list[np.ndarray] = []
        self._lengths: list[np.ndarray] = []
        self._count = 0

    def extend(self, ids: np.ndarray, mask: np.ndarray, lengths: np.ndarray) -> None:
        """Append a batch of sequences given end to end (as ``ProcessResult`` holds them)."""
        if len(ids) != len(mask) or int(np.sum(lengths)) != len(ids):
            raise ValueError("ids, mask and lengths of a sequence batch disagree")
        if len(lengths) and int(np.min(lengths)) < 1:
            raise ValueError("an empty sequence cannot be packed")
        if len(lengths):
            self._ids.append(np.asarray(ids, dtype=np.int32))
            self._masks.append(np.asarray(mask, dtype=np.uint8))
            self._lengths.append(np.asarray(lengths, dtype=np.int64))
            self._count += len(lengths)

    def __len__(self) -> int:
        return self._count

    @property
    def lengths(self) -> np.ndarray:
        return np.concatenate(self._lengths) if self._lengths else np.zeros(0, np.int64)

    def take(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ids, per-token assistant mask, lengths), each sequence contiguous in input order.

        Empties the store, so the per-sequence arrays are freed while the shard is packed."""
        if not self._ids:
            out = np.zeros(0, np.int32), np.zeros(0, np.uint8), np.zeros(0, np.int64)
        else:
            out = np.concatenate(self._ids), np.concatenate(self._masks), self.lengths
        self._ids, self._masks, self._lengths, self._count = [], [], [], 0
        return out


@dataclass(frozen=True)
class PackedBins:
    """All bins of a shard, flattened: bin ``b`` is ``input_ids[token_offsets[b]:token_offsets[b+1]]``."""

    input_ids: np.ndarray  # int32
    loss_mask: np.ndarray  # uint8, label-aligned
    token_offsets: np.ndarray  # int64, num_bins + 1
    seq_starts: np.ndarray  # int32, start of each sub-sequence within its bin
    seq_offsets: np.ndarray  # int64, num_bins + 1, into seq_starts

    @property
    def num_bins(self) -> int:
        return len(self.token_offsets) - 1

    def row(self, b: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        lo, hi = self.token_offsets[b], self.token_offsets[b + 1]
        return (
            self.input_ids[lo:hi],
            self.loss_mask[lo:hi],
            self.seq_starts[self.seq_offsets[b] : self.seq_offsets[b + 1]],
        )


def materialize(
    ids: np.ndarray,
    mask: np.ndarray,
    lengths: np.ndarray,
    packing: Packing,
    bin_order: np.ndarray | None = None,
    starts: np.ndarray | None = None,
) -> PackedBins:
    """Lay sequences out bin by bin (optionally only the bins in ``bin_order``, in that order), rolling
    each mask within its sequence. ``starts`` (offsets of the sequences in ``ids``) may be passed in
    when materialising a shard part by part."""
    lengths = np.asarray(lengths, dtype=np.int64)
    if starts is None:
        starts = sequence_starts(lengths)
    order, seq_offsets = packing.order, packing.offsets
    if bin_order is not None:
        counts = np.diff(seq_offsets)[bin_order]
        order = order[gather_index(seq_offsets[:-1][bin_order], counts)]
        seq_offsets = np.zeros(len(counts) + 1, dtype=np.int64)
        np.cumsum(counts, out=seq_offsets[1:])
    packed_len = lengths[order]
    out_starts = np.zeros(len(order), dtype=np.int64)
    if len(order):
        np.cumsum(packed_len[:-1], out=out_starts[1:])
    gather = gather_index(starts[order], packed_len)
    out_ids = ids[gather]
    out_mask = roll_within(mask[gather], packed_len)
    seq_end = np.concatenate([[0], np.cumsum(packed_len)])
    token_offsets = seq_end[seq_offsets]
    bin_of_seq = np.repeat(np.arange(len(seq_offsets) - 1), np.diff(seq_offsets))
    seq_starts = (out_starts - token_offsets[bin_of_seq]).astype(np.int32)
    return PackedBins(out_ids, out_mask, token_offsets, seq_starts, seq_offsets)


def sequence_starts(lengths: np.ndarray) -> np.ndarray:
    starts = np.zeros(len(lengths), dtype=np.int64)
    if len(lengths):
        np.cumsum(lengths[:-1], out=starts[1:])
    return starts


def packed_parts(
    ids: np.ndarray,
    mask: np.ndarray,
    lengths: np.ndarray,
    packing: Packing,
    bin_order: np.ndarray | None,
    row_group_size: int,
) -> Iterator[PackedBins]:
    """The shard's bins a few row groups at a time, so that the packed copy of a shard never exists
    in full next to its sequences (memory stays ~ the sequences plus one part)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    starts = sequence_starts(lengths)
    order = np.arange(packing.num_bins) if bin_order is None else np.asarray(bin_order)
    part = row_group_size * max(1, 2048 // row_group_size)  # whole row groups per part
    for lo in range(0, len(order), part):
        yield materialize(ids, mask, lengths, packing, order[lo : lo + part], starts)


_NUMPY_TYPES = {pa.int32(): np.int32, pa.uint8(): np.uint8}


def _flat_array(values: np.ndarray, value_type: pa.DataType) -> pa.Array:
    """A zero-copy Arrow array over a numpy array. Not ``pa.array``: that checks for pandas types
    and so imports pandas (a second and ~50 MB per process) whenever it is installed, as it is with
    the ``datasets`` package."""
    data = np.ascontiguousarray(values, dtype=_NUMPY_TYPES[value_type])
    return pa.Array.from_buffers(value_type, len(data), [None, pa.py_buffer(data)])


def _list_array(values: np.ndarray, offsets: np.ndarray, value_type: pa.DataType) -> pa.ListArray:
    rebased = (offsets - offsets[0]).astype(np.int32)
    return pa.ListArray.from_arrays(_flat_array(rebased, pa.int32()), _flat_array(values, value_type))


def row_group_tables(packed: PackedBins, row_group_size: int) -> Iterator[pa.Table]:
    """One Arrow table per row group (list offsets are int32, so each group is built on its own)."""
    for lo in range(0, packed.num_bins, row_group_size):
        hi = min(lo + row_group_size, packed.num_bins)
        t0, t1 = packed.token_offsets[lo], packed.token_offsets[hi]
        s0, s1 = packed.seq_offsets[lo], packed.seq_offsets[hi]
        tok_off = packed.token_offsets[lo : hi + 1]
        seq_off = packed.seq_offsets[lo : hi + 1]
        yield pa.Table.from_arrays(
            [
                _list_array(packed.input_ids[t0:t1], tok_off, pa.int32()),
                _list_array(packed.loss_mask[t0:t1], tok_off, pa.uint8()),
                _list_array(packed.seq_starts[s0:s1], seq_off, pa.int32()),
            ],
            schema=SCHEMA,
        )


def write_local(path: Path, parts: Iterable[PackedBins], row_group_size: int, compression: str) -> int:
    """Write the parts (each a whole number of row groups, the last may be short); returns bins written."""
    codec = None if compression == "none" else compression
    bins = 0
    with pq.ParquetWriter(str(path), SCHEMA, compression=codec) as writer:
        for packed in parts:
            bins += packed.num_bins
            for table in row_group_tables(packed, row_group_size):
                writer.write_table(table, row_group_size=row_group_size)
    return bins


def write_shard(
    uri: str, parts: PackedBins | Iterable[PackedBins], row_group_size: int, compression: str
) -> int:
    """Write atomically (temp + rename locally, one upload on S3); returns the file size in bytes."""
    if isinstance(parts, PackedBins):
        parts = [parts]
    with storage.atomic_write_path(uri) as tmp:
        if write_local(tmp, parts, row_group_size, compression) == 0:
            raise ValueError(
                f"{uri}: refusing to write a shard without rows (Megatron-Bridge rejects empty files)"
            )
        return tmp.stat().st_size
