"""The output lease between preps, end to end (issue 22, point 5): the operator, its Indexed Job and
real ``sft-prep`` workers (local processes through kubeemu's pod runner, which SIGTERMs a deleted pod's
processes and SIGKILLs them after the grace period, as the kubelet does).

* A replacement prep: a running 2-worker SFTDataPrep is deleted and a new one (another config, so
  another run) is created on the same outputDir at once. Before issue 22 the deleted prep's last
  renewing worker kept the lease for its TTL and the new one failed its Job on ``OutputInUse``.
* A lease left by a run that is gone: the new prep waits it out, and its CR's status (not only the pod
  log) says who holds it and until when.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

from e2e.test_dataprep_e2e import IMAGE_SAMPLES, REPO, sample_cr
from inprocess_operator import run_operator
from kubeemu import KubeEmulator
from kubeemu.fixtures import PROJECT_CRDS
from kubeemu.podrunner import PodRunner
from prep.pipeline_support import big_input
from sft_prep.lease import LEASE_NAME

LONG_TTL = 600
"""The lease TTL the workers get here: a handover that waited for the TTL would outlast the test."""
TIMEOUT = 120


def claim_dir(kube: KubeEmulator, pod_runner: PodRunner, tmp_path: Path) -> Path:
    """The sft-data claim's directory (mounted at /data), with the operator's CRDs installed."""
    kube.apply(PROJECT_CRDS)
    pod_runner.path_map[IMAGE_SAMPLES] = REPO / "workloads" / "sft_prep" / "samples"
    pod_runner.config.pvc_root = tmp_path / "pvcs"
    pod_runner.extra_env["SFT_PROGRESS_INTERVAL"] = "0.05"
    pod_runner.extra_env["SFT_PREP_LEASE_TTL"] = str(LONG_TTL)
    claim = tmp_path / "pvcs" / "sft-data"
    claim.mkdir(parents=True)
    return claim


def status_of(kube: KubeEmulator, name: str) -> dict[str, Any]:
    return (kube.get_or_none("SFTDataPrep", name) or {}).get("status") or {}


def follow(kube: KubeEmulator, name: str, timeout: float) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Poll the CR until Succeeded or Failed: (its last status, every distinct status seen)."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = status_of(kube, name)
        if status and (
            not seen
            or (seen[-1].get("phase"), seen[-1].get("message"))
            != (status.get("phase"), status.get("message"))
        ):
            seen.append(status)
        if status.get("phase") in ("Succeeded", "Failed"):
            return status, seen
        time.sleep(0.05)
    raise AssertionError(
        f"SFTDataPrep {name} did not finish in {timeout}s: {json.dumps(seen[-3:], indent=1)[:3000]}"
    )


def test_a_deleted_two_worker_prep_hands_its_output_to_its_replacement(
    kube: KubeEmulator, pod_runner: PodRunner, tmp_path: Path
) -> None:
    claim = claim_dir(kube, pod_runner, tmp_path)
    big_input(claim, 60)  # /data/big.jsonl: the first prep is still writing shards when it is deleted
    first = sample_cr()
    first["spec"]["datasets"] = [{"name": "big", "path": "/data/big.jsonl"}]
    first["spec"]["numShards"] = 4
    assert first["spec"]["parallelism"] == 2
    second = copy.deepcopy(first)
    second["metadata"]["name"] = "tiny-again"
    second["spec"]["packSize"] = (
        1024  # a corrected config: another run, which must not join the first's lease
    )
    out = claim / "tiny"
    with run_operator():
        kube.create(first)

        def both_working() -> bool:
            workers = (status_of(kube, "tiny").get("progress") or {}).get("workers") or {}
            return (out / LEASE_NAME).exists() and len(workers) == 2

        kube.wait_for(both_working, 120, interval=0.05, message="both workers of the first prep at work")
        assert status_of(kube, "tiny")["phase"] == "Running"
        assert not (out / "metadata.json").exists(), "the first prep was still at work when deleted"
        kube.delete("SFTDataPrep", "tiny")
        kube.create(second)
        status, seen = follow(kube, "tiny-again", TIMEOUT)
    assert status["phase"] == "Succeeded", json.dumps(seen[-3:], indent=1)[:4000]
    assert not [s for s in seen if s.get("phase") == "Failed"]
    job = kube.get("Job", "tiny-again-prep")
    assert not job["status"].get("failed"), (
        "no worker of the replacement failed (OutputInUse) and was retried"
    )
    for waiting in (s["message"] for s in seen if "waits" in (s.get("message") or "")):
        assert "held by run" in waiting and "worker" in waiting  # while it waited, the holder was named
    metadata = json.loads((out / "metadata.json").read_text())
    assert metadata["pack_size"] == 1024 and metadata["totals"]["bins"] > 0
    assert status["outputs"]["packSize"] == 1024
    assert not (out / LEASE_NAME).exists(), "the replacement freed the output when it committed"


def test_a_lease_left_by_a_gone_run_is_waited_out_and_the_status_names_its_holder(
    kube: KubeEmulator, pod_runner: PodRunner, tmp_path: Path
) -> None:
    """The lease of a run whose pods were killed (nobody renews it, it has not expired): the workers
    wait for the expiry; before, the holder was only in the pod log."""
    claim = claim_dir(kube, pod_runner, tmp_path)
    out = claim / "tiny"
    out.mkdir()
    expires = time.time() + 12
    record = {
        "owner": "run-gone",
        "holder": "worker 1 on gone-prep-1-x7k2p pid 7",
        "renewed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires - LONG_TTL)),
        "expires_at": expires,
        "expires_at_iso": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires)),
        "ttl": LONG_TTL,
        "host": "gone-prep-1-x7k2p",
        "pid": 7,
    }
    (out / LEASE_NAME).write_text(json.dumps(record))  # sft_prep.lease's record, as a pod of that run left it
    with run_operator():
        kube.create(sample_cr())
        status, seen = follow(kube, "tiny", TIMEOUT)
    assert status["phase"] == "Succeeded", json.dumps(seen[-3:], indent=1)[:4000]
    waiting = [s for s in seen if (s.get("message") or "").startswith("worker ")]
    assert waiting, f"the status never said what it waited for: {[s.get('message') for s in seen]}"
    message = waiting[0]["message"]
    assert waiting[0]["phase"] in ("Pending", "Running")
    assert "held by run run-gone (worker 1 on gone-prep-1-x7k2p pid 7" in message
    assert f"until {record['expires_at_iso']}" in message and "the lease on /data/tiny," in message
    reconciling = {c["type"]: c for c in waiting[0]["conditions"]}["Reconciling"]
    assert reconciling["status"] == "True" and reconciling["reason"] == "WaitingForOutputLease"
    assert not [s for s in seen[seen.index(waiting[-1]) + 1 :] if "waits" in (s.get("message") or "")]
    assert json.loads((out / "metadata.json").read_text())["totals"]["bins"] > 0
    # both workers waited; the one that did not take the lease joined it (same run) instead of failing
    assert not kube.get("Job", "tiny-prep")["status"].get("failed")
