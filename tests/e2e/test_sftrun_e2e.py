"""End to end on CPU: the tiny SFTDataPrep, then the tiny SFTRun that references it, through the real
operator, kubeemu's Job and PyTorchJob controllers and real ``sft-prep`` / ``torchrun … sft-train``
processes (hf engine). Both reach ``Succeeded``; the run's outputs point at a real checkpoint, and its
``status.progress`` (patched by the trainer's rank 0 through the API) was seen moving while it ran.

The CRs are the shipped samples (manifests/samples/sft{dataprep,run}-tiny.yaml); only their in-image
paths are mapped onto this checkout, and the run is stretched to two nodes (Master + Worker, gloo)
so the Worker replica and the rendezvous are exercised too.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from inprocess_operator import run_operator
from kubeemu import KubeEmulator
from kubeemu.fixtures import PROJECT_CRDS
from kubeemu.podrunner import PodRunner
from sft_operator.render.pods import WorkloadDefaults
from sft_train.demo import build_base_model

# torchrun rendezvous on the emulator's fixed master port: these tests run on one xdist worker
# (make test uses --dist loadgroup), or two at once clash on the port (EADDRINUSE)
pytestmark = pytest.mark.xdist_group("torchrun-rendezvous")

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "manifests" / "samples"
IMAGE_SAMPLES = "/opt/sft/lib/python3.11/site-packages/sft_prep/samples"
TIMEOUT = 150


def sample(name: str, kind: str) -> dict[str, Any]:
    (cr,) = [d for d in yaml.safe_load_all((SAMPLES / name).read_text()) if d and d["kind"] == kind]
    cr["metadata"]["namespace"] = "default"
    return cr


@pytest.fixture
def pvc_root() -> Iterator[Path]:
    """Volumes outside /tmp. Why: the prep reports its output dir as the *local* path it wrote to, and
    the pod runner rewrites every container mount path it finds in a pod's ConfigMap text, including
    the operator's /tmp scratch mount inside such an already-local /tmp/... path. A real cluster has
    no such rewriting (in-pod paths are the same in every pod)."""
    root = Path(tempfile.mkdtemp(prefix="sftrun-e2e-", dir="/var/tmp" if os.path.isdir("/var/tmp") else None))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_tiny_prep_then_tiny_run_reach_succeeded_with_a_real_checkpoint(
    kube: KubeEmulator, pod_runner: PodRunner, pvc_root: Path
) -> None:
    kube.apply(PROJECT_CRDS)
    kube.install_pytorchjob_crd()
    pvc = pvc_root / "sft-data"
    pod_runner.config.pvc_root = pvc_root
    pod_runner.path_map[IMAGE_SAMPLES] = REPO / "workloads" / "sft_prep" / "samples"
    pod_runner.executables["torchrun"] = [sys.executable, "-m", "torch.distributed.run"]
    pod_runner.extra_env.update(
        {
            # torchrun --no-python execs sft-train from PATH, as in the image
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "SFT_PROGRESS_INTERVAL": "0.05",
            "OMP_NUM_THREADS": "1",
        }
    )
    build_base_model(pvc, pack_size=512)  # the sample expects a small HF checkpoint at /data/base-model

    prep = sample("sftdataprep-tiny.yaml", "SFTDataPrep")
    run = sample("sftrun-tiny.yaml", "SFTRun")
    run["spec"]["nodes"] = 2
    seen: list[dict[str, Any]] = []

    def finished() -> dict[str, Any] | None:
        st = kube.get("SFTRun", "tiny").get("status") or {}
        seen.append(st)
        return st if st.get("phase") in ("Succeeded", "Failed") else None

    defaults = WorkloadDefaults(
        prep_image="ghcr.io/sft-operator/sft-prep:test", trainer_image="ghcr.io/sft-operator/sft-train:test"
    )
    with run_operator(defaults=defaults):
        kube.create(run)  # first: it must wait for the prep
        kube.create(prep)
        status = kube.wait_for(finished, TIMEOUT, interval=0.05, message="SFTRun tiny to finish")

    prep_status = kube.get("SFTDataPrep", "tiny")["status"]
    logs = {
        p["metadata"]["name"]: kube.pod_log(p["metadata"]["name"])[-2000:]
        for p in kube.list("pods", "default")
    }
    assert prep_status["phase"] == "Succeeded", json.dumps(prep_status)[:2000]
    assert status["phase"] == "Succeeded", json.dumps(status, indent=1)[:3000] + json.dumps(logs, indent=1)

    # it waited for the prep, naming it and its phase
    waiting = [s for s in seen if s.get("phase") == "Waiting"]
    assert waiting and any("SFTDataPrep tiny" in s["message"] for s in waiting)

    # outputs: the trainer's result, pointing at a real checkpoint on the volume
    outputs = status["outputs"]
    # (paths are local here: the pod runner maps the volume mounted at /data to ``pvc``)
    assert outputs["data"] == prep_status["outputs"]["outputDir"] == str(pvc / "tiny")
    assert outputs["packSize"] == 512 and outputs["lastIteration"] == 20
    checkpoint = Path(outputs["checkpoint"])
    assert checkpoint.is_dir() and checkpoint.is_relative_to(pvc / "tiny-run" / "checkpoints")
    assert any(checkpoint.rglob("*.safetensors")), sorted(p.name for p in checkpoint.rglob("*"))
    assert Path(outputs["hfExport"]).is_relative_to(pvc / "tiny-run" / "hf")
    assert any(Path(outputs["hfExport"]).rglob("*.safetensors"))

    # progress came from rank 0 through the API, and moved while the run was Running
    running = [
        s["progress"]
        for s in seen
        if s.get("phase") == "Running" and "completed" in (s.get("progress") or {})
    ]
    completed = sorted({p["completed"] for p in running})
    assert len(completed) >= 2 and completed[0] < completed[-1], completed
    final = status["progress"]
    assert final["iterations"] == "20/20" and final["total"] == 20 and final["loss"] > 0
    assert "learningRate" in final and "tokensPerSecond" in final and "updatedAt" in final

    # two nodes: a Master and a Worker pod ran, with the rendezvous the training-operator injects
    pods = {p["metadata"]["name"]: p for p in kube.list("pods", "default")}
    assert {"tiny-train-master-0", "tiny-train-worker-0"} <= set(pods)
    conditions = {c["type"]: c["status"] for c in status["conditions"]}
    assert conditions["Ready"] == "True" and conditions["DataReady"] == "True"
    # the workloads' only API calls: merge patches of their owner's status (the sft-workload role)
    workload_calls = {
        (str(r.method).rsplit(".", 1)[-1].upper(), r.url.path)
        for r in kube.requests
        if "Python-urllib" in r.headers.get("User-Agent", "")
    }
    assert ("PATCH", "/apis/sft.dev/v1alpha1/namespaces/default/sftruns/tiny/status") in workload_calls
    assert all(m == "PATCH" and p.endswith("/status") for m, p in workload_calls), workload_calls
    reasons = [e["reason"] for e in kube.events("default", "tiny") if e["involvedObject"]["kind"] == "SFTRun"]
    assert "JobCreated" in reasons and "Succeeded" in reasons
