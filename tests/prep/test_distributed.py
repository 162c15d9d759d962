"""N workers split the shards; blend.json/metadata.json appear once all shards are done, as with 1 worker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from prep.pipeline_support import CHATS, run_cli, termination, write_config


def _two_datasets(tmp_path: Path) -> list[dict]:
    second = tmp_path / "second.jsonl"
    second.write_bytes(b"".join(CHATS.read_bytes().splitlines(keepends=True)[:200]))
    return [{"name": "first", "path": str(CHATS)}, {"name": "second", "path": str(second), "weight": 0.5}]


def test_workers_in_turn_commit_only_when_the_last_shard_is_done(tmp_path: Path) -> None:
    config = write_config(tmp_path, datasets=_two_datasets(tmp_path), num_shards=6, valid_ratio=0.2)
    out = tmp_path / "out"
    owned = {0: [0, 3], 1: [1, 4], 2: [2, 5]}
    for worker in (2, 0):
        assert run_cli("--config", str(config), "--worker-index", str(worker), "--num-workers", "3")[0] == 0
        msg = termination()
        assert msg["worker"] == worker and msg["shardsBuilt"] == len(owned[worker])
        assert msg["blend"] is None and msg["metadata"] is None and "totals" not in msg
        assert msg["shardsTotal"] == 6 and not (out / "metadata.json").exists()
    receipts = {
        json.loads(p.read_text())["shard"]: json.loads(p.read_text())["worker"]
        for p in (out / "receipts").iterdir()
    }
    assert receipts == {0: 0, 3: 0, 2: 2, 5: 2}, "worker I builds exactly the shards s with s % N == I"

    assert run_cli("--config", str(config), "--worker-index", "1", "--num-workers", "3")[0] == 0
    last = termination()
    assert last["committed"] is True and last["shardsDone"] == 6 and last["totals"]["bins"] > 0
    assert (out / "metadata.json").exists() and (out / "blend.json").exists()

    # same bytes of data as one worker doing everything
    single = write_config(
        tmp_path,
        name="single.yaml",
        datasets=_two_datasets(tmp_path),
        num_shards=6,
        valid_ratio=0.2,
        output_dir=str(tmp_path / "single"),
    )
    assert run_cli("--config", str(single))[0] == 0
    multi_meta = json.loads((out / "metadata.json").read_text())
    single_meta = json.loads((tmp_path / "single" / "metadata.json").read_text())
    for key in ("totals", "dropped", "splits", "datasets", "config_hash"):
        if key == "datasets":
            for name in single_meta[key]:
                single_meta[key][name].pop("sources")
                multi_meta[key][name].pop("sources")
        assert multi_meta[key] == single_meta[key], key
    assert [s["file"] for s in multi_meta["shards"]] == [s["file"] for s in single_meta["shards"]]
    for rel in (s["file"] for s in multi_meta["shards"] if s["file"]):
        assert (out / rel).read_bytes() == (tmp_path / "single" / rel).read_bytes()


def test_concurrent_worker_processes(tmp_path: Path) -> None:
    config = write_config(tmp_path, datasets=_two_datasets(tmp_path), num_shards=4, valid_ratio=0.25)
    out = tmp_path / "out"
    procs = []
    for worker in range(3):
        env = {
            **os.environ,
            "SFT_PROGRESS": "off",
            "SFT_TERMINATION_LOG": str(tmp_path / f"term-{worker}"),
        }
        cmd = [
            sys.executable,
            "-m",
            "sft_prep",
            "--config",
            str(config),
            "--worker-index",
            str(worker),
            "--num-workers",
            "3",
        ]
        procs.append(
            subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        )
    results = []
    for proc in procs:
        _, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr
        results.append(json.loads((tmp_path / f"term-{len(results)}").read_text()))
    assert sum(r["shardsBuilt"] for r in results) == 4
    assert any(r["committed"] for r in results), "the worker that finished the last shard commits"
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["num_shards"] == 4 and all(s["bins"] >= 0 for s in meta["shards"])
    assert meta["totals"]["rows"] == sum(s["rows"] for s in meta["shards"])
    for r in results:
        if r["committed"]:
            assert r["totals"]["bins"] == meta["totals"]["bins"]
    blend = json.loads((out / "blend.json").read_text())
    listed = blend["train"][1::2] + blend["valid"][1::2] + blend["test"][1::2]
    assert all(Path(p + ".parquet").is_file() for p in listed)
    assert len(listed) == sum(1 for s in meta["shards"] if s["file"])


@pytest.mark.parametrize("workers", [1, 5])
def test_more_workers_than_shards_is_fine(tmp_path: Path, workers: int) -> None:
    config = write_config(tmp_path, num_shards=2)
    for worker in reversed(range(workers)):
        assert (
            run_cli("--config", str(config), "--worker-index", str(worker), "--num-workers", str(workers))[0]
            == 0
        )
    msg = termination()
    assert msg["worker"] == 0 and msg["shardsDone"] == 2 and msg["metadata"] is not None


def test_each_worker_patches_its_own_progress_entry_of_the_owner(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With SFT_OWNER_* set (as the operator does), worker I merge-patches status.progress.workers.<I>."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    patches: list[tuple[str, dict]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_PATCH(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            patches.append((self.path, body))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("SFT_OWNER_API", f"http://127.0.0.1:{server.server_address[1]}")
        monkeypatch.setenv("SFT_OWNER_NAME", "chats")
        monkeypatch.setenv("SFT_OWNER_NAMESPACE", "ml")
        monkeypatch.setenv("SFT_OWNER_PLURAL", "sftdatapreps")
        monkeypatch.setenv("SFT_PROGRESS_INTERVAL", "0.05")
        config = write_config(tmp_path, num_shards=2)
        assert run_cli("--config", str(config), "--worker-index", "1", "--num-workers", "2")[0] == 0
    finally:
        server.shutdown()
    assert patches, "no status patch was sent"
    path, body = patches[-1]
    assert path == "/apis/sft.dev/v1alpha1/namespaces/ml/sftdatapreps/chats/status"
    entry = body["status"]["progress"]["workers"]["1"]
    assert entry["unit"] == "shards" and entry["completed"] == entry["total"] == 1
    assert entry["tokens"] > 0 and entry["rows"] > 0 and "tokensPerSecond" in entry
