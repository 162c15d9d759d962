"""Spec fields the API server pruned are reported: a FieldsPruned condition and a Warning Event.

The stored object is what the (emulated) API server kept after pruning fields unknown to the CRD
schema; ``kubectl.kubernetes.io/last-applied-configuration`` is what client-side ``kubectl apply``
writes there (the whole applied manifest as JSON, see kubectl's apply/annotation code).
"""

from __future__ import annotations

import copy
import json
from typing import Any

from operator_harness import NAMESPACE, OperatorFactory, condition
from test_operator_dataprep import prep, wait_status

from kubeemu import KubeEmulator
from sft_operator.status.pruned import LAST_APPLIED, pruned_conditions, pruned_fields


def applied(manifest: dict[str, Any]) -> dict[str, Any]:
    """``manifest`` as kubectl apply sends it: annotated with itself (without the annotation)."""
    out = copy.deepcopy(manifest)
    out["metadata"].setdefault("annotations", {})[LAST_APPLIED] = json.dumps(manifest)
    return out


def stored(manifest: dict[str, Any], drop: list[tuple[str, ...]]) -> dict[str, Any]:
    """What the API server keeps: ``drop`` paths pruned, the annotation as applied."""
    out = applied(manifest)
    for path in drop:
        node: Any = out
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]
    return out


def test_a_typo_is_named_with_the_field_meant() -> None:
    manifest = prep(packsize=8192)
    manifest["spec"]["datasets"][0]["wieght"] = 2
    cr = stored(manifest, [("spec", "packsize"), ("spec", "datasets", 0, "wieght")])
    cr["spec"]["packSize"] = 4096  # the defaults the API server filled in
    cr["spec"]["datasets"][0]["weight"] = 1.0
    assert pruned_fields(cr) == [
        "spec.datasets[0].wieght (did you mean weight?)",
        "spec.packsize (did you mean packSize?)",
    ]
    (cond,) = pruned_conditions(cr, 3)
    assert cond["type"] == "FieldsPruned" and cond["status"] == "True" and cond["reason"] == "UnknownFields"
    assert "spec.packsize (did you mean packSize?)" in cond["message"]
    assert "--validate=strict" in cond["message"] and cond["observedGeneration"] == 3
    unrelated = stored(prep(zzz=1), [("spec", "zzz")])
    assert pruned_fields(unrelated) == ["spec.zzz"]


def test_nothing_to_report() -> None:
    manifest = prep(packSize=4096)
    assert pruned_fields(applied(manifest)) == []
    assert pruned_conditions(manifest, 1) == []  # no annotation (server-side apply, create)
    nulls = applied(prep())
    nulls["metadata"]["annotations"][LAST_APPLIED] = json.dumps({**prep(), "spec": {"suspend": None}})
    assert pruned_fields(nulls) == [], "a null in the applied manifest deletes, it is not dropped"
    broken = applied(prep())
    broken["metadata"]["annotations"][LAST_APPLIED] = "{not json"
    assert pruned_fields(broken) == []


def test_the_operator_warns_about_pruned_fields(cluster: KubeEmulator, operator: OperatorFactory) -> None:
    kube = cluster
    with operator():
        kube.create(applied(prep(packsize=8192)))
        st = wait_status(kube, lambda s: any(c["type"] == "FieldsPruned" for c in s.get("conditions") or []))
        assert kube.get("SFTDataPrep", "demo")["spec"]["packSize"] == 4096, "the emulator prunes like the API"
        warnings = kube.wait_for(
            lambda: [e for e in kube.events(NAMESPACE, "demo") if e["reason"] == "UnknownFields"], 10
        )
        assert "spec.packsize (did you mean packSize?)" in condition(st, "FieldsPruned")["message"]
        assert "spec.packsize" in warnings[0]["message"] and warnings[0]["type"] == "Warning"
        # fixed in the manifest and re-applied: the condition goes, and no second Event was posted
        kube.patch(
            "SFTDataPrep",
            "demo",
            {"metadata": {"annotations": {LAST_APPLIED: json.dumps(prep(packSize=8192))}}},
        )
        wait_status(kube, lambda s: not any(c["type"] == "FieldsPruned" for c in s.get("conditions") or []))
    assert len([e for e in kube.events(NAMESPACE, "demo") if e["reason"] == "UnknownFields"]) == 1
