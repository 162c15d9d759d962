"""The GPU check of the megatron engine: a real Megatron-Bridge ``finetune()`` on our packed Parquet.

Run on a machine with CUDA GPUs and the trainer image's Megatron-Bridge (0.6.2):

    python tests/gpu/run_megatron_gpu.py [--out DIR]

Under 10 minutes on one H100/H200. Steps: sft-prep packs the bundled chats (once unpadded, once with
``pad_seq_to_mult: 4`` for CP 2); a tiny random Llama with the bundled tokenizer is converted to a
Megatron checkpoint with ``AutoBridge.import_ckpt``; then for CP 1 and CP 2 (CP 2 needs two GPUs),
full SFT and LoRA, ``sft-train`` (engine megatron, under torchrun) runs 10 of 20 iterations and
stops (``train.exit_interval``), and a rerun resumes from the saved checkpoint to iteration 20. Each
case passes when the resumed run says it resumed and continues at iteration 11, and the loss falls
(mean of the last 5 iterations below the mean of the first 5). A preemption case runs the pod's
entry point (``sft-torchrun … -m sft_train``, Megatron-Bridge's ``train.exit_signal_handler``), sends
SIGTERM to the launcher after iteration 5 and passes when it exits 143 with a ``Preempted``
termination message naming the iteration whose checkpoint (with its ledger record) was saved, and a
rerun resumes there and finishes. Exits 0 with ``SKIP`` and the reason
when there is no GPU or no Megatron-Bridge; non-zero when a case fails. One JSON line per case.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "tests" / "train")]
ITERS, STOP, PACK = 20, 10, 512


def skip_reason() -> str | None:
    try:
        import torch
    except ImportError:
        return "no torch"
    if not torch.cuda.is_available():
        return "no CUDA GPU"
    try:
        if importlib.util.find_spec("megatron.bridge") is None:
            return "no Megatron-Bridge (run inside the trainer image)"
    except ImportError:
        return "no Megatron-Bridge (run inside the trainer image)"
    return None


def prep(out: Path, multiple: int) -> Path:
    """sft-prep on the bundled chats, every sequence padded to ``multiple`` (``pad_seq_to_mult``)."""
    from sft_train.demo import samples_dir

    config = {
        "datasets": [{"name": "chats", "path": str(samples_dir() / "chats.jsonl")}],
        "tokenizer": {"model": str(samples_dir() / "tokenizer")},
        "chat_template": "nano3",
        "pack_size": PACK,
        "num_shards": 4,
        "valid_ratio": 0.25,
        "output_dir": str(out / f"prep-{multiple}"),
    }
    if multiple > 1:
        config["pad_seq_to_mult"] = multiple
    path = out / f"prep-{multiple}.yaml"
    path.write_text(yaml.safe_dump(config))
    done = subprocess.run(
        [sys.executable, "-m", "sft_prep", "--config", str(path)], capture_output=True, text=True
    )
    if done.returncode:
        raise SystemExit(f"sft-prep failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return out / f"prep-{multiple}"


def losses(stderr: str) -> dict[int, float]:
    """Iteration → loss from sft-train's progress events."""
    out: dict[int, float] = {}
    for line in stderr.splitlines():
        if line.startswith("{") and '"task": "train"' in line:
            event = json.loads(line)
            if "loss" in event:
                out[int(event["completed"])] = float(event["loss"])
    return out


def run_case(out: Path, data: Path, hf_model: Path, mcore: Path, cp: int, lora: bool) -> dict[str, Any]:
    name = f"cp{cp}-{'lora' if lora else 'full'}"
    work = out / name
    work.mkdir(parents=True, exist_ok=True)
    config = {
        "engine": "megatron",
        "data": {"path": str(data)},
        "model": {
            "recipe": f"train_gpu_recipe.tiny_{'peft' if lora else 'sft'}_config",
            "pretrained_checkpoint": str(mcore),
        },
        "peft": {"type": "lora", "dim": 8, "alpha": 16} if lora else None,
        "train": {"train_iters": ITERS, "global_batch_size": 4, "exit_interval": STOP},
        "optimizer": {"lr": 1e-3 if lora else 3e-4},
        "scheduler": {"lr_warmup_iters": 2},
        "parallelism": {"context_parallel_size": cp, "tensor_parallel_size": 1, "sequence_parallel": False},
        "checkpoint": {"save": str(work / "ckpt"), "save_interval": STOP, "hf_export_enabled": False},
        "logging": {"log_interval": 1},
    }
    path = work / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {
        **os.environ,
        "SFT_TEST_HF_MODEL": str(hf_model),
        "SFT_TERMINATION_LOG": str(work / "termination-log"),
        "SFT_SCRATCH": str(work / "scratch"),
        "SFT_PROGRESS_LOG_INTERVAL": "0",  # a progress line (with its loss) after every iteration
        "PYTHONPATH": os.pathsep.join([str(ROOT / "tests" / "train"), os.environ.get("PYTHONPATH", "")]),
    }
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={cp}"]
    argv += ["-m", "sft_train", "--config", str(path)]
    started = time.monotonic()
    first = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    second = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    curve = {**losses(first.stderr), **losses(second.stderr)}
    message = (
        json.loads((work / "termination-log").read_text()) if (work / "termination-log").exists() else {}
    )
    head = [curve[i] for i in sorted(curve)[:5]]
    tail = [curve[i] for i in sorted(curve)[-5:]]
    checks = {
        "first run stopped at the exit interval": first.returncode == 0
        and max(losses(first.stderr), default=0) == STOP,
        "rerun resumed": f"resuming from {work / 'ckpt'}" in second.stdout,
        "rerun continued from iteration 11": min(losses(second.stderr), default=0) == STOP + 1,
        "finished": second.returncode == 0 and message.get("lastIteration") == ITERS,
        "loss fell": len(head) == 5 and len(tail) == 5 and sum(tail) / 5 < sum(head) / 5,
    }
    result = {
        "case": name,
        "ok": all(checks.values()),
        "checks": checks,
        "losses": {i: round(curve[i], 4) for i in sorted(curve)},
        "seconds": round(time.monotonic() - started, 1),
    }
    if not result["ok"]:
        result["log_tail"] = (first.stdout + first.stderr)[-2000:] + (second.stdout + second.stderr)[-2000:]
    return result


def run_preemption_case(out: Path, data: Path, hf_model: Path, mcore: Path) -> dict[str, Any]:
    """SIGTERM to ``sft-torchrun`` mid-run: checkpoint at that step, exit 143, then an exact resume."""
    work = out / "preempt"
    work.mkdir(parents=True, exist_ok=True)
    config = {
        "engine": "megatron",
        "data": {"path": str(data)},
        "model": {"recipe": "train_gpu_recipe.tiny_sft_config", "pretrained_checkpoint": str(mcore)},
        "train": {"train_iters": ITERS, "global_batch_size": 4},
        "optimizer": {"lr": 3e-4},
        "scheduler": {"lr_warmup_iters": 2},
        "parallelism": {"context_parallel_size": 1, "tensor_parallel_size": 1, "sequence_parallel": False},
        "checkpoint": {"save": str(work / "ckpt"), "save_interval": 1000, "hf_export_enabled": False},
        "logging": {"log_interval": 1},
    }
    path = work / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {
        **os.environ,
        "SFT_TEST_HF_MODEL": str(hf_model),
        "SFT_TERMINATION_LOG": str(work / "termination-log"),
        "SFT_SCRATCH": str(work / "scratch"),
        "SFT_PROGRESS_LOG_INTERVAL": "0",
        "PYTHONPATH": os.pathsep.join([str(ROOT / "tests" / "train"), os.environ.get("PYTHONPATH", "")]),
    }
    argv = [sys.executable, "-m", "sft_train.launch", "--standalone", "--nproc-per-node=1"]
    argv += ["-m", "sft_train", "--config", str(path)]
    started = time.monotonic()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen: list[str] = []
    assert proc.stderr is not None
    for line in proc.stderr:  # progress lines: SIGTERM once iteration 5 is done
        seen.append(line)
        if losses(line) and max(losses(line)) >= 5:
            proc.send_signal(signal.SIGTERM)
            break
    out_text, err_rest = proc.communicate(timeout=300)
    first_err = "".join(seen) + err_rest
    message = (
        json.loads((work / "termination-log").read_text()) if (work / "termination-log").exists() else {}
    )
    saved = int(message.get("iteration") or 0)
    tracker = work / "ckpt" / "latest_checkpointed_iteration.txt"
    second = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    final = json.loads((work / "termination-log").read_text()) if (work / "termination-log").exists() else {}
    checks = {
        "exit 143 after SIGTERM": proc.returncode == 143,
        "Preempted between 5 and the end": message.get("reason") == "Preempted" and 5 <= saved < ITERS,
        "checkpoint of that iteration": tracker.is_file() and tracker.read_text().strip() == str(saved),
        "ledger record": (work / "ckpt" / f"iter_{saved:07d}" / "sft-checkpoint.json").is_file(),
        "rerun continued after it": min(losses(second.stderr), default=0) == saved + 1,
        "finished": second.returncode == 0 and final.get("lastIteration") == ITERS,
    }
    result = {
        "case": "preempt-sigterm",
        "ok": all(checks.values()),
        "checks": checks,
        "saved": saved,
        "seconds": round(time.monotonic() - started, 1),
    }
    if not result["ok"]:
        result["log_tail"] = (out_text + first_err)[-2000:] + (second.stdout + second.stderr)[-2000:]
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="work dir (default: a temp dir)")
    args = parser.parse_args()
    reason = skip_reason()
    if reason:
        print(f"SKIP: {reason}")
        return 0
    import torch
    from megatron.bridge import AutoBridge

    from sft_train.demo import build_base_model

    out = args.out or Path(tempfile.mkdtemp(prefix="sft-gpu-"))
    hf_model = build_base_model(out, PACK)
    mcore = out / "mcore"
    AutoBridge.import_ckpt(str(hf_model), str(mcore))
    cases = [(1, False), (1, True)]
    if torch.cuda.device_count() >= 2:
        cases += [(2, False), (2, True)]
    else:
        print(json.dumps({"case": "cp2", "skipped": f"CP 2 needs 2 GPUs, {torch.cuda.device_count()} here"}))
    data = {1: prep(out, 1)}
    if any(cp == 2 for cp, _ in cases):
        data[2] = prep(out, 4)  # CP 2 with TP 1: every sub-sequence a multiple of 2*CP
    failed = 0
    for cp, lora in cases:
        result = run_case(out, data[cp], hf_model, mcore, cp, lora)
        print(json.dumps(result), flush=True)
        failed += not result["ok"]
    result = run_preemption_case(out, data[1], hf_model, mcore)
    print(json.dumps(result), flush=True)
    failed += not result["ok"]
    total = len(cases) + 1
    print(f"{total - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
