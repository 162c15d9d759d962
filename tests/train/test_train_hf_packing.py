"""Proofs that the hf engine computes the packed loss Megatron computes, and trains the right labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from trainfixtures import Conversation, pack, random_conversation, roll, write_shard

from sft_train.engines.hf_batch import IGNORE, collate, forward_loss, token_loss_sum
from sft_train.engines.hf_model import load_base_model
from sft_train.packed_data import PackedSplit, SubSequence, split_row


@pytest.fixture(scope="module")
def model(tiny_model: Path) -> torch.nn.Module:
    m = load_base_model(tiny_model, "test model")
    m.eval()
    return m


def packed_row(seed: int = 1, n: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    (row,) = pack([random_conversation(rng, 6, 18) for _ in range(n)], pack_size=1000)
    return (
        np.array(row["input_ids"], dtype=np.int32),
        np.array(row["loss_mask"], dtype=np.uint8),
        np.array(row["seq_start_id"], dtype=np.int32),
    )


def thd_reference_loss(model: torch.nn.Module, subs: list[SubSequence]) -> tuple[float, int]:
    """Megatron's packed (THD) computation: all sub-sequences in one row, position ids restarting,
    attention limited by a block-diagonal causal mask (what cu_seqlens does in Megatron)."""
    tokens = torch.from_numpy(np.concatenate([s.tokens for s in subs]))[None]
    positions = torch.from_numpy(np.concatenate([s.positions for s in subs]))[None]
    labels = np.concatenate([np.where(s.loss_mask == 1, s.labels, IGNORE) for s in subs])
    segment = torch.from_numpy(np.concatenate([np.full(len(s.tokens), i) for i, s in enumerate(subs)]))
    n = len(segment)
    allowed = (segment[:, None] == segment[None, :]) & torch.ones(n, n, dtype=torch.bool).tril()
    mask = torch.zeros(n, n).masked_fill(~allowed, torch.finfo(torch.float32).min)[None, None]
    with torch.no_grad():
        logits = model(input_ids=tokens, position_ids=positions, attention_mask=mask).logits
    total, count = token_loss_sum(logits, torch.from_numpy(labels)[None])
    return float(total), count


def test_packed_row_loss_equals_token_weighted_loss_of_subsequences(model: torch.nn.Module) -> None:
    ids, mask, starts = packed_row()
    subs = split_row(ids, mask, starts)
    assert len(subs) == 3
    with torch.no_grad():
        packed_sum, packed_count = forward_loss(model, collate(subs))
        one_by_one = [forward_loss(model, collate([s])) for s in subs]
    separate_sum = sum(float(s) for s, _ in one_by_one)
    separate_count = sum(c for _, c in one_by_one)
    assert packed_count == separate_count == int(mask.sum())
    # per-token mean of the packed row == token-weighted mean of the sub-sequence losses
    weighted = sum(float(s) / c * c for s, c in one_by_one if c) / separate_count
    assert float(packed_sum) / packed_count == pytest.approx(weighted, abs=1e-5)
    assert float(packed_sum) == pytest.approx(separate_sum, abs=1e-5 * packed_count)


def test_engine_layout_equals_megatron_packed_attention(model: torch.nn.Module) -> None:
    subs = split_row(*packed_row(seed=5, n=4))
    with torch.no_grad():
        ours, count = forward_loss(model, collate(subs))
    reference, ref_count = thd_reference_loss(model, subs)
    assert count == ref_count
    assert float(ours) / count == pytest.approx(reference / ref_count, abs=1e-5)


def test_the_reference_would_catch_attention_across_boundaries(model: torch.nn.Module) -> None:
    """Negative control: plain causal attention over the packed row (leaking across sub-sequences)
    gives a different loss, so the equality above is not vacuous."""
    subs = split_row(*packed_row(seed=5, n=4))
    tokens = torch.from_numpy(np.concatenate([s.tokens for s in subs]))[None]
    positions = torch.from_numpy(np.concatenate([s.positions for s in subs]))[None]
    labels = torch.from_numpy(np.concatenate([np.where(s.loss_mask == 1, s.labels, IGNORE) for s in subs]))[
        None
    ]
    n = tokens.shape[1]
    causal = torch.zeros(n, n).masked_fill(~torch.ones(n, n, dtype=torch.bool).tril(), -1e30)[None, None]
    with torch.no_grad():
        logits = model(input_ids=tokens, position_ids=positions, attention_mask=causal).logits
    leaky, count = token_loss_sum(logits, labels)
    reference, _ = thd_reference_loss(model, subs)
    # The leak moves the loss far beyond the 1e-5 tolerance of the equality tests.
    assert abs(float(leaky) / count - reference / count) > 1e-4


def test_no_attention_crosses_a_subsequence_boundary(model: torch.nn.Module) -> None:
    subs = split_row(*packed_row(seed=2, n=2))
    changed = [SubSequence((subs[0].tokens % 40) + 3, subs[0].labels, subs[0].loss_mask), subs[1]]
    with torch.no_grad():
        before = model(**_inputs(collate(subs))).logits
        after = model(**_inputs(collate(changed))).logits
    length = len(subs[1].tokens)
    assert torch.equal(before[1, :length], after[1, :length])
    assert not torch.allclose(before[0], after[0])


def test_position_ids_restart_per_subsequence() -> None:
    subs = split_row(*packed_row(seed=3, n=3))
    batch = collate(subs)
    for i, sub in enumerate(subs):
        assert batch.position_ids[i, : len(sub.tokens)].tolist() == list(range(len(sub.tokens)))
        assert batch.attention_mask[i].sum() == len(sub.tokens)


def _inputs(batch: object) -> dict[str, torch.Tensor]:
    return {
        "input_ids": batch.input_ids,  # type: ignore[attr-defined]
        "attention_mask": batch.attention_mask,  # type: ignore[attr-defined]
        "position_ids": batch.position_ids,  # type: ignore[attr-defined]
    }


def trained_pairs(labels: torch.Tensor, subs: list[SubSequence]) -> list[list[tuple[int, int]]]:
    """Per sub-sequence: (position of the label token in its conversation, label id) the engine trains."""
    out = []
    for i, sub in enumerate(subs):
        row = labels[i, : len(sub.tokens)]
        out.append([(j + 1, int(row[j])) for j in range(len(sub.tokens)) if row[j] != IGNORE])
    return out


def test_trained_labels_are_exactly_the_assistant_tokens(tmp_path: Path) -> None:
    """Build unrolled conversations, roll their masks as sft-prep does, pack them into Parquet, and
    check the engine's labels: every assistant token and nothing else, each once."""
    rng = np.random.default_rng(11)
    convs = [random_conversation(rng, 5, 20) for _ in range(6)]
    rows = pack(convs, pack_size=64)
    write_shard(tmp_path / "s.parquet", rows)
    split = PackedSplit([str(tmp_path / "s.parquet")], 64)
    seen: list[list[tuple[int, int]]] = []
    for r in range(len(split)):
        subs = split.subsequences(r)
        seen.extend(trained_pairs(collate(subs).labels, subs))
    expected = [[(k, int(c.tokens[k])) for k in range(len(c.tokens)) if c.assistant[k]] for c in convs]
    order = [conv for row in _packing_order(convs, 64) for conv in row]
    assert seen == [expected[i] for i in order]
    assert sum(len(x) for x in seen) == sum(int(c.assistant.sum()) for c in convs)


def _packing_order(convs: list[Conversation], pack_size: int) -> list[list[int]]:
    """Which conversation lands where under the fixture's first-fit packing."""
    rows: list[list[int]] = []
    sizes: list[int] = []
    for i, conv in enumerate(convs):
        for r, size in enumerate(sizes):
            if size + len(conv.tokens) <= pack_size:
                rows[r].append(i)
                sizes[r] += len(conv.tokens)
                break
        else:
            rows.append([i])
            sizes.append(len(conv.tokens))
    return rows


def test_roll_contract_with_sft_prep() -> None:
    """The fixtures' roll is sft-prep's roll (cross-team contract), when sft_prep is importable."""
    loss_mask = pytest.importorskip("sft_prep.loss_mask", reason="sft_prep.loss_mask not available")
    rng = np.random.default_rng(4)
    convs = [random_conversation(rng) for _ in range(5)]
    mask = np.concatenate([c.assistant for c in convs])
    lengths = np.array([len(c.tokens) for c in convs])
    ours = np.concatenate([roll(c.assistant) for c in convs])
    assert loss_mask.roll_within(mask, lengths).tolist() == ours.tolist()


def test_unrolled_mask_would_train_the_wrong_tokens(tmp_path: Path) -> None:
    """Negative control: feeding the unrolled mask shifts every label by one, which the check sees."""
    rng = np.random.default_rng(12)
    conv = random_conversation(rng, 8, 12)
    row = {
        "input_ids": conv.tokens.tolist(),
        "loss_mask": conv.assistant.tolist(),
        "seq_start_id": [0],
    }
    write_shard(tmp_path / "s.parquet", [row])
    subs = PackedSplit([str(tmp_path / "s.parquet")], 64).subsequences(0)
    got = trained_pairs(collate(subs).labels, subs)[0]
    expected = [(k, int(conv.tokens[k])) for k in range(len(conv.tokens)) if conv.assistant[k]]
    assert got != expected
