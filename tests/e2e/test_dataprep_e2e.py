"""End to end on CPU: the tiny sample SFTDataPrep → operator → Indexed Job → real ``sft-prep`` workers
(local processes via kubeemu's pod runner) → ``Succeeded`` with outputs from the real metadata.json.

The CR is the shipped sample (manifests/samples/sftdataprep-tiny.yaml); only its in-image paths are
mapped to this checkout (the pod runner rewrites mount paths and ``path_map`` prefixes).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import yaml

from inprocess_operator import run_operator
from kubeemu import KubeEmulator
from kubeemu.fixtures import PROJECT_CRDS
from kubeemu.podrunner import PodRunner

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "manifests" / "samples" / "sftdataprep-tiny.yaml"
IMAGE_SAMPLES = "/opt/sft/lib/python3.11/site-packages/sft_prep/samples"
TIMEOUT = 90


def sample_cr() -> dict[str, Any]:
    (cr,) = [d for d in yaml.safe_load_all(SAMPLE.read_text()) if d and d["kind"] == "SFTDataPrep"]
    cr["metadata"]["namespace"] = "default"
    return cr


def run_to_the_end(
    kube: KubeEmulator, pod_runner: PodRunner, tmp_path: Path, cr: dict[str, Any]
) -> dict[str, Any]:
    """Create ``cr`` (the sample, changed) under the operator; its status once Succeeded or Failed."""
    kube.apply(PROJECT_CRDS)
    pod_runner.path_map[IMAGE_SAMPLES] = REPO / "workloads" / "sft_prep" / "samples"
    pod_runner.config.pvc_root = tmp_path / "pvcs"
    pod_runner.extra_env["SFT_PROGRESS_INTERVAL"] = "0.05"

    def finished() -> dict[str, Any] | None:
        status = kube.get("SFTDataPrep", cr["metadata"]["name"]).get("status") or {}
        return status if status.get("phase") in ("Succeeded", "Failed") else None

    with run_operator():
        kube.create(cr)
        return kube.wait_for(finished, TIMEOUT, interval=0.05, message="SFTDataPrep tiny to finish")


def test_tiny_sample_reaches_succeeded_with_real_outputs(
    kube: KubeEmulator, pod_runner: PodRunner, tmp_path: Path
) -> None:
    cr = sample_cr()
    workers = cr["spec"]["parallelism"]
    status = run_to_the_end(kube, pod_runner, tmp_path, cr)
    assert status["phase"] == "Succeeded", json.dumps(status, indent=1)[:3000]
    outputs = status["outputs"]
    out_dir = tmp_path / "pvcs" / "sft-data" / "tiny"
    metadata_path = Path(outputs["metadata"].removeprefix("file://"))
    assert metadata_path == out_dir / "metadata.json"
    metadata = json.loads(metadata_path.read_text())
    totals = metadata["totals"]
    assert outputs["totals"] == {
        "rows": totals["rows"],
        "sequences": totals["sequences"],
        "tokens": totals["tokens"],
        "trainableTokens": totals["trainable_tokens"],
        "bins": totals["bins"],
    }
    assert outputs["packingEfficiency"] == metadata["packing_efficiency"]
    assert outputs["packSize"] == 512 and Path(outputs["blend"]).exists()
    assert totals["tokens"] > 0 and status["progress"]["tokens"] == totals["tokens"]
    assert status["progress"]["shards"] == "2/2" and status["progress"]["workersDone"] == workers
    # the real Parquet the Job produced
    shards = sorted((out_dir / "splits" / "train").glob("*.parquet"))
    assert shards and sum(pq.read_metadata(p).num_rows for p in shards) == totals["bins"]
    # each worker reported its own progress into status.progress.workers.<index> via the API
    assert set(status["progress"]["workers"]) == {str(i) for i in range(workers)}
    conditions = {c["type"]: c["status"] for c in status["conditions"]}
    assert conditions["Ready"] == "True" and conditions["DataReady"] == "True"
    reasons = [e["reason"] for e in kube.events("default", "tiny")]
    assert "JobCreated" in reasons and "Succeeded" in reasons
    # the workers needed nothing beyond the sft-workload role: PATCH of their CR's status subresource
    worker_calls = {
        (str(r.method).rsplit(".", 1)[-1].upper(), r.url.path)
        for r in kube.requests
        if "Python-urllib" in r.headers.get("User-Agent", "")
    }
    assert worker_calls == {("PATCH", "/apis/sft.dev/v1alpha1/namespaces/default/sftdatapreps/tiny/status")}


def test_a_bad_input_fails_with_the_workloads_reason(
    kube: KubeEmulator, pod_runner: PodRunner, tmp_path: Path
) -> None:
    """A dataset that does not exist: sft-prep exits 2 (config error) and the CR says which and where."""
    cr = sample_cr()
    cr["spec"]["datasets"] = [{"name": "missing", "path": "/data/nowhere/chats.jsonl"}]
    status = run_to_the_end(kube, pod_runner, tmp_path, cr)
    assert status["phase"] == "Failed", json.dumps(status, indent=1)[:3000]
    failure = status["failure"]
    assert failure["reason"] == "InvalidConfig" and failure["exitCode"] == 2
    assert failure["pod"].startswith("tiny-prep-")
    assert "datasets[0].path" in failure["message"] and "does not exist" in failure["message"]
    assert "does not exist" in failure["logTail"]  # the pod's own last log lines, read via pods/log
    stalled = {c["type"]: c for c in status["conditions"]}["Stalled"]
    assert stalled["status"] == "True" and stalled["reason"] == "InvalidConfig"


def test_force_with_two_workers_succeeds_as_one_run(
    kube: KubeEmulator, pod_runner: PodRunner, tmp_path: Path
) -> None:
    """``force: true`` with parallelism 2: sft-prep exits 2 unless every worker gets the same
    SFT_RUN_ID; the operator sets the CR's uid, so both workers write one forced run."""
    cr = sample_cr()
    cr["spec"]["force"] = True
    assert cr["spec"]["parallelism"] == 2
    status = run_to_the_end(kube, pod_runner, tmp_path, cr)
    assert status["phase"] == "Succeeded", json.dumps(status, indent=1)[:3000]
    uid = kube.get("SFTDataPrep", "tiny")["metadata"]["uid"]
    pods = kube.list("Pod", "default")
    run_ids = {
        env["value"]
        for pod in pods
        for env in pod["spec"]["containers"][0]["env"]
        if env["name"] == "SFT_RUN_ID"
    }
    assert len(pods) == 2 and run_ids == {uid}
    metadata = json.loads(Path(status["outputs"]["metadata"].removeprefix("file://")).read_text())
    assert metadata["totals"]["bins"] > 0 and status["progress"]["shards"] == "2/2"
