"""tests/kind/make_tiny_model.py builds a base model the hf engine can load, for every sample token."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest
from kindscripts import load_script

from sft_train.demo import sample_vocab_size, samples_dir


@pytest.fixture(scope="module")
def tiny() -> ModuleType:
    return load_script("make_tiny_model.py")


def test_vocab_covers_every_sample_token_id() -> None:
    """Every id the sample tokenizer can emit (added tokens too) must have an embedding row."""
    data = json.loads((samples_dir() / "tokenizer" / "tokenizer.json").read_text())
    ids = [*data["model"]["vocab"].values(), *(t["id"] for t in data.get("added_tokens", []))]
    assert sample_vocab_size() == max(ids) + 1


@pytest.mark.slow
def test_writes_a_loadable_checkpoint(tiny: ModuleType, tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    out = tiny.make_model(tmp_path / "base", max_positions=64)
    config = json.loads((out / "config.json").read_text())
    assert config["max_position_embeddings"] == 64
    model = AutoModelForCausalLM.from_pretrained(str(out))
    logits = model(torch.tensor([[1, 2, 3]])).logits
    assert logits.shape == (1, 3, sample_vocab_size())
