"""A second SFTDataPrep on an output another one already started on is refused before any child
exists (issue 13: two preps on one output_dir mixed two configs), and starts once the first is gone."""

from __future__ import annotations

from typing import Any

from operator_harness import OperatorFactory, condition
from test_operator_dataprep import TIMEOUT, prep, wait_status

from kubeemu import KubeEmulator
from sft_operator.claims import output_claimed_by


def cr(name: str, uid: str, output: str, started: bool, created: str, **meta: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "ml", "uid": uid, "creationTimestamp": created, **meta},
        "spec": {"outputDir": output},
        "status": {"jobRef": {"name": f"{name}-prep"}} if started else {},
    }


def test_the_earliest_started_prep_on_the_same_output_claims_it() -> None:
    mine = cr("c", "3", "s3://b/out/", False, "2026-12-01T10:00:02Z")
    a = cr("a", "1", "s3://b/out", True, "2026-12-01T10:00:00Z")
    b = cr("b", "2", "s3://b/out", True, "2026-12-01T10:00:01Z")
    assert output_claimed_by(mine, [b, a, mine]) == "a"  # trailing slash is the same directory


def test_no_claim_from_itself_others_elsewhere_unstarted_or_deleted() -> None:
    mine = cr("c", "3", "s3://b/out", True, "2026-12-01T10:00:02Z")
    others = [
        mine,
        cr("x", "4", "s3://b/other", True, "2026-12-01T10:00:00Z"),
        cr("y", "5", "s3://b/out", False, "2026-12-01T10:00:00Z"),
        cr("z", "6", "s3://b/out", True, "2026-12-01T10:00:00Z", deletionTimestamp="2026-12-01T11:00:00Z"),
        {
            **cr("w", "7", "s3://b/out", True, "2026-12-01T10:00:00Z"),
            "metadata": {"name": "w", "namespace": "x"},
        },
    ]
    assert output_claimed_by(mine, others) is None


def test_a_second_prep_on_a_claimed_output_stalls_then_runs_when_the_first_is_gone(
    cluster: KubeEmulator, operator: OperatorFactory
) -> None:
    kube = cluster
    with operator(recheck_base=0.2):
        kube.create(prep("first", outputDir="s3://bucket/shared"))
        kube.wait_for_object("Job", "first-prep", timeout=TIMEOUT)
        wait_status(kube, lambda s: bool(s.get("jobRef")), name="first")
        kube.create(prep("second", outputDir="s3://bucket/shared/"))
        st = wait_status(
            kube,
            lambda s: s.get("conditions") and condition(s, "Stalled")["status"] == "True",
            name="second",
        )
        assert condition(st, "Stalled")["reason"] == "OutputInUse"
        assert "SFTDataPrep first" in st["message"] and "outputDir" in st["message"]
        assert kube.get_or_none("Job", "second-prep") is None
        kube.delete("SFTDataPrep", "first")  # no event reaches "second": its re-check notices
        kube.wait_for_object("Job", "second-prep", timeout=TIMEOUT)
        wait_status(kube, lambda s: condition(s, "Stalled")["status"] == "False", name="second")
