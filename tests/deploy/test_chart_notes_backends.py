"""The chart's NOTES say how an SFTRun's backend is chosen (issue 21 point 11): they said SFTRun needs
the PyTorchJob CRD, though TrainJob, JobSet and PyTorchJob are all backends (sft_operator.backends)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from deploytools import CHART, KubeTools, helm

from sft_operator import backends


def notes(kube_tools: KubeTools, helm_env: dict[str, str], tmp_path: Path, values: dict) -> str:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    args = ["install", "sft", CHART, "--dry-run=client", "--namespace", "ops", "--values", path]
    return helm(kube_tools, helm_env, *args).stdout.split("NOTES:", 1)[1]


@pytest.mark.parametrize("backend", ["auto", "jobset"])
def test_notes_name_every_backend_and_what_auto_means(
    kube_tools: KubeTools, helm_env: dict[str, str], tmp_path: Path, backend: str
) -> None:
    text = notes(kube_tools, helm_env, tmp_path, {"sftRun": {"backend": backend}})
    assert "needs the Kubeflow PyTorchJob CRD" not in text
    for b in backends.PREFERENCE:
        assert f"({b.name})" in text and (b.crd is None or b.crd in text)
    if backend == "auto":
        assert '"auto" (the default) takes the first of these whose CRD the cluster serves' in text
    else:
        assert '"auto" (the default) means jobset on this cluster' in text
    assert "sftctl run --dry-run=client -o yaml -f <file>" in text
