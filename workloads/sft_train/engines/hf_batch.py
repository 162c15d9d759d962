"""Packed row → model inputs for the hf engine, and the token-loss sum.

A packed row's sub-sequences are laid out as the rows of one right-padded batch, each with its own
position ids from 0. That is the packed computation with the boundary made structural: a token
can only attend to earlier tokens of its own row, so no attention crosses a sub-sequence boundary
whatever attention implementation (or Mamba-style mixer) the model uses, and padding sits after
every real token, where a causal model never looks. No custom 4D mask is needed, so this works for
any transformers causal LM; ``tests/train/test_hf_packing.py`` proves the equivalence.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from sft_train.packed_data import SubSequence

IGNORE = -100


@dataclass
class Batch:
    """Model inputs for one packed row (one micro-batch)."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    labels: torch.Tensor
    """Label ids, ``IGNORE`` wherever the rolled loss mask is 0 or on padding."""

    @property
    def num_trained(self) -> int:
        return int((self.labels != IGNORE).sum())

    @property
    def num_tokens(self) -> int:
        return int(self.attention_mask.sum())

    def to(self, device: torch.device) -> Batch:
        return Batch(
            *(t.to(device) for t in (self.input_ids, self.attention_mask, self.position_ids, self.labels))
        )


def collate(subsequences: Sequence[SubSequence], pad_id: int = 0) -> Batch:
    """Stack the sub-sequences of one packed row into a right-padded batch."""
    if not subsequences:
        raise ValueError("a packed row with no sub-sequence of two or more tokens has nothing to train")
    width = max(len(s.tokens) for s in subsequences)
    n = len(subsequences)
    input_ids = torch.full((n, width), pad_id, dtype=torch.long)
    attention = torch.zeros((n, width), dtype=torch.long)
    positions = torch.zeros((n, width), dtype=torch.long)
    labels = torch.full((n, width), IGNORE, dtype=torch.long)
    for i, sub in enumerate(subsequences):
        length = len(sub.tokens)
        input_ids[i, :length] = torch.from_numpy(sub.tokens)
        attention[i, :length] = 1
        positions[i, :length] = torch.arange(length)
        trained = torch.from_numpy(sub.loss_mask).bool()
        labels[i, :length] = torch.where(trained, torch.from_numpy(sub.labels), torch.tensor(IGNORE))
    return Batch(input_ids, attention, positions, labels)


def token_loss_sum(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Sum of the cross-entropy of every trained token (in float32) and how many there are.

    ``labels`` are already aligned with ``logits`` (the mask was rolled by sft-prep and the tokens
    and labels were split as Megatron does), so there is no further shift here.
    """
    flat_logits = logits.reshape(-1, logits.shape[-1]).float()
    flat_labels = labels.reshape(-1)
    total = F.cross_entropy(flat_logits, flat_labels, ignore_index=IGNORE, reduction="sum")
    return total, int((flat_labels != IGNORE).sum())


def forward_loss(model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, int]:
    """Run the model on one packed row; return (sum of token losses, trained-token count)."""
    out = model(
        input_ids=batch.input_ids,
        attention_mask=batch.attention_mask,
        position_ids=batch.position_ids,
        use_cache=False,
    )
    return token_loss_sum(out.logits, batch.labels)
