"""Write a tiny, randomly initialised Llama-style Hugging Face checkpoint (kind e2e base model).

The hf engine fine-tunes a Hugging Face checkpoint; there is no model hub in the test cluster, so
this makes one whose vocabulary matches the bundled sample tokenizer (the tokens the prep wrote).
It runs in the trainer-cpu image (mounted from a ConfigMap), where ``sft_train`` is installed, and
uses the demo's recipe (:func:`sft_train.demo.save_tiny_llama`) so every tiny base model is alike.
Usage: ``python make_tiny_model.py OUTPUT_DIR [--max-positions N]``
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sft_train.demo import sample_vocab_size, save_tiny_llama


def make_model(output: Path, max_positions: int) -> Path:
    return save_tiny_llama(output, vocab_size=sample_vocab_size(), max_positions=max_positions)


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
