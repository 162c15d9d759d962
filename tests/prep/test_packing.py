"""Bin packing: validity properties, equality with naive references, tightness at scale (not speed)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sft_prep.packing import ALGORITHMS, best_fit, first_fit, lower_bound_bins, pack


def naive_first_fit(lengths: list[int], pack_size: int) -> list[int]:
    """The reference's O(n·bins) first fit, as the oracle for the segment tree."""
    room: list[int] = []
    out = []
    for length in lengths:
        for b, r in enumerate(room):
            if r >= length:
                room[b] -= length
                out.append(b)
                break
        else:
            room.append(pack_size - length)
            out.append(len(room) - 1)
    return out


def naive_best_fit_loads(lengths: list[int], pack_size: int) -> list[int]:
    """Best fit by scanning: the bin with the least room that still fits. Returns sorted loads."""
    room: list[int] = []
    for length in lengths:
        fits = [(r, b) for b, r in enumerate(room) if r >= length]
        if fits:
            _, b = min(fits)
            room[b] -= length
        else:
            room.append(pack_size - length)
    return sorted(pack_size - r for r in room)


lengths_and_size = st.integers(min_value=1, max_value=300).flatmap(
    lambda size: st.tuples(st.lists(st.integers(min_value=1, max_value=size), max_size=200), st.just(size))
)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@settings(max_examples=150, deadline=None)
@given(case=lengths_and_size, seed=st.integers(0, 2**31))
def test_every_sequence_in_exactly_one_bin_and_no_bin_overflows(
    algorithm: str, case: tuple[list[int], int], seed: int
) -> None:
    lengths, size = case
    p = pack(lengths, size, algorithm, seed)  # type: ignore[arg-type]
    assert sorted(p.order.tolist()) == list(range(len(lengths)))
    assert p.offsets[0] == 0 and p.offsets[-1] == len(lengths)
    assert all(np.diff(p.offsets) >= 1), "no empty bins"
    loads = p.loads(np.array(lengths))
    assert (loads <= size).all()
    assert p.num_bins >= lower_bound_bins(np.array(lengths), size)
    assert int(loads.sum()) == sum(lengths)
    # first fit and best fit never leave two bins that could be merged into one
    if p.num_bins >= 2:
        smallest = np.sort(loads)[:2]
        assert smallest.sum() > size


@settings(max_examples=200, deadline=None)
@given(case=lengths_and_size)
def test_segment_tree_first_fit_equals_naive_first_fit(case: tuple[list[int], int]) -> None:
    lengths, size = case
    assert first_fit(lengths, size) == naive_first_fit(lengths, size)


@settings(max_examples=200, deadline=None)
@given(case=lengths_and_size)
def test_bucket_best_fit_matches_naive_best_fit(case: tuple[list[int], int]) -> None:
    lengths, size = case
    bins = best_fit(lengths, size)
    loads = [0] * (max(bins) + 1 if bins else 0)
    for b, length in zip(bins, lengths, strict=True):
        loads[b] += length
    assert sorted(loads) == naive_best_fit_loads(lengths, size)


@pytest.mark.parametrize("algorithm", ["first_fit_decreasing", "best_fit_decreasing"])
@settings(max_examples=80, deadline=None)
@given(case=lengths_and_size, data=st.data())
def test_decreasing_algorithms_do_not_depend_on_input_order(
    algorithm: str, case: tuple[list[int], int], data: st.DataObject
) -> None:
    lengths, size = case
    shuffled = data.draw(st.permutations(lengths))
    a = pack(lengths, size, algorithm)  # type: ignore[arg-type]
    b = pack(shuffled, size, algorithm)  # type: ignore[arg-type]
    assert sorted(a.loads(np.array(lengths)).tolist()) == sorted(b.loads(np.array(shuffled)).tolist())


def test_first_fit_shuffle_is_deterministic_per_seed_and_differs_across_seeds() -> None:
    lengths = np.random.default_rng(0).integers(1, 900, 2000)
    a, b = pack(lengths, 1024, "first_fit_shuffle", 7), pack(lengths, 1024, "first_fit_shuffle", 7)
    assert a.order.tolist() == b.order.tolist() and a.offsets.tolist() == b.offsets.tolist()
    assert pack(lengths, 1024, "first_fit_shuffle", 8).order.tolist() != a.order.tolist()


def _realistic(rng: np.random.Generator, n: int, pack_size: int) -> np.ndarray:
    """Chat-like lengths: log-normal body, a heavy tail clipped at the limit."""
    return np.clip(rng.lognormal(math.log(pack_size / 8), 0.9, n).astype(np.int64), 1, pack_size)


def test_best_fit_decreasing_packs_at_least_as_tightly_as_the_reference_algorithms() -> None:
    """Why BFD is the default: on realistic length mixes it never needs more bins than FFD or FFS."""
    rng = np.random.default_rng(1234)
    for trial in range(40):
        pack_size = int(rng.choice([512, 2048, 4096]))
        lengths = _realistic(rng, int(rng.integers(200, 5000)), pack_size)
        bfd = pack(lengths, pack_size, "best_fit_decreasing").num_bins
        ffd = pack(lengths, pack_size, "first_fit_decreasing").num_bins
        ffs = pack(lengths, pack_size, "first_fit_shuffle", trial).num_bins
        assert bfd <= ffd and bfd <= ffs, (trial, bfd, ffd, ffs)
        assert bfd <= lower_bound_bins(lengths, pack_size) * 1.02 + 1


@pytest.mark.slow
def test_packing_a_million_lengths_is_valid_and_tight() -> None:
    """Scale check without a clock (time is ``make bench-prep``'s job): 1M realistic lengths are all
    placed once, no bin overflows, and BFD/FFD stay within 1 % of the lower bound."""
    lengths = _realistic(np.random.default_rng(0), 1_000_000, 4096)
    bound = lower_bound_bins(lengths, 4096)
    for algorithm in ALGORITHMS:
        p = pack(lengths, 4096, algorithm, 1)  # type: ignore[arg-type]
        assert p.offsets[-1] == 1_000_000
        assert np.array_equal(np.sort(p.order), np.arange(1_000_000))
        assert int(p.loads(lengths).max()) <= 4096
        if algorithm != "first_fit_shuffle":
            assert p.num_bins <= bound * 1.01, (algorithm, p.num_bins, bound)


def test_invalid_input_is_rejected_with_the_reason() -> None:
    with pytest.raises(ValueError, match=r"1\.\.8"):
        pack([3, 9], 8, "best_fit_decreasing")
    with pytest.raises(ValueError, match=r"1\.\.8"):
        pack([0, 3], 8, "first_fit_decreasing")
    with pytest.raises(ValueError, match="unknown packing algorithm"):
        pack([3], 8, "next_fit")  # type: ignore[arg-type]
    empty = pack([], 8, "best_fit_decreasing")
    assert empty.num_bins == 0 and empty.bins() == []
