"""``make demo``: the whole pipeline on this CPU in a minute or two.

1. ``sft-prep`` renders the bundled sample chats with the nano3 template, tokenizes them with the
   bundled tokenizer and packs them into Parquet (``demo-output/prep``);
2. a small Llama-style base model with random weights and that tokenizer's vocabulary is saved as a
   Hugging Face checkpoint (``demo-output/base-model``): there is no model hub here, and saving it
   makes the demo load it through the same ``model.pretrained_checkpoint`` path a real run uses;
3. ``sft-train`` fine-tunes it with the hf engine from the shipped ``config/tiny.yaml``, printing
   the loss as it falls, then writes a checkpoint and a Hugging Face export.

Each step runs the real CLI in a subprocess, as the operator's pods do.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

STEPS = ("prep", "base-model", "checkpoints", "hf-export", "metrics.jsonl", "prep.yaml", "train.yaml")
SPARK = " ▁▂▃▄▅▆▇█"


def samples_dir() -> Path:
    return Path(str(resources.files("sft_prep") / "samples"))


def tiny_config() -> Path:
    return Path(str(resources.files("sft_train") / "config" / "tiny.yaml"))


def write_prep_config(out: Path, pack_size: int) -> Path:
    samples = samples_dir()
    config = {
        "datasets": [{"name": "sample-chats", "path": str(samples / "chats.jsonl")}],
        "tokenizer": {"model": str(samples / "tokenizer")},
        "chat_template": "nano3",
        "pack_size": pack_size,
        "num_shards": 4,
        "valid_ratio": 0.25,
        "output_dir": str(out / "prep"),
    }
    path = out / "prep.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


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


def run_step(title: str, argv: Sequence[str], env: dict[str, str]) -> None:
    print(f"\n=== {title}\n$ {' '.join(argv)}", flush=True)
    start = time.monotonic()
    subprocess.run(list(argv), check=True, env=env)
    print(f"--- {title}: {time.monotonic() - start:.1f}s", flush=True)


def sparkline(values: Sequence[float]) -> str:
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    return "".join(SPARK[1 + int((v - low) / span * (len(SPARK) - 2))] for v in values)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m sft_train.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", default="demo-output", help="where everything goes")
    parser.add_argument(
        "--pack-size", type=int, default=1024, help="tokens per packed bin (1024 fits every sample chat)"
    )
    parser.add_argument("--iterations", type=int, default=60, help="fine-tuning iterations")
    return parser.parse_args(argv)


def fresh_output_dir(path: str) -> Path:
    """The demo's own outputs are removed first: otherwise the trainer would resume a finished run."""
    out = Path(path).resolve()
    out.mkdir(parents=True, exist_ok=True)
    for name in STEPS:
        target = out / name
        shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
    return out


def describe_prep(out: Path) -> str:
    meta = json.loads((out / "prep" / "metadata.json").read_text())
    totals = meta["totals"]
    return (
        f"packed {totals['sequences']} sequences ({totals['tokens']} tokens, {totals['trainable_tokens']} "
        f"trained) into {totals['bins']} bins of {meta['pack_size']}, "
        f"packing efficiency {meta['packing_efficiency']:.2f}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    out = fresh_output_dir(args.output_dir)
    env = {**os.environ, "SFT_PROGRESS": os.environ.get("SFT_PROGRESS", "off")}
    env.setdefault("SFT_TERMINATION_LOG", str(out / "termination-log.json"))
    started = time.monotonic()

    prep_cmd = [sys.executable, "-m", "sft_prep", "--config", str(write_prep_config(out, args.pack_size))]
    run_step("1/3 sft-prep: sample chats -> packed Parquet", prep_cmd, env)
    print(describe_prep(out))

    print("\n=== 2/3 base model: a small random Llama with the sample tokenizer's vocabulary", flush=True)
    base = build_base_model(out, args.pack_size)
    print(f"saved {base}")

    overrides = [
        f"data.path={out / 'prep'}",
        f"model.pretrained_checkpoint={base}",
        f"checkpoint.save={out / 'checkpoints'}",
        f"checkpoint.hf_export={out / 'hf-export'}",
        f"logging.metrics_file={out / 'metrics.jsonl'}",
        f"train.train_iters={args.iterations}",
    ]
    train_cmd = [sys.executable, "-m", "sft_train", "--config", str(tiny_config()), *overrides]
    run_step("3/3 sft-train (engine hf): fine-tune on the packed Parquet", train_cmd, env)

    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    curve = [r["loss"] for r in records if "loss" in r]
    valid = [r["validation_loss"] for r in records if "validation_loss" in r]
    means = [sum(curve[i : i + 5]) / len(curve[i : i + 5]) for i in range(0, len(curve), 5)]
    result = json.loads(Path(env["SFT_TERMINATION_LOG"]).read_text())
    print(f"\n=== done in {time.monotonic() - started:.0f}s")
    print(
        f"loss (mean of 5 iterations) {means[0]:.3f} -> {means[-1]:.3f} over {len(curve)} iterations  "
        f"{sparkline(means)}"
    )
    if valid:
        print(f"validation loss (splits/valid) after training: {valid[-1]:.3f}")
    print("outputs:")
    print(f"  packed data      {out / 'prep'}  (splits/, metadata.json, blend.json)")
    print(f"  base model       {base}")
    print(f"  checkpoint       {result['checkpoint']}")
    print(f"  hugging face     {result['hfExport']}")
    print(f"  loss per step    {out / 'metrics.jsonl'}")
    print(f"  result           {env['SFT_TERMINATION_LOG']}")
    return 0 if curve[-1] < curve[0] else 1


if __name__ == "__main__":
    raise SystemExit(main())
