"""Idempotence and resumption: receipts, crashes mid-run, config changes and --force."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from prep.pipeline_support import CHATS, run_cli, termination, write_config
from sft_prep import pipeline


def _tables(out: Path) -> dict[str, list]:
    return {
        p.relative_to(out).as_posix(): pq.read_table(p).to_pylist()
        for p in sorted((out / "splits").rglob("*.parquet"))
    }


def _receipt_times(out: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in (out / "receipts").iterdir()}


def test_a_crash_mid_run_resumes_without_redoing_finished_shards(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_config(tmp_path, valid_ratio=0.25)
    out = tmp_path / "out"
    real_write = pipeline.write_shard
    calls = {"n": 0}

    def crash_on_third(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("node lost")
        return real_write(*args, **kwargs)

    monkeypatch.setattr(pipeline, "write_shard", crash_on_third)
    code, _ = run_cli("--config", str(config))
    assert code == 1 and termination()["status"] == "failed" and "node lost" in termination()["message"]
    assert sorted(p.name for p in (out / "receipts").iterdir()) == ["shard_000000.json", "shard_000001.json"]
    assert not (out / "metadata.json").exists() and not (out / "blend.json").exists()
    leftovers = [p.name for p in out.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == [], "the interrupted shard left no partial file"
    finished = _receipt_times(out)

    monkeypatch.setattr(pipeline, "write_shard", real_write)
    code, _ = run_cli("--config", str(config))
    assert code == 0
    msg = termination()
    assert msg["shardsSkipped"] == 2 and msg["shardsBuilt"] == 2 and msg["shardsDone"] == 4
    after = _receipt_times(out)
    assert {k: after[k] for k in finished} == finished, "finished shards were not redone"

    # the resumed output is exactly what an uninterrupted run produces
    clean = write_config(tmp_path, name="clean.yaml", valid_ratio=0.25, output_dir=str(tmp_path / "clean"))
    assert run_cli("--config", str(clean))[0] == 0
    assert _tables(out) == _tables(tmp_path / "clean")
    resumed = json.loads((out / "metadata.json").read_text())
    fresh = json.loads((tmp_path / "clean" / "metadata.json").read_text())
    assert resumed["totals"] == fresh["totals"] and resumed["config_hash"] == fresh["config_hash"]


def test_a_failure_while_the_previous_shard_is_written_keeps_that_shard(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Shard k is written in the background while shard k+1 is tokenized; if tokenizing fails, the
    write in flight still completes with its receipt (nothing finished is lost), and nothing later."""
    config = write_config(tmp_path, valid_ratio=0.25)
    out = tmp_path / "out"
    real_collect = pipeline.Worker.collect
    calls = {"n": 0}

    def fail_third(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("input vanished")
        return real_collect(self, *args, **kwargs)

    monkeypatch.setattr(pipeline.Worker, "collect", fail_third)
    code, _ = run_cli("--config", str(config))
    assert code == 1 and "input vanished" in termination()["message"]
    assert sorted(p.name for p in (out / "receipts").iterdir()) == ["shard_000000.json", "shard_000001.json"]
    assert len(list((out / "splits").rglob("*.parquet"))) == 2 and not (out / "metadata.json").exists()


def test_a_killed_process_resumes(tmp_path: Path) -> None:
    big = tmp_path / "big.jsonl"
    big.write_bytes(CHATS.read_bytes() * 15)
    config = write_config(tmp_path, datasets=[{"name": "big", "path": str(big)}], num_shards=8)
    out = tmp_path / "out"
    env = {**os.environ, "SFT_PROGRESS": "off"}
    cmd = [sys.executable, "-m", "sft_prep", "--config", str(config)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not (out / "receipts" / "shard_000001.json").exists() and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    if proc.returncode == 0:
        pytest.fail("the run finished before it could be killed; the input is too small for this machine")
    done_before = sorted(p.name for p in (out / "receipts").iterdir())
    assert 2 <= len(done_before) < 8 and not (out / "metadata.json").exists()
    times = _receipt_times(out)

    resumed = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    result = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert result["shardsSkipped"] == len(done_before) and result["shardsBuilt"] == 8 - len(done_before)
    assert {k: v for k, v in _receipt_times(out).items() if k in times} == times
    assert json.loads((out / "metadata.json").read_text())["totals"]["rows"] == 15 * len(
        CHATS.read_text().splitlines()
    )


def test_a_changed_config_is_a_new_run_and_never_mixes_with_the_old_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_config(tmp_path, num_shards=4)
    out = tmp_path / "out"
    assert run_cli("--config", str(config))[0] == 0
    old = json.loads((out / "metadata.json").read_text())

    # the new config crashes half way: the old commit marker must already be gone
    real_write = pipeline.write_shard
    calls = {"n": 0}

    def crash_on_second(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("preempted")
        return real_write(*args, **kwargs)

    monkeypatch.setattr(pipeline, "write_shard", crash_on_second)
    assert run_cli("--config", str(config), "num_shards=2", "pack_size=512")[0] == 1
    assert not (out / "metadata.json").exists() and not (out / "blend.json").exists()
    archived = json.loads((out / "history" / f"metadata-{old['run_id']}.json").read_text())
    assert archived == old

    monkeypatch.setattr(pipeline, "write_shard", real_write)
    assert run_cli("--config", str(config), "num_shards=2", "pack_size=512")[0] == 0
    new = json.loads((out / "metadata.json").read_text())
    assert new["config_hash"] != old["config_hash"] and new["pack_size"] == 512
    # files of the old plan (shards 2 and 3) are gone; only the new plan's files and receipts remain
    assert sorted(p.name for p in (out / "receipts").iterdir()) == ["shard_000000.json", "shard_000001.json"]
    files = sorted(p.name for p in (out / "splits").rglob("*") if p.is_file())
    assert files == ["shard_000000.parquet", "shard_000001.parquet"]
    for p in (out / "splits").rglob("*.parquet"):
        assert max(len(r) for r in pq.read_table(p).column("input_ids").to_pylist()) <= 512
    blend = json.loads((out / "blend.json").read_text())
    assert len(blend["train"]) == 4


def test_force_redoes_every_shard_and_a_plain_rerun_then_is_a_no_op(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    out = tmp_path / "out"
    assert run_cli("--config", str(config))[0] == 0
    first = json.loads((out / "metadata.json").read_text())
    assert run_cli("--config", str(config), "--force")[0] == 0
    msg = termination()
    assert msg["shardsBuilt"] == 4 and msg["shardsSkipped"] == 0
    forced = json.loads((out / "metadata.json").read_text())
    assert forced["run_id"] != first["run_id"] and forced["config_hash"] == first["config_hash"]
    assert forced["totals"] == first["totals"]
    assert (out / "history" / f"metadata-{first['run_id']}.json").exists()
    code, stdout = run_cli("--config", str(config))
    assert code == 0 and "up to date" in stdout


def test_force_with_several_workers_needs_a_shared_run_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_config(tmp_path)
    monkeypatch.delenv("SFT_RUN_ID", raising=False)
    code, _ = run_cli("--config", str(config), "--force", "--worker-index", "0", "--num-workers", "2")
    assert code == 2 and "SFT_RUN_ID" in termination()["message"]
    monkeypatch.setenv("SFT_RUN_ID", "job-uid-1")
    assert run_cli("--config", str(config), "--force", "--worker-index", "0", "--num-workers", "2")[0] == 0
    assert termination()["shardsBuilt"] == 2
    # a restarted pod of the same forced run resumes instead of redoing
    assert run_cli("--config", str(config), "--force", "--worker-index", "0", "--num-workers", "2")[0] == 0
    assert termination()["shardsBuilt"] == 0
    assert run_cli("--config", str(config), "--force", "--worker-index", "1", "--num-workers", "2")[0] == 0
    assert termination()["committed"] is True and (tmp_path / "out" / "metadata.json").exists()


def test_a_lost_parquet_file_is_rebuilt_even_with_its_receipt(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    out = tmp_path / "out"
    assert run_cli("--config", str(config))[0] == 0
    victim = next((out / "splits").rglob("*.parquet"))
    victim.unlink()
    (out / "metadata.json").unlink()
    assert run_cli("--config", str(config))[0] == 0
    assert termination()["shardsBuilt"] == 1 and victim.exists()


def test_a_deleted_shard_file_after_commit_is_rebuilt_not_reported_as_up_to_date(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    out = tmp_path / "out"
    assert run_cli("--config", str(config))[0] == 0
    victim = next((out / "splits").rglob("*.parquet"))
    expected = pq.read_table(victim).to_pylist()
    victim.unlink()
    code, stdout = run_cli("--config", str(config))
    assert code == 0 and "gone" in stdout and "up to date" not in stdout
    assert termination()["shardsBuilt"] == 1 and pq.read_table(victim).to_pylist() == expected
    assert (out / "metadata.json").exists()
