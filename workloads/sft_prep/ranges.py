"""Index arithmetic for "these ranges of a flat array, laid end to end", used wherever sequences move.

Sequences live as one flat token array plus lengths (a batch, a shard, a packed bin); reordering,
dropping or repeating them is one gather with the index built here, never a Python loop per token.
"""

from __future__ import annotations

import numpy as np


def gather_index(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Index that takes ``flat[starts[i] : starts[i] + lengths[i]]`` for each ``i``, end to end."""
    lengths = np.asarray(lengths, dtype=np.int64)
    out_starts = np.cumsum(lengths) - lengths
    index = np.repeat(np.asarray(starts, dtype=np.int64) - out_starts, lengths)
    index += np.arange(int(lengths.sum()), dtype=np.int64)
    return index


def group_sums(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Sums of consecutive groups of ``counts[i]`` values (groups may be empty), as int64."""
    totals = np.concatenate(([0], np.cumsum(values, dtype=np.int64)))
    return np.diff(totals[np.cumsum(counts)], prepend=0).astype(np.int64)
