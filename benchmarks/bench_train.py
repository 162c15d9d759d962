"""Benchmark of the hf engine's training step (``make bench-train``; not a test).

The bundled sample chats are packed by sft-prep (pack 1024, the demo's, and 4096) and trained on
the demo's tiny Llama (``sft_train.demo``), fp32, on the CPU. Three loops train the same rows, each
its own copy of the same initial weights, with the same AdamW step and the same torch threads
(``--threads``, default 1):

* **engine**: ``HFTrainer.step``, the engine as it runs (rows laid out by ``hf_batch.Batcher``);
* **bare**: a minimal per-bin loop, each packed row fed as one sequence with per-sub-sequence
  position ids and no attention mask (transformers builds the block-diagonal mask), the loss summed
  over trained tokens: the same loss to ~1e-6, printed;
* **padded**: the engine before issue 23 (each row's sub-sequences as one batch padded to the longest).

They run interleaved (engine, bare, padded, engine, …: a few iterations each, several rounds), so
a shared machine's load hits all alike. Rates are real (unpadded) tokens per CPU-second of this
process (threads included; the robust figure on a shared machine) and per wall second; the ratios
are the targets (engine / bare ≥ 0.95 at pack 1024 and ≥ 2 at pack 4096).

    python benchmarks/bench_train.py [--packs 1024 4096] [--iterations 3] [--rounds 3]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch


def prep(work: Path, pack_size: int) -> Path:
    """The sample chats packed into ``pack_size`` bins by sft-prep (one train shard, no validation)."""
    from sft_train.demo import samples_dir

    out = work / f"prep-{pack_size}"
    config = work / f"prep-{pack_size}.json"
    config.write_text(
        json.dumps(
            {
                "datasets": [{"name": "samples", "path": str(samples_dir() / "chats.jsonl")}],
                "tokenizer": {"model": str(samples_dir() / "tokenizer")},
                "chat_template": "nano3",
                "pack_size": pack_size,
                "num_shards": 1,
                "output_dir": str(out),
            }
        )
    )
    env = {**os.environ, "SFT_PROGRESS": "off", "SFT_TERMINATION_LOG": str(work / "termination-log")}
    done = subprocess.run(
        [sys.executable, "-m", "sft_prep", "--config", str(config), "--force"],
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode:
        raise SystemExit(f"sft-prep failed:\n{done.stdout}\n{done.stderr}")
    return out


class Loop:
    """One of the compared loops: a model copy and a function training one iteration's rows."""

    def __init__(self, name: str, run: Callable[[int], float]) -> None:
        self.name = name
        self.run = run
        self.cpu = 0.0
        self.wall = 0.0
        self.tokens = 0
        self.rounds: list[tuple[float, int]] = []


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        yield


def bench_pack(work: Path, pack_size: int, iterations: int, rounds: int) -> dict[str, Any]:
    from sft_train.config import TrainConfig
    from sft_train.demo import build_base_model
    from sft_train.engines.hf_batch import Batch, MicroBatch, collate, token_loss_sum
    from sft_train.engines.hf_engine import DistContext, HFTrainer
    from sft_train.packed_data import inspect_data

    data = prep(work, pack_size)
    model_dir = build_base_model(work / f"model-{pack_size}", pack_size)
    info = inspect_data(str(data))
    config = TrainConfig.model_validate(
        {
            "engine": "hf",
            "data": {"path": str(data), "use_validation": False},
            "model": {"pretrained_checkpoint": str(model_dir)},
            "train": {"train_iters": 10_000, "global_batch_size": 4, "seed": 1234},
            "optimizer": {"lr": 3e-3, "weight_decay": 0.1},
            "scheduler": {"lr_warmup_iters": 5},
            "precision": "fp32",
        }
    )
    scratch = Path(tempfile.mkdtemp(dir=work))
    with quiet():
        engine = HFTrainer(config, info, DistContext(), scratch)
        padded = HFTrainer(config, info, DistContext(), scratch)
        bare_trainer = HFTrainer(config, info, DistContext(), scratch)

    class Padded:
        """The engine's layout before issue 23: one batch padded to the longest sub-sequence."""

        def build(self, subs: Any) -> MicroBatch:
            return MicroBatch((collate(subs, padded.pad_id),), "padded")

    padded.batcher = Padded()  # type: ignore[assignment]
    split = engine.train_split
    bare_model = bare_trainer.model
    bare_opt = bare_trainer.optimizer

    def bare_step(iteration: int) -> float:
        """Each bin as one sequence, position ids restarting per sub-sequence, no attention mask."""
        rows = [split.subsequences(i) for i in engine._rows_for(iteration)]
        for group in bare_opt.param_groups:
            group["lr"] = config.lr
        trained = sum(int(s.loss_mask.sum()) for subs in rows for s in subs)
        total = 0.0
        for subs in rows:
            tokens = torch.from_numpy(np.concatenate([s.tokens for s in subs]))[None]
            positions = torch.from_numpy(np.concatenate([s.positions for s in subs]))[None]
            labels = torch.from_numpy(
                np.concatenate([np.where(s.loss_mask == 1, s.labels, -100) for s in subs])
            )
            logits = bare_model(input_ids=tokens, position_ids=positions, use_cache=False).logits
            loss_sum, _ = token_loss_sum(logits, labels[None])
            loss = loss_sum / trained
            loss.backward()
            total += float(loss.detach())
        torch.nn.utils.clip_grad_norm_(bare_model.parameters(), config.optimizer.clip_grad)
        bare_opt.step()
        bare_opt.zero_grad(set_to_none=True)
        return total

    def real_tokens(iteration: int) -> int:
        return sum(len(s.tokens) for i in engine._rows_for(iteration) for s in split.subsequences(i))

    def slots(iteration: int, build: Callable[[Any], Batch | MicroBatch]) -> int:
        return sum(build(split.subsequences(i)).num_slots for i in engine._rows_for(iteration))

    # Same loss on the same weights: the first iteration of each loop, before any of them stepped.
    first = {"engine": engine.step(0)[0], "padded": padded.step(0)[0], "bare": bare_step(0)}
    loops = [
        Loop("engine", lambda it: engine.step(it)[0]),
        Loop("bare", bare_step),
        Loop("padded", lambda it: padded.step(it)[0]),
    ]
    layouts: dict[str, int] = {}
    for it in range(1, 1 + iterations * rounds):
        for i in engine._rows_for(it):
            layout = engine.batcher.build(split.subsequences(i)).layout
            layouts[layout] = layouts.get(layout, 0) + 1
    for r in range(rounds):
        span = range(1 + r * iterations, 1 + (r + 1) * iterations)
        tokens = sum(real_tokens(it) for it in span)
        for loop in loops:
            wall, cpu = time.perf_counter(), time.process_time()
            for it in span:
                loop.run(it)
            cpu = time.process_time() - cpu
            loop.wall += time.perf_counter() - wall
            loop.cpu += cpu
            loop.tokens += tokens
            loop.rounds.append((cpu, tokens))
    span = range(1, 1 + iterations * rounds)
    real = sum(real_tokens(it) for it in span)
    return {
        "pack_size": pack_size,
        "bins": len(split),
        "subs_per_bin": sum(len(split.subsequences(i)) for i in range(len(split))) / len(split),
        "padded_ratio_before": sum(slots(it, lambda s: collate(s)) for it in span) / real,
        "padded_ratio_engine": sum(slots(it, engine.batcher.build) for it in span) / real,
        "layouts": layouts,
        "first_loss": first,
        "loops": loops,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--packs", type=int, nargs="+", default=[1024, 4096])
    parser.add_argument("--iterations", type=int, default=3, help="iterations per loop per round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads of every loop (0: the engine's own choice, sft_common.cpus.threads_per_process)",
    )
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)

    from transformers.utils import logging as hf_logging

    from sft_common.cpus import threads_per_process, usable_cpus

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    # One thread by default: the layouts differ in the work they do, and CPU time is the robust
    # measure of work on a shared machine only while no OpenMP thread spins waiting for a busy core.
    threads = args.threads or threads_per_process()
    if threads is not None:
        torch.set_num_threads(threads)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="sft-bench-train-"))
    work.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    print(
        f"hf engine vs a bare per-bin loop: demo tiny Llama, fp32, global batch 4, "
        f"{torch.get_num_threads()} torch threads ({usable_cpus()} usable CPUs), "
        f"{args.rounds} interleaved rounds of {args.iterations} iterations per loop"
    )
    print(f"load average before: {' '.join(f'{x:.2f}' for x in load_before)}")
    ok = True
    for pack_size in args.packs:
        result = bench_pack(work, pack_size, args.iterations, args.rounds)
        loops = {loop.name: loop for loop in result["loops"]}
        print()
        print(
            f"pack {pack_size}: {result['bins']} bins, {result['subs_per_bin']:.1f} sub-sequences per bin; "
            f"padded/real tokens {result['padded_ratio_before']:.2f} before, "
            f"{result['padded_ratio_engine']:.2f} now; engine layouts {result['layouts']}"
        )
        first = result["first_loss"]
        print(
            "  first-iteration loss (same weights): "
            + ", ".join(f"{k} {v:.7f}" for k, v in first.items())
            + f"  (|engine - bare| {abs(first['engine'] - first['bare']):.1e})"
        )
        for loop in loops.values():
            print(
                f"  {loop.name:<7} {loop.tokens / loop.cpu:>9,.0f} tokens per CPU-s   "
                f"{loop.tokens / loop.wall:>9,.0f} tokens/s wall   ({loop.cpu:.1f} CPU-s, {loop.wall:.1f} s)"
            )

        def ratio(a: str, b: str, loops: dict[str, Loop] = loops) -> tuple[float, float, list[float]]:
            x, y = loops[a], loops[b]
            per_round = [(yc / xc) for (xc, _), (yc, _) in zip(x.rounds, y.rounds, strict=True)]
            return y.cpu / x.cpu, y.wall / x.wall, per_round

        target = 0.95 if pack_size <= 1024 else 2.0
        cpu_ratio, wall_ratio, rounds = ratio("engine", "bare")
        met = cpu_ratio >= target
        ok &= met
        print(
            f"RATIO engine / bare loop: {cpu_ratio:.2f} (CPU time; per round "
            f"{', '.join(f'{x:.2f}' for x in rounds)}), wall {wall_ratio:.2f}  "
            f"(target >= {target}: {'met' if met else 'NOT met'})"
        )
        cpu_ratio, wall_ratio, rounds = ratio("engine", "padded")
        print(
            f"RATIO engine / engine before (padded): {cpu_ratio:.2f} (CPU time; per round "
            f"{', '.join(f'{x:.2f}' for x in rounds)}), wall {wall_ratio:.2f}"
        )
        cpu_ratio, wall_ratio, _ = ratio("padded", "bare")
        print(f"  (before: padded / bare {cpu_ratio:.2f} CPU time, wall {wall_ratio:.2f})")
    print()
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
