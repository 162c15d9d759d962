"""Write a tiny, randomly initialised Llama-style Hugging Face checkpoint (kind e2e base model).

The hf engine fine-tunes a Hugging Face checkpoint; there is no model hub in the test cluster, so
this makes one whose vocabulary matches the bundled sample tokenizer (the tokens the prep wrote).
Usage: ``python make_tiny_model.py OUTPUT_DIR [--max-positions N]``
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import sft_prep


def sample_tokenizer_dir() -> Path:
    return Path(sft_prep.__file__).parent / "samples" / "tokenizer"


def vocab_size(tokenizer_dir: Path) -> int:
    """Size of the sample tokenizer's vocabulary, added tokens included (ids must all be embeddable)."""
    data = json.loads((tokenizer_dir / "tokenizer.json").read_text())
    ids = list(data["model"]["vocab"].values()) + [t["id"] for t in data.get("added_tokens", [])]
    return max(ids) + 1


def make_model(output: Path, max_positions: int) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=vocab_size(sample_tokenizer_dir()),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=max_positions,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    output.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output)
    return output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path)
    parser.add_argument("--max-positions", type=int, default=4096)
    args = parser.parse_args(argv)
    path = make_model(args.output, args.max_positions)
    print(f"wrote a tiny base model to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
