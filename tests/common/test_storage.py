from __future__ import annotations

import os
from pathlib import Path

import pytest

from s3server import S3Server
from sft_common import storage


def test_join_parent_name() -> None:
    assert storage.join("s3://b/p/", "x", "/y.parquet") == "s3://b/p/x/y.parquet"
    assert storage.join("/tmp/a", "b") == "/tmp/a/b"
    assert storage.parent("s3://b/p/x.json") == "s3://b/p"
    assert storage.name("s3://b/p/x.json") == "x.json"


def test_local_atomic_write_and_read(tmp_path: Path) -> None:
    target = str(tmp_path / "sub" / "f.txt")
    storage.write_text(target, "hello")
    assert storage.read_text(target) == "hello"
    assert storage.exists(target)
    assert storage.exists(f"file://{target}")
    assert [p for p in os.listdir(tmp_path / "sub")] == ["f.txt"]


def test_failed_write_leaves_no_trace_and_keeps_old(tmp_path: Path) -> None:
    target = str(tmp_path / "f.txt")
    storage.write_text(target, "old")
    with pytest.raises(RuntimeError), storage.atomic_write_path(target) as tmp:
        tmp.write_text("partial")
        raise RuntimeError("crash")
    assert storage.read_text(target) == "old"
    assert os.listdir(tmp_path) == ["f.txt"]


def test_glob_and_listdir(tmp_path: Path) -> None:
    for rel in ("a/1.jsonl", "a/2.jsonl", "a/b/3.jsonl", "a/x.txt"):
        storage.write_text(str(tmp_path / rel), "{}")
    assert [Path(p).name for p in storage.glob(str(tmp_path / "a" / "*.jsonl"))] == ["1.jsonl", "2.jsonl"]
    assert len(storage.glob(str(tmp_path / "a" / "**" / "*.jsonl"))) == 3
    assert len(storage.listdir(str(tmp_path / "a"))) == 4
    assert storage.glob(str(tmp_path / "missing.jsonl")) == []


def test_read_missing_local_file_is_storage_error(tmp_path: Path) -> None:
    with pytest.raises(storage.StorageError, match="missing"):
        storage.read_bytes(str(tmp_path / "missing"))


@pytest.fixture
def s3(s3_server: S3Server) -> str:
    """Bucket ``bkt`` on the suite's local S3 (tests/conftest.py); ``s3://bkt``."""
    return s3_server.create_bucket("bkt")


def test_s3_round_trip(s3: str, tmp_path: Path) -> None:
    uri = storage.join(s3, "out", "metadata.json")
    assert not storage.exists(uri)
    storage.write_text(uri, '{"a": 1}')
    assert storage.exists(uri)
    assert storage.exists(storage.join(s3, "out"))  # a prefix counts as a directory
    assert storage.read_text(uri) == '{"a": 1}'
    storage.write_text(storage.join(s3, "out", "splits", "train", "shard_000000.parquet"), "x")
    assert storage.glob(f"{s3}/out/splits/*/*.parquet") == [f"{s3}/out/splits/train/shard_000000.parquet"]
    with storage.local_path(uri) as path:
        assert path.read_text() == '{"a": 1}'
    dest = storage.download_tree(storage.join(s3, "out"), tmp_path / "dl")
    assert (dest / "splits" / "train" / "shard_000000.parquet").read_text() == "x"
    storage.delete_tree(storage.join(s3, "out"))
    assert storage.listdir(storage.join(s3, "out")) == []


def test_s3_missing_object_is_storage_error(s3: str) -> None:
    with pytest.raises(storage.StorageError, match="s3://bkt/nope"):
        storage.read_bytes(f"{s3}/nope")
