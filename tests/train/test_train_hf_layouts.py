"""The hf engine's row layouts (hf_batch: buckets, packed) train exactly what sub-sequences fed one by
one train: same loss sum, same trained-token count, same gradients; and the layout choice.

The GPU path (flash-attention varlen) cannot run here: only its selection logic is tested
(``attention_implementation``, the varlen cost model); tests/gpu runs the engine on a GPU.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from trainfixtures import build_tiny_llama, pack, random_conversation

from sft_train.engines.hf_batch import (
    MAX_PADDING,
    Batcher,
    CostModel,
    MicroBatch,
    buckets,
    collate,
    forward_loss,
    packed_rows_supported,
)
from sft_train.engines.hf_batch import pack as pack_row
from sft_train.engines.hf_model import attention_implementation, load_base_model
from sft_train.packed_data import SubSequence, split_row


@pytest.fixture(scope="module")
def model(tiny_model: Path) -> torch.nn.Module:
    m = load_base_model(tiny_model, "test model")
    m.train()  # dropout is 0 in the tiny Llama: train mode computes what a training step computes
    return m


def subsequences(seed: int, n: int, lo: int = 4, hi: int = 40) -> list[SubSequence]:
    rng = np.random.default_rng(seed)
    (row,) = pack([random_conversation(rng, lo, hi) for _ in range(n)], pack_size=100_000)
    ids = np.array(row["input_ids"], dtype=np.int32)
    mask = np.array(row["loss_mask"], dtype=np.uint8)
    starts = np.array(row["seq_start_id"], dtype=np.int32)
    return split_row(ids, mask, starts, eos_id=2)


def loss_and_grads(model: torch.nn.Module, batches: list) -> tuple[float, int, dict[str, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    total, count = 0.0, 0
    for batch in batches:
        loss, n = forward_loss(model, batch)
        loss.backward()
        total += float(loss.detach())
        count += n
    grads = {name: p.grad.detach().clone() for name, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return total, count, grads


def assert_same_training(model: torch.nn.Module, subs: list[SubSequence], micro: MicroBatch) -> None:
    """``micro`` against the unpacked reference: every sub-sequence alone, a batch of one."""
    ref_loss, ref_count, ref_grads = loss_and_grads(model, [collate([s]) for s in subs])
    loss, count, grads = loss_and_grads(model, [micro])
    assert count == ref_count > 0
    assert loss == pytest.approx(ref_loss, rel=1e-5)
    assert grads.keys() == ref_grads.keys()
    for name, grad in grads.items():
        torch.testing.assert_close(grad, ref_grads[name], rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("seed", [1, 2])
def test_packed_row_trains_like_subsequences_one_by_one(model: torch.nn.Module, seed: int) -> None:
    subs = subsequences(seed, 6)
    assert packed_rows_supported(model)
    assert_same_training(model, subs, MicroBatch((pack_row(subs),), "packed"))


@pytest.mark.parametrize("seed", [3, 4])
def test_buckets_train_like_subsequences_one_by_one(model: torch.nn.Module, seed: int) -> None:
    subs = subsequences(seed, 9, 3, 60)
    cost = CostModel.for_model(model)
    micro = Batcher(cost, packed_ok=False).build(subs)
    assert micro.layout == "buckets" and len(micro.parts) > 1
    assert micro.num_slots <= MAX_PADDING * micro.num_tokens
    assert_same_training(model, subs, micro)


def test_the_gradient_check_would_catch_a_leak_across_subsequences(model: torch.nn.Module) -> None:
    """Negative control: the packed row with a plain causal mask (attention crossing sub-sequence
    boundaries) fails the comparison above."""
    subs = subsequences(1, 6)
    leaky = pack_row(subs)
    leaky.packed = False  # the all-ones attention mask goes to the model: one causal sequence
    with pytest.raises(AssertionError):
        assert_same_training(model, subs, MicroBatch((leaky,), "packed"))


def test_packed_layout_is_limited_to_architectures_that_keep_subsequences_apart(tiny_model: Path) -> None:
    model = load_base_model(tiny_model, "test model")
    assert packed_rows_supported(model)
    model.config.model_type = "nemotron_h"  # Mamba mixers carry state across a packed row's boundary
    assert not packed_rows_supported(model)
    assert Batcher.for_model(model).packed_ok is False
    eager = load_base_model(tiny_model, "test model", "eager")
    assert packed_rows_supported(eager)


def test_attention_implementation_selection() -> None:
    assert attention_implementation("cpu", "bf16", flash_installed=True) == "sdpa"
    assert attention_implementation("cpu", "fp32", flash_installed=True) == "sdpa"
    assert attention_implementation("cuda", "bf16", flash_installed=True) == "flash_attention_2"
    assert attention_implementation("cuda", "fp32", flash_installed=True) == "sdpa", "flash-attn takes 16-bit"
    assert attention_implementation("cuda", "bf16", flash_installed=False) == "sdpa"


def test_varlen_attention_packs_every_row_and_sdpa_buckets_long_ones(model: torch.nn.Module) -> None:
    """The choice on the demo shape (pack 1024, ~5 sub-sequences) and a 4096 pack of the same lengths,
    as measured by benchmarks/bench_train.py on CPU: buckets win both with SDPA's dense mask; with
    flash-attention's varlen kernel a packed row has no padding and no wasted pairs, so it always wins."""
    sdpa = CostModel.for_model(model, "sdpa")
    flash = CostModel.for_model(model, "flash_attention_2")
    assert flash.varlen and not sdpa.varlen
    demo = [300, 220, 180, 150, 90, 60]
    long = demo * 4
    for lengths in (demo, long):
        assert Batcher(sdpa, packed_ok=True).plan(lengths)[0] == "buckets"
        assert Batcher(flash, packed_ok=True).plan(lengths)[0] == "packed"
    short = [5, 7, 6, 4, 8, 5, 6, 7]  # tiny sub-sequences: one pass beats several
    assert Batcher(sdpa, packed_ok=True).plan(short)[0] == "packed"
    assert Batcher(sdpa, packed_ok=False).plan(short)[0] == "buckets"


@settings(max_examples=200, deadline=None)
@given(lengths=st.lists(st.integers(1, 4096), min_size=1, max_size=60))
def test_buckets_cover_each_subsequence_once_within_the_padding_bound(lengths: list[int]) -> None:
    cost = CostModel(token=3e5, pair=512, call=1e6)
    groups = buckets(lengths, cost)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    for g in groups:
        assert len(g) * max(lengths[i] for i in g) <= MAX_PADDING * sum(lengths[i] for i in g)


def test_train_sets_threads_from_the_cpu_quota(tmp_path: Path, make_data, tiny_model: Path) -> None:  # type: ignore[no-untyped-def]
    """sft-train logs and uses usable_cpus() threads (no OMP_NUM_THREADS), shared by LOCAL_WORLD_SIZE."""
    from trainfixtures import hf_config, write_config

    from sft_common.cpus import usable_cpus

    data = make_data()
    config = write_config(tmp_path / "c.yaml", hf_config(data, tiny_model, None, **{"train.train_iters": 1}))
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    env["SFT_PROGRESS"] = "off"
    done = subprocess.run(
        [sys.executable, "-m", "sft_train", "--config", str(config)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert f"torch threads: {usable_cpus()} per process ({usable_cpus()} usable CPUs)" in done.stdout


def test_build_tiny_llama_is_a_packed_architecture(tmp_path: Path) -> None:
    model = load_base_model(build_tiny_llama(tmp_path / "m"), "m")
    assert model.config.model_type == "llama"
