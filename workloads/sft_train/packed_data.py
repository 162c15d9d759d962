"""Reading what ``sft-prep`` writes: ``{data}/metadata.json`` and ``{data}/splits/<split>/*.parquet``.

Each Parquet row is one packed bin: ``input_ids`` (list<int32>), ``loss_mask`` (list<uint8>, already
rolled per sub-sequence: ``loss_mask[j] == 1`` means the label ``input_ids[j + 1]`` is trained) and
``seq_start_id`` (list<int32>, where each packed sub-sequence starts).

:func:`split_row` turns a row into sub-sequences exactly as Megatron-Bridge's packed dataset collates
it, so both engines train on identical (tokens, labels, loss mask) triples: for a sub-sequence
``[s, e)``, ``tokens = ids[s:e-1]``, ``labels = ids[s+1:e]``, ``loss_mask = mask[s:e-1]``, and position
ids restart at 0. Megatron-Bridge 0.6.2 (the pinned version) then sets ``loss_mask[tokens == eos_id]
= 0``: a label whose input token is eos is never trained. With eos ``<|im_end|>`` that is the ``\n``
closing each turn — the model learns to emit ``<|im_end|>`` and stops there; what follows it is the
template's, not the model's. ``split_row(..., eos_id=…)`` applies the same rule, so both engines train
exactly the same labels (``tests/megatron/`` checks it against Megatron-Bridge's own collate).

``metadata.json`` ``pad_seq_to_mult`` (absent: 1) is the multiple sft-prep padded each sub-sequence
to (eos tokens, mask 0); context parallelism needs it (see ``megatron_plan.required_pad_multiple``).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sft_common import storage
from sft_common.result import Reason
from sft_train.errors import DataError, PackSizeMismatch

COLUMNS = ("input_ids", "loss_mask", "seq_start_id")
SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class DataInfo:
    """What the trainer needs to know about a prep output before it builds anything."""

    root: str
    pack_size: int
    shards: dict[str, list[str]]
    metadata: dict[str, Any] = field(default_factory=dict)

    def split_dir(self, split: str) -> str:
        return storage.join(self.root, "splits", split)


def pack_size_of(metadata: dict[str, Any], where: str) -> int:
    """The pack size recorded by sft-prep (``pack_size``; ``packSize`` accepted too)."""
    for key in ("pack_size", "packSize"):
        value = metadata.get(key)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int) or value < 2:
                raise DataError(f"{where}: '{key}' must be a positive integer, got {value!r}")
            return value
    raise DataError(f"{where} has no 'pack_size'; was it written by sft-prep?")


def inspect_data(root: str) -> DataInfo:
    """Check a prep output dir and list its shards; each problem is a :class:`DataError` saying what to do."""
    root = root.rstrip("/") or root
    if not storage.exists(root):
        raise DataError(f"data.path {root} does not exist; point it at an sft-prep output_dir")
    meta_uri = storage.join(root, "metadata.json")
    if not storage.exists(meta_uri):
        raise DataError(
            f"data.path {root} has no metadata.json: sft-prep has not finished there (it writes "
            "metadata.json after every shard is done) or this is not an sft-prep output_dir"
        )
    try:
        metadata = json.loads(storage.read_text(meta_uri))
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"{meta_uri} is not valid JSON: {exc}") from None
    if not isinstance(metadata, dict):
        raise DataError(f"{meta_uri} must hold a JSON object")
    pack_size = pack_size_of(metadata, meta_uri)
    shards = {split: storage.glob(storage.join(root, "splits", split, "*.parquet")) for split in SPLITS}
    if not shards["train"]:
        raise DataError(
            f"data.path {root} has no training shards: {storage.join(root, 'splits/train')} is empty"
        )
    return DataInfo(root=root, pack_size=pack_size, shards=shards, metadata=metadata)


def pad_multiple_of(metadata: dict[str, Any]) -> int:
    """The multiple sft-prep padded each packed sub-sequence to (``pad_seq_to_mult``; absent: 1)."""
    value = metadata.get("pad_seq_to_mult", 1)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise DataError(f"metadata.json: 'pad_seq_to_mult' must be a positive integer, got {value!r}")
    return value


def check_seq_length(pack_size: int, seq_length: int | None, what: str = "model.seq_length") -> int:
    """The training sequence length: the pack size, which an explicit model length must equal."""
    if seq_length is not None and seq_length != pack_size:
        raise PackSizeMismatch(
            f"{what} is {seq_length} but the data was packed into bins of {pack_size} tokens "
            f"(metadata.json pack_size); set {what} to {pack_size} or unset it, or re-run sft-prep "
            f"with pack_size={seq_length}"
        )
    return pack_size


@dataclass(frozen=True)
class SubSequence:
    """One packed sub-sequence as the model trains on it."""

    tokens: np.ndarray
    labels: np.ndarray
    loss_mask: np.ndarray

    @property
    def positions(self) -> np.ndarray:
        return np.arange(len(self.tokens), dtype=np.int64)


def boundaries(starts: np.ndarray, length: int) -> list[tuple[int, int]]:
    """``[s, e)`` of every sub-sequence: ``seq_start_id + [len(input_ids)]``."""
    edges = [*(int(s) for s in starts), length]
    return list(itertools.pairwise(edges))


def split_row(
    ids: np.ndarray, mask: np.ndarray, starts: np.ndarray, eos_id: int | None = None
) -> list[SubSequence]:
    """Megatron-Bridge's collate of one packed row; a one-token sub-sequence has nothing to predict.

    With ``eos_id``, the label after every eos token is untrained, as in Megatron-Bridge 0.6.2."""
    out = []
    for s, e in boundaries(starts, len(ids)):
        if e - s < 2:
            continue
        tokens = ids[s : e - 1].astype(np.int64)
        loss_mask = mask[s : e - 1].astype(np.int64)
        if eos_id is not None:
            loss_mask[tokens == eos_id] = 0
        out.append(SubSequence(tokens=tokens, labels=ids[s + 1 : e].astype(np.int64), loss_mask=loss_mask))
    return out


def data_tokenizer(metadata: dict[str, Any] | None) -> tuple[str | None, int | None]:
    """(name, vocabulary size) of the tokenizer the data was tokenized with, as sft-prep's
    ``metadata.json`` records it; None for what it does not say."""
    tok = (metadata or {}).get("tokenizer")
    if not isinstance(tok, dict):
        return (None if tok is None else str(tok)), None
    name = tok.get("model") or tok.get("name") or tok.get("path")
    size = tok.get("vocab_size")
    return (None if name is None else str(name)), (
        size if isinstance(size, int) and not isinstance(size, bool) else None
    )


def data_error(message: str) -> DataError:
    """Data that is there but cannot be trained on (reason DataError, not DataNotFound)."""
    return DataError(message, reason=Reason.DATA_ERROR)


def validate_row(ids: np.ndarray, mask: np.ndarray, starts: np.ndarray, pack_size: int, where: str) -> None:
    if len(ids) != len(mask):
        raise data_error(f"{where}: input_ids has {len(ids)} tokens but loss_mask has {len(mask)}")
    if len(ids) == 0:
        raise data_error(f"{where}: empty row")
    if len(ids) > pack_size:
        raise data_error(f"{where}: {len(ids)} tokens exceed the pack size {pack_size}")
    if len(starts) == 0 or starts[0] != 0:
        raise data_error(f"{where}: seq_start_id must start with 0, got {starts[:3].tolist()}")
    if np.any(np.diff(starts) <= 0) or starts[-1] >= len(ids):
        raise data_error(f"{where}: seq_start_id must be strictly increasing and below {len(ids)}")


class _Column:
    """A list<int> Parquet column held as flat values plus offsets (no per-row Python objects)."""

    def __init__(self, chunked: Any) -> None:
        array = chunked.combine_chunks()
        self.offsets = np.asarray(array.offsets.to_numpy(zero_copy_only=False), dtype=np.int64)
        self.values = np.asarray(array.values.to_numpy(zero_copy_only=False))

    def row(self, i: int) -> np.ndarray:
        return self.values[self.offsets[i] : self.offsets[i + 1]]


class PackedSplit:
    """All rows of one split, in memory (the hf engine's scale), indexable by global row number."""

    def __init__(self, shards: Sequence[str], pack_size: int, eos_id: int | None = None) -> None:
        import pyarrow.parquet as pq

        self.pack_size = pack_size
        self.eos_id = eos_id
        self._parts: list[tuple[str, dict[str, _Column]]] = []
        self._ends: list[int] = []
        total = 0
        for uri in shards:
            with storage.local_path(uri) as path:
                try:
                    table = pq.read_table(path, columns=list(COLUMNS))
                except Exception as exc:  # pyarrow raises several types for missing columns / bad files
                    message = f"{uri}: cannot read packed Parquet ({exc}); expected columns {COLUMNS}"
                    raise data_error(message) from None
            if table.num_rows == 0:
                continue
            self._parts.append((uri, {name: _Column(table.column(name)) for name in COLUMNS}))
            total += table.num_rows
            self._ends.append(total)
        if total == 0:
            raise data_error(f"the shards {', '.join(shards)} hold no rows")
        self.num_rows = total

    def __len__(self) -> int:
        return self.num_rows

    def row(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        part = int(np.searchsorted(self._ends, index, side="right"))
        first = self._ends[part - 1] if part else 0
        uri, cols = self._parts[part]
        local = index - first
        ids, mask, starts = (cols[name].row(local) for name in COLUMNS)
        validate_row(ids, mask, starts, self.pack_size, f"{uri} row {local}")
        return ids, mask, starts

    def subsequences(self, index: int) -> list[SubSequence]:
        return split_row(*self.row(index), eos_id=self.eos_id)

    def __iter__(self) -> Iterator[list[SubSequence]]:
        for i in range(self.num_rows):
            yield self.subsequences(i)


def sample_order(num_rows: int, seed: int, start: int, count: int) -> list[int]:
    """Rows for global samples ``start … start+count-1``: a fresh seeded shuffle each epoch.

    A pure function of (seed, sample number), so a resumed run continues the exact same order from
    its consumed-sample count without saving any iterator state.
    """
    out: list[int] = []
    cache: dict[int, np.ndarray] = {}
    for k in range(start, start + count):
        epoch, pos = divmod(k, num_rows)
        if epoch not in cache:
            cache[epoch] = np.random.default_rng([seed, epoch]).permutation(num_rows)
        out.append(int(cache[epoch][pos]))
    return out
