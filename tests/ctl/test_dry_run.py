"""``sftctl run --dry-run=client`` and ``sft-train --dry-run``: no cluster, credentials or network
(issue 21 point 4).

"Offline" is made real, not assumed: no kubeconfig, no AWS credentials, and the S3 endpoint pointed at
a closed local port, so any storage or API call would fail the command.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubeemu import KubeEmulator
from kubeemu.fixtures import PROJECT_CRDS
from sft_common.config import to_yaml
from sft_operator.api.sftrun import SFTRunSpec
from sft_operator.ctl.main import main

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "manifests" / "samples"
VENV_BIN = Path(sys.executable).parent
sys.path.insert(0, str(REPO / "tests" / "deploy"))
from deploytools import find_kube_tools  # noqa: E402

EVERY_SAMPLE = sorted(SAMPLES.glob("*.yaml"))
JOB_KINDS = {"Job", "TrainJob", "JobSet", "PyTorchJob"}


def closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens there once closed


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    for name in list(os.environ):
        if name.startswith("AWS_") or name.startswith("KUBERNETES_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("HOME", str(tmp_path))
    return dict(os.environ)


def sftctl(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def documents(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


@pytest.mark.parametrize("sample", EVERY_SAMPLE, ids=[p.name for p in EVERY_SAMPLE])
def test_every_shipped_sample_renders_offline(
    sample: Path, offline: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Each sample alone: its CRs' children and, for an SFTRun, the trainer plan; and no warning: a
    shipped sample is correct as shipped for the backend it gets (the flagship samples had backend auto
    with envFrom and a per-run TTL, which stall a run where the operator picks TrainJob)."""
    code, out, err = sftctl(capsys, "run", "--dry-run=client", "-o", "yaml", "-f", str(sample))
    assert code == 0, err
    assert [line for line in err.splitlines() if line.startswith("warning:")] == []
    docs = documents(out)
    crs = [d for d in documents(sample.read_text()) if d["kind"] in ("SFTDataPrep", "SFTRun")]
    assert sum(d["kind"] == "ConfigMap" for d in docs) == len(crs)
    assert sum(d["kind"] in JOB_KINDS for d in docs) == len(crs)
    for cr in crs:
        if cr["kind"] == "SFTRun":
            assert f"# SFTRun/{cr['metadata']['name']}: " in out and "# trainer plan" in out


def test_all_samples_together_resolve_each_runs_data_from_its_prep(
    offline: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """-f DIR: every sample at once; an SFTRun whose SFTDataPrep is in the files gets its outputDir and
    packSize, as the operator would from the prep's status."""
    code, out, err = sftctl(capsys, "run", "--dry-run=client", "-o", "yaml", "-f", str(SAMPLES))
    assert code == 0, err
    docs = documents(out)
    config_maps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
    flagship = yaml.safe_load(config_maps["super3-stage1-sft-train-config"]["data"]["config.yaml"])
    prep = next(d for d in documents((SAMPLES / "sftdataprep-super3.yaml").read_text()) if d)
    assert flagship["data"]["path"] == prep["spec"]["outputDir"]
    assert flagship["model"]["seq_length"] == prep["spec"]["packSize"]
    assert "not in the files given" not in err.split("super3-stage1-sft:")[0]


def test_auto_backend_follows_the_operators_preference_and_warns_of_what_it_passed_over(
    offline: dict[str, str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The flagship sample as it was shipped (backend auto, envFrom, a per-run TTL)."""
    flagship = (SAMPLES / "sftrun-super3.yaml").read_text()
    assert "  backend: jobset\n" in flagship
    sample = str(tmp_path / "auto.yaml")
    Path(sample).write_text(flagship.replace("  backend: jobset\n", "  backend: auto\n"))
    code, out, err = sftctl(capsys, "run", "--dry-run=client", "-o", "name", "-f", sample)
    assert code == 0, err
    assert "jobset.jobset.x-k8s.io/super3-stage1-sft-train" in out.splitlines()
    assert (
        "warning: SFTRun/super3-stage1-sft: spec.backend auto: where the TrainJob CRD is served the operator "
        "picks trainjob and the run is Stalled: backend trainjob: envFrom"
    ) in err
    code, out, err = sftctl(
        capsys, "run", "--dry-run=client", "-o", "name", "--backend", "pytorchjob", "-f", sample
    )
    assert code == 0 and "pytorchjob.kubeflow.org/super3-stage1-sft-train" in out.splitlines()
    code, _, err = sftctl(capsys, "run", "--dry-run=client", "--backend", "trainjob", "-f", sample)
    assert code == 2 and "backend trainjob: envFrom" in err
    code, out, err = sftctl(capsys, "run", "--dry-run", "-f", str(SAMPLES / "sftrun-tiny.yaml"))
    assert code == 0, err  # --dry-run alone means client, as kubectl's (deprecated) bare --dry-run
    assert "trainer plan:" in out and "created (dry run)" in out


def test_a_dry_run_rejects_what_the_operator_would_reject(
    offline: dict[str, str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        (SAMPLES / "sftrun-tiny.yaml").read_text().replace("globalBatchSize: 4", "globalBatchSize: 0")
    )
    code, _, err = sftctl(capsys, "run", "--dry-run=client", "-f", str(bad))
    assert code == 2 and "globalBatchSize" in err and "Traceback" not in err


def test_o_yaml_and_json_round_trip_through_kubectl_apply_dry_run(
    kube: KubeEmulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The rendered objects are valid input for the real kubectl (the chart tests' binary).

    ``kubectl apply --dry-run=client`` is not offline: it still asks the API server for discovery (the
    REST mapping of each kind) and the live object, and without one fails with `unable to recognize
    "STDIN"` even with --validate=false (checked with kubectl 1.35). So kubectl talks to kubeemu here,
    which serves discovery, the Job/RBAC kinds and the backends' CRDs; nothing is created. kubeemu
    serves no OpenAPI document, so kubectl's own validation is off (--validate=false) and the built-in
    kinds are validated strictly against Kubernetes' schemas with kubernetes-validate instead."""
    from deploytools import validate_manifest
    from kubernetes_validate.utils import latest_version

    kube.apply(PROJECT_CRDS)
    kube.install_trainer_crds()
    kube.install_pytorchjob_crd()
    kubectl = str(find_kube_tools().kubectl)
    files = ["-f", str(SAMPLES / "sftdataprep-tiny.yaml"), "-f", str(SAMPLES / "sftrun-tiny.yaml")]
    for output, backend in (("yaml", "trainjob"), ("json", "jobset"), ("yaml", "pytorchjob")):
        code, out, err = sftctl(capsys, "run", "--dry-run=client", "-o", output, "--backend", backend, *files)
        assert code == 0, err
        proc = subprocess.run(
            [kubectl, "apply", "--dry-run=client", "--validate=false", "-f", "-"],
            input=out,
            capture_output=True,
            text=True,
            timeout=60,
            env=os.environ,
        )
        assert proc.returncode == 0, proc.stderr
        objects = documents(out) if output == "yaml" else json.loads(out)["items"]
        assert len(proc.stdout.splitlines()) == len(objects) >= 10
        assert all(line.endswith("created (dry run)") for line in proc.stdout.splitlines()), proc.stdout
        assert kube.get_or_none("ConfigMap", "tiny-train-config") is None
        for obj in objects:
            if obj["kind"] not in ("TrainJob", "JobSet", "PyTorchJob"):
                validate_manifest(obj, latest_version(), {})


def flagship_config(tmp_path: Path) -> Path:
    """The flagship SFTRun's trainer config as the operator writes it into the ConfigMap (s3:// data,
    s3:// checkpoints)."""
    cr = yaml.safe_load((SAMPLES / "sftrun-super3.yaml").read_text())
    spec = SFTRunSpec.model_validate(cr["spec"])
    path = tmp_path / "config.yaml"
    path.write_text(to_yaml(spec.train_config("s3://sft-data/super3/stage1_sft/packed", None)))
    return path


def test_sft_train_dry_run_with_s3_data_and_no_credentials_is_a_warning(
    offline: dict[str, str], tmp_path: Path
) -> None:
    """It exited 2 (no S3 credentials) though its help says missing data is a warning."""
    proc = subprocess.run(
        [str(VENV_BIN / "sft-train"), "--config", str(flagship_config(tmp_path)), "--dry-run"],
        capture_output=True,
        text=True,
        timeout=120,
        env=offline,
    )
    assert proc.returncode == 0, proc.stderr
    assert "data.path s3://sft-data/super3/stage1_sft/packed is not checked" in proc.stderr
    assert "s3://sft-models/super3-stage1-sft/checkpoints not checked for a checkpoint" in proc.stderr
    report = yaml.safe_load(proc.stdout)
    assert report["megatron_bridge"]["resume_from"] is None
    assert report["torchrun"].startswith("torchrun ")


def test_a_warm_up_not_below_train_iters_is_a_warning_of_the_dry_run(
    offline: dict[str, str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """sft-train warns before a run; the client dry run said nothing of it (config_warnings unused)."""
    run = (SAMPLES / "sftrun-tiny.yaml").read_text()
    assert "lrWarmupIters: 5" in run
    (tmp_path / "run.yaml").write_text(run.replace("lrWarmupIters: 5", "lrWarmupIters: 50"))
    code, _, err = sftctl(capsys, "run", "--dry-run=client", "-f", str(tmp_path / "run.yaml"))
    assert code == 0, err
    assert "warning: SFTRun/tiny: scheduler.lr_warmup_iters 50 is not below train.train_iters 20" in err
