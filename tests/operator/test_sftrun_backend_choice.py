"""Choosing the backend through the real operator (kopf) against kubeemu serving the peers' CRDs:
auto prefers TrainJob, then JobSet, then PyTorchJob, from API discovery when the run starts; an
explicit backend whose CRD is missing stalls saying so and starts by itself when it appears; the
chart-wide default applies to auto; status.backend never changes once the child exists; data padded
for less than the parallelism needs is refused before anything is created."""

from __future__ import annotations

from pathlib import Path

import yaml
from operator_harness import condition as cond
from test_operator_dataprep import prep as dataprep
from test_sftrun_operator import finish_prep, operator, run, wait_status

from kubeemu import KubeEmulator

TIMEOUT = 20
RUNTIME = Path(__file__).resolve().parents[2] / "manifests" / "trainer" / "sft-torch-distributed.yaml"


def stalled(s: dict) -> bool:
    return bool(s.get("conditions")) and cond(s, "Stalled").get("status") == "True"


def test_auto_prefers_trainjob_and_keeps_it(cluster: KubeEmulator) -> None:
    kube = cluster
    kube.install_trainer_crds()
    kube.install_pytorchjob_crd()
    with operator(recheck_base=0.2):
        kube.create(run(data={"uri": "s3://bucket/prep"}))
        # Trainer's webhook denies a TrainJob whose runtime does not exist: Stalled saying so, and
        # the run starts by itself once the runtime is installed (nothing watches runtimes)
        st = wait_status(kube, stalled, what="Stalled")
        assert cond(st, "Stalled")["reason"] == "ChildDenied" and "sft-torch-distributed" in st["message"]
        kube.apply(yaml.safe_load(RUNTIME.read_text()))
        st = wait_status(kube, lambda s: s.get("backend"), what="status.backend")
        assert st["backend"] == "trainjob" and st["jobRef"]["kind"] == "TrainJob"
        tj = kube.get("TrainJob", "run-train")
        assert tj["spec"]["runtimeRef"]["name"] == "sft-torch-distributed"
        # a later spec.backend change does not move a started run
        kube.patch("SFTRun", "run", {"spec": {"backend": "pytorchjob"}})
        st = wait_status(kube, lambda s: s.get("observedGeneration") == 2, what="generation 2")
        assert st["backend"] == "trainjob"
    assert not kube.list("pytorchjobs", "default")


def test_explicit_backend_missing_stalls_then_starts(cluster: KubeEmulator) -> None:
    kube = cluster
    kube.install_pytorchjob_crd()
    with operator(recheck_max=1.0):
        kube.create(run(data={"uri": "s3://bucket/prep"}, backend="jobset"))
        st = wait_status(kube, stalled, what="Stalled")
        assert cond(st, "Stalled")["reason"] == "BackendCRDMissing"
        assert "jobsets.jobset.x-k8s.io" in st["message"] and "spec.backend is jobset" in st["message"]
        kube.install_jobset_crd()
        js = kube.wait_for_object("JobSet", "run-train", timeout=TIMEOUT)
        assert js["spec"]["replicatedJobs"][0]["template"]["spec"]["completions"] == 2
        st = wait_status(kube, lambda s: s.get("backend") == "jobset", what="backend jobset")
        assert cond(st, "Stalled")["status"] == "False"
    assert not kube.list("pytorchjobs", "default")


def test_chart_default_applies_to_auto(cluster: KubeEmulator) -> None:
    kube = cluster
    kube.install_trainer_crds()
    with operator(default_backend="jobset"):
        kube.create(run(data={"uri": "s3://bucket/prep"}))
        assert wait_status(kube, lambda s: s.get("backend"), what="status.backend")["backend"] == "jobset"
    assert not kube.list("trainjobs", "default")


def test_data_padded_too_little_stalls_before_anything_exists(cluster: KubeEmulator) -> None:
    kube = cluster
    kube.install_jobset_crd()
    kube.create(dataprep("prep", outputDir="s3://bucket/prep", numShards=1, parallelism=1, packSize=1024))
    spec = {
        "engine": "megatron",
        "precision": "bf16",
        "gpusPerNode": 8,
        "nodes": 2,
        "parallelism": {"tensorParallelSize": 1, "contextParallelSize": 2},
        "train": {"trainIters": 50, "globalBatchSize": 8},
    }
    with operator():
        kube.create(run(**spec))
        # the prep really succeeds through the operator (its result names no padSeqToMult: 1), rather
        # than a hand-written status the operator's own prep reconcile could overwrite first
        finish_prep(kube, ok=True)
        st = wait_status(kube, stalled, what="Stalled")
        assert cond(st, "Stalled")["reason"] == "DataPaddingMismatch"
        assert "padSeqToMult" in st["message"] and "multiple of 4" in st["message"]
    assert not kube.list("jobsets", "default")
    assert "run-train-config" not in {c["metadata"]["name"] for c in kube.list("configmaps", "default")}
