"""Padding each sequence for context parallelism (``pad_seq_to_mult``), before it is packed.

Megatron-Bridge's packed collate turns a stored sub-sequence of ``L`` tokens into ``L - 1`` input
tokens (``ids[s:e-1]``; the last stored token is only a label) and adds ``L - 1`` to ``cu_seqlens``.
With context parallelism (THD layout) every such length must be a multiple of ``2*CP`` (and of
``CP*TP`` with sequence parallelism), so Megatron-Bridge pads each sequence before packing with the
tokenizer's eos token and loss mask 0, and the collate takes a sub-sequence's real length to end at
its last input token that is not eos (``cu_seqlens_unpadded``/``cu_seqlens``; read in
NVIDIA-NeMo/Megatron-Bridge ``data/datasets/packed_sequence.py::tokenize_dataset`` (0.5.1) and
``data/packing/offline.py::tokenize_dataset`` (0.6.0), and the ``collate_fn`` of
``GPTSFTPackedDataset``).

The rule here: a sequence of ``n`` tokens is stored as ``ceil(n / m) * m + 1`` tokens, i.e. its
``L - 1`` input tokens are the smallest multiple of ``m`` that holds all ``n`` real tokens, and at
least one pad follows them. That is 0.5.1's rule; 0.6 pads to ``ceil((n - 1) / m) * m + 1``, which
leaves no pad when ``n - 1`` is already a multiple, so the input then ends with the real
``<|im_end|>`` (eos) and the collate counts it as padding. With at least one pad every real token is
an input and the real length is ``n`` (unless the sequence itself ends in eos, e.g. truncated there).

Labels do not change: the pads have mask 0, and the last real token's label position (aligned mask
``mask[n]``) is 0 padded or not, so the rolled mask trains exactly the labels it trains unpadded.
"""

from __future__ import annotations

import numpy as np

from sft_common.config import ConfigError
from sft_prep.ranges import gather_index
from sft_prep.tokenizer import Tokenizer


def padded_lengths(lengths: np.ndarray, mult: int) -> np.ndarray:
    """Stored length of each sequence once padded: ``ceil(n / mult) * mult + 1`` (``n`` when mult is 1)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    if mult == 1:
        return lengths
    return (lengths + (mult - 1)) // mult * mult + 1


def pad_sequences(
    ids: np.ndarray, mask: np.ndarray, lengths: np.ndarray, mult: int, pad_id: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids, mask, lengths) of sequences laid end to end, each padded to :func:`padded_lengths` with
    ``pad_id`` and mask 0; the input arrays are returned as they are when ``mult`` is 1."""
    lengths = np.asarray(lengths, dtype=np.int64)
    if mult == 1:
        return ids, mask, lengths
    if mult < 1:
        raise ValueError(f"pad_seq_to_mult must be ≥ 1, got {mult}")
    if int(lengths.sum()) != len(ids) or len(ids) != len(mask):
        raise ValueError("ids, mask and lengths of a sequence batch disagree")
    padded = padded_lengths(lengths, mult)
    total = int(padded.sum())
    out_ids = np.full(total, pad_id, dtype=np.int32)
    out_mask = np.zeros(total, dtype=np.uint8)
    # Where each real token goes: sequence i's tokens start at its padded offset.
    padded_starts = np.cumsum(padded) - padded
    dest = gather_index(padded_starts, lengths)
    out_ids[dest] = ids
    out_mask[dest] = mask
    return out_ids, out_mask, padded


def pad_token_id(tokenizer: Tokenizer) -> int:
    """The tokenizer's eos id: Megatron-Bridge pads with eos and finds a sequence's real end by it.

    ConfigError when the tokenizer names no eos token or encodes it as more than one token."""
    eos = tokenizer.describe()["eos_token"]
    if not eos:
        raise ConfigError(
            f"pad_seq_to_mult: the tokenizer {tokenizer.name} names no eos_token (tokenizer_config.json); "
            "padding for context parallelism uses the eos token, as Megatron-Bridge's collate expects — "
            "use the model's tokenizer or set pad_seq_to_mult: 1"
        )
    encoded = tokenizer.encode_many([eos])[0]
    if len(encoded) != 1:
        raise ConfigError(
            f"pad_seq_to_mult: the tokenizer {tokenizer.name} encodes its eos_token {eos!r} as "
            f"{len(encoded)} tokens {encoded[:8]}; padding needs it to be one special token"
        )
    return int(encoded[0])
