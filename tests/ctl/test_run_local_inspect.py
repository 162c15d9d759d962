"""``sftctl get/describe/logs/watch --local`` (issue 20 point 3): a local run is looked at as a cluster's
run is, with the same printers, from what ``sftctl run --local`` wrote (status.json, processes.json and
each process's log)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sft_operator.ctl.main import main
from sft_train.demo import build_base_model

REPO = Path(__file__).resolve().parents[2]
PIPELINE = REPO / "manifests" / "samples" / "pipeline-local.yaml"


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


@pytest.mark.slow
def test_get_describe_and_logs_read_a_local_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    volume = tmp_path / "claim"
    build_base_model(volume, pack_size=256)
    pipeline = tmp_path / "pipeline.yaml"
    text = (
        PIPELINE.read_text()
        .replace("packSize: 1024", "packSize: 256")
        .replace("trainIters: 60", "trainIters: 2")
    )
    pipeline.write_text(text)
    work = str(tmp_path / "work")
    argv = ["run", "--local", "-f", str(pipeline), "--workdir", work, "--volume", f"sft-demo={volume}"]
    assert main(argv) == 0, capsys.readouterr()
    capsys.readouterr()

    # get: kubectl's table of each kind, the CRDs' printer columns (the cluster's printer)
    assert main(["get", "--local", "--workdir", work]) == 0
    out = capsys.readouterr().out.splitlines()
    prep_header, prep_row, blank, run_header, run_row = out
    assert prep_header.split() == ["NAME", "PHASE", "SHARDS", "PROGRESS", "TOKENS", "ETA", "AGE", "MESSAGE"]
    assert prep_row.split()[:4] == ["sftdataprep.sft.dev/demo", "Succeeded", "4/4", "100%"]
    assert run_header.split() == ["NAME", "PHASE", "ITERATION", "LOSS", "TOKENS", "ETA", "AGE", "MESSAGE"]
    assert run_row.split()[:3] == ["sftrun.sft.dev/demo", "Succeeded", "2/2"] and not blank
    assert main(["get", "sftrun/demo", "--local", "--workdir", work, "-o", "name"]) == 0
    assert capsys.readouterr().out == "sftrun.sft.dev/demo\n"

    # describe: conditions, outputs and the processes as children
    assert main(["describe", "sftrun/demo", "--local", "--workdir", work]) == 0
    page = capsys.readouterr().out
    assert "Conditions:" in page and "Outputs:" in page
    assert "jobRef: LocalProcesses/demo-train" in page and "Pod/demo-train-0  Succeeded" in page

    # logs: the process's log, by worker / node as on a cluster
    assert main(["logs", "sftdataprep/demo", "--worker", "0", "--local", "--workdir", work]) == 0
    assert '"event": "progress"' in capsys.readouterr().out
    assert main(["logs", "demo", "--node", "0", "--local", "--workdir", work, "--tail", "3"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3
    assert main(["logs", "sftrun/demo", "--node", "1", "--local", "--workdir", work]) == 1
    assert "has no pod for node 1 (it has nodes [0])" in capsys.readouterr().err

    # watch ends at once: everything has finished
    assert main(["watch", "--local", "--workdir", work]) == 0
    assert "Succeeded" in capsys.readouterr().out
