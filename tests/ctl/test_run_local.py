"""``sftctl run --local``: the sample YAML files, as they are (shortened where said), on this machine.

The real workloads run (sft-prep workers, sft-train with the hf engine); the status each CR gets is
derived by the operator's own status code and written to WORKDIR/<kind>/<name>/status.json.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from sft_operator.ctl.main import main
from sft_train.demo import build_base_model

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "manifests" / "samples"


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def status(workdir: Path, kind: str, name: str) -> dict:
    return json.loads((workdir / kind / name / "status.json").read_text())


@pytest.mark.slow
def test_the_tiny_samples_run_locally_and_a_rerun_reports_the_same_loss(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """sftdataprep-tiny.yaml + sftrun-tiny.yaml (shortened to 4 iterations), as on a cluster; the
    sft-data claim is a local dir. A rerun is a no-op prep and a finished run that reports the loss
    it ended with (issue 11 point 10: it used to say `final loss None`)."""
    pipeline = tmp_path / "tiny.yaml"
    run_yaml = (SAMPLES / "sftrun-tiny.yaml").read_text().replace("trainIters: 20", "trainIters: 4")
    run_yaml = run_yaml.replace("logInterval: 5", "logInterval: 2")
    pipeline.write_text((SAMPLES / "sftdataprep-tiny.yaml").read_text() + "\n---\n" + run_yaml)
    volume = tmp_path / "claim"
    build_base_model(volume, pack_size=512)
    argv = [
        "run",
        "--local",
        "-f",
        str(pipeline),
        "--workdir",
        str(tmp_path / "work"),
        "--volume",
        f"sft-data={volume}",
    ]
    assert main(argv) == 0, capsys.readouterr()
    out = capsys.readouterr().out
    prep = status(tmp_path / "work", "sftdataprep", "tiny")["status"]
    run = status(tmp_path / "work", "sftrun", "tiny")["status"]
    # the phases the operator would write, in order, and its conditions
    for line in (
        "SFTDataPrep/tiny: Pending",
        "SFTDataPrep/tiny: Running",
        "SFTDataPrep/tiny: Succeeded",
        "SFTRun/tiny: Pending",
        "SFTRun/tiny: Running",
        "SFTRun/tiny: Succeeded",
    ):
        assert line in out, out
    assert out.index("SFTDataPrep/tiny: Succeeded") < out.index("SFTRun/tiny: Pending")
    assert prep["phase"] == "Succeeded" and prep["progress"]["shards"] == "2/2"
    assert {c["type"]: c["status"] for c in prep["conditions"]}["DataReady"] == "True"
    assert prep["outputs"]["outputDir"] == str(volume / "tiny") and prep["outputs"]["packSize"] == 512
    assert set(prep["progress"]["workers"]) == {"0", "1"}  # two workers, as parallelism says
    assert run["phase"] == "Succeeded" and run["progress"]["iterations"] == "4/4"
    assert {c["type"]: c["status"] for c in run["conditions"]}["Ready"] == "True"
    assert run["outputs"]["data"] == str(volume / "tiny")
    assert Path(run["outputs"]["checkpoint"]) == volume / "tiny-run" / "checkpoints" / "iter_0000004"
    assert (volume / "tiny-run" / "hf" / "config.json").exists()
    # one loss: the log line, the progress (status), the result and the summary agree, 4 decimals
    loss = run["outputs"]["finalLoss"]
    assert loss == run["progress"]["loss"] == round(loss, 4)
    assert f"iteration      4/4 | loss {loss:.4f}" in out and f"final loss {loss:.4f}" in out
    records = [
        json.loads(x)
        for x in (tmp_path / "work" / "sftrun" / "tiny" / "metrics.jsonl").read_text().splitlines()
    ]
    steps = [r["loss"] for r in records if "loss" in r]
    assert loss == round(sum(steps[2:4]) / 2, 4)  # the mean over the last logInterval iterations

    assert main(argv) == 0
    again = capsys.readouterr().out
    assert "already finished (nothing left to train)" in again and f"final loss {loss:.4f}" in again
    assert "None" not in again
    assert status(tmp_path / "work", "sftrun", "tiny")["status"]["outputs"]["finalLoss"] == loss


@pytest.mark.slow
def test_the_demo_pipeline_runs_locally_as_make_demo_runs_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """manifests/samples/pipeline-local.yaml through ``python -m sft_operator.ctl.demo`` (``make demo``),
    shortened to 6 iterations and bins of 256."""
    from sft_operator.ctl import demo

    code = demo.main(["--output-dir", str(tmp_path / "demo"), "--iterations", "6", "--pack-size", "256"])
    out = capsys.readouterr().out
    assert code == 0, out[-4000:]
    run = status(tmp_path / "demo", "sftrun", "demo")["status"]
    assert run["phase"] == "Succeeded" and run["outputs"]["lastIteration"] == 6
    assert "loss (mean over each 5 iterations)" in out and "validation loss (splits/valid)" in out
    metadata = json.loads((tmp_path / "demo" / "data" / "prep" / "metadata.json").read_text())
    assert metadata["pack_size"] == 256


@pytest.mark.slow
def test_engine_megatron_falls_back_to_hf_here_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A spec for GPUs (engine megatron, 8 GPUs, bf16) still runs here: engine hf, one process."""
    prep_dir = tmp_path / "claim"
    build_base_model(prep_dir, pack_size=512)
    pipeline = tmp_path / "megatron.yaml"
    run_yaml = (SAMPLES / "sftrun-tiny.yaml").read_text()
    for old, new in (
        # sizes that fit 8 GPUs (unset ones are the recipe's, TP 8 × EP 16: 16 GPUs)
        ("engine: hf", "engine: megatron\n  parallelism: {tensorParallelSize: 1, expertParallelSize: 1}"),
        ("trainIters: 20", "trainIters: 2"),
        ("gpusPerNode: 0", "gpusPerNode: 8"),
        ("globalBatchSize: 4", "globalBatchSize: 8"),  # a multiple of DP 8 (the admission check)
        ("precision: fp32", "precision: bf16"),
    ):
        assert old in run_yaml
        run_yaml = run_yaml.replace(old, new)
    pipeline.write_text((SAMPLES / "sftdataprep-tiny.yaml").read_text() + "\n---\n" + run_yaml)
    code = main(
        [
            "run",
            "--local",
            "-f",
            str(pipeline),
            "--workdir",
            str(tmp_path / "w"),
            "--volume",
            f"sft-data={prep_dir}",
        ]
    )
    captured = capsys.readouterr()
    out = captured.out
    assert code == 0, (out + captured.err)[-3000:]
    assert (
        "asks for engine megatron, which cannot run here" in out and "training with engine hf instead" in out
    )
    assert "running one training process here" in out
    config = (tmp_path / "w" / "sftrun" / "tiny" / "config.yaml").read_text()
    assert "engine: hf" in config


def test_a_spec_the_operator_would_refuse_is_refused_here_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Today `sft-prep --config sftdataprep-tiny.yaml` says `expected a single document` and the bare
    spec `unknown key 'parallelism'`: the CR is read through the API model instead, with its errors."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        (SAMPLES / "sftdataprep-tiny.yaml")
        .read_text()
        .replace("packSize: 512", "packSize: 512\n  colour: red")
    )
    assert main(["run", "--local", "-f", str(bad), "--workdir", str(tmp_path / "w")]) == 2
    err = capsys.readouterr().err
    assert "bad.yaml#2 (SFTDataPrep/tiny)" in err and "colour" in err
    assert not (tmp_path / "w").exists()


def test_a_run_whose_data_prep_is_missing_fails_saying_what_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["run", "--local", "-f", str(SAMPLES / "sftrun-tiny.yaml"), "--workdir", str(tmp_path / "w")])
    out = capsys.readouterr().out
    assert code == 1
    st = status(tmp_path / "w", "sftrun", "tiny")["status"]
    assert st["phase"] == "Failed" and st["failure"]["reason"] == "DataPrepNotFound"
    assert "add the SFTDataPrep to the file" in out
    assert os.path.exists(tmp_path / "w" / "sftrun" / "tiny" / "status.json")


@pytest.mark.slow
def test_the_shipped_demo_pipeline_runs_outside_make_demo_from_two_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """manifests/samples/pipeline-local.yaml as shipped, without `make demo` (issue 21 point 11): the
    missing base model is an error that names the command writing it, `sftctl init-demo-model`; then
    the same pipeline split in two files, `run --local -f prep.yaml -f run.yaml`, uses both (issue 21
    point 2: only the last -f was used), the run shortened to 2 iterations."""
    monkeypatch.chdir(tmp_path)
    code = main(["run", "--local", "-f", str(SAMPLES / "pipeline-local.yaml")])
    out, err = capsys.readouterr()
    claim = tmp_path / "sft-local" / "volumes" / "sft-demo"
    assert code == 2
    assert f"`sftctl init-demo-model {claim}` writes the demo's tiny random base model there" in err
    assert status(tmp_path / "sft-local", "sftdataprep", "demo")["status"]["phase"] == "Succeeded"

    assert main(["init-demo-model", "sft-local/volumes/sft-demo"]) == 0
    assert (claim / "base-model" / "config.json").exists()
    docs = (SAMPLES / "pipeline-local.yaml").read_text().split("\n---\n")
    run_doc = next(d for d in docs if "kind: SFTRun" in d)
    (tmp_path / "prep.yaml").write_text("\n---\n".join(d for d in docs if d is not run_doc))
    (tmp_path / "run.yaml").write_text(run_doc.replace("trainIters: 60", "trainIters: 2"))
    capsys.readouterr()
    assert main(["run", "--local", "-f", "prep.yaml", "-f", "run.yaml"]) == 0, capsys.readouterr()
    out = capsys.readouterr().out
    assert "=== SFTDataPrep/demo (prep.yaml#2)" in out and "=== SFTRun/demo (run.yaml#1)" in out
    run = status(tmp_path / "sft-local", "sftrun", "demo")["status"]
    assert run["phase"] == "Succeeded" and run["progress"]["iterations"] == "2/2"
