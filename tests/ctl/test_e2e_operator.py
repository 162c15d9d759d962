"""sftctl against the real operator: ``sftctl run -f`` (apply, then watch to the end) of the tiny
sample SFTDataPrep, whose workers really run (kubeemu's pod runner); then ``logs``, ``describe``,
``preview NAME`` and ``report NAME`` find everything by the CR's name alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from inprocess_operator import run_operator
from kubeemu import KubeEmulator
from kubeemu.fixtures import PROJECT_CRDS
from kubeemu.podrunner import PodRunner
from sft_operator.ctl.main import main

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "manifests" / "samples" / "sftdataprep-tiny.yaml"
IMAGE_SAMPLES = "/opt/sft/lib/python3.11/site-packages/sft_prep/samples"


@pytest.mark.slow
def test_run_watch_logs_describe_preview_report_by_name(
    kube: KubeEmulator, pod_runner: PodRunner, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kube.apply(PROJECT_CRDS)
    pod_runner.path_map[IMAGE_SAMPLES] = REPO / "workloads" / "sft_prep" / "samples"
    pod_runner.config.pvc_root = tmp_path / "pvcs"
    pod_runner.extra_env["SFT_PROGRESS_INTERVAL"] = "0.05"
    with run_operator() as runner:
        code = main(["run", "-f", str(SAMPLE), "--interval", "0.2", "--timeout", "120"])
    out = capsys.readouterr().out + runner.output  # kopf's runner captures stdout while it runs
    assert code == 0, out
    assert "sftdataprep.sft.dev/tiny created (context kubeemu, namespace default)" in out
    rows = [line.split()[:3] for line in out.splitlines() if line.startswith("SFTDataPrep/tiny ")]
    assert rows[-1] == ["SFTDataPrep/tiny", "Succeeded", "2/2"], out

    assert main(["logs", "tiny", "--worker", "1"]) == 0
    captured = capsys.readouterr()
    assert "# pod tiny-prep-1-" in captured.err and '"event": "result"' in captured.out

    assert main(["describe", "tiny"]) == 0
    page = capsys.readouterr().out
    assert "Phase:      Succeeded" in page and "DataReady" in page and "jobRef: Job/tiny-prep" in page
    assert "packingEfficiency" in page and "Pod/tiny-prep-0-" in page

    assert main(["preview", "tiny", "--color", "never"]) == 0
    assert "── sub-sequence 1/" in capsys.readouterr().out

    assert main(["report", "tiny", "--output-dir", str(tmp_path / "report")]) == 0
    assert (tmp_path / "report" / "report.png").exists()
    bins = kube.get("SFTDataPrep", "tiny")["status"]["outputs"]["totals"]["bins"]
    html = (tmp_path / "report" / "report.html").read_text()
    assert f"<tr><th>bins</th><td>{bins:,}</td></tr>" in html  # metadata.json found from the status
