"""Tiny random base models for runs with no model hub: ``make demo`` (``sft_operator.ctl.demo``, which
runs ``manifests/samples/pipeline-local.yaml`` with ``sftctl run --local``), the trainer tests and the
kind e2e (tests/kind/make_tiny_model.py runs :func:`save_tiny_llama` inside the trainer image).

A small Llama-style model with random weights and the bundled sample tokenizer's vocabulary, saved as
a Hugging Face checkpoint, loads through the same ``model.pretrained_checkpoint`` path a real run uses.
"""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path
from typing import Any


def samples_dir() -> Path:
    return Path(str(resources.files("sft_prep") / "samples"))


def sample_vocab_size() -> int:
    """Vocabulary of the bundled sample tokenizer, added tokens included (every id must be embeddable)."""
    from tokenizers import Tokenizer

    tokenizer = samples_dir() / "tokenizer" / "tokenizer.json"
    return Tokenizer.from_file(str(tokenizer)).get_vocab_size(with_added_tokens=True)


def save_tiny_llama(
    target: Path,
    *,
    vocab_size: int,
    max_positions: int,
    seed: int = 0,
    hidden_size: int = 64,
    intermediate_size: int = 172,
    **config: Any,
) -> Path:
    """Save a small Llama with random weights as a Hugging Face checkpoint at ``target``.

    The one recipe for a base model wherever no model hub is reachable: this demo, the trainer tests
    (smaller still, via the size arguments and ``config`` overrides of ``LlamaConfig``) and the kind
    e2e (tests/kind/make_tiny_model.py runs this inside the trainer image).
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    torch.manual_seed(seed)
    settings: dict[str, Any] = {
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "tie_word_embeddings": True,
        **config,
    }
    llama = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        max_position_embeddings=max_positions,
        **settings,
    )
    target.mkdir(parents=True, exist_ok=True)
    LlamaForCausalLM(llama).save_pretrained(str(target))
    from sft_common import storage

    storage.respect_umask(target)  # safetensors writes 0600; the trainer may run as another uid
    return target


def build_base_model(out: Path, pack_size: int, seed: int = 0) -> Path:
    """``out/base-model``: a tiny Llama whose vocabulary and context fit the bundled tokenizer and the
    pack size, with that tokenizer next to it (a checkpoint that loads like a real one)."""
    target = save_tiny_llama(
        out / "base-model", vocab_size=sample_vocab_size(), max_positions=pack_size, seed=seed
    )
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(samples_dir() / "tokenizer" / name, target / name)
    return target
