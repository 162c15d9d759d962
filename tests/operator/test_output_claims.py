"""A second CR writing where another one of its kind writes is refused before any child exists, and
starts once the first is gone (issue 13): two SFTDataPreps on one outputDir mixed two configs; two
SFTRuns on one checkpoint.save would resume from, or overwrite, each other's checkpoints."""

from __future__ import annotations

from typing import Any

import pytest
from operator_harness import OperatorFactory, condition
from operator_harness import wait_status as wait_kind_status
from test_operator_dataprep import TIMEOUT, prep, wait_status
from test_sftrun_operator import operator as run_operator
from test_sftrun_operator import run

from kubeemu import KubeEmulator
from sft_operator.claims import claim_message, claimed_by, claimed_location

PREP, RUN = "SFTDataPrep", "SFTRun"


def cr(name: str, output: str, started: bool, created: str, **meta: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "ml", "uid": name, "creationTimestamp": created, **meta},
        "spec": {"outputDir": output},
        "status": {"jobRef": {"name": f"{name}-prep"}} if started else {},
    }


def test_the_earliest_holder_of_the_same_output_is_named() -> None:
    mine = cr("c", "s3://b/out/", False, "2026-12-01T10:00:02Z")
    a = cr("a", "s3://b/out", True, "2026-12-01T10:00:00Z")
    b = cr("b", "s3://b/out", True, "2026-12-01T10:00:01Z")
    assert claimed_by(PREP, mine, [b, a, mine]) == "a"  # trailing slash is the same directory


def test_an_earlier_cr_goes_first_even_before_it_started() -> None:
    """Two CRs created together: whatever order their reconciles run in, only the earlier starts (a
    claim by "started" alone would let both through when neither has a child yet)."""
    first = cr("first", "s3://b/out", False, "2026-12-01T10:00:00Z")
    second = cr("second", "s3://b/out", False, "2026-12-01T10:00:00Z")  # same second: by name
    assert claimed_by(PREP, second, [first, second]) == "first"
    assert claimed_by(PREP, first, [first, second]) is None
    # a later CR that already started (its child exists) is not overtaken by an earlier one
    started = {**second, "status": {"jobRef": {"name": "second-prep"}}}
    assert claimed_by(PREP, first, [first, started]) == "second"


def test_no_claim_from_itself_later_unstarted_others_elsewhere_or_deleted() -> None:
    mine = cr("c", "s3://b/out", True, "2026-12-01T10:00:02Z")
    others = [
        mine,
        cr("x", "s3://b/other", True, "2026-12-01T10:00:00Z"),
        cr("y", "s3://b/out", False, "2026-12-01T10:00:03Z"),
        cr("z", "s3://b/out", True, "2026-12-01T10:00:00Z", deletionTimestamp="2026-12-01T11:00:00Z"),
        {**cr("w", "s3://b/out", True, "2026-12-01T10:00:00Z"), "metadata": {"name": "w", "namespace": "x"}},
    ]
    assert claimed_by(PREP, mine, others) is None


@pytest.mark.parametrize(
    ("value", "normalised"),
    [("file:///ckpt/a/", "/ckpt/a"), ("/ckpt/a", "/ckpt/a"), ("s3://b/ck//", "s3://b/ck"), ("", None)],
)
def test_a_run_claims_its_checkpoint_save(value: str, normalised: str | None) -> None:
    assert claimed_location(RUN, {"spec": {"checkpoint": {"save": value}}}) == normalised


def test_the_run_message_says_how_to_continue_from_the_holder() -> None:
    msg = claim_message(RUN, {"spec": {"checkpoint": {"save": "s3://b/ck"}}}, "first")
    assert "SFTRun first" in msg and "checkpoint.load to s3://b/ck" in msg and "delete SFTRun first" in msg


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


def test_a_second_run_on_a_claimed_checkpoint_save_stalls_then_runs_when_the_first_is_gone(
    cluster: KubeEmulator,
) -> None:
    kube = cluster
    kube.install_pytorchjob_crd()
    data = {"uri": "s3://bucket/prep"}
    with run_operator(recheck_base=0.2, recheck_max=1.0):
        kube.create(run("first", data=data, checkpoint={"save": "s3://bucket/ckpt"}))
        kube.wait_for_object("PyTorchJob", "first-train", timeout=TIMEOUT)
        kube.create(run("other", data=data, checkpoint={"save": "s3://bucket/ckpt-other"}))
        kube.wait_for_object("PyTorchJob", "other-train", timeout=TIMEOUT)  # another location: no claim
        kube.create(run("second", data=data, checkpoint={"save": "s3://bucket/ckpt/"}))
        st = wait_kind_status(
            kube,
            RUN,
            "second",
            lambda s: s.get("conditions") and condition(s, "Stalled")["status"] == "True",
        )
        assert condition(st, "Stalled")["reason"] == "OutputInUse"
        assert "SFTRun first" in st["message"] and "checkpoint.save" in st["message"]
        assert kube.get_or_none("PyTorchJob", "second-train") is None
        assert kube.get_or_none("ConfigMap", "second-train-config") is None
        kube.delete(RUN, "first")
        kube.wait_for_object("PyTorchJob", "second-train", timeout=TIMEOUT)
        wait_kind_status(kube, RUN, "second", lambda s: condition(s, "Stalled")["status"] == "False")
