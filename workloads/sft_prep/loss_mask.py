"""Aligning loss masks to labels, one sub-sequence at a time.

Megatron-Bridge's packed collate cuts each sub-sequence ``[s, e)`` of a bin into
``tokens = ids[s:e-1]``, ``labels = ids[s+1:e]`` and ``loss_mask = mask[s:e-1]``. So the stored
``loss_mask[j]`` must say whether *label* ``ids[j+1]`` is trained, i.e. the per-token "is assistant"
mask shifted left by one *within* each sub-sequence, with the last position 0. Rolling the whole bin at
once would make the first token of the next conversation a trained label of the previous one.
"""

from __future__ import annotations

import numpy as np


def roll_within(mask: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Label-aligned mask for concatenated sub-sequences of the given lengths (all ≥ 1).

    ``aligned[0:L-1] = mask[1:L]`` and ``aligned[L-1] = 0`` for each sub-sequence.
    """
    mask = np.asarray(mask, dtype=np.uint8)
    lengths = np.asarray(lengths, dtype=np.int64)
    if int(lengths.sum()) != len(mask):
        raise ValueError(f"lengths sum to {int(lengths.sum())} but the mask has {len(mask)} tokens")
    if len(lengths) and lengths.min() < 1:
        raise ValueError("every sub-sequence needs at least one token")
    aligned = np.empty_like(mask)
    if len(mask):
        aligned[:-1] = mask[1:]
        aligned[np.cumsum(lengths) - 1] = 0
    return aligned
