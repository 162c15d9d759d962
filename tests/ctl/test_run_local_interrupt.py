"""Ctrl-C of ``sftctl run --local`` (issue 20 point 3): a real ``sftctl`` process runs the demo
pipeline (manifests/samples/pipeline-local.yaml, the run shortened to bins of 256), is sent SIGINT (what
a terminal's Ctrl-C sends) or SIGTERM once the SFTRun trains, and must leave no process behind and a
status.json that says what the operator says of a run whose pods were killed: not Running.

SIGINT reaches a terminal's whole foreground process group; here it reaches sftctl alone, which is
the harder case (nobody else stops the trainer).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sft_train.demo import build_base_model

REPO = Path(__file__).resolve().parents[2]
PIPELINE = REPO / "manifests" / "samples" / "pipeline-local.yaml"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped by its parent) is gone for our purpose
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(") ", 1)[1][0] != "Z"


def _children(pid: int) -> list[int]:
    """Every descendant of ``pid`` (from /proc)."""
    out: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().split(") ", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid:
            out += [int(entry.name), *_children(int(entry.name))]
    return out


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_local_run_stops_its_processes_and_says_so(
    tmp_path: Path, sig: signal.Signals
) -> None:
    volume = tmp_path / "claim"
    build_base_model(volume, pack_size=256)
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(PIPELINE.read_text().replace("packSize: 1024", "packSize: 256"))
    work = tmp_path / "work"
    log = (tmp_path / "sftctl.log").open("w")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    argv = [sys.executable, "-m", "sft_operator.ctl.main", "run", "--local", "-f", str(pipeline)]
    argv += ["--workdir", str(work), "--volume", f"sft-demo={volume}"]
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
    run_status = work / "sftrun" / "demo" / "status.json"
    trainers: list[int] = []
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            if run_status.exists():
                status = json.loads(run_status.read_text()).get("status") or {}
                if status.get("phase") == "Running" and (status.get("progress") or {}).get("completed"):
                    break
            time.sleep(0.5)
        else:
            pytest.fail(f"the run never trained: {(tmp_path / 'sftctl.log').read_text()[-3000:]}")
        trainers = _children(proc.pid)
        assert trainers, "no trainer process"
        proc.send_signal(sig)
        code = proc.wait(120)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    out = (tmp_path / "sftctl.log").read_text()
    assert code == 130, out[-3000:]
    assert not [p for p in trainers if _alive(p)], f"left running: {trainers}\n{out[-3000:]}"
    status = json.loads(run_status.read_text())["status"]
    assert status["phase"] == "Failed", status
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    stalled = next(c for c in status["conditions"] if c["type"] == "Stalled")
    assert ready["status"] == "False" and stalled["status"] == "True"
    failure = status["failure"]
    # the trainer was terminated as the kubelet terminates a deleted pod (SIGTERM): exit 143
    assert failure["exitCode"] == 143, failure
    assert status["message"] == failure["message"]
    assert "SFTRun/demo: Failed" in out
