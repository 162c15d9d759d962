"""s3:// input and output against a local S3 server (moto) that the test starts."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pyarrow.parquet as pq

from prep.pipeline_support import CHATS, run_cli, termination, write_config
from sft_prep.parquet_shard import SCHEMA


def test_s3_input_and_output(tmp_path: Path, s3_bucket) -> None:  # type: ignore[no-untyped-def]
    s3 = s3_bucket
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
