"""What one CR costs the operator (issue 23): one reconcile per change of the world, not per event.

The watch delivers the operator's own writes back to it (its status patch as a MODIFIED of the CR,
the Job it created as an ADDED); those carry nothing the reconcile that wrote them had not seen, so
they must not trigger another one. Writes by anyone else (a workload's progress patch, the Job
controller, a user's spec change) must. The real operator (kopf) against the emulator, counting its
own ``sft_operator_reconciles_total``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from operator_harness import NAMESPACE, WAIT, run_operator
from test_operator_dataprep import post_count, prep, wait_status

from kubeemu import KubeEmulator
from sft_operator.context import Context
from sft_operator.errors import InvalidSpec
from sft_operator.kube.client import KubeClient
from sft_operator.metrics import OperatorMetrics
from sft_operator.reconcile_steps import rendered, together

JOB_COMPLETE = {
    "succeeded": 2,
    "completedIndexes": "0-1",
    "completionTime": "2026-11-25T10:06:00Z",
    "conditions": [
        {"type": "SuccessCriteriaMet", "status": "True", "lastTransitionTime": "2026-11-25T10:06:00Z"},
        {"type": "Complete", "status": "True", "lastTransitionTime": "2026-11-25T10:06:00Z"},
    ],
}


def reconciles(metrics: OperatorMetrics) -> float:
    return sum(
        metrics.registry.get_sample_value(
            "sft_operator_reconciles_total", {"kind": "SFTDataPrep", "result": result}
        )
        or 0.0
        for result in ("success", "requeue", "error")
    )


def settled(metrics: OperatorMetrics, quiet: float = 1.5) -> float:
    """The reconcile count once it has not moved for ``quiet`` seconds (the events of the last writes
    have arrived by then: the emulator delivers them within milliseconds)."""
    last, since = reconciles(metrics), time.monotonic()
    deadline = since + WAIT
    while time.monotonic() - since < quiet:
        assert time.monotonic() < deadline, "the operator kept reconciling"
        time.sleep(0.1)
        now = reconciles(metrics)
        if now != last:
            last, since = now, time.monotonic()
    return last


def test_own_writes_trigger_no_reconcile_and_foreign_writes_do(cluster: KubeEmulator) -> None:
    kube = cluster
    metrics = OperatorMetrics()
    with run_operator(metrics=metrics):
        kube.create(prep())
        wait_status(kube, lambda s: s.get("phase") == "Pending" and s.get("jobRef"))
        # One reconcile created everything and wrote the status; its status patch (MODIFIED) and its
        # Job (ADDED) came back through the watches without triggering a second one.
        assert settled(metrics) == 1
        assert post_count(kube, "/jobs") == 1 and post_count(kube, "/configmaps") == 1

        # A workload's progress patch is someone else's write: it is reconciled (and changes nothing).
        kube.patch_status("SFTDataPrep", "demo", {"progress": {"workers": {"0": {"rows": 5}}}})
        assert settled(metrics) == 2

        kube.patch_status("Job", "demo-prep", JOB_COMPLETE)  # the Job controller's write
        st = wait_status(kube, lambda s: s.get("phase") == "Succeeded")
        assert settled(metrics) == 3
        assert st["progress"]["workers"] == {"0": {"rows": 5}}
        reasons = {e["reason"] for e in kube.events(NAMESPACE, "demo")}
        assert {"JobCreated", "Pending", "Succeeded"} <= reasons
    assert post_count(kube, "/jobs") == 1


def cr(generation: int | None, uid: str = "u1", **spec: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "x", "namespace": "ns", "uid": uid}
    if generation is not None:
        meta["generation"] = generation
    return {"kind": "SFTDataPrep", "metadata": meta, "spec": spec}


def test_rendered_once_per_generation_and_again_when_the_spec_changes() -> None:
    ctx = Context(client=KubeClient("http://unused"))
    calls: list[dict[str, Any]] = []

    def render(obj: dict[str, Any]) -> Any:
        def run() -> Any:
            calls.append(obj["spec"])
            if obj["spec"].get("bad"):
                raise InvalidSpec("spec.bad is set")
            return dict(obj["spec"])

        return run

    first = cr(1, a=1)
    assert rendered(ctx, first, render(first)) == {"a": 1}
    assert rendered(ctx, first, render(first)) == {"a": 1}
    assert len(calls) == 1
    changed = cr(2, a=2)  # a spec change bumps the generation
    assert rendered(ctx, changed, render(changed)) == {"a": 2} and len(calls) == 2
    recreated = cr(2, uid="u2", a=3)  # deleted and recreated under the same name: a new uid
    assert rendered(ctx, recreated, render(recreated)) == {"a": 3} and len(calls) == 3
    invalid = cr(3, uid="u2", bad=True)
    for _ in range(2):  # the same InvalidSpec each time, rendered once
        try:
            rendered(ctx, invalid, render(invalid))
        except InvalidSpec as exc:
            assert exc.message == "spec.bad is set"
        else:
            raise AssertionError("InvalidSpec expected")
    assert len(calls) == 4
    no_generation = cr(None, a=4)  # (an object that never went through an API server)
    rendered(ctx, no_generation, render(no_generation))
    rendered(ctx, no_generation, render(no_generation))
    assert len(calls) == 6
    ctx.forget(("ns", "SFTDataPrep", "x"))
    assert not ctx.renders


def test_own_event_matches_only_the_resource_version_we_wrote() -> None:
    ctx = Context(client=KubeClient("http://unused"))
    key = ("ns", "SFTDataPrep", "x")
    ctx.remember(key, {"metadata": {"resourceVersion": "7"}, "status": {"phase": "Pending"}})
    assert not ctx.own_event(key, {"metadata": {"resourceVersion": "6"}})  # someone's earlier write
    assert ctx.own_event(key, {"metadata": {"resourceVersion": "7"}})
    assert not ctx.own_event(key, {"metadata": {"resourceVersion": "7"}})  # consumed: a re-list triggers
    ctx.remember_child({"metadata": {"uid": "job-uid", "resourceVersion": "9"}})
    assert not ctx.own_event(("child", "job-uid"), {"metadata": {"resourceVersion": "10"}})
    assert ctx.own_event(("child", "job-uid"), {"metadata": {"resourceVersion": "9"}})


def test_together_runs_both_and_the_first_error_wins() -> None:
    ran: list[str] = []

    async def step(name: str, error: Exception | None = None) -> str:
        await asyncio.sleep(0)
        ran.append(name)
        if error is not None:
            raise error
        return name

    assert asyncio.run(together(step("identity"), step("configmap"))) == "configmap"
    first, second = InvalidSpec("identity conflict"), RuntimeError("configmap 500")
    try:
        asyncio.run(together(step("a", first), step("b", second)))
    except InvalidSpec as exc:
        assert exc is first
    else:
        raise AssertionError("the first step's error expected")
    assert sorted(ran) == ["a", "b", "configmap", "identity"]  # both ran, even when one failed
