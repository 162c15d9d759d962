"""Loss-mask roll per sub-sequence, checked against a re-implementation of Megatron-Bridge's collate."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sft_prep.loss_mask import roll_within
from sft_prep.packing import pack
from sft_prep.parquet_shard import materialize


def unroll_within(aligned: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Which tokens are trained labels (token j+1 trained iff aligned[j]): the inverse of roll_within.

    Returns a per-token mask where position 0 of every sub-sequence is 0 (a first token is never a label).
    """
    aligned = np.asarray(aligned, dtype=np.uint8)
    labels = np.zeros_like(aligned)
    if len(aligned):
        labels[1:] = aligned[:-1]
        labels[np.asarray(starts, dtype=np.int64)] = 0
    return labels


# A sequence: (token ids, per-token "is assistant" mask), at least one token.
sequence = st.integers(1, 40).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(0, 50_000), min_size=n, max_size=n),
        st.lists(st.integers(0, 1), min_size=n, max_size=n),
    )
)


def megatron_collate_labels(ids: np.ndarray, mask: np.ndarray, seq_start_id: list[int]) -> list[list[int]]:
    """What Megatron-Bridge trains on, per sub-sequence [s, e): labels ids[s+1:e] where mask[s:e-1] == 1."""
    bounds = [*seq_start_id, len(ids)]
    trained = []
    for s, e in itertools.pairwise(bounds):
        labels = ids[s + 1 : e]
        loss_mask = mask[s : e - 1]
        trained.append(labels[loss_mask == 1].tolist())
    return trained


def test_roll_matches_the_documented_example() -> None:
    # two sub-sequences: [a b c] with mask [0 1 1], [d e] with mask [1 1]
    aligned = roll_within(np.array([0, 1, 1, 1, 1]), np.array([3, 2]))
    # first: aligned[0:2] = [1, 1], last 0; second: aligned = [1, 0]
    assert aligned.tolist() == [1, 1, 0, 1, 0]


@settings(max_examples=300, deadline=None)
@given(seqs=st.lists(sequence, min_size=1, max_size=8))
def test_roll_is_per_subsequence_and_nothing_leaks(seqs: list[tuple[list[int], list[int]]]) -> None:
    lengths = np.array([len(ids) for ids, _ in seqs])
    mask = np.concatenate([np.array(m, dtype=np.uint8) for _, m in seqs])
    aligned = roll_within(mask, lengths)
    ends = np.cumsum(lengths)
    starts = ends - lengths
    assert (aligned[ends - 1] == 0).all(), "the last position of every sub-sequence has no label"
    for s, e in zip(starts, ends, strict=True):
        assert aligned[s : e - 1].tolist() == mask[s + 1 : e].tolist()
    # the inverse view recovers the original mask except on each first token (never a label)
    labels = unroll_within(aligned, starts)
    expected = mask.copy()
    expected[starts] = 0
    assert labels.tolist() == expected.tolist()


@settings(max_examples=200, deadline=None)
@given(
    seqs=st.lists(sequence, min_size=1, max_size=12), pack_size=st.integers(40, 120), seed=st.integers(0, 99)
)
def test_packed_rows_train_exactly_the_assistant_tokens_under_megatron_collate(
    seqs: list[tuple[list[int], list[int]]], pack_size: int, seed: int
) -> None:
    ids = np.concatenate([np.array(i, dtype=np.int32) for i, _ in seqs])
    mask = np.concatenate([np.array(m, dtype=np.uint8) for _, m in seqs])
    lengths = np.array([len(i) for i, _ in seqs])
    packing = pack(lengths, pack_size, "first_fit_shuffle", seed)
    bin_order = np.random.default_rng(seed).permutation(packing.num_bins)
    packed = materialize(ids, mask, lengths, packing, bin_order)
    trained: list[list[int]] = []
    for b in range(packed.num_bins):
        row_ids, row_mask, starts = packed.row(b)
        assert starts[0] == 0 and (np.diff(starts) > 0).all() and starts[-1] < len(row_ids)
        assert len(row_ids) <= pack_size
        trained.extend(megatron_collate_labels(row_ids, row_mask, starts.tolist()))
    # oracle: per original sequence, the assistant tokens except a sequence's first token
    expected = [[t for j, (t, m) in enumerate(zip(i, k, strict=True)) if m and j > 0] for i, k in seqs]
    assert sorted(trained) == sorted(expected)


def test_roll_rejects_inconsistent_lengths() -> None:
    with pytest.raises(ValueError, match="lengths sum"):
        roll_within(np.array([0, 1, 1]), np.array([2, 2]))
    with pytest.raises(ValueError, match="at least one token"):
        roll_within(np.array([0, 1]), np.array([2, 0]))
