"""A real hang, end to end on CPU: the tiny SFTRun (hf engine, 2 nodes, gloo) under the JobSet backend
through the real operator, kubeemu's JobSet/Job controllers and real ``torchrun … sft-train`` processes.

Why a real trainer whose pod is SIGSTOPped rather than a fake script: what must be shown is that the
operator notices a hang only from the trainer's own progress patches (``status.progress.updatedAt``)
and that a group restart resumes from the checkpoint ledger. Stopping node 1's processes is what a rank
stuck in a collective looks like from outside: node 0's rank blocks in gloo's allreduce, every pod stays
Running, and no progress patch comes.

1. After the checkpoint at iteration 10, node 1 is stopped (SIGSTOP to every process of its
   container, as a frozen cgroup: the ranks torch elastic starts in sessions of their own included,
   kubeemu.podexec): with spec.hangTimeout the run gets ``Hung`` (NoProgress) and a Warning Event
   while its phase stays Running.
2. spec.restartOnHang is then switched on (a mutable field): the operator starts the JobSet's next
   restart attempt (status.restarts + 1, as the JobSet controller's own failure policy does), the
   controller deletes the old attempt's Job and creates it again, the trainer resumes from its
   newest checkpoint, and the run succeeds with exactly one restart: the JobSet's restarts go 0 → 1,
   its restartsCountTowardsMax stays 0 (the old attempt's dying pods are never judged).
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest
from test_sftrun_backends_e2e import (
    DEFAULTS,
    TIMEOUT,
    explain,
    finished,
    install,
    node1_at_checkpoint,
    prepare,
    pvc_root,
    sample,
)

from inprocess_operator import run_operator
from kubeemu import KubeEmulator
from kubeemu.podrunner import PodRunner
from sft_operator.status.conditions import get_condition

# torchrun rendezvous on the emulator's fixed master port: these tests run on one xdist worker
# (make test uses --dist loadgroup), or two at once clash on the port (EADDRINUSE)
pytestmark = pytest.mark.xdist_group("torchrun-rendezvous")

__all__ = ["pvc_root"]  # the fixture, imported for pytest
HANG_TIMEOUT = "25s"
"""Above the tiny run's start (torch import, model load, gloo init) on a loaded CI machine."""


def hung(kube: KubeEmulator) -> dict[str, Any]:
    return get_condition(kube.get("SFTRun", "tiny").get("status"), "Hung") or {}


@pytest.mark.timeout(900)
def test_a_stopped_node_makes_the_run_hung_and_restart_on_hang_resumes_it(
    kube: KubeEmulator, pod_runner: PodRunner, pvc_root: Path
) -> None:
    install(kube, "jobset")
    pvc = prepare(pod_runner, pvc_root)
    prep = sample("sftdataprep-tiny.yaml", "SFTDataPrep")
    run = sample("sftrun-tiny.yaml", "SFTRun")
    run["spec"].update({"nodes": 2, "backend": "jobset", "hangTimeout": HANG_TIMEOUT, "maxRestarts": 2})
    run["spec"]["train"]["trainIters"] = 30
    run["spec"]["checkpoint"]["saveInterval"] = 10
    run["spec"]["checkpoint"].pop("hfExport")
    ckpts = pvc / "tiny-run" / "checkpoints"
    seen: list[dict[str, Any]] = []
    with run_operator(defaults=DEFAULTS):
        kube.create(prep)
        kube.create(run)

        node1 = node1_at_checkpoint(
            kube, ckpts, seen, lambda p: p["metadata"]["name"].startswith("tiny-train-node-0-"), "stopped"
        )
        pod_runner.kill_pod(node1["metadata"]["name"], sig=signal.SIGSTOP)  # a rank stuck in a collective

        cond = kube.wait_for(
            lambda: hung(kube).get("status") == "True" and hung(kube), TIMEOUT, message="Hung"
        )
        st = kube.get("SFTRun", "tiny")["status"]
        assert cond["reason"] == "NoProgress" and st["phase"] == "Running", explain(kube, st)
        iteration = st["progress"].get("completed")
        assert f"at iteration {iteration}" in cond["message"]
        kube.wait_for(
            lambda: [e for e in kube.events("default", "tiny") if e["reason"] == "HungNoProgress"], TIMEOUT
        )

        before = kube.get("JobSet", "tiny-train")["status"]
        assert int(before.get("restarts", 0)) == 0 and st.get("restartCount", 0) == 0, before
        kube.patch("SFTRun", "tiny", {"spec": {"restartOnHang": True}})
        # Hung/Restarted lasts one reconcile (the restart time then restarts the hang clock): the
        # Event is what stays
        kube.wait_for(
            lambda: [e for e in kube.events("default", "tiny") if e["reason"] == "HungRestarted"], TIMEOUT
        )
        # The restarted group loads torch and the model again before its first progress patch, which
        # on a loaded CI machine can take longer than the short timeout this test uses to detect the
        # hang quickly: lengthen it now (hangTimeout is mutable), so one restart is what is measured.
        kube.patch("SFTRun", "tiny", {"spec": {"hangTimeout": "10m"}})
        try:
            status = kube.wait_for(
                lambda: finished(kube, seen), TIMEOUT, interval=0.05, message="SFTRun tiny"
            )
        except Exception as exc:
            events = [(e["reason"], e["message"][:200]) for e in kube.events("default", "tiny")]
            raise AssertionError(f"{events}\n{explain(kube, seen[-1] if seen else {})}") from exc

    assert status["phase"] == "Succeeded", explain(kube, status)
    restarts = [e for e in kube.events("default", "tiny") if e["reason"] == "HungRestarted"]
    assert len(restarts) == 1 and status["restartCount"] == 1, (restarts, status["restartCount"])
    assert status["outputs"]["lastIteration"] == 30
    assert get_condition(status, "Hung")["status"] == "False"  # moving again after the restart
    # one group restart, none of it against maxRestarts
    after = kube.get("JobSet", "tiny-train")["status"]
    assert int(after["restarts"]) == 1 and int(after.get("restartsCountTowardsMax", 0)) == 0, after
    rank0 = next(
        p
        for p in kube.list("pods", "default")
        if p["metadata"]["name"].startswith("tiny-train-node-0-0-")
        and p["metadata"]["labels"]["jobset.sigs.k8s.io/restart-attempt"] == "1"
    )
    log = kube.pod_log(rank0["metadata"]["name"])
    assert "resuming from" in log and "at iteration" in log, log[-2000:]
    assert int(log.split("at iteration", 1)[1].split()[0]) >= 10
