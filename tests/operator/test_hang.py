"""Hang detection (spec.hangTimeout, spec.restartOnHang): the pure state and condition, and the real
operator against the emulated API server, playing the training-operator and the trainer's progress
hook by writing those objects (as tests/operator/test_sftrun_operator.py does): a Running run whose
progress stopped gets ``Hung`` and a Warning Event without any watch event coming (the reconcile
requeues itself), and with restartOnHang its group's pods are deleted (PyTorchJob: the
training-operator recreates them) and the restart is counted. The real trainer resuming after such
a restart runs in tests/e2e/test_sftrun_hang_e2e.py.
"""

from __future__ import annotations

import calendar
import time
from typing import Any

import operator_harness as harness
from operator_harness import NAMESPACE
from operator_harness import condition as cond
from rbac_rules import assert_least_privilege
from sftrun_objects import cr, pod, ptj
from test_sftrun_operator import master_pod, operator, ptj_conditions, run, wait_status

from kubeemu import KubeEmulator
from sft_operator.backends.pytorchjob import BACKEND as pytorchjob
from sft_operator.status.conditions import get_condition
from sft_operator.status.hang import HANG_CONDITION, hang_condition, hang_state
from sft_operator.status.pods import pod_state
from status_json import sftrun as status

T0 = "2026-11-25T10:00:00Z"


def test_hang_state_measures_from_the_newest_of_progress_start_and_restart() -> None:
    running = {
        "phase": "Running",
        "startTime": T0,
        "progress": {"completed": 42, "updatedAt": "2026-11-25T10:20:00Z"},
    }
    fresh = hang_state(running, "2026-11-25T10:40:00Z", 1800)
    assert fresh is not None and not fresh.hung and fresh.recheck == 600  # 20 min idle of 30
    stuck = hang_state(running, "2026-11-25T10:50:01Z", 1800)
    assert (
        stuck is not None and stuck.hung and stuck.iteration == 42 and stuck.since == "2026-11-25T10:20:00Z"
    )
    restarted = hang_state(
        {**running, "lastRestartTime": "2026-11-25T10:45:00Z"}, "2026-11-25T10:50:01Z", 1800
    )
    assert restarted is not None and not restarted.hung  # new pods load before the first iteration
    assert hang_state(running, "2026-11-25T12:00:00Z", 0) is None  # 0: off
    assert hang_state({**running, "phase": "Succeeded"}, "2026-11-25T12:00:00Z", 1800) is None


def test_hung_condition_names_the_iteration_and_since_when() -> None:
    stuck = hang_state(
        {"phase": "Running", "progress": {"completed": 42, "updatedAt": T0}}, "2026-11-25T11:00:00Z", 1800
    )
    hung = hang_condition(stuck, None, "Running", 3)
    assert hung is not None and (hung["status"], hung["reason"]) == ("True", "NoProgress")
    assert "iteration 42" in hung["message"] and T0 in hung["message"] and "30m" in hung["message"]
    assert hang_condition(None, None, "Running", 3) is None  # never hung: no condition at all
    cleared = hang_condition(None, hung, "Running", 3)
    assert cleared is not None and cleared["status"] == "False"


def test_derive_adds_hung_and_counts_a_hang_restart() -> None:
    run_cr = cr(
        nodes=2,
        status={
            "phase": "Running",
            "startTime": T0,
            "restartCount": 1,
            "progress": {"completed": 7, "updatedAt": T0},
        },
    )
    job = ptj(run_cr, [("Created", "True", "PyTorchJobCreated"), ("Running", "True", "PyTorchJobRunning")])
    pods = [pod_state(pod("Master", 0, "Running"), pytorchjob.container, pytorchjob.role)]
    now = "2026-11-25T11:00:00Z"
    hang = hang_state(run_cr["status"], now, 1800)
    out = status.derive(run_cr, job, pods, now=now, hang=hang)
    assert cond(out, HANG_CONDITION)["reason"] == "NoProgress" and out["restartCount"] == 1
    from dataclasses import replace

    assert hang is not None
    out = status.derive(run_cr, job, pods, now=now, hang=replace(hang, restarted=True))
    assert cond(out, HANG_CONDITION)["reason"] == "Restarted"
    assert out["restartCount"] == 2 and out["lastRestartTime"] == now


def _running_job(kube: KubeEmulator, updated_at: str = T0, **spec: Any) -> dict[str, Any]:
    kube.create(run(data={"uri": "s3://bucket/prep"}, **spec))
    job = kube.wait_for_object("PyTorchJob", "run-train", timeout=harness.WAIT)
    kube.patch_status(
        "PyTorchJob", "run-train", {"startTime": T0, "conditions": ptj_conditions("Created", "Running")}
    )
    master_pod(kube, job, "Running")
    # rank 0 reported iteration 12, then stopped (a rank stuck in a collective)
    progress = {"completed": 12, "total": 50, "updatedAt": updated_at}
    kube.patch_status("SFTRun", "run", {"progress": progress})
    return job


def test_a_run_whose_progress_stopped_gets_hung_and_a_warning_event(cluster: KubeEmulator) -> None:
    kube = cluster
    kube.install_pytorchjob_crd()
    with operator():
        last = harness_now()
        _running_job(kube, updated_at=last, hangTimeout="3s")
        # rank 0's progress patch may land after the first look: the message follows it
        st = wait_status(kube, lambda s: "iteration 12" in hung_of(s).get("message", ""), what="Hung")
        hung = cond(st, HANG_CONDITION)
        assert hung["reason"] == "NoProgress" and last in hung["message"]
        # nothing happened after the progress patch: the operator's own requeue found it, not earlier
        assert parse(hung["lastTransitionTime"]) - parse(last) >= 3
        assert st["phase"] == "Running"
        kube.wait_for(
            lambda: [e for e in kube.events(NAMESPACE, "run") if e["reason"] == "HungNoProgress"],
            harness.WAIT,
        )
        assert kube.get_or_none("Pod", "run-train-master-0") is not None  # no restartOnHang: nothing deleted
        # the trainer reports again: the condition clears on the next look (no other event needed)
        kube.patch_status("SFTRun", "run", {"progress": {"completed": 13, "updatedAt": harness_now()}})
        wait_status(kube, lambda s: hung_of(s).get("status") == "False", what="not hung")


def hung_of(st: dict[str, Any]) -> Any:
    return get_condition(st, HANG_CONDITION) or {}


def harness_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def parse(stamp: str) -> float:
    return calendar.timegm(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ"))


def test_restart_on_hang_deletes_the_group_and_counts_a_restart(cluster: KubeEmulator) -> None:
    kube = cluster
    kube.install_pytorchjob_crd()
    with operator():
        _running_job(kube, hangTimeout="2s", restartOnHang=True)
        st = wait_status(kube, lambda s: hung_of(s).get("reason") == "Restarted", what="Restarted")
        assert st["restartCount"] >= 1 and st["lastRestartTime"]
        kube.wait_for_deletion("Pod", "run-train-master-0", timeout=harness.WAIT)
        # measured from the restart: not hung again until the timeout passes once more
        after = hang_state(st, st["lastRestartTime"], 2)
        assert after is not None and not after.hung
        # no progress ever comes here, so each timeout restarts again: stop that, and every restart
        # was counted exactly once (one HungRestarted Event each)
        kube.patch("SFTRun", "run", {"spec": {"restartOnHang": False}})
        final = wait_status(kube, lambda s: hung_of(s).get("reason") == "NoProgress", what="NoProgress")
        events = [e for e in kube.events(NAMESPACE, "run") if e["reason"] == "HungRestarted"]
        assert final["restartCount"] == len({e["message"] for e in events}) >= 1
    assert_least_privilege(kube.requests, [("delete", "", "pods")])


def test_a_hang_restart_the_child_already_reports_is_counted_once() -> None:
    """A JobSet hang restart is ``status.restarts`` + 1 (backends.jobset), and the reconcile that asked
    for it can already see it (its own patch came back through the watch): still one restart."""
    from dataclasses import replace

    from sft_operator.backends.jobset import BACKEND as jobset

    run_cr = cr(
        nodes=2,
        backend="jobset",
        status={"phase": "Running", "startTime": T0, "progress": {"completed": 7, "updatedAt": T0}},
    )
    child = {
        "apiVersion": jobset.api_version,
        "kind": jobset.kind,
        "metadata": {"name": "run-train", "uid": "js1"},
        "spec": {
            "replicatedJobs": [{"name": "node", "replicas": 1, "template": {"spec": {"completions": 2}}}]
        },
        "status": {"restarts": 1},
    }
    now = "2026-11-25T11:00:00Z"
    hang = hang_state(run_cr["status"], now, 1800)
    assert hang is not None
    out = status.derive(run_cr, child, [], now=now, backend=jobset, hang=replace(hang, restarted=True))
    assert out["restartCount"] == 1, out
