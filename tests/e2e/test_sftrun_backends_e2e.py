"""End to end on CPU under the Kubeflow Trainer v2 (TrainJob), JobSet and plain Job backends: the tiny
SFTDataPrep, then the tiny SFTRun (hf engine, 2 nodes, gloo) through the real operator, kubeemu's
JobSet and Trainer controllers (tests/kubeemu/jobset.py, trainer.py: pods per node with the labels and
PET_* env those controllers give them) or, with none of those CRDs installed, kubeemu's Job
controller and a headless Service (the ``job`` backend), and real ``sft-prep`` / ``torchrun …
sft-train`` processes.

* Each reaches ``Succeeded`` with a real checkpoint, and ``status.backend`` records the backend.
* A node killed mid-run (its processes SIGKILLed, as a crashed node) fails its Job; the JobSet (or,
  for the ``job`` backend, the operator, by replacing the Job) restarts the whole group
  (spec.maxRestarts) and the trainer resumes from its newest checkpoint: the progress never falls
  back below that checkpoint's iteration, the pods of the second attempt say they resumed, and the
  run succeeds with restartCount 1.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from inprocess_operator import run_operator
from kubeemu import KubeEmulator
from kubeemu.fixtures import PROJECT_CRDS
from kubeemu.podrunner import PodRunner
from sft_operator.render.pods import WorkloadDefaults
from sft_operator.status.pods import JOB_INDEX_ANNOTATION
from sft_train.demo import build_base_model

# torchrun rendezvous on the emulator's fixed master port: these tests run on one xdist worker
# (make test uses --dist loadgroup), or two at once clash on the port (EADDRINUSE)
pytestmark = pytest.mark.xdist_group("torchrun-rendezvous")

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "manifests" / "samples"
RUNTIME = REPO / "manifests" / "trainer" / "sft-torch-distributed.yaml"
IMAGE_SAMPLES = "/opt/sft/lib/python3.11/site-packages/sft_prep/samples"
TIMEOUT = 240
KIND = {"trainjob": "TrainJob", "jobset": "JobSet", "job": "Job"}
GROUP_LABEL = {
    "trainjob": "jobset.sigs.k8s.io/jobset-name",  # Trainer's JobSet has the TrainJob's name
    "jobset": "jobset.sigs.k8s.io/jobset-name",
    "job": "batch.kubernetes.io/job-name",
}
"""The label naming the child each training pod belongs to."""
ATTEMPT_LABEL = {
    "trainjob": "jobset.sigs.k8s.io/restart-attempt",
    "jobset": "jobset.sigs.k8s.io/restart-attempt",
    "job": "sft.dev/restart-attempt",
}
"""The label saying which start of the group a pod belongs to."""
DEFAULTS = WorkloadDefaults(
    prep_image="ghcr.io/sft-operator/sft-prep:test", trainer_image="ghcr.io/sft-operator/sft-train:test"
)


def sample(name: str, kind: str) -> dict[str, Any]:
    (cr,) = [d for d in yaml.safe_load_all((SAMPLES / name).read_text()) if d and d["kind"] == kind]
    cr["metadata"]["namespace"] = "default"
    return cr


@pytest.fixture
def pvc_root() -> Iterator[Path]:
    """Volumes outside /tmp (see tests/e2e/test_sftrun_e2e.py for why)."""
    root = Path(tempfile.mkdtemp(prefix="sftrun-be-", dir="/var/tmp" if os.path.isdir("/var/tmp") else None))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def install(kube: KubeEmulator, backend: str) -> None:
    kube.apply(PROJECT_CRDS)
    if backend == "trainjob":
        kube.install_trainer_crds()  # JobSet + Trainer: Trainer runs on JobSet
        kube.apply(yaml.safe_load(RUNTIME.read_text()))  # the runtime the chart ships
    elif backend == "jobset":
        kube.install_jobset_crd()
    # job: no CRD at all (a bare cluster)


def prepare(pod_runner: PodRunner, pvc_root: Path) -> Path:
    pvc = pvc_root / "sft-data"
    pod_runner.config.pvc_root = pvc_root
    pod_runner.path_map[IMAGE_SAMPLES] = REPO / "workloads" / "sft_prep" / "samples"
    pod_runner.executables["torchrun"] = [sys.executable, "-m", "torch.distributed.run"]
    pod_runner.extra_env.update(
        {
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "SFT_PROGRESS_INTERVAL": "0.05",
            "OMP_NUM_THREADS": "1",
        }
    )
    build_base_model(pvc, pack_size=512)
    return pvc


def finished(kube: KubeEmulator, seen: list[dict[str, Any]]) -> dict[str, Any] | None:
    st = kube.get("SFTRun", "tiny").get("status") or {}
    seen.append(st)
    return st if st.get("phase") in ("Succeeded", "Failed") else None


def explain(kube: KubeEmulator, status: dict[str, Any]) -> str:
    logs = {
        p["metadata"]["name"]: kube.pod_log(p["metadata"]["name"])[-1500:]
        for p in kube.list("pods", "default")
    }
    return json.dumps(status, indent=1)[:3000] + json.dumps(logs, indent=1)[-6000:]


def node1_at_checkpoint(
    kube: KubeEmulator,
    ckpts: Path,
    seen: list[dict[str, Any]],
    first_attempt: Callable[[dict[str, Any]], bool],
    what: str,
) -> dict[str, Any]:
    """Node 1's pod, once the checkpoint at iteration 10 is saved and both pods of the group's first
    attempt (``first_attempt``) run; fails if the run finishes before it could be ``what`` (killed,
    stopped). The statuses seen meanwhile go to ``seen``."""

    def ready() -> list[dict[str, Any]] | None:
        st = kube.get("SFTRun", "tiny").get("status") or {}
        seen.append(st)
        if st.get("phase") in ("Succeeded", "Failed"):
            raise AssertionError(f"finished before a node could be {what}: {explain(kube, st)}")
        pods = [
            p
            for p in kube.list("pods", "default")
            if first_attempt(p) and p["status"].get("phase") == "Running"
        ]
        return pods if (ckpts / "iter_0000010").is_dir() and len(pods) == 2 else None

    first = kube.wait_for(ready, TIMEOUT, interval=0.05, message="a checkpoint at iteration 10")
    return next(p for p in first if p["metadata"]["annotations"][JOB_INDEX_ANNOTATION] == "1")


@pytest.mark.parametrize("backend", ["trainjob", "jobset", "job"])
def test_tiny_prep_then_two_node_run_succeed_on_the_backend(
    kube: KubeEmulator, pod_runner: PodRunner, pvc_root: Path, backend: str
) -> None:
    install(kube, backend)
    pvc = prepare(pod_runner, pvc_root)
    prep = sample("sftdataprep-tiny.yaml", "SFTDataPrep")
    run = sample("sftrun-tiny.yaml", "SFTRun")
    run["spec"]["nodes"] = 2  # auto picks the backend: TrainJob when Trainer is there, JobSet, else Job
    seen: list[dict[str, Any]] = []
    with run_operator(defaults=DEFAULTS):
        kube.create(prep)
        kube.create(run)
        status = kube.wait_for(lambda: finished(kube, seen), TIMEOUT, interval=0.05, message="SFTRun tiny")

    assert status["phase"] == "Succeeded", explain(kube, status)
    assert status["backend"] == backend
    assert status["jobRef"]["kind"] == KIND[backend] and status["jobRef"]["name"] == "tiny-train"
    outputs = status["outputs"]
    assert outputs["lastIteration"] == 20 and outputs["packSize"] == 512
    checkpoint = Path(outputs["checkpoint"])
    assert checkpoint.is_relative_to(pvc / "tiny-run" / "checkpoints")
    assert any(checkpoint.rglob("*.safetensors"))
    assert status["progress"]["iterations"] == "20/20" and status["restartCount"] == 0
    # two pods, one per node, both of the child (Trainer's JobSet has the TrainJob's name)
    pods = [p for p in kube.list("pods", "default") if "tiny-train" in p["metadata"]["name"]]
    labels = [p["metadata"]["labels"] for p in pods]
    assert sorted(lb[GROUP_LABEL[backend]] for lb in labels) == ["tiny-train", "tiny-train"]
    assert all(lb["app.kubernetes.io/managed-by"] == "sft-operator" for lb in labels)
    if backend == "job":  # the headless Service the pods' DNS names come from, owned by the run
        service = kube.get("Service", "tiny-train")
        assert service["spec"]["clusterIP"] == "None"
        assert service["metadata"]["ownerReferences"][0]["kind"] == "SFTRun"
        assert all(p["spec"]["subdomain"] == "tiny-train" for p in pods)
    running = [s for s in seen if s.get("phase") == "Running"]
    assert running, "the run was never seen Running"


@pytest.mark.parametrize("backend", ["trainjob", "jobset", "job"])
def test_killed_node_restarts_the_group_and_the_run_resumes_from_its_checkpoint(
    kube: KubeEmulator, pod_runner: PodRunner, pvc_root: Path, backend: str
) -> None:
    install(kube, backend)
    pvc = prepare(pod_runner, pvc_root)
    prep = sample("sftdataprep-tiny.yaml", "SFTDataPrep")
    run = sample("sftrun-tiny.yaml", "SFTRun")
    run["spec"].update({"nodes": 2, "backend": backend})
    run["spec"]["train"]["trainIters"] = 30
    run["spec"]["checkpoint"]["saveInterval"] = 10
    run["spec"]["checkpoint"].pop("hfExport")
    if backend != "trainjob":
        run["spec"]["maxRestarts"] = 2  # the shipped runtime's failurePolicy.maxRestarts is 3
    ckpts = pvc / "tiny-run" / "checkpoints"
    seen: list[dict[str, Any]] = []
    with run_operator(defaults=DEFAULTS):
        kube.create(prep)
        kube.create(run)

        node1 = node1_at_checkpoint(
            kube, ckpts, seen, lambda p: p["metadata"]["labels"].get(ATTEMPT_LABEL[backend]) == "0", "killed"
        )
        pod_runner.kill_pod(node1["metadata"]["name"])
        status = kube.wait_for(lambda: finished(kube, seen), TIMEOUT, interval=0.05, message="SFTRun tiny")

    assert status["phase"] == "Succeeded", explain(kube, status)
    assert status["restartCount"] == 1 and status["outputs"]["lastIteration"] == 30
    assert any(s.get("message", "").startswith("restarting the whole group") for s in seen) or any(
        (s.get("restartCount") or 0) >= 1 and s.get("phase") == "Running" for s in seen
    )
    # the second attempt resumed from the newest checkpoint instead of starting over
    second = [
        p for p in kube.list("pods", "default") if p["metadata"]["labels"].get(ATTEMPT_LABEL[backend]) == "1"
    ]
    assert len(second) == 2
    rank0 = next(
        p for p in second if p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"] == "0"
    )
    log = kube.pod_log(rank0["metadata"]["name"])
    assert "resuming from" in log and "at iteration" in log, log[-2000:]
    resumed_at = int(log.split("at iteration", 1)[1].split()[0])
    assert resumed_at >= 10
    # the loss curve continues: after the restart, progress never went back below the checkpoint
    restarted = [s for s in seen if (s.get("restartCount") or 0) >= 1]
    done = [int((s.get("progress") or {}).get("completed") or resumed_at) for s in restarted]
    assert done and min(done) >= 10, done
