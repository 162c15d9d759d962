"""sft-prep end to end on the bundled sample chats: layout, schema, blend.json, metadata, decoded labels."""

from __future__ import annotations

import itertools
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from prep.pipeline_support import (
    CHATS,
    TOKENIZER,
    read_rows,
    result_line,
    run_cli,
    termination,
    trained_runs,
    unrolled_runs,
    write_config,
)
from sft_prep.chat import RowError, parse_json_row
from sft_prep.parquet_shard import SCHEMA
from sft_prep.process import RowProcessor
from sft_prep.template import load_template
from sft_prep.tokenizer import load_tokenizer


@pytest.fixture(scope="module")
def tokenizer():  # type: ignore[no-untyped-def]
    return load_tokenizer(str(TOKENIZER))


def _sample_rows() -> list[dict | RowError]:
    rows: list[dict | RowError] = []
    for line in CHATS.read_bytes().splitlines():
        if not line.strip():
            continue
        try:
            rows.append(parse_json_row(line))
        except RowError as err:
            rows.append(err)
    return rows


def test_end_to_end_on_bundled_samples(tmp_path: Path, tokenizer) -> None:  # type: ignore[no-untyped-def]
    config = write_config(tmp_path, valid_ratio=0.25, test_ratio=0.25, parquet_row_group_size=7)
    code, stdout = run_cli("--config", str(config))
    assert code == 0, stdout
    out = tmp_path / "out"

    # layout: real files per split, receipts, blend + metadata
    files = sorted(p.relative_to(out).as_posix() for p in (out / "splits").rglob("*") if p.is_file())
    assert files and all(f.split("/")[1] in ("train", "valid", "test") for f in files)
    assert {f.split("/")[1] for f in files} == {
        "train",
        "valid",
        "test",
    }  # 4 shards: 2 train, 1 valid, 1 test
    assert sorted(p.name for p in (out / "receipts").iterdir()) == [f"shard_{i:06d}.json" for i in range(4)]

    # Parquet: exact schema, row groups of 7 bins, zstd, seq_start_id rules, no bin over pack_size
    per_file: dict[str, dict[str, int]] = {}
    decoded_runs: list[list[int]] = []
    for rel in files:
        pf = pq.ParquetFile(out / rel)
        assert pf.schema_arrow == SCHEMA
        assert pf.metadata.row_group(0).column(0).compression == "ZSTD"
        assert all(pf.metadata.row_group(i).num_rows <= 7 for i in range(pf.metadata.num_row_groups))
        assert pf.metadata.row_group(0).num_rows == min(7, pf.metadata.num_rows)
        rows = read_rows(out / rel)
        stats = Counter()
        for row in rows:
            ids, mask, starts = row["input_ids"], row["loss_mask"], row["seq_start_id"]
            assert len(ids) == len(mask) <= 1024
            assert starts[0] == 0 and all(b > a for a, b in itertools.pairwise(starts))
            assert starts[-1] < len(ids)
            bounds = [*starts, len(ids)]
            assert all(mask[e - 1] == 0 for e in bounds[1:]), "last token of a sub-sequence has no label"
            stats.update(bins=1, tokens=len(ids), trainable=sum(mask), sequences=len(starts))
            decoded_runs.extend(trained_runs(row))
        per_file[rel] = dict(stats)

    # blend.json: the reference format, weights as strings, prefixes of existing files
    blend = json.loads((out / "blend.json").read_text())
    assert set(blend) == {"train", "valid", "test"}
    listed = []
    for split, entries in blend.items():
        assert len(entries) % 2 == 0
        for weight, prefix in zip(entries[::2], entries[1::2], strict=True):
            assert weight == "1.0"
            assert Path(prefix + ".parquet").is_file() and f"/splits/{split}/" in prefix
            listed.append(Path(prefix + ".parquet").relative_to(out).as_posix())
    assert sorted(listed) == files

    # metadata.json: totals are the sums over the files, per split and per dataset too
    meta = json.loads((out / "metadata.json").read_text())
    totals = meta["totals"]
    assert totals["bins"] == sum(s["bins"] for s in per_file.values())
    assert totals["tokens"] == sum(s["tokens"] for s in per_file.values())
    assert totals["trainable_tokens"] == sum(s["trainable"] for s in per_file.values())
    assert totals["sequences"] == sum(s["sequences"] for s in per_file.values())
    assert totals["rows"] == len(_sample_rows())
    assert totals["rows"] == totals["rows_kept"] + totals["rows_dropped"]
    assert totals["rows_dropped"] == sum(meta["dropped"].values()) > 0
    assert "bad_json" in meta["dropped"] and meta["examples"]["bad_json"][0]["row"].startswith("chats.jsonl:")
    assert meta["packing_efficiency"] == pytest.approx(totals["tokens"] / (totals["bins"] * 1024), abs=1e-6)
    assert meta["packing_factor"] == pytest.approx(totals["sequences"] / totals["bins"], abs=1e-4)
    assert meta["lower_bound_bins"] <= totals["bins"]
    for split in ("train", "valid", "test"):
        mine = [s for rel, s in per_file.items() if rel.split("/")[1] == split]
        assert meta["splits"][split]["bins"] == sum(s["bins"] for s in mine)
        assert meta["splits"][split]["tokens"] == sum(s["tokens"] for s in mine)
    assert sum(meta["splits"][s]["rows"] for s in ("train", "valid", "test")) == totals["rows"]
    assert meta["datasets"]["chats"]["tokens"] == totals["tokens"]
    assert meta["tokenizer"]["model"] == str(TOKENIZER) and meta["chat_template"]["name"] == "nano3"
    assert meta["pack_size"] == 1024 and meta["run_id"] == meta["config_hash"]

    # the trained labels are exactly the assistant tokens the text stage produced, nothing more
    processor = RowProcessor(tokenizer, load_template("nano3", tokenizer.chat_template), 1024)
    result = processor.process(("chats", i, row) for i, row in enumerate(_sample_rows()))
    expected = [run for seq in result.sequences for run in unrolled_runs(seq.input_ids, seq.loss_mask)]
    assert sorted(decoded_runs) == sorted(expected)
    # ... and they decode to assistant turns: each ends the turn, and simple chats give their replies
    texts = Counter(tokenizer.decode(run) for run in decoded_runs)
    assert all(t.endswith("<|im_end|>\n") for t in texts)
    simple = [
        m["content"].strip() + "<|im_end|>\n"
        for row in _sample_rows()
        if isinstance(row, dict) and isinstance(row.get("messages"), list)
        for m in row["messages"]
        if isinstance(m, dict)
        and m.get("role") == "assistant"
        and isinstance(m.get("content"), str)
        and not m.get("reasoning_content")
        and not m.get("tool_calls")
        and "<think>" not in m["content"]
        and all(
            isinstance(x, dict) and x.get("role") in ("system", "user", "assistant") for x in row["messages"]
        )
    ]
    assert len(simple) > 100
    missing = [s for s in simple if s not in texts]
    assert len(missing) <= len(simple) // 20, missing[:5]  # a few are cut by template-level filters

    # the result contract (camelCase), on stdout and in the termination message
    result = result_line(stdout)
    msg = termination()
    assert msg["status"] == "succeeded" and msg["outputDir"] == str(out)
    assert msg["blend"] == str(out / "blend.json") and msg["metadata"] == str(out / "metadata.json")
    assert msg["packSize"] == 1024 and msg["shardsDone"] == msg["shardsTotal"] == 4 and msg["worker"] == 0
    assert msg["totals"] == {
        "rows": totals["rows"],
        "sequences": totals["sequences"],
        "tokens": totals["tokens"],
        "trainableTokens": totals["trainable_tokens"],
        "bins": totals["bins"],
    }
    assert result["totals"] == msg["totals"] and msg["packingEfficiency"] == meta["packing_efficiency"]
    assert "sft-prep summary" in stdout and "TOTAL" in stdout
    (encoding,) = [line for line in stdout.splitlines() if line.startswith("encoding: ")]
    assert "joint (byte-level BPE)" in encoding and " joint " in encoding and "reused instead of" in encoding


def test_rerun_of_the_same_config_is_a_no_op(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    assert run_cli("--config", str(config))[0] == 0
    out = tmp_path / "out"
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    code, stdout = run_cli("--config", str(config))
    assert code == 0
    assert "up to date" in stdout
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before
    msg = termination()
    assert msg["upToDate"] is True and msg["shardsBuilt"] == 0 and msg["totals"]["bins"] > 0


def test_two_or_fewer_shards_put_everything_in_train(tmp_path: Path) -> None:
    config = write_config(tmp_path, num_shards=2, valid_ratio=0.3, test_ratio=0.3)
    assert run_cli("--config", str(config))[0] == 0
    blend = json.loads((tmp_path / "out" / "blend.json").read_text())
    assert len(blend["train"]) == 4 and blend["valid"] == [] and blend["test"] == []


def test_several_datasets_parquet_input_weights_and_blend_path(tmp_path: Path) -> None:
    import pyarrow as pa

    good = [r for r in _sample_rows()[:80] if isinstance(r, dict) and isinstance(r.get("messages"), list)]
    table = pa.Table.from_pylist([{"conv": r["messages"]} for r in good if _uniform(r["messages"])])
    assert table.num_rows > 10
    pq.write_table(table, tmp_path / "part.parquet")
    blend_file = tmp_path / "blend_in.json"
    blend_file.write_text(
        json.dumps(
            {
                "datasets": [
                    {"name": "jsonl", "path": str(CHATS), "weight": 0.3},
                    {
                        "name": "pq",
                        "path": str(tmp_path / "*.parquet"),
                        "weight": 2,
                        "messages_field": "conv",
                    },
                ]
            }
        )
    )
    config = write_config(tmp_path, datasets=[], blend_path=str(blend_file), num_shards=2)
    code, stdout = run_cli("--config", str(config))
    assert code == 0, stdout
    blend = json.loads((tmp_path / "out" / "blend.json").read_text())
    weights = dict(zip(blend["train"][1::2], blend["train"][::2], strict=True))
    assert sorted(weights.values()) == ["0.3", "2.0"]
    meta = json.loads((tmp_path / "out" / "metadata.json").read_text())
    assert meta["datasets"]["pq"]["rows"] == table.num_rows
    assert (
        meta["datasets"]["pq"]["rows_kept"] > table.num_rows // 2 and meta["datasets"]["pq"]["sequences"] > 0
    )
    assert meta["datasets"]["jsonl"]["weight"] == 0.3 and meta["num_shards"] == 2


def _uniform(messages: list[dict]) -> bool:
    """Rows Arrow can store in one struct column (string content, no tool calls)."""
    return all(isinstance(m.get("content"), str) and set(m) <= {"role", "content"} for m in messages)


def test_sample_limits_rows_per_dataset(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    assert run_cli("--config", str(config), "--sample", "50")[0] == 0
    meta = json.loads((tmp_path / "out" / "metadata.json").read_text())
    assert meta["totals"]["rows"] == 50 and meta["config"]["sample"] == 50


def test_wandb_without_the_package_is_a_warning_not_a_failure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import builtins

    real_import = builtins.__import__

    def no_wandb(name: str, *args, **kwargs):  # type: ignore[no-untyped-def]
        if name == "wandb":
            raise ImportError("No module named 'wandb'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_wandb)
    config = write_config(tmp_path, wandb={"project": "sft"})
    assert run_cli("--config", str(config), "--sample", "20")[0] == 0
    assert "wandb package is not installed" in capsys.readouterr().err


def test_wandb_artifact_is_logged_with_its_type(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a wandb module present the artifact is an SFTDataArtifact carrying the totals."""
    import sys
    import types

    logged: list[dict] = []

    class Artifact:
        def __init__(self, name: str, type: str, metadata: dict) -> None:
            self.record = {"name": name, "type": type, "metadata": metadata, "files": []}

        def add_file(self, path: str) -> None:
            self.record["files"].append(Path(path).name)

    class Run:
        def log_artifact(self, artifact: Artifact) -> None:
            logged.append(artifact.record)

        def finish(self) -> None:
            pass

    fake = types.SimpleNamespace(init=lambda **kw: Run(), Artifact=Artifact)
    monkeypatch.setitem(sys.modules, "wandb", fake)
    config = write_config(tmp_path, wandb={"project": "sft", "artifact_name": "chats-data"})
    assert run_cli("--config", str(config), "--sample", "20")[0] == 0
    assert len(logged) == 1
    record = logged[0]
    assert record["type"] == "SFTDataArtifact" and record["name"] == "chats-data"
    assert record["metadata"]["totals"]["rows"] == 20
    assert sorted(record["files"]) == ["blend.json", "metadata.json"]


def test_hub_dataset_without_the_datasets_package_fails_clearly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)  # the prep extra ships it; a bare install may not
    config = write_config(tmp_path, datasets=[{"name": "hub", "path": "hf://org/name"}])
    code, _ = run_cli("--config", str(config))
    msg = termination()
    assert code == 2 and msg["reason"] == "InvalidConfig"
    assert "hf://org/name" in msg["message"] and "datasets" in msg["message"]
    assert not (tmp_path / "out" / "metadata.json").exists()


def test_missing_input_fails_before_any_work(tmp_path: Path) -> None:
    config = write_config(tmp_path, datasets=[{"name": "x", "path": str(tmp_path / "nope" / "*.jsonl")}])
    code, _ = run_cli("--config", str(config))
    assert code == 2
    assert "datasets[0].path" in termination()["message"]
    assert not (tmp_path / "out").exists()


def test_shard_memory_is_one_shard(tmp_path: Path) -> None:
    """Rows stream: building a shard never materialises the other shards' rows."""
    from sft_prep import parquet_shard

    config = write_config(tmp_path, num_shards=8)
    seen: list[int] = []
    original = parquet_shard.SequenceStore.extend

    def counting_extend(self, ids, mask, lengths):  # type: ignore[no-untyped-def]
        original(self, ids, mask, lengths)
        seen.append(len(self))

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(parquet_shard.SequenceStore, "extend", counting_extend)
        assert run_cli("--config", str(config))[0] == 0
    meta = json.loads((tmp_path / "out" / "metadata.json").read_text())
    largest_shard = max(s["sequences"] for s in meta["shards"])
    assert max(seen) == largest_shard < meta["totals"]["sequences"] / 4
    assert np.isclose(sum(s["sequences"] for s in meta["shards"]), meta["totals"]["sequences"])


def test_a_run_where_every_row_is_dropped_fails_with_the_reasons(tmp_path: Path) -> None:
    config = write_config(
        tmp_path, datasets=[{"name": "chats", "path": str(CHATS), "messages_field": "turns"}]
    )
    code, _ = run_cli("--config", str(config), "num_shards=1")
    msg = termination()
    assert code == 2 and msg["reason"] == "NoTrainingData"  # the data's fault: fail fast, like a config error
    assert "missing_messages" in msg["message"] and "messages_field" in msg["message"]
    meta = json.loads((tmp_path / "out" / "metadata.json").read_text())
    assert meta["totals"]["bins"] == 0 and meta["dropped"]["missing_messages"] > 0
    assert run_cli("--config", str(config), "num_shards=1")[0] == 2, "a rerun does not turn it into a success"


def test_file_uris_for_input_and_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = write_config(
        tmp_path, datasets=[{"name": "chats", "path": f"file://{CHATS}"}], output_dir=f"file://{tmp_path}/o"
    )
    assert run_cli("--config", str(config), "--sample", "40")[0] == 0
    blend = json.loads((tmp_path / "o" / "blend.json").read_text())
    assert all(p.startswith(f"{tmp_path}/o/splits/") for p in blend["train"][1::2])
    assert termination()["totals"]["rows"] == 40
    relative = write_config(tmp_path, name="rel.yaml", output_dir="rel-out")
    assert run_cli("--config", str(relative), "--sample", "40")[0] == 0
    blend = json.loads((tmp_path / "rel-out" / "blend.json").read_text())
    assert all(p.startswith(f"{tmp_path}/rel-out/splits/") for p in blend["train"][1::2])


def test_worker_processes_produce_byte_identical_shards(tmp_path: Path) -> None:
    """--processes P moves parsing/rendering/tokenizing to P processes; the output must not change."""
    one = write_config(tmp_path, name="one.yaml", output_dir=str(tmp_path / "one"), valid_ratio=0.25)
    two = write_config(tmp_path, name="two.yaml", output_dir=str(tmp_path / "two"), valid_ratio=0.25)
    assert run_cli("--config", str(one), "--processes", "1")[0] == 0
    assert run_cli("--config", str(two), "--processes", "2")[0] == 0
    files = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one" / "splits").rglob("*.parquet"))
    assert files == sorted(
        p.relative_to(tmp_path / "two") for p in (tmp_path / "two" / "splits").rglob("*.parquet")
    )
    for rel in files:
        assert (tmp_path / "one" / rel).read_bytes() == (tmp_path / "two" / rel).read_bytes()
    meta_one = json.loads((tmp_path / "one" / "metadata.json").read_text())
    meta_two = json.loads((tmp_path / "two" / "metadata.json").read_text())
    assert meta_one["totals"] == meta_two["totals"] and meta_one["dropped"] == meta_two["dropped"]
    assert meta_one["examples"] == meta_two["examples"]
    # The encoding strategy and its per-sequence counts reach metadata.json, summed over the worker
    # processes: every sequence the chunker produced was encoded once, kept or dropped afterwards.
    encoding = meta_one["encoding"]
    assert (encoding["strategy"], encoding["why"]) == ("joint", "byte-level BPE")
    assert meta_two["encoding"] == encoding and encoding["sequences"]["joint"] > 0
    encoded = meta_one["totals"]["sequences"] + sum(meta_one["dropped_sequences"].values())
    assert sum(encoding["sequences"].values()) == encoded
