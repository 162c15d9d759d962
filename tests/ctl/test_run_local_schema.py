"""``sftctl run --local`` checks each document against the CRD's structural schema first (issue 20
point 3): a field a cluster would prune (the API server drops what the schema does not declare:
apiextensions-apiserver pkg/apiserver/schema/pruning) is an error naming it and its camelCase
spelling, not a setting the local run uses while the cluster would not."""

from __future__ import annotations

from pathlib import Path

import pytest

from sft_operator.ctl.main import main
from sft_operator.ctl.manifests import load

REPO = Path(__file__).resolve().parents[2]
PIPELINE = REPO / "manifests" / "samples" / "pipeline-local.yaml"


def test_a_snake_case_field_is_refused_naming_its_camel_case_spelling(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = PIPELINE.read_text().replace("gpusPerNode: 0", "gpus_per_node: 0")
    text = text.replace("trainIters: 60", "train_iters: 60")
    assert "gpus_per_node" in text and "train_iters" in text
    (tmp_path / "p.yaml").write_text(text)
    code = main(["run", "--local", "-f", str(tmp_path / "p.yaml"), "--workdir", str(tmp_path / "w")])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "spec.gpus_per_node (did you mean gpusPerNode?)" in err
    assert "spec.train.train_iters (did you mean trainIters?)" in err
    assert "p.yaml#3 (SFTRun/demo)" in err
    assert not (tmp_path / "w").exists(), "nothing may run before every document is checked"


def test_the_shipped_samples_have_no_field_a_cluster_would_prune() -> None:
    for path in sorted((REPO / "manifests" / "samples").glob("*.yaml")):
        for resource in load([str(path)], validate=False).resources:
            assert resource.pruned() == [], (path.name, resource.ref)
