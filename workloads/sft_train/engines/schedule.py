"""The learning-rate schedule as a pure function of the iteration, Megatron's formula.

Being a function of the iteration alone, the schedule needs no saved state: a resumed run gets
the same rates from its iteration count.
"""

from __future__ import annotations

import math


def learning_rate(
    iteration: int,
    max_lr: float,
    min_lr: float,
    warmup_iters: int,
    decay_iters: int,
    style: str = "cosine",
) -> float:
    """LR used by the optimizer step of ``iteration`` (0-based), as Megatron's OptimizerParamScheduler.

    Warm-up rises linearly from 0 (so iteration 0 of a warmed-up run steps with lr 0, as Megatron
    does); afterwards the rate decays from ``max_lr`` to ``min_lr`` at ``decay_iters``.
    """
    if warmup_iters > 0 and iteration <= warmup_iters:
        return max_lr * iteration / warmup_iters
    if style == "constant":
        return max_lr
    if iteration > decay_iters:
        return min_lr
    span = decay_iters - warmup_iters
    ratio = (iteration - warmup_iters) / span if span > 0 else 1.0
    if style == "linear":
        coeff = 1.0 - ratio
    elif style == "cosine":
        coeff = 0.5 * (math.cos(math.pi * ratio) + 1.0)
    else:
        raise ValueError(f"unknown lr decay style {style!r}")
    return min_lr + coeff * (max_lr - min_lr)
