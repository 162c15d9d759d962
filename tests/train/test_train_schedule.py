"""The learning-rate schedule follows Megatron's OptimizerParamScheduler formula."""

from __future__ import annotations

import math

import pytest

from sft_train.engines.schedule import learning_rate


def lr(i: int, style: str = "cosine") -> float:
    return learning_rate(i, max_lr=1e-4, min_lr=1e-6, warmup_iters=10, decay_iters=110, style=style)


def test_linear_warmup_from_zero() -> None:
    assert lr(0) == 0.0
    assert lr(5) == pytest.approx(5e-5)
    assert lr(10) == pytest.approx(1e-4)


def test_cosine_decay_to_min() -> None:
    assert lr(60) == pytest.approx(1e-6 + 0.5 * (1e-4 - 1e-6))
    assert lr(35) == pytest.approx(1e-6 + 0.5 * (math.cos(math.pi * 0.25) + 1) * (1e-4 - 1e-6))
    assert lr(110) == pytest.approx(1e-6)
    assert lr(500) == 1e-6


def test_other_styles() -> None:
    assert lr(60, "linear") == pytest.approx(1e-6 + 0.5 * (1e-4 - 1e-6))
    assert lr(60, "constant") == 1e-4
    with pytest.raises(ValueError, match="unknown lr decay style"):
        lr(60, "wsd")


def test_no_warmup_starts_at_peak() -> None:
    assert learning_rate(0, 1e-4, 0.0, 0, 100) == 1e-4
