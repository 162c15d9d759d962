"""``make demo``: ``manifests/samples/pipeline-local.yaml`` run by ``sftctl run --local`` on this CPU.

1. a small Llama-style base model with random weights and the bundled tokenizer's vocabulary is saved
   as a Hugging Face checkpoint on the demo's volume (``DIR/data/base-model``): there is no model hub
   here, and the SFTRun loads it through ``model.pretrainedCheckpoint`` as a real run would;
2. ``sftctl run --local`` runs the file's SFTDataPrep (sample chats -> packed Parquet) and SFTRun
   (the hf engine fine-tunes the base model), printing the phases, the trainer's log lines and the
   status the operator would write (``DIR/sftdataprep/demo/status.json``, ``DIR/sftrun/demo/status.json``);
3. a summary: the reported loss (the mean over each ``logging.logInterval`` iterations, the one loss
   the trainer prints, patches into the status and returns) from first to last, and where everything is.

The demo and a cluster use one format: ``sftctl run -f manifests/samples/pipeline-local.yaml`` (no
``--local``) applies the same file to a cluster.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

from sft_operator.ctl.local import LocalSettings, run_local
from sft_operator.ctl.manifests import Manifest, load
from sft_operator.ctl.report import reported_losses

SAMPLE = Path(__file__).resolve().parents[3] / "manifests" / "samples" / "pipeline-local.yaml"
CLAIM = "sft-demo"
SPARK = " ▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float]) -> str:
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    return "".join(SPARK[1 + int((v - low) / span * (len(SPARK) - 2))] for v in values)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m sft_operator.ctl.demo", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--output-dir", default="demo-output", help="where everything goes")
    parser.add_argument("-f", "--file", default=str(SAMPLE), help="the pipeline file (default: the sample)")
    parser.add_argument("--iterations", type=int, default=None, help="override the SFTRun's train.trainIters")
    parser.add_argument("--pack-size", type=int, default=None, help="override the SFTDataPrep's packSize")
    return parser.parse_args(argv)


def with_overrides(manifest: Manifest, iterations: int | None, pack_size: int | None) -> Manifest:
    for resource in manifest.resources:
        spec = resource.body.setdefault("spec", {})
        if resource.info.kind == "SFTRun" and iterations is not None:
            spec.setdefault("train", {})["trainIters"] = iterations
        if resource.info.kind == "SFTDataPrep" and pack_size is not None:
            spec["packSize"] = pack_size
    return manifest


def fresh(out: Path) -> Path:
    """A fresh demo: the previous outputs are removed (else the trainer would resume a finished run)."""
    volume = out / "data"
    for target in (volume, out / "sftdataprep", out / "sftrun"):
        shutil.rmtree(target, ignore_errors=True)
    volume.mkdir(parents=True)
    return volume


def main(argv: Sequence[str] | None = None) -> int:
    from sft_train.demo import build_base_model

    args = parse_args(argv)
    out = Path(args.output_dir).resolve()
    manifest = with_overrides(load(args.file), args.iterations, args.pack_size)
    pack_size = max(
        int(r.body["spec"].get("packSize") or 4096)
        for r in manifest.resources
        if r.info.kind == "SFTDataPrep"
    )
    started = time.monotonic()
    volume = fresh(out)
    print("=== base model: a small random Llama with the sample tokenizer's vocabulary", flush=True)
    print(f"saved {build_base_model(volume, pack_size)}")
    print(f"\n$ sftctl run --local -f {args.file} --workdir {out} --volume {CLAIM}={volume}", flush=True)
    code = run_local(manifest, LocalSettings(workdir=out, volumes={CLAIM: volume}))
    status = json.loads((out / "sftrun" / "demo" / "status.json").read_text())
    outputs = (status.get("status") or {}).get("outputs") or {}
    print(f"\n=== done in {time.monotonic() - started:.0f}s: {status['status'].get('phase')}")
    if code:
        return code
    metrics = volume / "metrics.jsonl"
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    interval = int(status["spec"].get("logging", {}).get("logInterval") or 10)
    curve = reported_losses(records, interval)
    valid = [r["validation_loss"] for r in records if "validation_loss" in r]
    print(
        f"loss (mean over each {interval} iterations) {curve[0][1]:.4f} -> {curve[-1][1]:.4f} "
        f"over {curve[-1][0]} iterations  {sparkline([v for _, v in curve])}"
    )
    if valid:
        print(f"validation loss (splits/valid) after training: {valid[-1]:.4f}")
    print("outputs:")
    print(f"  packed data      {volume / 'prep'}  (splits/, metadata.json, blend.json)")
    print(f"  base model       {volume / 'base-model'}")
    print(f"  checkpoint       {outputs.get('checkpoint')}")
    print(f"  hugging face     {outputs.get('hfExport')}")
    print(f"  loss per step    {metrics}")
    for kind in ("sftdataprep", "sftrun"):
        print(f"  status           {out / kind / 'demo' / 'status.json'}")
    print(f"  report           sftctl report {out / 'sftrun' / 'demo'}")
    return 0 if curve[-1][1] < curve[0][1] else 1


if __name__ == "__main__":
    raise SystemExit(main())
