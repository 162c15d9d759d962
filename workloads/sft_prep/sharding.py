"""The shard plan: which input rows form which output shard, and which split each shard belongs to.

Follows the reference (NVIDIA-NeMo/Nemotron ``data_prep``):

* every shard holds rows of one dataset only, so a dataset's weight can be written next to each of
  its shards in ``blend.json``;
* input files are balanced over a dataset's shards by size (largest first onto the lightest shard,
  ties by path); with fewer files than shards, each file is split over several shards by row index
  modulo the file's shard count, the shard counts proportional to file size;
* valid/test take *whole* shards, drawn from the pool of all shards with a seeded shuffle (test first,
  then valid); a ratio > 0 gets at least one shard, train keeps at least one, and with at most two
  shards in total everything is train.

Differences, on purpose:

* ``num_shards`` is the total number of shards (the unit of parallelism the operator sizes its Job
  by), split over the datasets in proportion to their input bytes, at least one each; upstream gives
  every dataset ``num_shards`` of its own;
* ``sample`` reads the first N rows of each dataset and deals them out round-robin over the
  dataset's shards; upstream switches to a single shard, which disables valid/test splits;
* split counts come from the total pool of shards; upstream uses the per-dataset count;
* shards have global indices so that all can live as real files in ``splits/<split>/``; upstream
  symlinks them there, and object stores have no links.

Everything here is a pure function of the config and the listed input files, so every worker of a
distributed run computes the same plan independently.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sft_common.config import ConfigError
from sft_prep.config import DatasetSpec
from sft_prep.readers import SourceFile

SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class ShardSource:
    """Concatenate ``files``, keep the first ``limit`` rows, then rows with index ≡ remainder mod modulus."""

    files: tuple[str, ...]
    modulus: int = 1
    remainder: int = 0
    limit: int | None = None


@dataclass(frozen=True)
class Shard:
    index: int
    """Global index over all datasets (0..num_shards-1, contiguous per dataset)."""
    dataset: str
    weight: float
    split: str
    sources: tuple[ShardSource, ...]
    input_bytes: int
    """Bytes this shard reads (whole files, even when it keeps only every n-th row); drives its ETA."""

    @property
    def name(self) -> str:
        return f"shard_{self.index:06d}"

    @property
    def rel_path(self) -> str:
        return f"splits/{self.split}/{self.name}.parquet"

    @property
    def rel_prefix(self) -> str:
        """The path without '.parquet': what blend.json lists (Megatron-Bridge appends the suffix)."""
        return f"splits/{self.split}/{self.name}"


def assign_files(
    files: list[SourceFile], num_shards: int, sample: int | None
) -> list[tuple[ShardSource, ...]]:
    """Per local shard of one dataset, the sources it reads."""
    ordered = sorted(files, key=lambda f: f.uri)
    if sample is not None or (len(files) == 1 and files[0].uri.startswith("hf://")):
        uris = tuple(f.uri for f in ordered)
        return [(ShardSource(uris, num_shards, k, sample),) for k in range(num_shards)]
    if len(files) >= num_shards:
        return _balance_whole_files(files, num_shards)
    return _split_files_by_rows(files, num_shards)


def _balance_whole_files(files: list[SourceFile], num_shards: int) -> list[tuple[ShardSource, ...]]:
    heap = [(0, k) for k in range(num_shards)]
    owned: list[list[str]] = [[] for _ in range(num_shards)]
    for f in sorted(files, key=lambda f: (-f.size, f.uri)):
        load, k = heapq.heappop(heap)
        owned[k].append(f.uri)
        heapq.heappush(heap, (load + f.size, k))
    return [(ShardSource(tuple(sorted(uris))),) for uris in owned]


def _apportion(weights: list[float], total: int) -> list[int]:
    """``total`` whole units in proportion to ``weights``, at least one each (largest remainder)."""
    n = len(weights)
    scale = sum(weights)
    shares = [w / scale * total if scale > 0 else total / n for w in weights]
    counts = [max(1, math.floor(x)) for x in shares]
    by_remainder = sorted(range(n), key=lambda i: (-(shares[i] - counts[i]), i))
    i = 0
    while sum(counts) < total:
        counts[by_remainder[i % n]] += 1
        i += 1
    # The max(1, ·) floors may over-allocate: take back from the most rounded-up, never below one.
    by_excess = sorted(range(n), key=lambda i: (shares[i] - counts[i], i))
    i = 0
    while sum(counts) > total:
        j = by_excess[i % n]
        if counts[j] > 1:
            counts[j] -= 1
        i += 1
    return counts


def _split_files_by_rows(files: list[SourceFile], num_shards: int) -> list[tuple[ShardSource, ...]]:
    ordered = sorted(files, key=lambda f: (-f.size, f.uri))
    counts = _apportion([float(f.size) for f in ordered], num_shards)
    out: list[tuple[ShardSource, ...]] = []
    for f, n in zip(ordered, counts, strict=True):
        out.extend((ShardSource((f.uri,), n, r),) for r in range(n))
    return out


def split_sizes(total_shards: int, valid_ratio: float, test_ratio: float) -> tuple[int, int]:
    """(valid, test) shard counts: whole shards; none at all with ≤ 2 shards; train keeps ≥ 1."""
    if total_shards <= 2:
        return 0, 0

    def count(ratio: float) -> int:
        return 0 if ratio <= 0 else max(1, round(total_shards * ratio))

    valid, test = count(valid_ratio), count(test_ratio)
    room = total_shards - 1
    if valid + test > room:
        scale = room / (valid + test)
        valid, test = int(valid * scale), int(test * scale)
        if valid + test > room:
            test = max(0, room - valid)
    return valid, test


def assign_splits(total_shards: int, valid_ratio: float, test_ratio: float, seed: int) -> list[str]:
    """Split name per global shard index (seeded shuffle of the pool; test first, then valid)."""
    valid, test = split_sizes(total_shards, valid_ratio, test_ratio)
    pool = list(range(total_shards))
    random.Random(seed).shuffle(pool)
    splits = ["train"] * total_shards
    for i in pool[:test]:
        splits[i] = "test"
    for i in pool[test : test + valid]:
        splits[i] = "valid"
    return splits


def shards_per_dataset(sizes: list[int], num_shards: int, equal: bool = False) -> list[int]:
    """Split ``num_shards`` over datasets in proportion to their input bytes (largest remainder, ≥ 1 each).

    Hub datasets have no size up front; they count as the mean of the sized ones. ``equal`` (used with
    ``sample``, where every dataset yields the same number of rows) gives equal shares.
    """
    n = len(sizes)
    if num_shards < n:
        raise ConfigError(
            f"num_shards ({num_shards}) must be at least the number of datasets ({n}): every shard holds "
            "rows of one dataset so that blend.json can carry its weight"
        )
    known = [s for s in sizes if s > 0]
    fill = sum(known) / len(known) if known else 1.0
    return _apportion([1.0] * n if equal else [float(s) if s > 0 else fill for s in sizes], num_shards)


MIN_SHARD_BYTES_PER_PACK_TOKEN = 32
"""A shard gets at least ``32 * pack_size`` bytes of input (about eight bins of text at ~4 bytes a
token): bins are packed per shard, so a shard of a few rows packs into one mostly empty bin."""


def effective_num_shards(
    total_bytes: int, num_shards: int, num_datasets: int, pack_size: int, sample: int | None
) -> int:
    """``num_shards``, fewer for a small input (never below one per dataset). Inputs of unknown
    size (hub datasets) and ``sample`` runs keep the number asked for."""
    if sample is not None or total_bytes <= 0:
        return num_shards
    fits = -(-total_bytes // (MIN_SHARD_BYTES_PER_PACK_TOKEN * pack_size))
    return max(num_datasets, min(num_shards, fits))


def plan_shards(
    datasets: list[tuple[DatasetSpec, list[SourceFile]]],
    num_shards: int,
    valid_ratio: float,
    test_ratio: float,
    seed: int,
    sample: int | None,
) -> list[Shard]:
    """All shards of the run; global indices are contiguous per dataset, in dataset order."""
    counts = shards_per_dataset(
        [sum(f.size for f in files) for _, files in datasets], num_shards, sample is not None
    )
    # A dataset with output_split keeps all its shards in that split; the ratios draw from the others'
    # shards only (with none set this is the whole pool, as before).
    fixed: list[str | None] = []
    for (spec, _), count in zip(datasets, counts, strict=True):
        fixed += [spec.output_split] * count
    pool = [i for i, split in enumerate(fixed) if split is None]
    drawn = dict(zip(pool, assign_splits(len(pool), valid_ratio, test_ratio, seed), strict=True))
    shards = []
    index = 0
    for (spec, files), count in zip(datasets, counts, strict=True):
        sizes = {f.uri: f.size for f in files}
        for sources in assign_files(files, count, sample):
            read = sum(sizes.get(u, 0) for s in sources for u in s.files)
            split = fixed[index] or drawn[index]
            shards.append(Shard(index, spec.name, spec.weight, split, sources, read))
            index += 1
    return shards


def plan_split_warnings(
    valid_ratio: float, test_ratio: float, shards: list[Shard], lowered: str | None = None
) -> list[str]:
    """A ratio asked for that whole shards cannot give (no shard, or far from the ratio). ``shards``:
    those the ratios draw from (not those of a dataset with ``output_split``).

    ``lowered``: why num_shards was lowered for a small input; raising num_shards cannot help then,
    so the message gives the one way left (a dataset of its own with ``output_split``), once."""
    out = []
    for split, ratio in (("valid", valid_ratio), ("test", test_ratio)):
        if ratio <= 0:
            continue
        got = sum(1 for s in shards if s.split == split)
        own = f"give the {split} rows as a dataset of their own with output_split: {split} (any size)"
        if got == 0 and lowered:
            out.append(
                f"{lowered}; so {split}_ratio {ratio} gives no {split} split (splits take whole shards, "
                f"and with ≤ 2 shards all are train): {own}"
            )
        elif got == 0:
            why = "are all train (≤ 2 shards)" if len(shards) <= 2 else "round to 0"
            out.append(
                f"{split}_ratio {ratio} gives no {split} split: splits take whole shards and "
                f"{len(shards)} shard(s) {why}; "
                f"raise num_shards (≥ {max(3, math.ceil(1 / ratio))}) or {own}"
            )
        elif abs(got / len(shards) - ratio) > 0.5 * ratio:
            out.append(
                f"{split}_ratio {ratio} gives {got} of {len(shards)} shards ({got / len(shards):.0%}): "
                f"splits take whole shards; raise num_shards for a closer split"
            )
    return out


def realized_split_warnings(
    valid_ratio: float, test_ratio: float, splits: Mapping[str, Mapping[str, Any]]
) -> list[str]:
    """The split as it came out, in sequences (shards differ in size), when far from the ratio asked."""
    total = sum(int(splits[s].get("sequences") or 0) for s in SPLITS)
    out = []
    for split, ratio in (("valid", valid_ratio), ("test", test_ratio)):
        if ratio <= 0 or not total:
            continue
        share = int(splits[split].get("sequences") or 0) / total
        if share and abs(share - ratio) > 0.5 * ratio:
            out.append(
                f"{split} holds {share:.1%} of the sequences, asked {ratio:.1%} ({split}_ratio): "
                "splits take whole shards of unequal size"
            )
    return out
