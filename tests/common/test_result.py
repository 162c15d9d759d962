from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from sft_common.config import ConfigError
from sft_common.result import (
    LIMIT,
    FailureResult,
    PrepResult,
    TrainResult,
    fit,
    parse_result,
    report_success,
    run_main,
)


def test_fit_keeps_small_payload_whole() -> None:
    assert json.loads(fit({"status": "succeeded", "a": 1})) == {"status": "succeeded", "a": 1}


def test_fit_shrinks_big_payload_but_keeps_reason() -> None:
    payload = {"status": "failed", "reason": "X", "message": "m" * 10_000, "examples": ["e" * 500] * 50}
    text = fit(payload)
    assert len(text.encode()) <= LIMIT
    data = json.loads(text)
    assert data["reason"] == "X" and data["status"] == "failed"
    assert data["message"].endswith("m")


def _term() -> dict:
    return json.loads(Path(os.environ["SFT_TERMINATION_LOG"]).read_text())


def test_run_main_config_error_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    def main(argv: list[str]) -> int:
        raise ConfigError("unknown key 'x'")

    assert run_main(main, []) == 2
    assert "unknown key 'x'" in capsys.readouterr().err
    assert _term()["reason"] == "InvalidConfig"


def test_run_main_failure_exit_1() -> None:
    def main(argv: list[str]) -> int:
        raise FileNotFoundError("no data at /x")

    assert run_main(main, []) == 1
    assert _term() == {"status": "failed", "reason": "FileNotFoundError", "message": "no data at /x"}


def test_report_success_writes_stdout_and_termination(capsys: pytest.CaptureFixture[str]) -> None:
    report_success(TrainResult(checkpoint="/ckpt", last_iteration=3))
    line = json.loads(capsys.readouterr().out.strip())
    assert line["event"] == "result" and line["lastIteration"] == 3
    assert _term()["checkpoint"] == "/ckpt"
    assert parse_result(json.dumps(_term()), TrainResult) == TrainResult(checkpoint="/ckpt", last_iteration=3)


def test_results_round_trip_and_ignore_unknown_keys() -> None:
    """The workloads emit, and the operator parses, the same models (unknown keys from a newer
    workload are ignored; a log tail or a foreign JSON object is not a result)."""
    prep = PrepResult(output_dir="s3://b/o", pack_size=4096, pad_seq_to_mult=8, worker=0)
    text = json.dumps({**prep.payload(), "somethingNew": 1})
    assert json.loads(text)["padSeqToMult"] == 8
    assert parse_result(text, PrepResult) == prep
    assert parse_result(
        fit(FailureResult(reason="DataError", message="x").payload()), PrepResult
    ) == FailureResult(reason="DataError", message="x")
    assert parse_result("Traceback (most recent call last):", TrainResult) is None
    assert parse_result('{"level": "info"}', TrainResult) is None
    assert PrepResult().pad_seq_to_mult == 1
