"""s3:// input and output against a local S3 server (moto) that the test starts."""

from __future__ import annotations

import io
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import boto3
import pyarrow.parquet as pq
import pytest

from prep.pipeline_support import CHATS, run_cli, termination, write_config
from sft_common import storage
from sft_prep.parquet_shard import SCHEMA


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    storage.reset_clients()
    client = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}")
    client.create_bucket(Bucket="data")
    try:
        yield client
    finally:
        storage.reset_clients()
        server.stop()


def test_s3_input_and_output(tmp_path: Path, s3) -> None:  # type: ignore[no-untyped-def]
    lines = CHATS.read_bytes().splitlines(keepends=True)
    s3.put_object(Bucket="data", Key="in/part-0.jsonl", Body=b"".join(lines[:250]))
    s3.put_object(Bucket="data", Key="in/part-1.jsonl", Body=b"".join(lines[250:]))
    config = write_config(
        tmp_path,
        datasets=[{"name": "chats", "path": "s3://data/in/*.jsonl"}],
        output_dir="s3://data/prepared/run1",
        num_shards=3,
        valid_ratio=0.34,
    )
    code, stdout = run_cli("--config", str(config))
    assert code == 0, stdout
    msg = termination()
    assert msg["blend"] == "s3://data/prepared/run1/blend.json" and msg["shardsDone"] == 3

    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="data", Prefix="prepared/run1/")["Contents"])
    parquet = [k for k in keys if k.endswith(".parquet")]
    assert parquet and all(k.startswith("prepared/run1/splits/") for k in parquet)
    assert "prepared/run1/metadata.json" in keys and "prepared/run1/receipts/shard_000002.json" in keys
    assert not [k for k in keys if k.endswith(".tmp")]

    blend = json.loads(s3.get_object(Bucket="data", Key="prepared/run1/blend.json")["Body"].read())
    listed = blend["train"][1::2] + blend["valid"][1::2]
    assert all(p.startswith("s3://data/prepared/run1/splits/") for p in listed)
    assert sorted(p[len("s3://data/") :] + ".parquet" for p in listed) == parquet

    meta = json.loads(s3.get_object(Bucket="data", Key="prepared/run1/metadata.json")["Body"].read())
    assert meta["totals"]["rows"] == len([x for x in lines if x.strip()])
    assert meta["datasets"]["chats"]["sources"] == ["s3://data/in/part-0.jsonl", "s3://data/in/part-1.jsonl"]
    bins = 0
    for key in parquet:
        body = s3.get_object(Bucket="data", Key=key)["Body"].read()
        table = pq.read_table(io.BytesIO(body))
        assert table.schema == SCHEMA
        bins += table.num_rows
    assert bins == meta["totals"]["bins"]

    code, stdout = run_cli("--config", str(config))
    assert code == 0 and "up to date" in stdout
