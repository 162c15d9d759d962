"""get/watch/describe formatting: pure functions of the CR objects."""

from __future__ import annotations

from typing import Any

from sft_operator.ctl import show


def run_cr(**status: Any) -> dict[str, Any]:
    return {"kind": "SFTRun", "metadata": {"name": "r", "namespace": "ns"}, "status": status}


def test_human_duration() -> None:
    assert [
        show.human_duration(s) for s in (None, -1, 0, 45, 61, 605, 3600 * 3 + 300, 86400 * 2 + 3600 * 4)
    ] == [
        "-",
        "-",
        "0s",
        "45s",
        "1m01s",
        "10m",
        "3h05m",
        "2d4h",
    ]


def test_run_row_shows_progress_loss_rate_eta_and_message() -> None:
    cr = run_cr(
        phase="Running",
        message="1 of 1 pods running",
        progress={
            "iterations": "50/200",
            "percent": 25.0,
            "loss": 2.345678,
            "tokensPerSecond": 12345.6,
            "etaSeconds": 4000,
        },
    )
    assert show.row(cr) == (
        "SFTRun/r",
        "Running",
        "50/200 (25%)",
        "2.3457",
        "12.35k",
        "1h06m",
        "1 of 1 pods running",
    )


def test_finished_run_shows_the_final_loss_and_no_rate_or_eta() -> None:
    cr = run_cr(
        phase="Succeeded",
        message="training finished",
        progress={"iterations": "20/20", "etaSeconds": 0, "tokensPerSecond": 5.0},
        outputs={"finalLoss": 1.5},
    )
    assert show.row(cr)[1:6] == ("Succeeded", "20/20", "1.5000", "-", "-")  # outputs.finalLoss
    cr["status"]["progress"]["loss"] = 1.25
    assert show.row(cr)[3] == "1.2500"


def test_prep_row_uses_the_shards_and_the_slowest_workers_eta() -> None:
    cr = {
        "kind": "SFTDataPrep",
        "metadata": {"name": "p"},
        "status": {
            "phase": "Running",
            "message": "2 of 2 workers running, 0 done",
            "progress": {
                "shards": "3/8",
                "percentText": "37.5%",
                "tokensPerSecond": 2500.0,
                "workers": {"0": {"etaSeconds": 30}, "1": {"etaSeconds": 90}},
            },
        },
    }
    assert show.row(cr) == (
        "SFTDataPrep/p",
        "Running",
        "3/8 shards (37.5%)",
        "-",
        "2.50k",
        "1m30s",
        "2 of 2 workers running, 0 done",
    )


def test_table_aligns_columns_and_cuts_long_messages() -> None:
    long = "x" * 200
    text = show.table([run_cr(phase="Failed", message=long), run_cr(phase="Pending")])
    header, first, second = text.splitlines()
    assert header.split() == list(show.COLUMNS)
    assert first.index("Failed") == header.index("PHASE") == second.index("Pending")
    assert first.endswith("...") and len(first) < 200


def test_terminal_and_failed() -> None:
    assert not show.all_terminal([])
    assert show.all_terminal([run_cr(phase="Succeeded"), run_cr(phase="Failed")])
    assert not show.all_terminal([run_cr(phase="Succeeded"), run_cr(phase="Running")])
    assert show.any_failed([run_cr(phase="Failed")]) and not show.any_failed([run_cr(phase="Succeeded")])


def test_describe_shows_conditions_failure_outputs_and_children() -> None:
    cr = run_cr(
        phase="Failed",
        message="Master 0 (pod r-train-master-0) failed with exit code 1",
        conditions=[
            {
                "type": "Stalled",
                "status": "True",
                "reason": "TrainError",
                "message": "boom",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
            }
        ],
        failure={
            "reason": "TrainError",
            "message": "boom",
            "pod": "r-train-master-0",
            "exitCode": 1,
            "replica": "Master 0",
            "logTail": "line 1\nline 2",
        },
        outputs={"data": "/data/tiny", "packSize": 512},
        jobRef={"kind": "PyTorchJob", "name": "r-train"},
    )
    cr["metadata"]["generation"] = 2
    cr["status"]["observedGeneration"] = 1
    page = show.describe(
        cr, [{"kind": "Pod", "metadata": {"name": "r-train-master-0"}, "status": {"phase": "Failed"}}]
    )
    for expected in (
        "Phase:      Failed",
        "Reason:    TrainError",
        "Pod:       r-train-master-0",
        "Exit code: 1",
        "    line 2",
        "Stalled  True",
        "data: /data/tiny",
        "jobRef: PyTorchJob/r-train",
        "Pod/r-train-master-0  Failed",
        "not yet reconciled",
    ):
        assert expected in page, (expected, page)
