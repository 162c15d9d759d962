"""Assertions on the finished tiny pipeline's custom resources (kind e2e; stdlib only).

``run.sh`` saves ``kubectl get sftdataprep/sftrun -o json`` and runs this on the host, which may not
have the project's virtualenv, hence no third-party imports. The checks are pure functions of the
two objects so they are unit-tested offline (tests/kind/test_check_pipeline.py).

Usage: ``python3 check_pipeline.py DATAPREP_JSON RUN_JSON``
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def _condition(obj: dict[str, Any], ctype: str) -> dict[str, Any] | None:
    for cond in obj.get("status", {}).get("conditions", []) or []:
        if cond.get("type") == ctype:
            return cond
    return None


def common_problems(obj: dict[str, Any]) -> list[str]:
    """What every finished CR must show: Succeeded, current, Ready and not Stalled/Reconciling."""
    name = f"{obj.get('kind', '?')}/{obj.get('metadata', {}).get('name', '?')}"
    status = obj.get("status") or {}
    problems = []
    if status.get("phase") != "Succeeded":
        problems.append(
            f"{name}: phase is {status.get('phase')!r}, not 'Succeeded' ({status.get('message')})"
        )
    generation = obj.get("metadata", {}).get("generation")
    if status.get("observedGeneration") != generation:
        problems.append(
            f"{name}: observedGeneration {status.get('observedGeneration')} != generation {generation}"
        )
    expected = {"Ready": "True", "Reconciling": "False", "Stalled": "False"}
    for ctype, want in expected.items():
        cond = _condition(obj, ctype)
        if cond is None:
            if ctype == "Ready":
                problems.append(f"{name}: no Ready condition")
            continue
        if cond.get("status") != want:
            problems.append(f"{name}: condition {ctype} is {cond.get('status')}, expected {want}")
        if cond.get("observedGeneration") not in (None, generation):
            problems.append(
                f"{name}: condition {ctype} describes generation {cond.get('observedGeneration')}"
            )
    for key in ("startTime", "completionTime"):
        if not status.get(key):
            problems.append(f"{name}: status.{key} is not set")
    return problems


def dataprep_problems(obj: dict[str, Any]) -> list[str]:
    problems = common_problems(obj)
    outputs = (obj.get("status") or {}).get("outputs") or {}
    totals = outputs.get("totals") or {}
    if not outputs.get("outputDir"):
        problems.append("SFTDataPrep: status.outputs.outputDir is empty")
    if not outputs.get("blend"):
        problems.append("SFTDataPrep: status.outputs.blend is empty (blend.json was not written)")
    if not isinstance(outputs.get("packSize"), int) or outputs["packSize"] <= 0:
        problems.append(f"SFTDataPrep: status.outputs.packSize is {outputs.get('packSize')!r}")
    for key in ("sequences", "tokens", "bins"):
        if not isinstance(totals.get(key), int) or totals[key] <= 0:
            problems.append(f"SFTDataPrep: status.outputs.totals.{key} is {totals.get(key)!r}, expected > 0")
    trainable = totals.get("trainableTokens")
    if (
        isinstance(trainable, int)
        and isinstance(totals.get("tokens"), int)
        and not 0 < trainable <= totals["tokens"]
    ):
        problems.append(f"SFTDataPrep: trainableTokens {trainable} not in (0, tokens={totals['tokens']}]")
    efficiency = outputs.get("packingEfficiency")
    if not isinstance(efficiency, int | float) or not 0 < efficiency <= 1:
        problems.append(f"SFTDataPrep: packingEfficiency {efficiency!r} not in (0, 1]")
    return problems


def run_problems(obj: dict[str, Any], dataprep: dict[str, Any]) -> list[str]:
    problems = common_problems(obj)
    status = obj.get("status") or {}
    outputs = status.get("outputs") or {}
    if not outputs.get("checkpoint"):
        problems.append("SFTRun: status.outputs.checkpoint is empty")
    iters = ((obj.get("spec") or {}).get("train") or {}).get("trainIters")
    last = outputs.get("lastIteration")
    if not isinstance(last, int) or last <= 0 or (isinstance(iters, int) and last > iters):
        problems.append(f"SFTRun: status.outputs.lastIteration {last!r} not in (0, trainIters={iters}]")
    progress = status.get("progress") or {}
    # The trainer's rank 0 reports `completed` iterations itself.
    reported = progress.get("completed")
    if not isinstance(reported, int | float) or reported <= 0:
        problems.append(
            f"SFTRun: status.progress reports {reported!r} iterations; the trainer's progress never arrived"
        )
    ref = (((obj.get("spec") or {}).get("data") or {}).get("dataPrepRef") or {}).get("name")
    if ref is not None and ref != dataprep.get("metadata", {}).get("name"):
        problems.append(f"SFTRun: data.dataPrepRef.name {ref!r} is not the checked SFTDataPrep")
    return problems


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: check_pipeline.py DATAPREP_JSON RUN_JSON", file=sys.stderr)
        return 2
    dataprep = json.loads(Path(args[0]).read_text())
    run = json.loads(Path(args[1]).read_text())
    problems = dataprep_problems(dataprep) + run_problems(run, dataprep)
    for problem in problems:
        print(f"FAIL {problem}", file=sys.stderr)
    if problems:
        return 1
    outputs = dataprep["status"]["outputs"]
    print(
        f"ok: {outputs['totals']['tokens']} tokens in {outputs['totals']['bins']} bins "
        f"(packing {outputs['packingEfficiency']:.3f}); checkpoint {run['status']['outputs']['checkpoint']}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
