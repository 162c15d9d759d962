"""The output directory and the process tree: problems exit 2 with a sentence, leftovers are swept,
pool workers die with their parent, and two preps never share an output_dir (issue 13)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from prep.pipeline_support import big_input, run_cli, termination, write_config
from sft_common import storage
from sft_prep.lease import LEASE_NAME, OutputInUse, OutputLease


def _fails_2(config: Path, *args: str, exit_code: int = 2) -> str:
    code, _ = run_cli("--config", str(config), *args)
    msg = termination()
    assert code == exit_code, msg
    assert "\n" not in msg["message"] and "Traceback" not in msg["message"]
    return str(msg["message"])


# ------------------------------------------------------------------------------- output_dir problems


def test_output_dir_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "out").write_text("x")
    message = _fails_2(write_config(tmp_path))
    assert f"output_dir {tmp_path / 'out'} is a file" in message


def test_output_dir_below_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    message = _fails_2(write_config(tmp_path, output_dir=str(tmp_path / "file" / "sub" / "out")))
    assert f"is below {tmp_path / 'file'}, which is a file" in message


def test_output_dir_with_a_missing_parent(tmp_path: Path) -> None:
    message = _fails_2(write_config(tmp_path, output_dir=str(tmp_path / "not-mounted" / "out")))
    assert f"its parent {tmp_path / 'not-mounted'} does not exist" in message
    assert not (tmp_path / "not-mounted").exists()


def test_output_dir_not_writable(tmp_path: Path) -> None:
    # /sys is read-only even for root, so this holds whoever runs the tests.
    message = _fails_2(write_config(tmp_path, output_dir="/sys/sft-prep-out"))
    assert "output_dir /sys/sft-prep-out is not writable" in message and "fsGroup" in message


@pytest.mark.parametrize("where", ["output", "input"])
def test_s3_without_credentials_names_the_uri(
    tmp_path: Path, s3_bucket: Any, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    import boto3

    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # it caches the credentials it resolved
    storage.reset_clients()
    if where == "output":
        uri, config = "s3://data/runs/one", write_config(tmp_path, output_dir="s3://data/runs/one")
    else:
        uri = "s3://data/in/chats.jsonl"
        config = write_config(tmp_path, datasets=[{"name": "d", "path": uri}])
    message = _fails_2(config)
    assert uri in message and "no S3 credentials" in message
    assert "AWS_ACCESS_KEY_ID" in message


def test_s3_unreachable_endpoint_names_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    storage.reset_clients()
    try:
        message = _fails_2(write_config(tmp_path, output_dir="s3://data/out"))
    finally:
        storage.reset_clients()
    assert "s3://data/out" in message and f"cannot reach the S3 endpoint http://127.0.0.1:{port}" in message


# ------------------------------------------------------------------------------- leftovers


def test_a_temp_file_left_by_a_killed_commit_is_swept(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    left = out / ".metadata.json.abc123.tmp"
    left.write_text("{partial")
    old = time.time() - 3600
    os.utime(left, (old, old))
    fresh = out / ".blend.json.def456.tmp"  # a concurrent worker's write in flight: kept
    fresh.write_text("{")
    code, _ = run_cli("--config", str(config))
    assert code == 0 and not left.exists() and fresh.exists()
    assert not (out / LEASE_NAME).exists(), "the committing worker releases the lease"


# ------------------------------------------------------------------------------- children die with parent


def test_sigkill_of_the_main_process_takes_the_pool_workers_with_it(tmp_path: Path) -> None:
    config = write_config(tmp_path, datasets=[{"name": "big", "path": str(big_input(tmp_path, 30))}])
    env = {**os.environ, "SFT_PROGRESS": "off"}
    main = subprocess.Popen(
        [sys.executable, "-m", "sft_prep", "--config", str(config), "--processes", "2"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        proc = psutil.Process(main.pid)
        deadline = time.monotonic() + 120
        children: list[psutil.Process] = []
        while time.monotonic() < deadline:
            children = proc.children(recursive=True)
            workers = [c for c in children if "spawn_main" in " ".join(c.cmdline())]
            if len(workers) >= 2:
                break
            assert main.poll() is None, "sft-prep ended before its pool started"
            time.sleep(0.2)
        assert len(workers) >= 2, [c.cmdline() for c in children]
        time.sleep(1.0)  # the workers are busy now
        children = proc.children(recursive=True)
        main.send_signal(signal.SIGKILL)
        main.wait(timeout=10)
        _, alive = psutil.wait_procs(children, timeout=20)
        leftover = [(p.pid, p.cmdline()) for p in alive]
        for p in alive:  # do not leak them into the rest of the test session
            p.kill()
        assert not leftover, leftover
    finally:
        if main.poll() is None:
            main.kill()


# ------------------------------------------------------------------------------- the lease


def test_a_second_prep_with_another_config_fails_naming_the_first(tmp_path: Path) -> None:
    """Exit 1 (retriable: the Job's backoff may find the output free), one line, no traceback."""
    out = tmp_path / "out"
    out.mkdir()
    first = OutputLease(str(out), "run-aaaa", worker=0, ttl=60)
    first.acquire()
    try:
        message = _fails_2(write_config(tmp_path), exit_code=1)
        assert "is in use by another sft-prep run" in message and "run-aaaa" in message
        assert "worker 0 on" in message and f"pid {os.getpid()}" in message
        assert termination()["reason"] == "OutputInUse"
        assert not (out / "splits").exists() and not (out / "metadata.json").exists()
    finally:
        first.release()
    code, _ = run_cli("--config", str(write_config(tmp_path)))
    assert code == 0, "once released, the output is free"


def test_two_preps_started_together_one_wins(tmp_path: Path) -> None:
    """Real concurrent processes with different configs into one output_dir: exactly one succeeds,
    the other fails naming it, and the output is one consistent run."""
    big = big_input(tmp_path, 4)
    configs = [
        write_config(tmp_path, name=f"p{i}.yaml", datasets=[{"name": "big", "path": str(big)}], pack_size=p)
        for i, p in enumerate((1024, 2048))
    ]
    env = {**os.environ, "SFT_PROGRESS": "off"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "sft_prep", "--config", str(c)],
            env={**env, "SFT_TERMINATION_LOG": str(tmp_path / f"term{i}")},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i, c in enumerate(configs)
    ]
    codes = [p.wait(timeout=300) for p in procs]
    assert sorted(codes) == [0, 1], [p.stderr.read() for p in procs if p.stderr]
    loser = codes.index(1)
    message = json.loads((tmp_path / f"term{loser}").read_text())["message"]
    assert "is in use by another sft-prep run" in message
    meta = json.loads((tmp_path / "out" / "metadata.json").read_text())
    assert meta["pack_size"] == (1024, 2048)[1 - loser]


def test_sigterm_frees_the_lease_of_a_single_worker(tmp_path: Path) -> None:
    """A deleted pod gets SIGTERM: the next prep (another config) need not wait for the expiry."""
    config = write_config(tmp_path, datasets=[{"name": "big", "path": str(big_input(tmp_path, 30))}])
    proc = subprocess.Popen(
        [sys.executable, "-m", "sft_prep", "--config", str(config)],
        env={**os.environ, "SFT_PROGRESS": "off"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    lease = tmp_path / "out" / LEASE_NAME
    deadline = time.monotonic() + 120
    while not lease.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    assert lease.exists(), "the prep took its lease"
    time.sleep(1.0)  # now building shards
    assert proc.poll() is None, "the prep ended before it could be stopped"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 130
    assert not lease.exists()
    code, _ = run_cli("--config", str(write_config(tmp_path, pack_size=2048)))
    assert code == 0


def test_an_expired_lease_is_taken_over(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    stale = OutputLease(str(out), "run-dead", ttl=3)
    stale.acquire()
    stale.stop()  # crashed: nobody renews it
    record = json.loads((out / LEASE_NAME).read_text())
    record["expires_at"] = time.time() - 1
    (out / LEASE_NAME).write_text(json.dumps(record))
    code, _ = run_cli("--config", str(write_config(tmp_path)))
    assert code == 0


def test_workers_of_one_run_share_the_lease_and_renew_it(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    a = OutputLease(str(out), "run-same", worker=0, ttl=3)
    b = OutputLease(str(out), "run-same", worker=1, ttl=3)
    a.acquire()
    b.acquire()
    time.sleep(2.5)  # both renew (every ttl/3) without losing it
    assert a.renew() and b.renew() and not a.lost and not b.lost
    other = OutputLease(str(out), "run-other", ttl=3)
    with pytest.raises(OutputInUse, match="run-same"):
        other.acquire()
    a.stop()
    b.release()
    assert not (out / LEASE_NAME).exists()


def test_the_lease_is_exclusive_on_s3(s3_bucket: Any) -> None:
    """moto implements S3's conditional PUT (If-None-Match: * and If-Match), which the lease uses."""
    first = OutputLease("s3://data/out", "run-one", ttl=60)
    second = OutputLease("s3://data/out", "run-two", ttl=60)
    results: list[Any] = []

    def take(lease: OutputLease) -> None:
        try:
            lease.acquire()
            results.append(lease.owner)
        except OutputInUse as exc:
            results.append(exc)

    threads = [threading.Thread(target=take, args=(lease,)) for lease in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [r for r in results if isinstance(r, str)]
    assert len(winners) == 1, results
    assert first.renew() if winners == ["run-one"] else second.renew()
    for lease in (first, second):
        lease.release()
    assert not storage.exists("s3://data/out/" + LEASE_NAME)


# ------------------------------------------------------------------------------- pack_size


def test_a_pack_size_too_small_for_any_sequence_says_so_and_suggests_one(tmp_path: Path) -> None:
    message = _fails_2(write_config(tmp_path, pack_size=16, num_shards=1))
    assert termination()["reason"] == "PackSizeTooSmall"
    assert message.startswith("pack_size 16 is too small to hold any sequence")
    suggested = int(message.rsplit("try pack_size=", 1)[1])
    assert suggested >= 64 and suggested & (suggested - 1) == 0
    code, _ = run_cli("--config", str(write_config(tmp_path, pack_size=suggested, num_shards=1)))
    meta = json.loads((tmp_path / "out" / "metadata.json").read_text())
    assert code == 0 and meta["truncated"]["sequences"] == 0, "the suggestion holds every sequence whole"
