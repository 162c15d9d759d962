"""Handing an output directory over from a deleted prep to its replacement (issue 22, point 5).

Deleting a running SFTDataPrep deletes its Job's pods: every worker gets SIGTERM. Before, only a
single-worker run freed the lease then, so with two workers the output stayed leased for the TTL and
the replacement prep failed on OutputInUse through its Job's whole backoff. Real processes, real
signals, the real lease file.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from prep.pipeline_support import big_input, run_cli, write_config
from sft_prep.lease import LEASE_NAME, OutputInUse, OutputLease


@pytest.mark.slow
def test_sigterm_frees_the_lease_whatever_the_worker_count(tmp_path: Path) -> None:
    config = write_config(tmp_path, datasets=[{"name": "big", "path": str(big_input(tmp_path, 40))}])
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sft_prep",
                "--config",
                str(config),
                "--num-workers",
                "2",
                "--worker-index",
                str(i),
            ],
            env={**os.environ, "SFT_PROGRESS": "off", "SFT_TERMINATION_LOG": str(tmp_path / f"term{i}")},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for i in range(2)
    ]
    lease = tmp_path / "out" / LEASE_NAME
    try:
        deadline = time.monotonic() + 120
        while not lease.exists() and time.monotonic() < deadline and all(p.poll() is None for p in procs):
            time.sleep(0.1)
        assert lease.exists(), "the prep took its lease"
        time.sleep(1.0)  # both build shards now
        assert all(p.poll() is None for p in procs), "a worker ended before it could be stopped"
        for p in procs:  # the prep was deleted: the Job's pods all get SIGTERM
            p.send_signal(signal.SIGTERM)
        assert [p.wait(timeout=60) for p in procs] == [130, 130]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert not lease.exists(), "the last worker to stop freed the output"
    started = time.monotonic()
    code, _ = run_cli("--config", str(write_config(tmp_path, pack_size=2048)))
    assert code == 0 and time.monotonic() - started < 60


def test_a_lease_nobody_renews_is_waited_out(tmp_path: Path, capsys: object) -> None:
    """A deleted run's lease (its pods killed before they could free it): the replacement waits for
    the expiry, naming the holder, then runs (before: exit 1, OutputInUse, at once)."""
    out = tmp_path / "out"
    out.mkdir()
    gone = OutputLease(str(out), "run-gone", worker=1, ttl=4)
    gone.acquire()
    gone.stop()  # SIGKILLed: nobody renews it any more
    record = json.loads((out / LEASE_NAME).read_text())
    record["host"] = "demo-prep-1-x7k2p"  # it was a pod of the deleted prep, on another node
    (out / LEASE_NAME).write_text(json.dumps(record))
    started = time.monotonic()
    code, _ = run_cli("--config", str(write_config(tmp_path)))
    waited = time.monotonic() - started
    err = capsys.readouterr().err  # type: ignore[attr-defined]
    assert code == 0, err
    assert "is leased by run run-gone" in err and "worker 1 on" in err and "waiting until" in err
    assert waited > 2.0


def test_a_lease_that_is_renewed_is_refused(tmp_path: Path) -> None:
    """A live run renews its lease while the newcomer waits: refused (exit 1, retryable)."""
    out = tmp_path / "out"
    out.mkdir()
    live = OutputLease(str(out), "run-live", worker=0, ttl=3)  # renews every second
    live.acquire()
    try:
        newcomer = OutputLease(str(out), "run-new", worker=0, ttl=3)
        started = time.monotonic()
        try:
            newcomer.acquire()
        except OutputInUse as exc:
            assert "run-live" in str(exc)
        else:
            raise AssertionError("took a lease its live owner renews")
        assert time.monotonic() - started < 3
    finally:
        live.release()


@pytest.mark.parametrize("meanwhile", ["released", "taken_by_this_run"])
def test_a_wait_ends_in_the_lease_when_it_is_freed_or_this_run_takes_it(
    tmp_path: Path, meanwhile: str
) -> None:
    """While a worker waits out a gone run's lease: that run's last worker frees it (its SIGTERM), or
    another worker of the waiting run takes it first. Either way the waiter takes or joins the lease
    (before, both were "not expired": exit 1, OutputInUse, and a pod retry, as the e2e test saw), and
    it said what it waited for through ``on_wait`` (what the prep puts in its CR's status)."""
    out = tmp_path / "out"
    out.mkdir()
    gone = OutputLease(str(out), "run-gone", worker=1, ttl=30)
    gone.acquire()
    gone.stop()
    record = json.loads((out / LEASE_NAME).read_text())
    record["host"] = "gone-prep-1-x7k2p"  # a pod of the deleted prep, on another node
    (out / LEASE_NAME).write_text(json.dumps(record))
    told: list[object] = []
    waiter = OutputLease(str(out), "run-new", worker=0, ttl=30, on_wait=told.append)
    errors: list[BaseException] = []

    def take() -> None:
        try:
            waiter.acquire()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=take)
    thread.start()
    deadline = time.monotonic() + 10
    while not told and time.monotonic() < deadline:
        time.sleep(0.05)
    other = OutputLease(str(out), "run-new", worker=1, ttl=30)
    gone.release()  # the gone run's last worker frees it
    if meanwhile == "taken_by_this_run":
        other.acquire()
    thread.join(10)
    try:
        assert not thread.is_alive() and errors == []
        assert json.loads((out / LEASE_NAME).read_text())["owner"] == "run-new"
        wait, done = told
        assert getattr(wait, "run", None) == "run-gone" and "worker 1 on" in getattr(wait, "holder", "")
        assert done is None
    finally:
        waiter.stop()
        other.stop()
