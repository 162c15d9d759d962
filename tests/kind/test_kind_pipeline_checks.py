"""The status assertions of the kind e2e (check_pipeline.py), exercised offline on fixtures."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from kindscripts import load_script

SCRIPT = Path(__file__).resolve().parent / "check_pipeline.py"


@pytest.fixture(scope="module")
def checks() -> ModuleType:
    return load_script(SCRIPT.name)


def conditions(generation: int) -> list[dict[str, Any]]:
    return [
        {"type": "Ready", "status": "True", "reason": "Succeeded", "observedGeneration": generation},
        {"type": "Reconciling", "status": "False", "reason": "Done", "observedGeneration": generation},
        {"type": "Stalled", "status": "False", "reason": "Done", "observedGeneration": generation},
    ]


def dataprep() -> dict[str, Any]:
    return {
        "apiVersion": "sft.dev/v1alpha1",
        "kind": "SFTDataPrep",
        "metadata": {"name": "tiny", "namespace": "sft-e2e", "generation": 1},
        "status": {
            "phase": "Succeeded",
            "observedGeneration": 1,
            "conditions": conditions(1),
            "startTime": "2026-11-25T19:00:00Z",
            "completionTime": "2026-11-25T19:01:00Z",
            "outputs": {
                "outputDir": "/data/prep",
                "blend": "/data/prep/blend.json",
                "metadata": "/data/prep/metadata.json",
                "packSize": 512,
                "packingEfficiency": 0.93,
                "totals": {"rows": 40, "sequences": 52, "tokens": 9100, "trainableTokens": 4100, "bins": 19},
            },
        },
    }


def run() -> dict[str, Any]:
    return {
        "apiVersion": "sft.dev/v1alpha1",
        "kind": "SFTRun",
        "metadata": {"name": "tiny", "namespace": "sft-e2e", "generation": 2},
        "spec": {"data": {"dataPrepRef": {"name": "tiny"}}, "train": {"trainIters": 6}},
        "status": {
            "phase": "Succeeded",
            "observedGeneration": 2,
            "conditions": conditions(2),
            "startTime": "2026-11-25T19:01:00Z",
            "completionTime": "2026-11-25T19:03:00Z",
            "progress": {"completed": 6, "total": 6, "loss": 7.1},
            "outputs": {"checkpoint": "/data/run/checkpoints", "lastIteration": 6, "finalLoss": 7.1},
        },
    }


def test_a_good_pipeline_passes(checks: ModuleType) -> None:
    assert checks.dataprep_problems(dataprep()) == []
    assert checks.run_problems(run(), dataprep()) == []


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (("status", "phase"), "Failed", "phase is 'Failed'"),
        (("status", "observedGeneration"), 0, "observedGeneration 0 != generation 1"),
        (("status", "outputs", "totals", "tokens"), 0, "totals.tokens is 0"),
        (("status", "outputs", "blend"), None, "blend.json was not written"),
        (("status", "outputs", "packingEfficiency"), 1.4, "packingEfficiency 1.4"),
        (("status", "outputs", "totals", "trainableTokens"), 10_000, "trainableTokens 10000"),
        (("status", "completionTime"), None, "completionTime is not set"),
    ],
)
def test_dataprep_defects_are_named(
    checks: ModuleType, path: tuple[str, ...], value: Any, expected: str
) -> None:
    obj = dataprep()
    target = obj
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    problems = checks.dataprep_problems(obj)
    assert any(expected in p for p in problems), problems


def test_condition_states_are_checked(checks: ModuleType) -> None:
    obj = dataprep()
    obj["status"]["conditions"][2]["status"] = "True"
    obj["status"]["conditions"][0]["observedGeneration"] = 0
    problems = checks.dataprep_problems(obj)
    assert "SFTDataPrep/tiny: condition Stalled is True, expected False" in problems
    assert "SFTDataPrep/tiny: condition Ready describes generation 0" in problems
    del obj["status"]["conditions"][0]
    assert "SFTDataPrep/tiny: no Ready condition" in checks.dataprep_problems(obj)


def test_run_defects_are_named(checks: ModuleType) -> None:
    obj = run()
    obj["status"]["outputs"]["lastIteration"] = 7
    obj["status"]["progress"] = {}
    obj["status"]["outputs"]["checkpoint"] = ""
    problems = checks.run_problems(obj, dataprep())
    assert any("lastIteration 7 not in (0, trainIters=6]" in p for p in problems)
    assert any("progress never arrived" in p for p in problems)
    assert any("checkpoint is empty" in p for p in problems)
    other = copy.deepcopy(run())
    other["spec"]["data"]["dataPrepRef"]["name"] = "someone-else"
    assert any("not the checked SFTDataPrep" in p for p in checks.run_problems(other, dataprep()))


def test_cli_exit_codes(tmp_path: Path) -> None:
    good_prep, good_run = tmp_path / "dp.json", tmp_path / "run.json"
    good_prep.write_text(json.dumps(dataprep()))
    good_run.write_text(json.dumps(run()))
    ok = subprocess.run(
        [sys.executable, str(SCRIPT), str(good_prep), str(good_run)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ok.returncode == 0, ok.stderr
    assert "9100 tokens in 19 bins" in ok.stdout
    bad = run()
    bad["status"]["phase"] = "Running"
    good_run.write_text(json.dumps(bad))
    failed = subprocess.run(
        [sys.executable, str(SCRIPT), str(good_prep), str(good_run)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert failed.returncode == 1
    assert "FAIL SFTRun/tiny: phase is 'Running'" in failed.stderr
