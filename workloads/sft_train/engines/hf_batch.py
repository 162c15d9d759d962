"""Packed row → model inputs for the hf engine, and the token-loss sum.

A packed row holds several sub-sequences that must not attend to each other (Megatron's THD layout,
``cu_seqlens``). The hf engine feeds a row in one of two layouts, chosen per row by :class:`CostModel`
so that the compute goes to real tokens:

* **buckets**: the sub-sequences become the rows of right-padded batches, each with its own position
  ids from 0; sub-sequences of similar length share a batch, so padded/real tokens stay ≤
  :data:`MAX_PADDING` (one batch of all of them padded to the longest cost 1.8× the real tokens on
  the demo data). The boundary is structural: a token can only attend to earlier tokens of its own
  row, so no attention crosses a sub-sequence boundary whatever attention implementation (or
  Mamba-style mixer) the model uses, and padding sits after every real token, where a causal model
  never looks. Works for any transformers causal LM.
* **packed**: the row as one sequence with position ids restarting at each sub-sequence and no
  attention mask, from which transformers builds the block-diagonal causal mask (SDPA:
  ``masking_utils.find_packed_sequence_indices``) or flash-attention's varlen ``cu_seqlens``. Only
  for architectures whose every layer is attention that honours that mask
  (:data:`PACKED_MODEL_TYPES`): a Mamba mixer or a sliding cache would carry state across the boundary.

The loss is a sum over trained tokens, so it and its gradients are the same in every layout up to
float rounding; ``tests/train/test_train_hf_packing.py`` proves both against sub-sequences fed one by one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from sft_train.packed_data import SubSequence

IGNORE = -100

MAX_PADDING = 1.2
"""Upper bound of padded/real tokens of the buckets layout."""

PACKED_MODEL_TYPES = frozenset(
    {"llama", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "phi3", "granite", "olmo2"}
)
"""Architectures whose every layer is attention built on transformers' ``create_causal_mask`` (or
flash-attention with position ids), so a packed row's sub-sequences stay apart. Others get buckets."""


@dataclass
class Batch:
    """One forward pass: a right-padded batch of sub-sequences, or one packed row (``packed``)."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    """1 on real tokens. Not given to the model for a packed row (transformers would then not derive
    the block-diagonal mask from the position ids)."""
    position_ids: torch.Tensor
    labels: torch.Tensor
    """Label ids, ``IGNORE`` wherever the rolled loss mask is 0 or on padding."""
    packed: bool = False

    @property
    def num_trained(self) -> int:
        return int((self.labels != IGNORE).sum())

    @property
    def num_tokens(self) -> int:
        return int(self.attention_mask.sum())

    @property
    def num_slots(self) -> int:
        """Token positions computed, padding included."""
        return self.input_ids.numel()

    def to(self, device: torch.device) -> Batch:
        return Batch(
            self.input_ids.to(device),
            self.attention_mask.to(device),
            self.position_ids.to(device),
            self.labels.to(device),
            self.packed,
        )


@dataclass
class MicroBatch:
    """The model inputs of one packed row: one or more forward passes whose losses add up."""

    parts: tuple[Batch, ...]
    layout: str
    """'packed' or 'buckets'."""

    @property
    def num_trained(self) -> int:
        return sum(p.num_trained for p in self.parts)

    @property
    def num_tokens(self) -> int:
        return sum(p.num_tokens for p in self.parts)

    @property
    def num_slots(self) -> int:
        return sum(p.num_slots for p in self.parts)

    def to(self, device: torch.device) -> MicroBatch:
        return MicroBatch(tuple(p.to(device) for p in self.parts), self.layout)


def _labels(sub: SubSequence) -> np.ndarray:
    return np.where(sub.loss_mask.astype(bool), sub.labels, IGNORE)


def collate(subsequences: Sequence[SubSequence], pad_id: int = 0) -> Batch:
    """Stack sub-sequences into one right-padded batch (one row each, padded to the longest)."""
    if not subsequences:
        raise ValueError("a packed row with no sub-sequence of two or more tokens has nothing to train")
    width = max(len(s.tokens) for s in subsequences)
    n = len(subsequences)
    input_ids = np.full((n, width), pad_id, dtype=np.int64)
    attention = np.zeros((n, width), dtype=np.int64)
    positions = np.zeros((n, width), dtype=np.int64)
    labels = np.full((n, width), IGNORE, dtype=np.int64)
    for i, sub in enumerate(subsequences):
        length = len(sub.tokens)
        input_ids[i, :length] = sub.tokens
        attention[i, :length] = 1
        positions[i, :length] = np.arange(length)
        labels[i, :length] = _labels(sub)
    return Batch(
        torch.from_numpy(input_ids),
        torch.from_numpy(attention),
        torch.from_numpy(positions),
        torch.from_numpy(labels),
    )


def pack(subsequences: Sequence[SubSequence]) -> Batch:
    """All sub-sequences in one row, position ids restarting at 0 for each (Megatron's THD layout)."""
    if not subsequences:
        raise ValueError("a packed row with no sub-sequence of two or more tokens has nothing to train")
    tokens = np.concatenate([s.tokens for s in subsequences]).astype(np.int64)[None]
    positions = np.concatenate([np.arange(len(s.tokens), dtype=np.int64) for s in subsequences])[None]
    labels = np.concatenate([_labels(s) for s in subsequences]).astype(np.int64)[None]
    return Batch(
        torch.from_numpy(tokens),
        torch.ones_like(torch.from_numpy(tokens)),
        torch.from_numpy(positions),
        torch.from_numpy(labels),
        packed=True,
    )


@dataclass(frozen=True)
class CostModel:
    """Relative cost of a forward + backward pass, to pick a row's layout.

    ``token`` for every token position computed (projections, MLP, LM head and loss: the same for a
    padding slot as for a real token), ``pair`` for every (query, key) pair the attention kernel
    computes, ``call`` for each pass (per-module launch overhead that does not shrink with the pass).
    SDPA with a mask computes every pair of its square, so a padded batch costs n·w² pairs and a
    packed row T², while flash-attention's varlen kernel computes Σ lᵢ²/2 only (``varlen``).
    """

    token: float
    pair: float
    call: float
    varlen: bool = False

    @classmethod
    def for_model(cls, model: torch.nn.Module, attn_implementation: str | None = None) -> CostModel:
        """Multiply-adds per token and per attention pair from the model's config; the per-pass
        overhead in the same unit, as measured on CPU for the demo model (benchmarks/bench_train.py:
        one pass costs about as much as 0.5 M multiply-adds per layer)."""
        cfg = model.config
        hidden = int(getattr(cfg, "hidden_size", 0) or 0)
        layers = int(getattr(cfg, "num_hidden_layers", 1) or 1)
        vocab = int(getattr(cfg, "vocab_size", 0) or 0)
        inter = int(getattr(cfg, "intermediate_size", 0) or 4 * hidden)
        heads = int(getattr(cfg, "num_attention_heads", 1) or 1)
        kv_heads = int(getattr(cfg, "num_key_value_heads", heads) or heads)
        head_dim = int(getattr(cfg, "head_dim", 0) or hidden // max(heads, 1))
        q_width, kv_width = heads * head_dim, kv_heads * head_dim
        per_layer = hidden * (q_width + 2 * kv_width) + q_width * hidden + 3 * hidden * inter
        token = float(layers * per_layer + hidden * vocab)
        # QKᵀ and AV: 2 · q_width per pair per layer; a masked softmax and its backward run at a
        # fraction of a GEMM's speed, hence the factor 2 (fitted on CPU, see bench_train).
        pair = float(2 * 2 * layers * q_width)
        impl = attn_implementation or getattr(cfg, "_attn_implementation", None) or ""
        return cls(token=token, pair=pair, call=5e5 * layers, varlen=impl.startswith("flash"))

    def padded(self, rows: int, width: int) -> float:
        return self.call + rows * width * (self.token + self.pair * width)

    def packed(self, lengths: Sequence[int]) -> float:
        total = sum(lengths)
        pairs = sum(n * (n + 1) // 2 for n in lengths) if self.varlen else total * total
        return self.call + self.token * total + self.pair * pairs


def buckets(lengths: Sequence[int], cost: CostModel, max_padding: float = MAX_PADDING) -> list[list[int]]:
    """Indices of ``lengths`` grouped into padded batches: the cheapest grouping by ``cost`` of the
    lengths sorted longest first into runs, such that each batch's padded/real tokens ≤ ``max_padding``.

    A dynamic programme over the sorted lengths; the run ending at each length only grows while the
    padding bound holds (a single sub-sequence always does, so there is always a grouping)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    sizes = [lengths[i] for i in order]
    n = len(sizes)
    best = [0.0] + [float("inf")] * n
    cut = [0] * (n + 1)
    for end in range(1, n + 1):
        real = 0
        for start in range(end - 1, -1, -1):
            real += sizes[start]
            rows, width = end - start, sizes[start]
            if rows * width > max_padding * real:
                break
            total = best[start] + cost.padded(rows, width)
            if total < best[end]:
                best[end], cut[end] = total, start
    groups: list[list[int]] = []
    end = n
    while end:
        groups.append(order[cut[end] : end])
        end = cut[end]
    return groups[::-1]


class Batcher:
    """Builds each packed row's :class:`MicroBatch` in the layout the cost model says is cheaper."""

    def __init__(self, cost: CostModel, pad_id: int = 0, packed_ok: bool = False) -> None:
        self.cost = cost
        self.pad_id = pad_id
        self.packed_ok = packed_ok

    @classmethod
    def for_model(cls, model: torch.nn.Module, pad_id: int = 0) -> Batcher:
        return cls(CostModel.for_model(model), pad_id, packed_rows_supported(model))

    def plan(self, lengths: Sequence[int]) -> tuple[str, list[list[int]]]:
        """('packed', [all]) or ('buckets', groups of indices), whichever costs less."""
        groups = buckets(lengths, self.cost)
        if self.packed_ok and len(lengths) > 1:
            bucket_cost = sum(self.cost.padded(len(g), max(lengths[i] for i in g)) for g in groups)
            if self.cost.packed(lengths) <= bucket_cost:
                return "packed", [list(range(len(lengths)))]
        return "buckets", groups

    def build(self, subsequences: Sequence[SubSequence]) -> MicroBatch:
        if not subsequences:
            raise ValueError("a packed row with no sub-sequence of two or more tokens has nothing to train")
        layout, groups = self.plan([len(s.tokens) for s in subsequences])
        if layout == "packed":
            return MicroBatch((pack(subsequences),), layout)
        parts = tuple(collate([subsequences[i] for i in g], self.pad_id) for g in groups)
        return MicroBatch(parts, layout)


def packed_rows_supported(model: torch.nn.Module) -> bool:
    """Whether ``model`` keeps the sub-sequences of a packed row apart given only position ids: an
    architecture of :data:`PACKED_MODEL_TYPES` whose attention is flash-attention (varlen from the
    position ids) or goes through transformers' mask builder with packed-sequence detection."""
    config: Any = getattr(model, "config", None)
    if getattr(config, "model_type", None) not in PACKED_MODEL_TYPES:
        return False
    impl = getattr(config, "_attn_implementation", None) or ""
    if impl.startswith("flash"):
        return True
    if impl not in ("sdpa", "eager"):
        return False
    try:
        from transformers import masking_utils
    except ImportError:
        return False
    return hasattr(masking_utils, "find_packed_sequence_indices")


def token_loss_sum(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Sum of the cross-entropy of every trained token (in float32) and how many there are.

    ``labels`` are already aligned with ``logits`` (the mask was rolled by sft-prep and the tokens
    and labels were split as Megatron does), so there is no further shift here.
    """
    flat_logits = logits.reshape(-1, logits.shape[-1]).float()
    flat_labels = labels.reshape(-1)
    total = F.cross_entropy(flat_logits, flat_labels, ignore_index=IGNORE, reduction="sum")
    return total, int((flat_labels != IGNORE).sum())


def forward_loss(model: torch.nn.Module, batch: Batch | MicroBatch) -> tuple[torch.Tensor, int]:
    """Run the model on one packed row; return (sum of token losses, trained-token count)."""
    if isinstance(batch, MicroBatch):
        results = [forward_loss(model, part) for part in batch.parts]
        total = results[0][0]
        for part_sum, _ in results[1:]:
            total = total + part_sum
        return total, sum(count for _, count in results)
    out = model(
        input_ids=batch.input_ids,
        attention_mask=None if batch.packed else batch.attention_mask,
        position_ids=batch.position_ids,
        use_cache=False,
    )
    return token_loss_sum(out.logits, batch.labels)
