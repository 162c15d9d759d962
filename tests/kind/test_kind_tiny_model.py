"""tests/kind/make_tiny_model.py builds a base model the hf engine can load, for every sample token."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parent / "make_tiny_model.py"


@pytest.fixture(scope="module")
def tiny() -> ModuleType:
    spec = importlib.util.spec_from_file_location("kind_make_tiny_model", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_vocab_covers_every_sample_token_id(tiny: ModuleType) -> None:
    from tokenizers import Tokenizer

    tokenizer_dir = tiny.sample_tokenizer_dir()
    tokenizer = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
    size = tiny.vocab_size(tokenizer_dir)
    assert size == tokenizer.get_vocab_size(with_added_tokens=True)
    assert max(tokenizer.encode("<|im_start|>user\nhello<|im_end|>\n").ids) < size


@pytest.mark.slow
def test_writes_a_loadable_checkpoint(tiny: ModuleType, tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    out = tiny.make_model(tmp_path / "base", max_positions=64)
    config = json.loads((out / "config.json").read_text())
    assert config["max_position_embeddings"] == 64
    model = AutoModelForCausalLM.from_pretrained(str(out))
    logits = model(torch.tensor([[1, 2, 3]])).logits
    assert logits.shape == (1, 3, tiny.vocab_size(tiny.sample_tokenizer_dir()))
